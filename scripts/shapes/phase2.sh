#!/usr/bin/env bash
# Phase 2 of the bundled shapes model on a many-core machine: regenerates the data, measures
# throughput over a few steps, sizes `total_steps` to about TRAIN_SECONDS of training, and
# continues from phase 1's weights (assets/shapes/train-phase2.toml).
# Usage: scripts/shapes/phase2.sh FLORENCE_BINARY PHASE1_WEIGHTS [TRAIN_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
F="$1"; P1="$2"; SECS="${3:-400}"
mkdir -p target/shapes/run
cp "$P1" target/shapes/run/final.safetensors
"$F" synth -q -o target/shapes/train -n 20000 --split train --seed 0
"$F" synth -q -o target/shapes/val -n 720 --split all --layout folders --seed 2
# Throughput probe: 12 steps, the first two (warm-up) not counted.
sed -e 's|^output = .*|output = "../../target/shapes/probe"|' -e 's|^total_steps = .*|total_steps = 12|' \
    -e 's|^warmup_steps = .*|warmup_steps = 1|' -e '/^\[eval\]/,$d' assets/shapes/train-phase2.toml > assets/shapes/probe.toml
"$F" train -q -c assets/shapes/probe.toml
ips=$(python3 -c "import json;l=[json.loads(x) for x in open('target/shapes/probe/metrics.jsonl')][2:];print(sum(x['images_per_s'] for x in l)/len(l))")
steps=$(python3 -c "print(max(100, min(4000, int($SECS*$ips/128/100)*100)))")
echo "throughput ${ips} images/s -> total_steps = ${steps}"
sed -i "s|^total_steps = .*|total_steps = ${steps}|" assets/shapes/train-phase2.toml
rm assets/shapes/probe.toml
start=$(date +%s)
"$F" train -q -c assets/shapes/train-phase2.toml
echo "phase 2: $(( $(date +%s) - start )) s for ${steps} steps"
