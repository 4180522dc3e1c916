"""Markdown tables from the JSON lines of examples/gpu_attention.rs and torch_attention.py."""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for r in rows:
    if r["kind"] == "device":
        print(f"PyTorch {r['torch']} on {r['card']}\n")
print("| check | backend | windows x tokens | heads | forward f32 | forward f16 | d qkv | d bias | ok |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["kind"] == "parity":
        f16 = "-" if r["forward_f16"] is None else f"{r['forward_f16']:.1e}"
        print(f"| parity | {r['backend']} | {r['windows']} x {r['tokens']} | {r['heads']} | {r['forward_f32']:.1e} | {f16} "
              f"| {r['grad_qkv']:.1e} | {r['grad_bias']:.1e} | {r['ok']} |")
print("\n| unicl-swin-b stage | windows | heads | backend | implementation | forward (ms) | forward+backward (ms) |")
print("|---|---|---|---|---|---|---|")
for r in sorted((r for r in rows if r["kind"] == "kernel"), key=lambda r: (r["stage"], r["backend"], r["impl"])):
    print(f"| {r['stage']} | {r['windows']} | {r['heads']} | {r['backend']} | {r['impl']} | {r['forward_ms']:.3f} | {r['forward_backward_ms']:.3f} |")
print("\n| image tower | backend | attention | batch | forward (ms) | images/s |")
print("|---|---|---|---|---|---|")
for r in rows:
    if r["kind"] == "tower":
        print(f"| {r['model']} | {r['backend']} | {r['attention']} | {r['batch']} | {r['forward_ms']:.2f} | {r['images_per_s']:.1f} |")
