"""Multi-head attention fixture from torch.nn.MultiheadAttention (batch_first=True, eval mode,
dropout 0, seeded random weights with std 0.2): causal self-attention with a float additive
mask, cross-attention with a key padding mask and averaged attention weights, and kdim/vdim
different from embed_dim (separate q/k/v projection weights).

    pip install -r scripts/reference/requirements.txt
    python scripts/reference/make_attention_fixtures.py   # -> tests/fixtures/mha.safetensors

Weights are stored under torch's own state-dict names, prefixed by the case name
(`self.in_proj_weight`, `kdim.q_proj_weight`, `cross.out_proj.weight`, ...). Key padding
masks are stored as uint8 (1 = padded, ignored) and passed to torch as bool.
"""
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"

STD = 0.2


def mha(g, embed_dim, num_heads, **kw):
    """torch.nn.MultiheadAttention with every parameter redrawn from N(0, STD^2)."""
    m = torch.nn.MultiheadAttention(embed_dim, num_heads, batch_first=True, dropout=0.0, **kw).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * STD)
    return m


def state(prefix, m):
    return {f"{prefix}.{k}": v.detach().clone() for k, v in m.state_dict().items()}


@torch.no_grad()
def main():
    g = torch.Generator().manual_seed(5)
    out, meta = {}, {}

    # self-attention with a float additive causal mask (0 on/below the diagonal, -inf above)
    m = mha(g, 16, 4)
    x = torch.randn(2, 6, 16, generator=g)
    mask = torch.zeros(6, 6).masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf"))
    y = m(x, x, x, attn_mask=mask, need_weights=False)[0]
    out |= state("self", m) | {"self.x": x, "self.attn_mask": mask, "self.out": y}
    meta["self"] = dict(embed_dim=16, num_heads=4, call="mha(x, x, x, attn_mask=attn_mask, need_weights=False)")

    # cross-attention, key = value, key padding mask (batch 1: last 3 keys padded)
    m = mha(g, 16, 4)
    q = torch.randn(2, 5, 16, generator=g)
    kv = torch.randn(2, 7, 16, generator=g)
    kpm = torch.zeros(2, 7, dtype=torch.uint8)
    kpm[1, 4:] = 1
    y, w = m(q, kv, kv, key_padding_mask=kpm.bool(), need_weights=True, average_attn_weights=True)
    out |= state("cross", m) | {"cross.q": q, "cross.kv": kv, "cross.key_padding_mask": kpm,
                                "cross.out": y, "cross.weights": w}
    meta["cross"] = dict(embed_dim=16, num_heads=4, call="mha(q, kv, kv, key_padding_mask=kpm.bool(), "
                                                         "need_weights=True, average_attn_weights=True)")

    # kdim = vdim = 12 != embed_dim: separate q/k/v projections, one packed in_proj_bias
    m = mha(g, 16, 2, kdim=12, vdim=12)
    assert not m._qkv_same_embed_dim and m.in_proj_weight is None
    q = torch.randn(2, 3, 16, generator=g)
    kv = torch.randn(2, 4, 12, generator=g)
    kpm = torch.zeros(2, 4, dtype=torch.uint8)
    kpm[1, 3:] = 1
    y = m(q, kv, kv, key_padding_mask=kpm.bool(), need_weights=False)[0]
    out |= state("kdim", m) | {"kdim.q": q, "kdim.kv": kv, "kdim.key_padding_mask": kpm, "kdim.out": y}
    meta["kdim"] = dict(embed_dim=16, num_heads=2, kdim=12, vdim=12,
                        call="mha(q, kv, kv, key_padding_mask=kpm.bool(), need_weights=False)")

    for k, v in out.items():
        assert not (v.is_floating_point() and torch.isnan(v).any()), k
    path = FIX / "mha.safetensors"
    save_file({k: v.contiguous() for k, v in out.items()}, path,
              metadata={"cases": json.dumps(meta), "torch": torch.__version__, "weight_std": str(STD)})
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
