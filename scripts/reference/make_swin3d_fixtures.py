"""Video Swin (3D) window geometry and attention fixture from torchvision's own code, plus one
2D case for the order of padding and shifting in torchvision's 2D Swin attention.

    pip install -r scripts/reference/requirements.txt
    python scripts/reference/make_swin3d_fixtures.py   # -> tests/fixtures/swin3d_geometry.safetensors

References (torchvision 0.24.0, the release that pairs with torch 2.9; the Swin sources of the
0.29.2 wheel are byte-identical):
  torchvision.models.video.swin_transformer._get_window_and_shift_size   clamp window/shift
  torchvision.models.video.swin_transformer._compute_pad_size_3d         pad to the used window
  torchvision.models.video.swin_transformer._compute_attention_mask_3d   -100 shift mask
  torchvision.models.video.swin_transformer._get_relative_position_bias  index[:N, :N] slice
  torchvision.models.video.swin_transformer.ShiftedWindowAttention3d     table, index, forward
  torchvision.models.video.swin_transformer.shifted_window_attention_3d  pad, roll, partition
  torchvision.models.swin_transformer.ShiftedWindowAttention             2D forward
  torchvision.models.swin_transformer.shifted_window_attention           2D pad, then roll

Facts the Rust side must reproduce (see the module source):
  * 3D: the window and shift are clamped against the *unpadded* size with `size <= window`
    (so a dim equal to its window also loses its shift); padding is to multiples of the clamped
    window, at the end of each dim; the roll comes after the pad; the mask is built on the
    padded size with the clamped window/shift and only when sum(shift) > 0.
  * 3D: the relative position bias for a clamped window is `index[:N, :N]` of the configured
    window's [Nfull, Nfull] index (N = prod(window_used)); this is not the geometric index of the
    smaller window unless only the leading (T) dim is clamped (`index_slice_is_geometric`).
  * Padded tokens are zeros before qkv (so they carry the qkv bias) and are never masked.
"""
import json
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from torchvision.models.swin_transformer import ShiftedWindowAttention, shifted_window_attention
from torchvision.models.video.swin_transformer import (
    ShiftedWindowAttention3d,
    _compute_attention_mask_3d,
    _compute_pad_size_3d,
    _get_relative_position_bias,
    _get_window_and_shift_size,
    shifted_window_attention_3d,
)

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"

C, HEADS, BATCH = 4, 2, 2

# name: unpadded (T, H, W), configured window (wd, wh, ww), configured shift (sd, sh, sw)
CASES = {
    "c0": ((8, 14, 14), (8, 7, 7), (4, 3, 3)),
    "c1": ((4, 10, 9), (8, 7, 7), (4, 3, 3)),  # T clamped, H/W padded
    "c2": ((2, 5, 12), (2, 7, 7), (1, 3, 3)),  # T and H clamped
    "c3": ((6, 8, 8), (4, 4, 4), (2, 2, 2)),  # T padded
    "c4": ((3, 3, 3), (4, 4, 4), (2, 2, 2)),  # everything clamped, no shift left
    "c5": ((5, 9, 6), (2, 4, 4), (1, 2, 2)),  # all padded
}


def i64(v):
    return torch.tensor(list(v), dtype=torch.int64)


def randn(g, *shape, std=1.0):
    return torch.randn(*shape, generator=g) * std


