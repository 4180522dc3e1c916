#!/usr/bin/env bash
# Fused window attention on a GPU machine (one NVIDIA H100/H200, no network, PyTorch and timm
# installed, no Rust toolchain): runs the prebuilt `gpu_attention` example (parity on the GPU,
# kernel and unicl-swin-b tower timings) on wgpu and on vulkan, then the PyTorch baseline on the
# same card, and prints one table.
#
# Prepare here (the example binary is built on a machine with Rust, and carried):
#   scripts/gpu/build.sh            # release build, wgpu + vulkan, stripped into .carry/
# Run there (device tool: carry .carry and .gl, see the device README for .gl):
#   for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; scripts/gpu/run.sh [batch] [iters]
set -uo pipefail
cd "$(dirname "$0")/../.."
batch="${1:-64}"
iters="${2:-10}"
out="${OUT:-/tmp}/gpu_attention.jsonl"
: > "$out"
bin=.carry/gpu_attention
if [ -f "$bin.xz" ]; then  # carried compressed (the device tool carries at most 64 MiB)
  python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" "$bin.xz" /tmp/gpu_attention
  chmod +x /tmp/gpu_attention
  bin=/tmp/gpu_attention
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/card: /'
if ! ldconfig -p | grep -q libvulkan; then
  echo "no Vulkan loader: unpack .gl/*.deb first (device README)"
fi
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
status=0
# wgpu first (the main target), then the PyTorch baseline, then vulkan (SPIR-V; optional).
florence() {
  echo "== florence on $1"
  timeout "$2" "$bin" --backend "$1" --batch "$batch" --iters "$iters" --json "/tmp/$1.jsonl" || {
    echo "florence on $1: exit $?"; status=1; }
  cat "/tmp/$1.jsonl" >> "$out" 2>/dev/null
}
florence wgpu 160
echo "== PyTorch"
PYTHONUNBUFFERED=1 timeout 110 python3 scripts/gpu/torch_attention.py --batch "$batch" --iters "$iters" | tee -a "$out" || status=1
florence vulkan 90
python3 scripts/gpu/table.py "$out"
exit $status
