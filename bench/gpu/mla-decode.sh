#!/usr/bin/env bash
# Issue 15 on the GPU (about 2 minutes on an H200): the tensor-core MLA decode kernel
# (FUSEDATTN_DECODE_MLA=1, opt-in) checked against the float64 reference (first 1025 keys at every head count, then the timings, then lengths 1/97/32769,
# 16/64/128 heads, Sq 1 and 2 causal, paged 64 and 16), then timed beside split-KV at 32K and 4K,
# with PyTorch's MLA decode anchor (bench/decode_torch.py) when torch is there.
#   bash bench/gpu/mla-decode.sh OUTDIR [--smoke]
# or in a session: mla=bench/gpu/mla-decode.sh:150
set -o pipefail
OUT=${1:-${OUT:-out}}
smoke=${2:-${SMOKE:+--smoke}}
mkdir -p "$OUT"
t0=$SECONDS
timeout ${MLA_S:-110} node bench/gpu/mla-decode.mjs $smoke > "$OUT/mla-decode.log" 2>&1; echo "== mla-decode: exit $? ($(( SECONDS - t0 )) s)"
grep -v '^Warning' "$OUT/mla-decode.log" | grep -E 'check|checks|^\||done|Error' | head -80
if [[ -z $smoke ]] && command -v python3 >/dev/null; then
  t0=$SECONDS; MLA_ONLY=1 timeout ${TORCH_S:-25} python3 bench/decode_torch.py > "$OUT/torch-decode.jsonl" 2> "$OUT/torch-decode.err"; echo "== torch: exit $? ($(( SECONDS - t0 )) s)"
  grep -i mla "$OUT/torch-decode.jsonl" | head -6
fi
echo "call done"
