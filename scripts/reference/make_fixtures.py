#!/usr/bin/env python3
"""Writes florence's parity fixtures (tests/fixtures/) from independent PyTorch references.

    pip install -r scripts/reference/requirements.txt
    python scripts/reference/make_fixtures.py                 # small committed fixtures
    python scripts/reference/make_fixtures.py --fullsize DIR  # random-weight unicl-swin-t (not committed)

Every weight file uses the key layout of the real UniCL checkpoints, so the Rust tests load
them through the same loader as a released `.pth`.
"""
import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from timm.models.swin_transformer import window_partition, window_reverse, get_relative_position_index

from unicl_reference import UniCLReference, randomize_, unicl_state_dict

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"

TINY_TEXT = dict(vocab_size=1000, context_length=16, width=32, heads=4, layers=2, causal=True)
TINY_SWIN = dict(image_size=64, patch_size=4, embed_dim=12, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8],
                 window_size=4, mlp_ratio=4.0, embedding="patch")
TINY_COSWIN = dict(TINY_SWIN, embedding="conv")


def cfg(image):
    return dict(image=image, text=TINY_TEXT, projection_dim=24)


def token_ids(vocab, ctx, lengths, seed):
    """CLIP-style ids: BOS, tokens, EOS, then EOS padding (the HF CLIP tokenizer pads with EOS,
    so the pooled position is the *first* maximal id, as UniCL's argmax picks it)."""
    g = torch.Generator().manual_seed(seed)
    bos, eos = vocab - 2, vocab - 1
    ids = torch.full((len(lengths), ctx), eos, dtype=torch.long)
    for r, n in enumerate(lengths):
        ids[r, 0] = bos
        ids[r, 1:1 + n] = torch.randint(0, vocab - 2, (n,), generator=g)
        ids[r, min(1 + n, ctx - 1)] = eos
    return ids


def stage_outputs(enc, images):
    """Per-stage feature maps (NHWC, after each stage's blocks, before its downsample)."""
    outs = {}
    x = enc.patch_embed(images)
    outs["patch_embed"] = x
    for i, stage in enumerate(enc.layers):
        x = stage.downsample(x)
        if i == 0:
            b0 = stage.blocks[0](x)
            outs["stage0.block0.out"] = b0  # window attention without shift
            outs["stage0.block1.out"] = stage.blocks[1](b0)  # with shift (-100 mask)
        x = stage.blocks(x)
        outs[f"stage{i}"] = x
    outs["norm"] = enc.norm(x)
    outs["pooled"] = outs["norm"].mean(dim=(1, 2))
    return outs


@torch.no_grad()
def crosscheck_original_swin(ic, sd):
    """The re-keyed timm weights must load strictly into UniCL's own Swin (the code the released
    checkpoints were saved from) and give the same features as timm."""
    from third_party.unicl_swin_transformer import SwinTransformer as MsSwin
    ms = MsSwin(img_size=ic["image_size"], patch_size=ic["patch_size"], num_classes=0, embed_dim=ic["embed_dim"],
                depths=ic["depths"], num_heads=ic["num_heads"], window_size=ic["window_size"],
                mlp_ratio=ic["mlp_ratio"], drop_path_rate=0.0).eval()
    ms.load_state_dict({k[len("image_encoder."):]: v for k, v in sd.items() if k.startswith("image_encoder.")},
                       strict=True)
    return ms


