#!/usr/bin/env bash
# Issue 10's CPU anchor on the GPU machine's CPUs (this dev machine has no PyTorch): our CPU
# backward (bench/backward.mjs: float64 checks first, then fused and unfused timings) and PyTorch's
# CPU SDPA backward (bench/backward_cpu_torch.py), same shapes, same thread count, same run:
#   bash bench/gpu/device.sh bench/gpu/session.sh cpu=bench/gpu/backward-cpu.sh:200
set -o pipefail
OUT=${1:-${OUT:-out}}
THREADS=${CPU_THREADS:-$(nproc)}
CPU_ARGS=${CPU_ARGS:-}   # e.g. --anchors: only the shapes PyTorch runs too
mkdir -p "$OUT"
timeout ${OURS_S:-140} node bench/backward.mjs "$OUT" --threads "$THREADS" $CPU_ARGS 2>&1 | grep -v '^Warning'
# CPU_RELAXED=1: ours again with relaxed SIMD (FMA; on by default in Chrome since 114, behind a flag
# in Node 20), into $OUT/relaxed, checked against float64 first like the default run
if [[ ${CPU_RELAXED:-0} == 1 ]]; then
  mkdir -p "$OUT/relaxed"
  timeout ${OURS_S:-140} node --experimental-wasm-relaxed-simd bench/backward.mjs "$OUT/relaxed" --threads "$THREADS" $CPU_ARGS 2>&1 | grep -v '^Warning'
fi
if command -v python3 >/dev/null && python3 -c 'import torch' 2>/dev/null; then
  timeout ${TORCH_S:-60} python3 bench/backward_cpu_torch.py --threads "$THREADS" | tee "$OUT/backward-cpu-torch.jsonl"
else
  echo "no PyTorch here: the anchor rows are missing"
fi
node bench/backward-cpu-table.mjs "$OUT/backward-cpu.jsonl" "$OUT/backward-cpu-torch.jsonl" | tee "$OUT/backward-cpu-vs-torch.md"
# CPU_THREAD_LIST="1 4": ours and PyTorch again at each thread count (anchors only), into
# $OUT/threads-N: whether the gap at 16 threads is per-thread speed (kernels) or scaling (the pool:
# compare each job's wall time with its busy time in the table's phases column)
for n in ${CPU_THREAD_LIST:-}; do
  mkdir -p "$OUT/threads-$n"
  timeout ${OURS_S:-140} node bench/backward.mjs "$OUT/threads-$n" --threads "$n" --anchors 2>&1 | grep -v '^Warning' | tail -3
  if python3 -c 'import torch' 2>/dev/null; then
    timeout ${TORCH_S:-60} python3 bench/backward_cpu_torch.py --threads "$n" > "$OUT/threads-$n/backward-cpu-torch.jsonl"
  fi
  node bench/backward-cpu-table.mjs "$OUT/threads-$n/backward-cpu.jsonl" "$OUT/threads-$n/backward-cpu-torch.jsonl" | tee "$OUT/threads-$n/backward-cpu-vs-torch.md"
done
if [[ -s $OUT/relaxed/backward-cpu.jsonl ]]; then
  node bench/backward-cpu-table.mjs "$OUT/relaxed/backward-cpu.jsonl" "$OUT/backward-cpu-torch.jsonl" | tee "$OUT/relaxed/backward-cpu-vs-torch.md"
fi
echo "call done"
