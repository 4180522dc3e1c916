#!/usr/bin/env bash
# Builds the GPU example here (the GPU machine has no Rust toolchain) and puts a stripped copy in
# .carry/ (git-ignored through .git/info/exclude), which the device tool carries.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.carry/' .git/info/exclude || echo '/.carry/' >> .git/info/exclude
cargo build --release --no-default-features --features flex,wgpu,vulkan --example gpu_attention
mkdir -p .carry
strip -o .carry/gpu_attention target/release/examples/gpu_attention
# ~110 MB stripped (wgpu, vulkan and flex in one binary); xz brings it to ~19 MB.
xz -T0 -6 -f .carry/gpu_attention
ls -la .carry
