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
step() { echo "== $1: exit $2 ($(( SECONDS - t0 )) s)"; }
show() { grep -E "^(contiguous|paged|int8) |FAILED|ERROR" "$1" | sed -E 's/, api [0-9.]+ us//; s/ \(err [^)]*\)//' | head -40; }
t0=$SECONDS; timeout 60 node node_modules/vitest/vitest.mjs run test/decode.test.ts test/decode-wgsl.test.ts > "$OUT/decode-tests.log" 2>&1; step tests $?
grep -E "×|FAIL|Test Files|Tests " "$OUT/decode-tests.log" | tail -8
run() { local name=$1 lengths=$2 secs=$3; shift 3; t0=$SECONDS; env "$@" DECODE_LENGTHS=$lengths timeout "$secs" node bench/decode.mjs --out "$OUT/$name" --parts contiguous --shapes llama-8b,qwen2-0.5b > "$OUT/$name.log" 2>&1; step "$name" $?; show "$OUT/$name.log"; }
run split 1024,2048,4096,8192,32768 80 X=1
run wide 1024,2048,4096,8192 70 FUSEDATTN_DECODE_PIPE_WORKGROUP=1024 FUSEDATTN_DECODE_PIPE_TARGET=1
run split-t1024 32768 25 FUSEDATTN_DECODE_PIPE_TARGET=1024
echo "call done"
