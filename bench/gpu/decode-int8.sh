#!/usr/bin/env bash
# Issue 15's int8 cache (0.60x the float16 cache's speed at 32K, third session): an int8 cache
# loads 16 elements per thread by default, so each key gets half the value threads a float16
# cache gets (chunk 8). This part times float16 and int8 side by side (bench/decode.mjs checks
# each against float64 first) with the widest load capped at 16, 8 and 4 elements
# (FUSEDATTN_DECODE_CHUNK), llama-8b at 4K and 32K.
#   bash bench/gpu/device.sh bench/gpu/session.sh int8=bench/gpu/decode-int8.sh:75
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
for chunk in 16 8 4; do
  t0=$SECONDS
  FUSEDATTN_DECODE_CHUNK=$chunk DECODE_LENGTHS=${DECODE_LENGTHS:-4096,32768} timeout ${CHUNK_S:-22} node bench/decode.mjs --out "$OUT/chunk$chunk" --parts contiguous,int8 --shapes llama-8b ${SMOKE:+--smoke} > "$OUT/chunk$chunk.log" 2>&1
  echo "== chunk $chunk: exit $? ($(( SECONDS - t0 )) s)"
  grep -v '^Warning' "$OUT/chunk$chunk.log" | grep -E "^\|.*(int8|float16)|FAILED|failed" | head -8
done
echo "call done"
