"""PyTorch on the same card as examples/gpu_attention.rs: window attention through
torch.nn.functional.scaled_dot_product_attention with the same additive bias + mask, forward
and forward+backward, at the unicl-swin-b stage shapes; and timm's Swin-B
(swin_base_patch4_window7_224, random weights) image tower, forward. Prints JSON lines in the
same form as the Rust example. Median of --iters after 3 warm-ups, CUDA-synchronised; fp32
with TF32 off (as florence computes in f32), plus the fp16 kernel for reference.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def timed(fn, iters):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=20)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda"
    name = torch.cuda.get_device_name(0)
    print(json.dumps({"kind": "device", "torch": torch.__version__, "card": name}))
    n, hd = 49, 32
    for stage, nw, heads in [(1, 64, 4), (2, 16, 8), (3, 4, 16), (4, 1, 32)]:
        for dtype in [torch.float32, torch.float16]:
            b = a.batch
            # Windows grouped as [B, nW, H, N, hd] so the [nW, H, N, N] bias+mask broadcasts.
            q, k, v = (torch.empty(b, nw, heads, n, hd, device=dev, dtype=dtype).uniform_(-1, 1) for _ in range(3))
            bias = torch.empty(heads, n, n, device=dev, dtype=dtype).uniform_(-2, 2)
            mask = torch.where(torch.rand(nw, 1, n, n, device=dev) < 0.3, -100.0, 0.0).to(dtype)
            attn_bias = bias.unsqueeze(0) + mask  # [nW, H, N, N]
            up = torch.empty(b, nw, heads, n, hd, device=dev, dtype=dtype).uniform_(-1, 1)

            def fwd():
                with torch.no_grad():
                    F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)

            qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))

            def fwd_bwd():
                out = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=attn_bias)
                (out * up).sum().backward()

            print(json.dumps({
                "kind": "kernel", "backend": "torch-sdpa", "model": "unicl-swin-b", "stage": stage,
                "batch": b, "windows": b * nw, "heads": heads, "impl": f"sdpa-{str(dtype)[6:]}",
                "forward_ms": round(timed(fwd, a.iters) * 1e3, 4),
                "forward_backward_ms": round(timed(fwd_bwd, a.iters) * 1e3, 4),
            }), flush=True)
    import timm

    model = timm.create_model("swin_base_patch4_window7_224", pretrained=False).to(dev).eval()
    x = torch.randn(a.batch, 3, 224, 224, device=dev)

    def tower():
        with torch.no_grad():
            model.forward_features(x)

    s = timed(tower, min(a.iters, 10))
    print(json.dumps({
        "kind": "tower", "backend": "torch-timm", "model": "swin_base_patch4_window7_224", "batch": a.batch,
        "attention": f"timm {timm.__version__} fused_attn={getattr(model.layers[0].blocks[0].attn, 'fused_attn', None)}",
        "forward_ms": round(s * 1e3, 3), "images_per_s": round(a.batch / s, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
