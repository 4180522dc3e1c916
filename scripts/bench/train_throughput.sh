#!/usr/bin/env bash
# Training throughput and peak memory on flex (BENCHMARKS.md, "Training"): each configuration in
# its own process. Usage: scripts/bench/train_throughput.sh [steps]
set -euo pipefail
cd "$(dirname "$0")/../.."
steps="${1:-3}"
# The same features as the CLI build, so the release dependencies are shared with it.
cargo build --release --features cli --example train_throughput
bin=target/release/examples/train_throughput
for preset_batch in "tiny 64 16" "coswin-t 16 4"; do
  set -- $preset_batch
  preset=$1 batch=$2 chunk=$3
  "$bin" --preset "$preset" --batch "$batch" --steps "$steps"
  "$bin" --preset "$preset" --batch "$batch" --steps "$steps" --grad-cache "$chunk"
  "$bin" --preset "$preset" --batch "$batch" --steps "$steps" --checkpointing
  "$bin" --preset "$preset" --batch "$batch" --steps "$steps" --grad-cache "$chunk" --checkpointing
done
