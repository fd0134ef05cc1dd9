#!/usr/bin/env bash
# The tensor-core tier on three forward shapes, checked against float64 (sampled rows) and timed,
# without PyTorch: a quick look for a forward regression between full runs of bench/gpu/run.sh.
#   bash bench/gpu/device.sh bench/gpu/session.sh fwd=bench/gpu/forward-quick.sh:90
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
node bench/gpu/bench-gpu.mjs --shapes "B4 H32 S4096 D128,B4 H32 S4096 D128 causal,B1 H32 S1024 D128 causal,B4 H32 S1024 D64" --impls sgmatrix --out "$OUT/forward.jsonl" 2>&1 | grep -v '^Warning'
echo "call done"
