#!/usr/bin/env python3
"""florence (flex) against PyTorch on the CPU, row by row, on the same weights, inputs and threads,
in one run, alternating the two sides; prints a table of medians and ratios (and writes it as
JSON with --json).

    pip install -r scripts/reference/requirements.txt
    cargo build --release --example bench_cpu
    cargo build --release --features cli --bin florence   # the embed row
    python scripts/bench/cpu_table.py --threads 2 [--rounds 3] [--iters 3] [--rows image,text,...]

PyTorch side: the references of scripts/reference (timm Swin-T/B + UniCL's text Transformer;
UniCL's original Swin for loading its checkpoint layout) in eval mode under
torch.inference_mode, torch.set_num_threads(N). florence side: examples/bench_cpu.rs, one process
per row and round, RAYON_NUM_THREADS=N, the same weights (UniCL-layout safetensors written here)
and the same inputs (a safetensors file written here). Each side's number is the median over
rounds of its per-round median. A timing is a measurement, never a test assertion.

Rows:
  image   encode_image, unicl-swin-t and unicl-swin-b, batch 8 and 32 at 224
  text    encode_text, batch 64, prompts of 5-20 tokens and full 77-token rows; florence twice:
          as the same work (--no-cut: every row at 77) and as its default (end-of-text cut)
  zeroshot  the classifier build, 1000 ImageNet classes x CLIP's 7 templates (tokenizing
          included); PyTorch as UniCL/open_clip do it (77 tokens), florence as the same work
          and by default
  load    unicl-swin-b from its fp16 .pth: time and peak RSS of a fresh process (read, convert
          to f32, build); PyTorch: torch.load + load_state_dict into UniCL's original model
  embed   whole-process `florence embed` of 64 JPEG images (640x427, resize 256 bicubic, crop
          224, unicl-swin-t, batch 32) against the same job as one Python process (torch import,
          model build and load, PIL decoding, torchvision transform, encode, JSON out): wall time
          of the process, and the largest difference between the two sides' embeddings
  train   one optimiser step (forward, UniCL loss, backward, AdamW) of `tiny` (batch 16 at 64)
          and `coswin-t` (batch 4 at 224), random weights
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "reference"))
from unicl_reference import UniCLReference, randomize_, unicl_state_dict  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts" / "bench"))
from bench_towers import median_time  # noqa: E402

TEXT = dict(vocab_size=49408, context_length=77, width=512, heads=8, layers=12, causal=True)
SWIN_T = dict(image_size=224, patch_size=4, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
              window_size=7, mlp_ratio=4.0, embedding="patch")
SWIN_B = dict(SWIN_T, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32])
PRESETS = {"unicl-swin-t": dict(image=SWIN_T, text=TEXT, projection_dim=512),
           "unicl-swin-b": dict(image=SWIN_B, text=TEXT, projection_dim=512),
           "tiny": dict(image=dict(SWIN_T, image_size=64, embed_dim=12, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8],
                                   window_size=4),
                        text=dict(vocab_size=1000, context_length=16, width=32, heads=4, layers=2, causal=True),
                        projection_dim=24),
           "coswin-t": dict(image=dict(SWIN_T, embedding="conv"), text=TEXT, projection_dim=512)}


def token_rows(n, ctx, lengths, vocab=49408, seed=3):
    """BOS, `lengths[r]` tokens, EOS, EOS padding (the HF CLIP tokenizer's layout)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((n, ctx), vocab - 1, dtype=torch.long)
    for r in range(n):
        k = min(lengths[r % len(lengths)], ctx - 2)
        ids[r, 0] = vocab - 2
        ids[r, 1:1 + k] = torch.randint(0, vocab - 2, (k,), generator=g)
    return ids


def florence(binary, threads, row, *args):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([str(binary), row, *map(str, args)], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class UniclOriginal(torch.nn.Module):
    """UniCL's own modules, which load the checkpoint layout as it is."""

    def __init__(self, c):
        super().__init__()
        from third_party.unicl_swin_transformer import SwinTransformer as MsSwin
        from third_party.unicl_text_transformer import Transformer
        i, t = c["image"], c["text"]
        self.image_encoder = MsSwin(img_size=i["image_size"], patch_size=i["patch_size"], num_classes=0,
                                    embed_dim=i["embed_dim"], depths=i["depths"], num_heads=i["num_heads"],
                                    window_size=i["window_size"], mlp_ratio=i["mlp_ratio"], drop_path_rate=0.0)
        self.text_encoder = Transformer(t["context_length"], t["vocab_size"], t["width"], t["layers"], t["heads"],
                                        autogressive=t["causal"])
        dim = i["embed_dim"] * 2 ** (len(i["depths"]) - 1)
        self.image_projection = torch.nn.Parameter(torch.empty(dim, c["projection_dim"]))
        self.text_projection = torch.nn.Parameter(torch.empty(t["width"], c["projection_dim"]))
        self.logit_scale = torch.nn.Parameter(torch.ones([]))


LOAD_CHILD = r"""
import resource, sys, time, torch
sys.path.insert(0, sys.argv[3])
from cpu_table import UniclOriginal, PRESETS
torch.set_num_threads(int(sys.argv[2]))
t = time.perf_counter()
m = UniclOriginal(PRESETS["unicl-swin-b"])
sd = torch.load(sys.argv[1], map_location="cpu", weights_only=True)["model"]
m.load_state_dict(sd, strict=True)
del sd
s = time.perf_counter() - t
print(s, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


EMBED_CHILD = r"""
import json, sys
import torch
import torchvision.transforms as T
from PIL import Image
sys.path.insert(0, sys.argv[4])
from cpu_table import PRESETS
from unicl_reference import UniCLReference
torch.set_num_threads(int(sys.argv[2]))
m = UniCLReference(PRESETS["unicl-swin-t"]).eval()
m.load_state_dict(torch.load(sys.argv[1], map_location="cpu", weights_only=True), strict=True)
tf = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224), T.ToTensor(),
                T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
paths, out = sys.argv[5:], []
with torch.inference_mode():
    for k in range(0, len(paths), 32):
        x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths[k:k + 32]])
        out += m.encode_image(x).tolist()
