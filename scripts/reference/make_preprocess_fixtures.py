#!/usr/bin/env python3
"""Writes the image-preprocessing fixtures (tests/fixtures/preprocess/) from the reference:
UniCL's eval transform, i.e. PIL `Image.open(f).convert('RGB')` then torchvision
`Resize(int(256/224*S), BICUBIC)` -> `CenterCrop(S)` -> `ToTensor` -> `Normalize(ImageNet)`.

    pip install -r scripts/reference/requirements.txt
    python scripts/reference/make_preprocess_fixtures.py

Inputs are synthetic but textured (gradients + noise + hard edges + a few lines), generated
from a fixed seed. For every case the script writes the torchvision result of
resize + centre crop as a lossless PNG (`<case>.expected.png`, uint8 HWC: exactly what ToTensor
divides by 255), so the Rust test compares the resampler on identical decoded pixels. The
normalised float tensor of one case is stored in `normalised.safetensors` to pin ToTensor and
Normalize. `manifest.json` describes each case (input, config, PIL mode/size).

Everything is small (< 2 MB in all).
"""
import io
import json
from pathlib import Path

import numpy as np
import torch
import torchvision
import PIL
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms as T

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "preprocess"

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
FILTERS = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
    "lanczos": T.InterpolationMode.LANCZOS,
}

rng = np.random.default_rng(20240611)


