#!/usr/bin/env python3
"""Times unicl-swin-t's towers in PyTorch and in florence (flex) on the same weights and the same
number of threads, in one run, and prints the ratio.

    pip install -r scripts/reference/requirements.txt
    python scripts/bench/bench_towers.py [--threads N] [--iters 10]

PyTorch side: the reference model of scripts/reference (timm Swin-T + UniCL text Transformer) in
eval mode under torch.inference_mode. Florence side: `cargo bench --bench towers` with
FLORENCE_BENCH_WEIGHTS pointing at the same weights (saved as UniCL-layout safetensors) and
RAYON_NUM_THREADS=N; its criterion medians are read back from target/criterion.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "reference"))
from unicl_reference import UniCLReference, randomize_, unicl_state_dict  # noqa: E402

CFG = dict(image=dict(image_size=224, patch_size=4, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                      window_size=7, mlp_ratio=4.0, embedding="patch"),
           text=dict(vocab_size=49408, context_length=77, width=512, heads=8, layers=12, causal=True),
           projection_dim=512)


def ids64():
    ids = torch.full((64, 77), 49407, dtype=torch.long)
    for r in range(64):
        n = 4 + r % 20
        ids[r, 0] = 49406
        for t in range(1, n + 1):
            ids[r, t] = (r * 131 + t * 17) % 49000
    return ids


def median_time(fn, iters, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def criterion_median(name):
    p = ROOT / "target" / "criterion" / "unicl-swin-t" / name / "new" / "estimates.json"
    return json.loads(p.read_text())["median"]["point_estimate"] / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = randomize_(UniCLReference(CFG).eval(), 0)
    images = torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    ids = ids64()
    with torch.inference_mode():
        t_img = median_time(lambda: model.encode_image(images), a.iters)
        t_txt = median_time(lambda: model.encode_text({"input_ids": ids}), a.iters)
    with tempfile.TemporaryDirectory() as d:
        w = Path(d) / "unicl_swin_t.safetensors"
        save_file({k: (v.float() if v.is_floating_point() else v) for k, v in unicl_state_dict(model).items()}, w)
        env = dict(os.environ, FLORENCE_BENCH_WEIGHTS=str(w), RAYON_NUM_THREADS=str(a.threads))
        subprocess.run(["cargo", "bench", "--bench", "towers", "--", "--noplot"], cwd=ROOT, env=env, check=True)
    f_img, f_txt = criterion_median("encode_image_b8_224"), criterion_median("encode_text_b64")
    print(f"\nmachine: {platform.processor() or platform.machine()}, {a.threads} threads, torch {torch.__version__}")
    print(f"{'unicl-swin-t':<28}{'PyTorch (s)':>12}{'florence flex (s)':>19}{'ratio':>8}")
    for name, t, f in [("encode_image  batch 8 @224", t_img, f_img), ("encode_text   batch 64", t_txt, f_txt)]:
        print(f"{name:<28}{t:>12.3f}{f:>19.3f}{f / t:>7.2f}x")


if __name__ == "__main__":
    main()
