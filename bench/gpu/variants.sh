#!/usr/bin/env bash
# Issue 13's GPU work in one device call (about 4 minutes on an H200): checks against float64
# first (masks, bias, block masks, score/mask/sink functions on the tensor-core and portable tiers;
# linear attention and Performer), then our timings (masks, block masks, score functions; linear
# attention and Performer against exact flash as S grows), then PyTorch's (SDPA with the same dense
# mask, FlexAttention, linear attention einsums), then the summary table. Every part has its own
# timeout; one failing part does not stop the others. From the repo root, what prepare.sh made carried:
#   bash bench/gpu/device.sh bench/gpu/variants.sh $OUT          (here: bash bench/gpu/variants.sh OUT --smoke)
set -o pipefail
OUT=${1:-out}
SMOKE=${2:-}
mkdir -p "$OUT"
export FUSEDATTN_COMMIT=${FUSEDATTN_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
step() { echo "== $1: exit $2 ($(( SECONDS - t0 )) s)"; }
t0=$SECONDS; timeout ${CHECK_S:-75} node bench/variants/check-gpu.mjs $SMOKE > "$OUT/check-gpu.log" 2>&1; step check-gpu $?
grep -E "FAIL|passed" "$OUT/check-gpu.log"
t0=$SECONDS; timeout ${MASKS_S:-80} node bench/variants/masks.mjs "$OUT" --backend webgpu $SMOKE > "$OUT/masks.log" 2>&1; step masks $?
grep -E '^\|' "$OUT/masks.log" | tail -20
t0=$SECONDS; timeout ${APPROX_S:-60} node bench/variants/approx.mjs "$OUT" --backend webgpu $SMOKE > "$OUT/approx.log" 2>&1; step approx $?
tail -1 "$OUT/approx.log"
if command -v python3 >/dev/null && python3 -c 'import torch' 2>/dev/null; then
  t0=$SECONDS; timeout ${TORCH_S:-100} python3 bench/variants/torch_variants.py $SMOKE > "$OUT/torch.jsonl" 2> "$OUT/torch.err"; step torch $?
  cat "$OUT/torch.jsonl"
else
  echo "== torch: not available here"
fi
node bench/variants/table.mjs "$OUT" > /dev/null && echo "== summary: $OUT/summary.md"
echo "call done"
