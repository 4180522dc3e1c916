"""End-to-end zero-shot fixture: bundled photos -> torchvision preprocessing -> open_clip
tokenizer -> a random-weight tiny UniCL model with the CLIP vocabulary -> class probabilities.

Writes
  tests/fixtures/tiny_clip_fp16.pth       released-style checkpoint ({'model': fp16 state dict})
  tests/fixtures/tiny_clip_config.json
  tests/fixtures/zeroshot_io.safetensors  pixels, prompt ids, class embeddings, logits, probs

    python scripts/reference/make_zeroshot_fixtures.py
"""
import json
from pathlib import Path

import open_clip
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

from make_fixtures import TINY_SWIN
from unicl_reference import UniCLReference, randomize_, unicl_state_dict

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
IMAGES = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png"]
LABELS = ["cat", "coffee mug", "rocket", "astronaut", "a dog"]
TEMPLATES = [l.rstrip("\n") for l in open(ROOT / "assets/imagenet/templates_simple.txt") if l.strip()]

# The `tiny-clip` preset: tiny Swin, and a tiny text tower over the real CLIP vocabulary/context.
CFG = dict(image=TINY_SWIN,
           text=dict(vocab_size=49408, context_length=77, width=16, heads=2, layers=2, causal=True),
           projection_dim=24)


@torch.no_grad()
def main():
    torch.manual_seed(7)
    model = randomize_(UniCLReference(CFG).eval(), 7)
    sd = unicl_state_dict(model)
    torch.save({"model": {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}},
               FIX / "tiny_clip_fp16.pth")
    json.dump(CFG, open(FIX / "tiny_clip_config.json", "w"), indent=1)

    # UniCL's eval transform (data/build.py::build_transform) at S = 64.
    S = CFG["image"]["image_size"]
    tf = transforms.Compose([
        transforms.Resize(int(256 / 224 * S), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(S),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    pixels = torch.stack([tf(Image.open(ROOT / "assets/images" / f).convert("RGB")) for f in IMAGES])

    # UniCL model.py::get_imnet_embeddings: per class, encode every template, normalise, mean,
    # normalise again. open_clip's tokenizer (ids identical to the CLIP tokenizer UniCL used; it
    # pads with 0 where HF pads with EOS, which the first-argmax pooling does not see).
    tok = open_clip.get_tokenizer("ViT-B-32")
    prompts = [t.format(c) for c in LABELS for t in TEMPLATES]
    ids = tok(prompts)
    e = model.encode_text({"input_ids": ids})
    e = e.reshape(len(LABELS), len(TEMPLATES), -1).mean(dim=1)
    class_emb = e / e.norm(dim=-1, keepdim=True)

    u = model.encode_image(pixels)
    logits = model.logit_scale.exp() * u @ class_emb.t()
    probs = logits.softmax(dim=-1)
    save_file({"pixels": pixels.contiguous(), "prompt_ids": ids.contiguous(), "class_embeddings": class_emb.contiguous(),
               "image_embeddings": u.contiguous(), "logits": logits.contiguous(), "probs": probs.contiguous()},
              FIX / "zeroshot_io.safetensors",
              metadata={"images": json.dumps(IMAGES), "labels": json.dumps(LABELS), "templates": json.dumps(TEMPLATES)})
    print("probs:\n", probs)
    print("top-1:", [LABELS[i] for i in probs.argmax(-1)])


if __name__ == "__main__":
    main()