open(sys.argv[3], "w").write(json.dumps({"image_embeddings": out}))
"""


def write_images(folder, n=64, size=(640, 427), seed=5):
    """`n` smooth synthetic photos-to-be (gradients, discs, noise) as JPEG, quality 90."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[1], 0:size[0]].astype(np.float32)
    paths = []
    for i in range(n):
        c = rng.uniform(0, 1, (3, 3))
        img = np.stack([c[k, 0] * xx / size[0] + c[k, 1] * yy / size[1] + c[k, 2] for k in range(3)], -1)
        for _ in range(4):
            cx, cy, r = rng.uniform(0, size[0]), rng.uniform(0, size[1]), rng.uniform(20, 120)
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 1, 3)
        img = np.clip(img / img.max() * 255 + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        p = folder / f"img{i:03d}.jpg"
        Image.fromarray(img).save(p, quality=90)
        paths.append(p)
    return paths


def wall(cmd, **kw):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, **kw)
    return time.perf_counter() - t


def unicl_loss(u, v, scale):
    """UniCL with one label per pair (all distinct): symmetric cross-entropy on the diagonal."""
    logits = scale * u @ v.t()
    target = torch.arange(u.shape[0])
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--rows", default="image,text,zeroshot,embed,load,train")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--florence", default=str(ROOT / "target" / "release" / "examples" / "bench_cpu"))
    ap.add_argument("--cli", default=str(ROOT / "target" / "release" / "florence"))
    ap.add_argument("--json")
    a = ap.parse_args()
    rows = a.rows.split(",")
    torch.set_num_threads(a.threads)
    results = []

    def record(name, torch_s, florence_s, note=""):
        results.append(dict(row=name, pytorch_s=torch_s, florence_s=florence_s, ratio=florence_s / torch_s, note=note))
        print(f"{name:<52}{torch_s:>10.3f}{florence_s:>12.3f}{florence_s / torch_s:>8.2f}  {note}", flush=True)

    def alternate(name, torch_fn, florence_fn, note=""):
        ts, fs = [], []
        for _ in range(a.rounds):
            fs.append(florence_fn())
            ts.append(torch_fn())
        record(name, statistics.median(ts), statistics.median(fs), note)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {a.threads} threads, "
          f"torch {torch.__version__}")
    print(f"{'row':<52}{'PyTorch s':>10}{'florence s':>12}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        g = torch.Generator().manual_seed(1)
        inputs = {"images": torch.randn(32, 3, 224, 224, generator=g),
                  "ids_short": token_rows(64, 77, [5 + (r * 7) % 16 for r in range(64)]),
                  "ids_full": token_rows(64, 77, [75]),
                  "tiny_images": torch.randn(16, 3, 64, 64, generator=g),
                  "tiny_ids": token_rows(16, 16, [3, 7, 11, 13], vocab=1000),
                  "coswin_images": torch.randn(4, 3, 224, 224, generator=g)}
        save_file(inputs, d / "inputs.safetensors")
        models = {}
        needed = {"unicl-swin-t": {"image", "text", "zeroshot", "embed"}, "unicl-swin-b": {"image", "load"}}
        for preset in ("unicl-swin-t", "unicl-swin-b"):
            if not needed[preset] & set(rows):
                continue
            m = randomize_(UniCLReference(PRESETS[preset]).eval(), 0)
            sd = unicl_state_dict(m)
            save_file({k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}, d / f"{preset}.safetensors")
            if preset == "unicl-swin-b":
                torch.save({"model": {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}},
                           d / "unicl-swin-b.pth")
            if preset == "unicl-swin-t":
                torch.save(m.state_dict(), d / "unicl-swin-t.reference.pt")
            models[preset] = m
        binary, inp = a.florence, d / "inputs.safetensors"

        with torch.inference_mode():
            if "image" in rows:
                for preset in ("unicl-swin-t", "unicl-swin-b"):
                    for b in (8, 32):
                        x = inputs["images"][:b]
                        alternate(f"encode_image {preset} batch {b}",
                                  lambda: median_time(lambda: models[preset].encode_image(x), a.iters, warmup=1),
                                  lambda: florence(binary, a.threads, "image", "--preset", preset, "--weights",
                                                   d / f"{preset}.safetensors", "--inputs", inp, "--batch", b,
                                                   "--iters", a.iters)["median_s"])
            m = models.get("unicl-swin-t")
            if "text" in rows:
                for key, what in (("ids_short", "prompts of 5-20 tokens"), ("ids_full", "77-token rows")):
                    ids = {"input_ids": inputs[key]}
                    t_torch = lambda: median_time(lambda: m.encode_text(ids), a.iters, warmup=1)  # noqa: E731
                    for cut in (False, True):
                        flags = [] if cut else ["--no-cut"]
                        alternate(f"encode_text batch 64, {what}, {'default' if cut else 'same work'}", t_torch,
                                  lambda: florence(binary, a.threads, "text", "--weights", d / "unicl-swin-t.safetensors",
                                                   "--inputs", inp, "--ids", key, "--iters", a.iters,
                                                   *flags)["median_s"],
                                  "florence cuts at the end-of-text token" if cut else "both run 77 positions")
            if "zeroshot" in rows:
                import open_clip
                classes = (ROOT / "assets/imagenet/classnames.txt").read_text().splitlines()[:a.classes]
                templates = [t for t in (ROOT / "assets/imagenet/templates_simple.txt").read_text().splitlines()
                             if t and not t.startswith("#")]

                def build():
                    out = []
                    for k in range(0, len(classes), 256 // len(templates)):
                        chunk = classes[k:k + 256 // len(templates)]
                        ids = open_clip.tokenize([t.format(c) for c in chunk for t in templates])
                        e = m.encode_text({"input_ids": ids}).reshape(len(chunk), len(templates), -1).mean(1)
                        out.append(e / e.norm(dim=-1, keepdim=True))
                    return torch.cat(out)

                for cut in (False, True):
                    alternate(f"zero-shot classifier, {len(classes)} classes x {len(templates)} templates, "
                              f"{'default' if cut else 'same work'}",
                              lambda: median_time(build, 1, warmup=0),
                              lambda: florence(binary, a.threads, "zeroshot", "--weights", d / "unicl-swin-t.safetensors",
                                               "--classes", len(classes), "--iters", 1, "--warmup", 0,
                                               *([] if cut else ["--no-cut"]))["median_s"])
        if "embed" in rows:
            folder = d / "images"
            folder.mkdir()
            paths = write_images(folder)
            env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
            f_cmd = [a.cli, "embed", "--weights", d / "unicl-swin-t.safetensors", "--config", "unicl-swin-t",
                     "--device", "flex", "-q", "--output", d / "florence.json"]
            f_cmd += [arg for p in paths for arg in ("--image", p)]
            t_cmd = [sys.executable, "-c", EMBED_CHILD, d / "unicl-swin-t.reference.pt", str(a.threads), d / "torch.json",
                     Path(__file__).parent, *paths]
            ts, fs = [], []
            for _ in range(a.rounds):
                fs.append(wall(f_cmd, env=env))
                ts.append(wall(t_cmd, cwd=ROOT / "scripts" / "reference"))
            got = json.loads((d / "florence.json").read_text())["image_embeddings"]
            want = json.loads((d / "torch.json").read_text())["image_embeddings"]
            diff = max(abs(x - y) for g, w in zip(got, want) for x, y in zip(g, w))
            assert len(got) == len(want) == len(paths), (len(got), len(want))
            record(f"whole-process embed, {len(paths)} JPEGs 640x427, unicl-swin-t", statistics.median(ts),
                   statistics.median(fs), f"max |florence - PyTorch| = {diff:.1e}")
        if "load" in rows:
            pth = d / "unicl-swin-b.pth"
            ts, tr, fs, fr = [], [], [], []
            for _ in range(a.rounds):
                f = florence(binary, a.threads, "load", "--preset", "unicl-swin-b", "--weights", pth)
                fs.append(f["median_s"])
                fr.append(f["peak_rss_mib"])
                out = subprocess.run([sys.executable, "-c", LOAD_CHILD, str(pth), str(a.threads), str(Path(__file__).parent)],
                                     cwd=ROOT / "scripts" / "reference", check=True, capture_output=True, text=True)
                s, rss = map(float, out.stdout.split())
                ts.append(s)
                tr.append(rss)
            f32_mib = f["params"] * 4 / 2**20
            record("load unicl-swin-b fp16 .pth: time", statistics.median(ts), statistics.median(fs))
            results.append(dict(row="load unicl-swin-b fp16 .pth: peak RSS MiB", pytorch=statistics.median(tr),
                                florence=statistics.median(fr), f32_model_mib=f32_mib))
            print(f"{'load unicl-swin-b fp16 .pth: peak RSS (MiB)':<52}{statistics.median(tr):>10.0f}"
                  f"{statistics.median(fr):>12.0f}{statistics.median(fr) / statistics.median(tr):>8.2f}  "
                  f"f32 model {f32_mib:.0f} MiB: florence {statistics.median(fr) / f32_mib:.2f}x of it")
        if "train" in rows:
            for preset, key, ids_key, iters in (("tiny", "tiny_images", "tiny_ids", a.iters),
                                                ("coswin-t", "coswin_images", "ids_short", 2)):
                c = PRESETS[preset]
                m = randomize_(UniCLReference(c), 0).train()
                opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.05)
                x, ids = inputs[key], {"input_ids": inputs[ids_key][:inputs[key].shape[0]]}

                def step():
                    opt.zero_grad()
                    loss = unicl_loss(m.encode_image(x), m.encode_text(ids), m.logit_scale.exp())
                    loss.backward()
                    opt.step()

                f_inputs = d / f"train-{preset}.safetensors"
                save_file({"train_images": x.contiguous(), "ids": ids["input_ids"].contiguous()}, f_inputs)
                alternate(f"train step {preset}, batch {x.shape[0]}", lambda: median_time(step, iters, warmup=1),
                          lambda: florence(binary, a.threads, "train", "--preset", preset, "--inputs", f_inputs,
                                           "--ids", "ids", "--iters", iters)["median_s"])
    if a.json:
        Path(a.json).write_text(json.dumps(dict(threads=a.threads, torch=torch.__version__, rows=results), indent=1))


if __name__ == "__main__":
    main()
