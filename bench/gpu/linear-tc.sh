#!/usr/bin/env bash
# Linear attention on tensor cores (issue 13): PASS/FAIL of the portable and tensor-core tiers
# against float64, then GPU times of the variants that passed (bench/gpu/linear-tc.mjs), then
# PyTorch's fp16 einsum anchor (bench/gpu/linear_torch.py) where python3 has torch. ~60-90 s on
# the H200, at most 110 s (the timeouts below):
#   bash bench/gpu/device.sh bench/gpu/session.sh lin=bench/gpu/linear-tc.sh:110
#   bash bench/gpu/linear-tc.sh OUTDIR --smoke     # here, on llvmpipe: portable tier, tensor cores SKIP
set -o pipefail
OUT=${1:-out}
SMOKE=${2:-}
mkdir -p "$OUT"
step() { echo "== $1: exit $2 ($(( SECONDS - t0 )) s)"; }
t0=$SECONDS; timeout ${LINEAR_TC_S:-85} node bench/gpu/linear-tc.mjs "$OUT" $SMOKE 2>&1 | tee "$OUT/linear-tc.log"; step linear-tc $?
if command -v python3 >/dev/null && python3 -c 'import torch' 2>/dev/null; then
  t0=$SECONDS; timeout ${TORCH_S:-22} python3 bench/gpu/linear_torch.py $SMOKE > "$OUT/linear-torch.jsonl" 2> "$OUT/linear-torch.err"; step torch $?
  grep '^torch' "$OUT/linear-torch.err"; grep -v '^torch' "$OUT/linear-torch.err" | tail -3
else
  echo "== torch: not available here"
fi
# the summary again with "== " so session.sh's excerpt of the log shows it
grep -hE '^(PASS|FAIL|SKIP|time|torch)' "$OUT/linear-tc.log" "$OUT/linear-torch.err" 2>/dev/null | sed 's/^/== /'
echo "call done"
