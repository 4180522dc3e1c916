"""Checks a `.pth` written by florence (`Florence::save_pth`, `florence convert x.pth`) against
the original checkpoint it was converted from, with PyTorch's own safe loader.

    python3 scripts/reference/check_pth_writer.py WRITTEN.pth ORIGINAL.(pth|safetensors)

The written file must load with `torch.load(path, weights_only=True)` into `{"model": ...}`,
hold exactly the original's tensor names and shapes, keep int64 buffers int64, and equal the
original tensor for tensor (`torch.equal`) -- after casting the original to the written float
dtype when they differ (an f32 original written as f16). Exits non-zero on any difference.
"""

import sys
import zipfile

import torch


def load_original(path):
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return sd.get("model", sd)


def main(written, original):
    names = zipfile.ZipFile(written).namelist()
    root = names[0].split("/")[0]
    for entry in ("data.pkl", "version", "byteorder", ".data/serialization_id"):
        assert f"{root}/{entry}" in names, f"archive lacks {root}/{entry}"

    ckpt = torch.load(written, map_location="cpu", weights_only=True)
    assert isinstance(ckpt, dict) and list(ckpt) == ["model"], f"top level: {type(ckpt)} {list(ckpt)[:5]}"
    sd = ckpt["model"]
    want = load_original(original)
    assert set(sd) == set(want), (
        f"missing {sorted(set(want) - set(sd))[:5]}, unexpected {sorted(set(sd) - set(want))[:5]}"
    )
    dtypes = {}
    for k, w in want.items():
        g = sd[k]
        assert g.shape == w.shape, f"{k}: shape {tuple(g.shape)} != {tuple(w.shape)}"
        if w.dtype == torch.int64:
            assert g.dtype == torch.int64, f"{k}: dtype {g.dtype}, want int64"
        assert g.is_contiguous(), k
        w = w.to(g.dtype) if g.dtype != w.dtype else w
        assert torch.equal(g, w), f"{k}: values differ (max {(g.double() - w.double()).abs().max().item()})"
        dtypes[str(g.dtype)] = dtypes.get(str(g.dtype), 0) + 1
    orig_dtypes = {}
    for w in want.values():
        orig_dtypes[str(w.dtype)] = orig_dtypes.get(str(w.dtype), 0) + 1
    print(
        f"OK {written}: {len(sd)} tensors equal to {original} "
        f"(written {dict(sorted(dtypes.items()))}, original {dict(sorted(orig_dtypes.items()))}), "
        f"archive root {root}/, torch {torch.__version__}, weights_only=True"
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
