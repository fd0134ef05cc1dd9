#!/usr/bin/env bash
# The tensor-core forward beside PyTorch SDPA (flash, cuDNN, efficient, math) on the bench shapes,
# one run: bench/gpu/run.sh without the portable / naive / ONNX Runtime rows, so it fits a short
# device call. PyTorch dumps inputs and outputs; ours runs on the same inputs, autotuned
# (FUSEDATTN_AUTOTUNE=on), every row checked against PyTorch's output and float64 sampled rows.
#   bash bench/gpu/device.sh bench/gpu/session.sh fwd=bench/gpu/forward-vs-torch.sh:200
set -uo pipefail
out=${1:-${OUT:-out}}
mkdir -p "$out"
data=$(mktemp -d)
PYTHONUNBUFFERED=1 python3 bench/gpu/torch_sdpa.py --dump "$data" > "$out/torch.jsonl" 2> "$out/torch.err"
echo "== torch: exit $?"
export FUSEDATTN_AUTOTUNE=on FUSEDATTN_AUTOTUNE_FILE="$out/autotune.json"
node bench/gpu/bench-gpu.mjs --inputs "$data" --out "$out/bench.jsonl" --impls sgmatrix 2>&1 | grep -v '^Warning'
echo "== fusedattn: exit $?"
node bench/gpu/table.mjs "$out/torch.jsonl" "$out/bench.jsonl" | tee "$out/table.md"
rm -rf "$data"
echo "call done"
