#!/usr/bin/env bash
# Issue 15, second call of 2026-12-03 (session 7): the pipelined decode kernel's wide single-split
# form (one workgroup of 1024 threads per (sequence, KV head), no combine pass) against the split
# form with the faster combine, on short and long caches; every variant checked against float64
# before it is timed (bench/decode.mjs).
#   bash bench/gpu/device.sh bench/gpu/session.sh wide=bench/gpu/decode-wide.sh:330
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
export FUSEDATTN_COMMIT=${FUSEDATTN_COMMIT:-unknown}
source bench/gpu/decode-steps.sh
t0=$SECONDS; timeout 60 node node_modules/vitest/vitest.mjs run test/decode.test.ts test/decode-wgsl.test.ts > "$OUT/decode-tests.log" 2>&1; step tests $?
grep -E "×|FAIL|Test Files|Tests " "$OUT/decode-tests.log" | tail -8
shapes=(--parts contiguous --shapes llama-8b,qwen2-0.5b)
decode_run split 80 DECODE_LENGTHS=1024,2048,4096,8192,32768 -- "${shapes[@]}"
decode_run wide 70 DECODE_LENGTHS=1024,2048,4096,8192 FUSEDATTN_DECODE_PIPE_WORKGROUP=1024 FUSEDATTN_DECODE_PIPE_TARGET=1 -- "${shapes[@]}"
decode_run split-t1024 25 DECODE_LENGTHS=32768 FUSEDATTN_DECODE_PIPE_TARGET=1024 -- "${shapes[@]}"
echo "call done"
