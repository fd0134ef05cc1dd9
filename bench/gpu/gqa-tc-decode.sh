#!/usr/bin/env bash
# Issue 15 on the GPU: grouped-query decode on the tensor-core kernel beside the SIMT kernel
# (bench/gpu/gqa-tc-decode.mjs), checked against float64 first, then timed.
#   bash bench/gpu/gqa-tc-decode.sh OUTDIR    (in a session: gqa=bench/gpu/gqa-tc-decode.sh:200)
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
t0=$SECONDS
timeout ${GQA_S:-190} node bench/gpu/gqa-tc-decode.mjs > "$OUT/gqa-tc-decode.log" 2>&1; echo "== gqa-tc-decode: exit $? ($(( SECONDS - t0 )) s)"
grep -v '^Warning' "$OUT/gqa-tc-decode.log" | grep -E 'FAIL|checks|^\||done|Error' | head -80
echo "call done"
