#!/usr/bin/env bash
# Issue 15, the pipelined split-KV kernel (split-kv-pipelined.wgsl.ts) on the H200, one device call:
#   tests    the decode suites on the GPU (the pipelined cases: one split, a few, every cache dtype)
#   torch    PyTorch SDPA decode on the bench shapes, checked vs float64
#   table    bench/decode.mjs with the pipelined kernel (the default): contiguous f16/f32, paged, int8,
#            llama-8b and qwen2-0.5b, PyTorch beside; every variant checked against float64 first
#   general  the same rows on the general kernel (FUSEDATTN_DECODE_PIPELINED=0), same call
#   sweep    llama-8b 1K / 32K under the pipelined kernel's overrides (workgroups aimed for,
#            threads, key words per thread)
# From the repo root: bash bench/gpu/device.sh bench/gpu/session.sh pipe=bench/gpu/decode-pipelined.sh:560
# (PIPE_SWEEP=0 skips the sweep, PIPE_TESTS=0 the tests)
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
export FUSEDATTN_COMMIT=${FUSEDATTN_COMMIT:-unknown}
step() { echo "== $1: exit $2 ($(( SECONDS - t0 )) s)"; }
show() { grep -E "^(contiguous|paged|int8) |FAILED|ERROR|checked" "$1" | head -60; }
if [[ ${PIPE_TESTS:-1} != 0 ]]; then
  t0=$SECONDS; timeout 100 node node_modules/vitest/vitest.mjs run test/decode.test.ts test/paged-cache.test.ts test/decode-composite.test.ts test/decode-wgsl.test.ts > "$OUT/decode-tests.log" 2>&1; step tests $?
  grep -E "×|FAIL|Test Files|Tests " "$OUT/decode-tests.log" | tail -20
fi
t0=$SECONDS; timeout 60 python3 bench/decode_torch.py > "$OUT/torch-decode.jsonl" 2> "$OUT/torch-decode.err"; step torch $?
tail -2 "$OUT/torch-decode.err"
t0=$SECONDS; timeout 150 node bench/decode.mjs --out "$OUT/table" --parts contiguous,paged,int8 --shapes llama-8b,qwen2-0.5b --torch "$OUT/torch-decode.jsonl" > "$OUT/table.log" 2>&1; step table $?
show "$OUT/table.log"
t0=$SECONDS; FUSEDATTN_DECODE_PIPELINED=0 timeout 60 node bench/decode.mjs --out "$OUT/general" --parts contiguous,int8 --shapes llama-8b --torch "$OUT/torch-decode.jsonl" > "$OUT/general.log" 2>&1; step general $?
show "$OUT/general.log"
if [[ ${PIPE_SWEEP:-1} != 0 ]]; then
  for v in TARGET=256 TARGET=2048 WORKGROUP=64 WORKGROUP=256 WORDS=8; do
    t0=$SECONDS
    env "FUSEDATTN_DECODE_PIPE_$v" DECODE_LENGTHS=1024,32768 timeout 30 node bench/decode.mjs --out "$OUT/sweep-$v" --parts contiguous --shapes llama-8b > "$OUT/sweep-$v.log" 2>&1; step "sweep $v" $?
    grep -E "^contiguous|ERROR|FAILED" "$OUT/sweep-$v.log" | head -6
  done
fi
echo "call done"