@torch.no_grad()
def tower_fixture(name, c, seed, pth=False, bf16=False, odd_size=None):
    torch.manual_seed(seed)
    model = randomize_(UniCLReference(c).eval(), seed)
    sd = unicl_state_dict(model)
    weights = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    save_file({k: v for k, v in weights.items()}, FIX / f"{name}.safetensors")
    if c["image"]["embedding"] == "patch":
        crosscheck_original_swin(c["image"], sd)
    if pth:  # a released-style checkpoint: {'model': state_dict}, fp16 floats, int64 buffers, 0-D logit_scale
        half = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
        torch.save({"model": half}, FIX / f"{name}_fp16.pth")
    if bf16:
        save_file({k: (v.bfloat16() if v.is_floating_point() else v) for k, v in weights.items()},
                  FIX / f"{name}_bf16.safetensors")

    g = torch.Generator().manual_seed(seed + 1)
    S = c["image"]["image_size"]
    images = torch.randn(2, 3, S, S, generator=g)
    ids = token_ids(c["text"]["vocab_size"], c["text"]["context_length"], [3, 9, 15], seed + 2)
    io = {"images": images, "input_ids": ids}
    for k, v in stage_outputs(model.image_encoder, images).items():
        io["image." + k] = v
    io["text.last_hidden_state"] = model.text_encoder(ids)["last_hidden_state"]
    u, v, T = model(images, {"input_ids": ids})
    if c["image"]["embedding"] == "patch":
        ms = crosscheck_original_swin(c["image"], sd)
        diff = (ms.forward_features(images) - io["image.pooled"]).abs().max().item()
        assert diff < 1e-5, f"timm and UniCL's original Swin disagree by {diff}"
        print(f"{name}: timm Swin vs UniCL original Swin, max abs diff {diff:.2e}")
    io["image_embeds"], io["text_embeds"] = u, v
    io["logits_per_image"] = T * u @ v.t()
    io["logits_per_text"] = io["logits_per_image"].t().contiguous()
    if odd_size is not None:
        # A size that is not a multiple of the window (nor even, deeper down): timm's dynamic
        # path (roll, then pad to a window multiple, mask on the padded map, crop, roll back).
        dyn = UniCLReference(c, strict_img_size=False).eval()
        dyn.load_state_dict(model.state_dict())
        odd = torch.randn(1, 3, *odd_size, generator=g)
        io["odd.images"] = odd
        for k, v in stage_outputs(dyn.image_encoder, odd).items():
            io["odd.image." + k] = v
        io["odd.image_embeds"] = dyn.encode_image(odd)
    save_file({k: v.clone().contiguous() for k, v in io.items()}, FIX / f"{name}_io.safetensors")
    json.dump(c, open(FIX / f"{name}_config.json", "w"), indent=1)


@torch.no_grad()
def window_fixture():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 8, 12, 3, generator=g)
    io = {"x": x, "partition_4x4": window_partition(x, (4, 4)), "partition_2x3": window_partition(x, (2, 3))}
    io["reverse_4x4"] = window_reverse(io["partition_4x4"], (4, 4), 8, 12)
    io["rel_index_4x4"] = get_relative_position_index(4, 4)
    io["rel_index_3x5"] = get_relative_position_index(3, 5)
    io["rel_index_7x7"] = get_relative_position_index(7, 7)
    # timm's shifted-window mask for a 10x13 map (padded to 12x16), window 4, shift 2
    from timm.models.swin_transformer import SwinTransformerBlock
    blk = SwinTransformerBlock(dim=8, input_resolution=(10, 13), num_heads=1, window_size=4, shift_size=2)
    io["mask_10x13_w4_s2"] = blk.get_attn_mask(torch.zeros(1, 10, 13, 8))
    blk7 = SwinTransformerBlock(dim=8, input_resolution=(28, 28), num_heads=1, window_size=7, shift_size=3)
    io["mask_28x28_w7_s3"] = blk7.get_attn_mask(torch.zeros(1, 28, 28, 8))
    save_file({k: v.contiguous() for k, v in io.items()}, FIX / "window_ops.safetensors")


@torch.no_grad()
def fullsize(out_dir):
    """Random-weight unicl-swin-t (about 91M parameters), for the ignored full-size test."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = dict(image=dict(image_size=224, patch_size=4, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                        window_size=7, mlp_ratio=4.0, embedding="patch"),
             text=dict(vocab_size=49408, context_length=77, width=512, heads=8, layers=12, causal=True),
             projection_dim=512)
    torch.manual_seed(0)
    model = randomize_(UniCLReference(c).eval(), 0)
    sd = unicl_state_dict(model)
    torch.save({"model": {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}},
               out / "unicl_swin_t_random_fp16.pth")
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 224, 224, generator=g)
    ids = token_ids(49408, 77, [5, 20, 76], 2)
    u, v, T = model(images, {"input_ids": ids})
    save_file({"images": images, "input_ids": ids, "image_embeds": u, "text_embeds": v,
               "logits_per_image": (T * u @ v.t()).contiguous()}, out / "unicl_swin_t_random_io.safetensors")
    print(f"wrote {out}/unicl_swin_t_random_fp16.pth ({sum(p.numel() for p in model.parameters()):,} parameters)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fullsize", metavar="DIR")
    a = ap.parse_args()
    if a.fullsize:
        fullsize(a.fullsize)
        return
    FIX.mkdir(parents=True, exist_ok=True)
    window_fixture()
    tower_fixture("tiny_swin", cfg(TINY_SWIN), seed=10, pth=True, bf16=True, odd_size=(72, 88))
    tower_fixture("tiny_coswin", cfg(TINY_COSWIN), seed=20, odd_size=(72, 88))
    for p in sorted(FIX.iterdir()):
        print(f"{p.stat().st_size:>9,}  {p.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