def textured(w, h, channels=3):
    """Gradients + blocky and fine noise + a hard-edged rectangle + diagonal lines (uint8)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = []
    for c in range(channels):
        g = 255.0 * (0.5 + 0.5 * np.sin(2 * np.pi * (x / max(w, 1) * (1 + c) + y / max(h, 1) * (2 - c * 0.5))))
        # blocky noise (8x8 cells)
        cells = rng.integers(-40, 41, size=(h // 8 + 1, w // 8 + 1))
        g += cells[(y // 8).astype(int), (x // 8).astype(int)]
        # fine noise in one 48x48 patch only (noise everywhere would make the PNGs large)
        fine = rng.integers(-12, 13, size=(h, w))
        fine[(y < h // 2) | (x >= 48) | (y >= h // 2 + 48)] = 0
        g += fine
        out.append(g)
    a = np.stack(out, -1)
    # hard edges: a saturated rectangle and one-pixel diagonal lines (bicubic overshoot)
    a[h // 4: h // 2 + 1, w // 3: (2 * w) // 3 + 1] = [255, 0, 255][:channels] if channels == 3 else 255
    lines = ((x.astype(int) + y.astype(int)) % 23 == 0)
    a[lines] = 0
    a[(x.astype(int) - y.astype(int)) % 31 == 0] = 255
    a = np.clip(np.round(a), 0, 255).astype(np.uint8)
    return a if channels > 1 else a[..., 0]


def reference_crop(img, resize, crop, filt):
    """torchvision Resize + CenterCrop on a PIL image (RGB); uint8 HWC."""
    t = T.Compose([T.Resize(resize, interpolation=FILTERS[filt]), T.CenterCrop(crop)])
    return np.asarray(t(img))


def reference_tensor(img, resize, crop, filt="bicubic"):
    t = T.Compose([T.Resize(resize, interpolation=FILTERS[filt]), T.CenterCrop(crop), T.ToTensor(),
                   T.Normalize(MEAN, STD)])
    return t(img)


def load_rgb(path):
    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


manifest = {
    "generator": "scripts/reference/make_preprocess_fixtures.py",
    "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "pillow": PIL.__version__},
    "cases": [],
    "decode": [],
}


def case(name, input_file, resize, crop, filt="bicubic"):
    img = load_rgb(OUT / input_file)
    exp = reference_crop(img, resize, crop, filt)
    exp_file = f"{name}.expected.png"
    Image.fromarray(exp).save(OUT / exp_file, optimize=True)
    with Image.open(OUT / input_file) as raw:
        mode, size = raw.mode, list(raw.size)
    manifest["cases"].append(dict(name=name, input=input_file, resize=resize, crop=crop, filter=filt,
                                  pil_mode=mode, pil_size=size, expected=exp_file))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for p in OUT.iterdir():
        p.unlink()

    # --- RGB PNG inputs of odd sizes (the resampler on exact pixels) ---
    sizes = {"rgb_640x427": (640, 427), "rgb_255x257": (255, 257), "rgb_7x300": (7, 300),
             "rgb_1x1": (1, 1), "rgb_300x200": (300, 200), "rgb_100x60": (100, 60)}
    for name, (w, h) in sizes.items():
        Image.fromarray(textured(w, h)).save(OUT / f"{name}.png", optimize=True)

    # UniCL at 224: resize 256 (downsampling: 640x427, 7x300 long side; upsampling: the rest)
    for name in sizes:
        case(f"{name}_s224", f"{name}.png", 256, 224)
    # general rule resize = int(256/224*S) at a small crop, and the optional filters
    s = 64
    r = int(256 / 224 * s)  # 73
    for filt in FILTERS:
        case(f"rgb_640x427_{filt}_s{s}", "rgb_640x427.png", r, s, filt)
        case(f"rgb_100x60_{filt}_s{s}", "rgb_100x60.png", r, s, filt)
    # resize smaller than the crop: torchvision's CenterCrop pads with zeros
    case("rgb_100x60_pad", "rgb_100x60.png", 50, 64)
    case("rgb_1x1_pad", "rgb_1x1.png", 3, 8)
    # resize to the image's own size: torchvision returns the image unchanged
    case("rgb_300x200_same", "rgb_300x200.png", 200, 150)

    # --- modes and formats: what PIL convert('RGB') makes of them ---
    gray = textured(96, 80, channels=1)
    Image.fromarray(gray).save(OUT / "gray.png")
    rgba = np.dstack([textured(96, 80), np.tile(np.linspace(0, 255, 96).astype(np.uint8), (80, 1))])
    Image.fromarray(rgba).save(OUT / "rgba.png")
    la = np.dstack([gray, 255 - gray])
    Image.fromarray(la).save(OUT / "la.png")
    pal = Image.fromarray(textured(96, 80)).quantize(colors=64, dither=Image.Dither.NONE)
    pal.save(OUT / "palette.gif")
    pal.save(OUT / "palette.png")
    # palette index 0 transparent: PIL's convert('RGB') shows the palette colour underneath
    pal.save(OUT / "palette_transparent.gif", transparency=0)
    # a two-frame GIF: only the first frame counts
    frame2 = Image.fromarray(255 - textured(96, 80)).quantize(colors=32)
    pal.save(OUT / "animated.gif", save_all=True, append_images=[frame2], duration=100, loop=0)
    Image.fromarray(textured(96, 80)).save(OUT / "rgb.bmp")
    Image.fromarray(textured(96, 80)).save(OUT / "rgb_lossless.webp", lossless=True)
    Image.fromarray(textured(96, 80)).save(OUT / "rgb.tiff")
    # 16-bit: an RGB PNG (PIL keeps the high byte) and a grayscale PNG (PIL opens it as I;16 and
    # convert('RGB') clips the 16-bit value at 255, so almost everything turns white)
    rgb16 = (textured(96, 80).astype(np.uint16) * 257 + rng.integers(0, 257, (80, 96, 3))).astype(">u2")
    write_png16(OUT / "rgb16.png", rgb16, color_type=2)
    gray16 = (gray.astype(np.uint16) * 257 + rng.integers(0, 257, (80, 96))).astype(">u2")
    gray16[:4, :4] = np.arange(16).reshape(4, 4) * 17  # a few values below 256 (I;16 keeps them)
    write_png16(OUT / "gray16.png", gray16, color_type=0)

    for f in ["gray.png", "rgba.png", "la.png", "palette.gif", "palette.png", "palette_transparent.gif",
              "animated.gif", "rgb.bmp",
              "rgb_lossless.webp", "rgb.tiff", "rgb16.png", "gray16.png"]:
        stem = f.replace(".", "_")
        decoded = np.asarray(load_rgb(OUT / f))
        Image.fromarray(decoded).save(OUT / f"{stem}.pil_rgb.png")
        with Image.open(OUT / f) as raw:
            mode = raw.mode
        manifest["decode"].append(dict(input=f, pil_mode=mode, pil_rgb=f"{stem}.pil_rgb.png"))
        case(f"{stem}_s64", f, r, s)

    # --- JPEG: the decoder differs from PIL's libjpeg(-turbo) by a few levels ---
    Image.fromarray(textured(200, 150)).save(OUT / "photo.jpg", quality=90)  # 4:2:0 subsampling
    Image.fromarray(textured(96, 80)).save(OUT / "photo444.jpg", quality=95, subsampling=0)
    Image.fromarray(gray).save(OUT / "gray.jpg", quality=90)
    for f in ["photo.jpg", "photo444.jpg", "gray.jpg"]:
        stem = f.replace(".", "_")
        Image.fromarray(np.asarray(load_rgb(OUT / f))).save(OUT / f"{stem}.pil_rgb.png")
        with Image.open(OUT / f) as raw:
            mode = raw.mode
        manifest["decode"].append(dict(input=f, pil_mode=mode, pil_rgb=f"{stem}.pil_rgb.png"))
    case("photo_jpg_s224", "photo.jpg", 256, 224)

    # EXIF orientation 6 (rotate 90 clockwise to display). PIL's Image.open + convert ignores it.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(textured(64, 40)).save(OUT / "exif_rot6.jpg", quality=95, exif=exif.tobytes())
    with Image.open(OUT / "exif_rot6.jpg") as raw:
        manifest["exif"] = dict(input="exif_rot6.jpg", orientation=6, pil_size=list(raw.size),
                                pil_orientation_tag=raw.getexif().get(0x0112))

    # --- broken inputs ---
    jpg = (OUT / "photo.jpg").read_bytes()
    (OUT / "truncated.jpg").write_bytes(jpg[: len(jpg) // 3])
    png = (OUT / "rgb_300x200.png").read_bytes()
    (OUT / "truncated.png").write_bytes(png[: len(png) // 2])
    (OUT / "empty.jpg").write_bytes(b"")
    (OUT / "notes.txt").write_text("This is a text file, not an image.\n")
    # a valid image in a format florence does not decode (PPM: recognised, not built in)
    Image.fromarray(textured(16, 16)).save(OUT / "rgb.ppm")
    for f in ["truncated.jpg", "truncated.png", "empty.jpg", "notes.txt"]:
        try:
            load_rgb(OUT / f)
            ok = True
        except Exception as e:  # noqa: BLE001
            ok = f"{type(e).__name__}: {e}"
        manifest.setdefault("broken", []).append(dict(input=f, pil=ok))

    # --- the full tensor (ToTensor + Normalize) for two cases, as a batch ---
    t1 = reference_tensor(load_rgb(OUT / "rgb_640x427.png"), r, s)
    t2 = reference_tensor(load_rgb(OUT / "rgb_100x60.png"), r, s)
    save_file({"batch": torch.stack([t1, t2]).contiguous()}, str(OUT / "normalised.safetensors"))
    manifest["normalised"] = dict(file="normalised.safetensors", inputs=["rgb_640x427.png", "rgb_100x60.png"],
                                  resize=r, crop=s, mean=MEAN, std=STD)

    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total / 1e6:.2f} MB to {OUT}")


def write_png16(path, arr, color_type):
    """A 16-bit PNG through PIL's own writer where it has one (I;16 for gray), else by hand."""
    import struct
    import zlib

    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[i].tobytes() for i in range(h))

    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path.write_bytes(png)


if __name__ == "__main__":
    main()
