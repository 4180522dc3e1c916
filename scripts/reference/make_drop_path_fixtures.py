#!/usr/bin/env python3
"""Stochastic depth in training against timm's `drop_path` and UniCL's text transformer.

    python scripts/reference/make_drop_path_fixtures.py   # writes tests/fixtures/drop_path_io.safetensors

The tiny UniCL model of make_fixtures.py (the same seed, so the same weights as
tests/fixtures/tiny_swin.safetensors; checked below) is built with drop-path rates, put in
training mode, and run with `Tensor.bernoulli_` replaced by florence's replayable draws: a
SplitMix64 hash of (step seed, branch site, row), restated here from src/rng.rs and
src/layers/drop_path.rs. Everything else, where the draws are applied, their shape (per sample
in timm's Swin, per token position in UniCL's text tower, which runs on [L, B, W] tensors), the
1/keep scaling and the decay of the rates over the blocks, is the reference code's own.
"""
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import unicl_reference
from make_fixtures import TINY_SWIN, TINY_TEXT, cfg, token_ids
from unicl_reference import UniCLReference, randomize_, unicl_state_dict

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
M64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
IMAGE_RATE, TEXT_RATE, SEED = 0.4, 0.3, 1234


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def derive_seed(seed, parts):
    h = mix64(seed ^ GAMMA)
    for p in parts:
        h = mix64(h ^ mix64((p + 0x632BE59BD9B4E019) & M64))
    return h


def kept(seed, site, row, keep):
    state = (derive_seed(derive_seed(seed, [site]), [row]) + GAMMA) & M64
    return ((mix64(state) >> 11) * (1.0 / (1 << 53))) < keep


def site(tower, block, branch):
    return (tower << 32) | (block << 1) | branch


class Draws:
    """`bernoulli_` in call order: each expected call names its site; the shape and keep
    probability timm passes are checked against the block the call should come from."""

    def __init__(self, calls):
        self.calls = list(calls)

    def __call__(self, t, p):
        tower, block, branch, rate = self.calls.pop(0)
        assert abs(p - (1 - rate)) < 1e-7, (p, rate)
        n = max(t.shape)
        assert t.numel() == n, t.shape  # one draw per sample (or per position)
        vals = [1.0 if kept(SEED, site(tower, block, branch), r, p) else 0.0 for r in range(n)]
        return t.copy_(torch.tensor(vals, dtype=t.dtype).reshape(t.shape))


def main():
    c = cfg(TINY_SWIN)
    torch.manual_seed(10)
    model = randomize_(UniCLReference(c).eval(), 10)
    ref = load_file(FIX / "tiny_swin.safetensors")
    sd = unicl_state_dict(model)
    assert all(torch.equal(sd[k].float(), ref[k].float()) for k in ref), "not the weights of tiny_swin"

    # The same weights with drop-path rates: timm's rule over all image blocks, UniCL's over text layers.
    blocks = sum(TINY_SWIN["depths"])
    img_rates = [x.item() for x in torch.linspace(0, IMAGE_RATE, blocks)]
    txt_rates = [x.item() for x in torch.linspace(0, TEXT_RATE, TINY_TEXT["layers"])]
    enc = unicl_reference.build_image_encoder(dict(c["image"]))
    enc.load_state_dict(model.image_encoder.state_dict())
    k = 0
    from timm.layers import DropPath
    for stage in enc.layers:
        for blk in stage.blocks:
            blk.drop_path1 = DropPath(img_rates[k]) if img_rates[k] > 0 else torch.nn.Identity()
            blk.drop_path2 = DropPath(img_rates[k]) if img_rates[k] > 0 else torch.nn.Identity()
            k += 1
    model.image_encoder = enc
    for i, blk in enumerate(model.text_encoder.resblocks):
        blk.drop_path = DropPath(txt_rates[i]) if txt_rates[i] > 0 else torch.nn.Identity()
    model.train()

    g = torch.Generator().manual_seed(77)
    images = torch.randn(5, 3, 64, 64, generator=g)
    ids = token_ids(TINY_TEXT["vocab_size"], TINY_TEXT["context_length"], [2, 6, 11, 15, 4], 78)
    calls = [(0, b, br, img_rates[b]) for b in range(blocks) if img_rates[b] > 0 for br in (0, 1)]
    calls += [(1, b, br, txt_rates[b]) for b in range(TINY_TEXT["layers"]) if txt_rates[b] > 0 for br in (0, 1)]
    draws = Draws(calls)
    original = torch.Tensor.bernoulli_
    torch.Tensor.bernoulli_ = lambda t, p=0.5, generator=None: draws(t, p)
    try:
        with torch.no_grad():
            u, v, _ = model(images, {"input_ids": ids})
    finally:
        torch.Tensor.bernoulli_ = original
    assert not draws.calls, f"{len(draws.calls)} expected draws were not made"
    model.eval()
    with torch.no_grad():
        u0, v0, _ = model(images, {"input_ids": ids})
    print(f"drop path moved the image embeddings by {(u - u0).abs().max():.3f}, the text ones by {(v - v0).abs().max():.3f}")
    io = {"images": images, "input_ids": ids, "image_embeds": u, "text_embeds": v,
          "rates.image": torch.tensor(img_rates, dtype=torch.float64),
          "rates.text": torch.tensor(txt_rates, dtype=torch.float64),
          "seed": torch.tensor([SEED]), "image_rate": torch.tensor([IMAGE_RATE], dtype=torch.float64),
          "text_rate": torch.tensor([TEXT_RATE], dtype=torch.float64)}
    save_file({k: t.contiguous() for k, t in io.items()}, FIX / "drop_path_io.safetensors")
    print(f"wrote {FIX / 'drop_path_io.safetensors'}")


if __name__ == "__main__":
    main()
