#!/usr/bin/env bash
# Issue 13's timings besides the masks (variants.sh's approx and torch parts): our linear attention
# and Performer against exact flash (bench/variants/approx.mjs), then PyTorch's anchors in the same
# call (SDPA with the dense mask, FlexAttention block masks and softcap, linear attention einsums).
# Pairs with score-hook.sh (checks + masks) in one device call; bench/variants/table.mjs joins the
# two folders' files afterwards:
#   bash bench/gpu/device.sh bench/gpu/session.sh hook=bench/gpu/score-hook.sh:330 anchors=bench/gpu/variants-anchors.sh:170
set -o pipefail
OUT=${1:-out}
SMOKE=${2:-}
mkdir -p "$OUT"
step() { echo "== $1: exit $2 ($(( SECONDS - t0 )) s)"; }
t0=$SECONDS; timeout ${APPROX_S:-60} node bench/variants/approx.mjs "$OUT" --backend webgpu $SMOKE > "$OUT/approx.log" 2>&1; step approx $?
tail -2 "$OUT/approx.log"
if [[ ${ANCHORS_TORCH:-1} == 0 ]]; then
  echo "== torch: skipped (ANCHORS_TORCH=0)"
elif command -v python3 >/dev/null && python3 -c 'import torch' 2>/dev/null; then
  t0=$SECONDS; timeout ${TORCH_S:-100} python3 bench/variants/torch_variants.py $SMOKE > "$OUT/torch.jsonl" 2> "$OUT/torch.err"; step torch $?
  cat "$OUT/torch.jsonl"
else
  echo "== torch: not available here"
fi
echo "call done"
