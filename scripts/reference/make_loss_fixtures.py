"""UniCL loss fixture: random features with repeated labels, the loss in both directions and
its gradients, from a hand-written PyTorch reference of Florence eqs. 1-3 (arXiv:2111.11432 §2.2; the public
UniCL repository has no training loss: microsoft/UniCL issue #6).

    python scripts/reference/make_loss_fixtures.py
"""
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

FIX = Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def unicl_loss(img_feat, txt_feat, logit_scale, labels):
    """Florence eq. 1-3 in matrix form (mean over the batch instead of the paper's sum)."""
    u = img_feat / img_feat.norm(dim=-1, keepdim=True)
    v = txt_feat / txt_feat.norm(dim=-1, keepdim=True)
    logits = logit_scale.exp() * u @ v.t()
    t = (labels[:, None] == labels[None, :]).float()
    i2t = -(t / t.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    t2i = -(t / t.sum(0, keepdim=True) * F.log_softmax(logits, dim=0)).sum(0).mean()
    return i2t, t2i


def clip_loss(img_feat, txt_feat, logit_scale):
    u = img_feat / img_feat.norm(dim=-1, keepdim=True)
    v = txt_feat / txt_feat.norm(dim=-1, keepdim=True)
    logits = logit_scale.exp() * u @ v.t()
    y = torch.arange(len(u))
    return (F.cross_entropy(logits, y) + F.cross_entropy(logits.t(), y)) / 2


def main():
    g = torch.Generator().manual_seed(11)
    n, d = 10, 16
    out = {}
    for name, labels in [("repeated", [0, 1, 0, 2, 3, 1, 4, 0, 5, 2]), ("distinct", list(range(n)))]:
        img = torch.randn(n, d, generator=g).requires_grad_()
        txt = torch.randn(n, d, generator=g).requires_grad_()
        scale = torch.tensor(2.6592, requires_grad=True)
        y = torch.tensor(labels)
        i2t, t2i = unicl_loss(img, txt, scale, y)
        loss = i2t + t2i
        loss.backward()
        out |= {f"{name}.img": img.detach(), f"{name}.txt": txt.detach(), f"{name}.labels": y,
                f"{name}.i2t": i2t.detach().reshape(1), f"{name}.t2i": t2i.detach().reshape(1),
                f"{name}.loss": loss.detach().reshape(1), f"{name}.grad_img": img.grad,
                f"{name}.grad_txt": txt.grad, f"{name}.grad_scale": scale.grad.reshape(1)}
        if name == "distinct":
            c = clip_loss(img.detach(), txt.detach(), scale.detach())
            assert torch.allclose(loss.detach(), 2 * c), (loss, c)
            out["distinct.clip_loss"] = c.reshape(1)
        print(f"{name}: loss {loss.item():.6f}")
    save_file({k: v.contiguous() for k, v in out.items()}, FIX / "unicl_loss.safetensors")


if __name__ == "__main__":
    main()