def geometric_index(full_window, window):
    """Full-window table row for every token pair of a `window`-sized window (what a clamped
    window would use if the bias followed the token coordinates). Mirrors the arithmetic of
    ShiftedWindowAttention3d.define_relative_position_index, with coordinates of `window`."""
    coords = torch.stack(torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel = rel + torch.tensor([w - 1 for w in full_window])
    mult = torch.tensor([(2 * full_window[1] - 1) * (2 * full_window[2] - 1), 2 * full_window[2] - 1, 1])
    return (rel * mult).sum(-1)


def partition(x, window):
    """x zero-padded to multiples of `window` and cut into windows, with the F.pad and
    view/permute of shifted_window_attention_3d (no roll)."""
    b, t, h, w, c = x.shape
    pad = _compute_pad_size_3d((t, h, w), tuple(window))
    x = F.pad(x, (0, 0, 0, pad[2], 0, pad[1], 0, pad[0]))
    _, tp, hp, wp, _ = x.shape
    nw = (tp // window[0]) * (hp // window[1]) * (wp // window[2])
    x = x.view(b, tp // window[0], window[0], hp // window[1], window[1], wp // window[2], window[2], c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(b * nw, window[0] * window[1] * window[2], c), (tp, hp, wp)


@torch.no_grad()
def case_3d(name, size, window, shift, g):
    out, meta = {}, {}
    # _get_window_and_shift_size(shift_size, size_dhw, window_size) mutates its lists in place
    window_used, shift_used = _get_window_and_shift_size(list(shift), list(size), list(window))
    n = window_used[0] * window_used[1] * window_used[2]

    x = randn(g, BATCH, *size, C)
    windows, padded = partition(x, window_used)
    # padded size exactly as shifted_window_attention_3d computes it (pad, then read the shape)
    pad = _compute_pad_size_3d(tuple(size), tuple(window_used))
    _, tp, hp, wp, _ = F.pad(x, (0, 0, 0, pad[2], 0, pad[1], 0, pad[0])).shape
    assert (tp, hp, wp) == padded

    attn = ShiftedWindowAttention3d(dim=C, window_size=list(window), shift_size=list(shift), num_heads=HEADS).eval()
    table_rows = attn.relative_position_bias_table.shape[0]
    nfull = window[0] * window[1] * window[2]
    index = attn.relative_position_index.reshape(nfull, nfull)
    index_used = index[:n, :n]  # what _get_relative_position_bias indexes with window_used

    w = {
        "qkv_weight": randn(g, 3 * C, C, std=0.3),
        "qkv_bias": randn(g, 3 * C, std=0.1),
        "proj_weight": randn(g, C, C, std=0.3),
        "proj_bias": randn(g, C, std=0.1),
        "relative_position_bias_table": randn(g, table_rows, HEADS, std=0.02),
    }
    attn.qkv.weight.copy_(w["qkv_weight"])
    attn.qkv.bias.copy_(w["qkv_bias"])
    attn.proj.weight.copy_(w["proj_weight"])
    attn.proj.bias.copy_(w["proj_bias"])
    attn.relative_position_bias_table.copy_(w["relative_position_bias_table"])
    y = attn(x)  # ShiftedWindowAttention3d.forward: the module's own clamp logic

    # the same through the functional API, with the bias obtained as forward obtains it
    bias = _get_relative_position_bias(attn.relative_position_bias_table, attn.relative_position_index, window_used)
    assert torch.equal(bias, attn.relative_position_bias_table[index_used.flatten()].view(n, n, -1)
                       .permute(2, 0, 1).unsqueeze(0))
    y_fn = shifted_window_attention_3d(x, w["qkv_weight"], w["proj_weight"], bias, window_used, HEADS, shift_used,
                                       attention_dropout=0.0, dropout=0.0, qkv_bias=w["qkv_bias"],
                                       proj_bias=w["proj_bias"], training=False)
    assert torch.equal(y, y_fn)

    out |= {"size": i64(size), "window": i64(window), "shift": i64(shift), "window_used": i64(window_used),
            "shift_used": i64(shift_used), "padded": i64(padded), "table_size": i64([table_rows]),
            "relative_position_index": index, "relative_position_index_used": index_used,
            "x": x, "windows": windows, "attn_out": y}
    out |= w
    n_windows = windows.shape[0] // BATCH
    if sum(shift_used) > 0:
        mask = _compute_attention_mask_3d(x, padded, tuple(window_used), tuple(shift_used))
        assert mask.shape == (n_windows, n, n)
        out["attn_mask"] = mask
    geometric = bool(torch.equal(index_used, geometric_index(window, window_used)))
    meta = dict(size=size, window=window, shift=shift, window_used=window_used, shift_used=shift_used,
                padded=list(padded), num_windows=n_windows, tokens_per_window=n, table_size=table_rows,
                has_attn_mask=sum(shift_used) > 0, index_slice_is_geometric=geometric)
    print(f"{name}: {meta}")
    return {f"{name}.{k}": v for k, v in out.items()}, meta


@torch.no_grad()
def case_2d(g):
    """torchvision 2D ShiftedWindowAttention on a 9x11 map, window 4, shift 2: pads to 12x12
    first, then rolls the padded map (shifted_window_attention)."""
    window, shift, (h, w) = [4, 4], [2, 2], (9, 11)
    x = randn(g, BATCH, h, w, C)
    attn = ShiftedWindowAttention(dim=C, window_size=list(window), shift_size=list(shift), num_heads=HEADS).eval()
    wts = {
        "qkv_weight": randn(g, 3 * C, C, std=0.3),
        "qkv_bias": randn(g, 3 * C, std=0.1),
        "proj_weight": randn(g, C, C, std=0.3),
        "proj_bias": randn(g, C, std=0.1),
        "relative_position_bias_table": randn(g, attn.relative_position_bias_table.shape[0], HEADS, std=0.02),
    }
    attn.qkv.weight.copy_(wts["qkv_weight"])
    attn.qkv.bias.copy_(wts["qkv_bias"])
    attn.proj.weight.copy_(wts["proj_weight"])
    attn.proj.bias.copy_(wts["proj_bias"])
    attn.relative_position_bias_table.copy_(wts["relative_position_bias_table"])
    y = attn(x)
    y_fn = shifted_window_attention(x, wts["qkv_weight"], wts["proj_weight"], attn.get_relative_position_bias(),
                                    window, HEADS, shift, qkv_bias=wts["qkv_bias"], proj_bias=wts["proj_bias"],
                                    training=False)
    assert torch.equal(y, y_fn)
    padded = [h + (window[0] - h % window[0]) % window[0], w + (window[1] - w % window[1]) % window[1]]
    out = {"x": x, "window": i64(window), "shift": i64(shift), "padded": i64(padded),
           "relative_position_index": attn.relative_position_index.reshape(16, 16), "attn_out": y} | wts
    meta = dict(size=[h, w], window=window, shift=shift, padded=padded, order="pad_then_roll",
                clamps_window=False, zeroes_shift_if="window >= padded size")
    print(f"tv2d: {meta}")
    return {f"tv2d.{k}": v for k, v in out.items()}, meta


def main():
    g = torch.Generator().manual_seed(3)
    tensors, meta = {}, {}
    for name, (size, window, shift) in CASES.items():
        t, m = case_3d(name, size, window, shift, g)
        tensors |= t
        meta[name] = m
    t, meta["tv2d"] = case_2d(g)
    tensors |= t
    # Size: the (8, 7, 7) window of c0/c1 dominates. Indices (< 2^15) are stored as int16 and
    # masks (0 or -100) as int8, both exact; an index equal to one already stored is dropped
    # (c0's used index is its full one; c1's full index is c0's, the same configured window).
    stored = {}
    for k in list(tensors):
        v = tensors[k]
        if k.endswith("relative_position_index") or k.endswith("relative_position_index_used"):
            assert v.max() < 2 ** 15
            v = v.to(torch.int16)
            if any(u.shape == v.shape and torch.equal(u, v) for u in stored.values() if u.dtype == torch.int16):
                del tensors[k]
                meta.setdefault("dropped_duplicate_indices", []).append(k)
                continue
        elif k.endswith("attn_mask"):
            assert set(v.unique().tolist()) <= {0.0, -100.0}
            v = v.to(torch.int8)
        stored[k] = v
    path = FIX / "swin3d_geometry.safetensors"
    save_file({k: v.clone().contiguous() for k, v in stored.items()}, path,
              metadata={"cases": json.dumps(meta), "torchvision": torchvision.__version__,
                        "torch": torch.__version__, "heads": str(HEADS), "dim": str(C)})
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
