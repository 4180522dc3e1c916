"""Write the zero-shot data that florence ships: ImageNet-1K class names and prompt templates.

Source: open_clip's `zero_shot_metadata.py` (open-clip-torch 3.2.0, MIT), whose
`IMAGENET_CLASSNAMES` is the CLIP-curated list, and whose `OPENAI_IMAGENET_TEMPLATES` are CLIP's
80 templates. UniCL's `IMAGENET_DEFAULT_TEMPLATES` is `'{}.'` followed by those 80, in that order
(spec section 2.3), so florence's `imagenet` set is the same 81 strings.

    python scripts/reference/make_zeroshot_data.py
"""
from pathlib import Path

import open_clip.zero_shot_metadata as m

out = Path(__file__).resolve().parents[2] / "assets" / "imagenet"
out.mkdir(parents=True, exist_ok=True)

names = list(m.IMAGENET_CLASSNAMES)
# UniCL's `data/imagenet/constants.py::IMAGENET_CLASSES` (the list its zero-shot numbers use) is
# the same list with its two duplicate names made unique; checked against microsoft/UniCL@6646be1.
assert names[744] == "missile" and names[837] == "sunglasses"
names[744] = "projectile"
names[837] = "dark glasses"
assert len(names) == 1000 and len(set(names)) == 1000
assert names[0] == "tench" and names[21] == "kite (bird of prey)" and names[999] == "toilet paper"
assert all("\n" not in n and n == n.strip() for n in names)
(out / "classnames.txt").write_text("\n".join(names) + "\n", encoding="utf-8")

imagenet = ["{}."] + [t("{}") for t in m.OPENAI_IMAGENET_TEMPLATES]
assert len(imagenet) == 81 and imagenet[1] == "a bad photo of a {}." and imagenet[-1] == "a tattoo of the {}."
(out / "templates_imagenet.txt").write_text("\n".join(imagenet) + "\n", encoding="utf-8")

simple = [t("{}") for t in m.SIMPLE_IMAGENET_TEMPLATES]
assert len(simple) == 7
(out / "templates_simple.txt").write_text("\n".join(simple) + "\n", encoding="utf-8")
print(f"wrote {len(names)} class names, {len(imagenet)} + {len(simple)} templates to {out}")
