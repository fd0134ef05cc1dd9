#!/usr/bin/env bash
# Issue 10's CPU anchor on the GPU machine's CPUs (this dev machine has no PyTorch): our CPU
# backward (bench/backward.mjs: float64 checks first, then fused and unfused timings) and PyTorch's
# CPU SDPA backward (bench/backward_cpu_torch.py), same shapes, same thread count, same run:
#   bash bench/gpu/device.sh bench/gpu/session.sh cpu=bench/gpu/backward-cpu.sh:200
set -o pipefail
OUT=${1:-${OUT:-out}}
THREADS=${CPU_THREADS:-$(nproc)}
mkdir -p "$OUT"
timeout ${OURS_S:-140} node bench/backward.mjs "$OUT" --threads "$THREADS" 2>&1 | grep -v '^Warning'
if command -v python3 >/dev/null && python3 -c 'import torch' 2>/dev/null; then
  timeout ${TORCH_S:-60} python3 bench/backward_cpu_torch.py --threads "$THREADS" | tee "$OUT/backward-cpu-torch.jsonl"
else
  echo "no PyTorch here: the anchor rows are missing"
fi
node bench/backward-cpu-table.mjs "$OUT/backward-cpu.jsonl" "$OUT/backward-cpu-torch.jsonl" | tee "$OUT/backward-cpu-vs-torch.md"
echo "call done"
