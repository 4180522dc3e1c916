#!/usr/bin/env bash
# Evaluates a shapes model and writes assets/shapes/results.json (what tests/bundled_model.rs
# checks and README/BENCHMARKS quote). Usage, from anywhere:
#   scripts/shapes/results.sh [WEIGHTS]
# WEIGHTS defaults to assets/shapes/model.safetensors. Needs python3 for the JSON assembly only.
# The "training" block of an existing results.json is kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
W="${1:-assets/shapes/model.safetensors}"
C=assets/shapes/config.json
T=assets/shapes/shapes-templates.txt
cargo build --release --features cli -q
F=target/release/florence
tmp="$(mktemp -d)"
$F synth -q -o "$tmp/held" -n 300 --split held-out --layout folders --seed 1 >/dev/null
$F synth -q -o "$tmp/seen" -n 300 --split train --layout folders --seed 1 >/dev/null
$F synth -q -o "$tmp/ptrain" -n 1800 --split all --layout folders --seed 3 >/dev/null
$F synth -q -o "$tmp/ptest" -n 720 --split all --layout folders --seed 4 >/dev/null
$F eval zero-shot -q -w "$W" -c $C --folder "$tmp/held" --labels-file assets/shapes/labels.txt --templates $T --json > "$tmp/held.json"
$F eval zero-shot -q -w "$W" -c $C --folder "$tmp/seen" --labels-file assets/shapes/labels.txt --templates $T --json > "$tmp/seen.json"
$F eval linear-probe -q -w "$W" -c $C --train "$tmp/ptrain" --test "$tmp/ptest" --c 10 --json > "$tmp/probe.json"
$F eval few-shot -q -w "$W" -c $C --train "$tmp/ptrain" --test "$tmp/ptest" -k 5 --trials 5 --c 10 --json > "$tmp/few.json"
python3 - "$tmp" <<'PY'
import json, sys
t = sys.argv[1]
load = lambda n: json.load(open(f"{t}/{n}.json"))
held, seen, probe, few = load("held"), load("seen"), load("probe"), load("few")
import os
old = json.load(open("assets/shapes/results.json")) if os.path.exists("assets/shapes/results.json") else {}
out = {
    "model": "assets/shapes/model.safetensors (f16), config assets/shapes/config.json",
    # Written by hand when the model is trained (README "The bundled model"); kept as is here.
    "training": old.get("training"),
    "zero_shot_templates": "assets/shapes/shapes-templates.txt",
    "candidates": "all 36 colour-shape pairs (assets/shapes/labels.txt)",
    "test_held_out": {"split": "held-out", "seed": 1, "n": held["n"], "top1": held["top1"], "top5": held["top5"],
                      "per_class": {c["class"]: c["top1"] for c in held["per_class"]}},
    "test_seen": {"split": "train", "seed": 1, "n": seen["n"], "top1": seen["top1"], "top5": seen["top5"]},
    "linear_probe": {"train": "all, 1800 images, seed 3", "test": "all, 720 images, seed 4", "C": 10,
                     "top1": probe["top1"], "top5": probe["top5"]},
    "few_shot_5": {"k": 5, "trials": 5, "C": 10, "mean_top1": few["mean_top1"], "std_top1": few["std_top1"]},
}
json.dump(out, open("assets/shapes/results.json", "w"), indent=1)
print(json.dumps(out, indent=1))
PY
rm -rf "$tmp"
