#!/usr/bin/env bash
# Issue 15's int8 cache on the H200, one device call: the general kernel against the pipelined one
# (split-kv-pipelined.wgsl.ts) in words of 16 and of 8 elements, beside the float16 cache on the
# pipelined kernel (the baseline: the issue asks int8 >= 1.6x float16's speed at 32K keys).
# llama-8b (32/8 heads, D 128) at 4K and 32K keys; bench/decode.mjs checks every variant against
# float64 before timing it (no time is printed for a wrong result). Variants (INT8_VARIANTS, a
# comma list of these names, picks and orders them):
#   general    float16 cache (pipelined, the default) and int8 on the general kernel (chunk 8, the default)
#   pipe16     int8 on the pipelined kernel, 16-element words (vec4<u32>, its default)
#   pipe8      int8 on the pipelined kernel, 8-element words (vec2<u32>, FUSEDATTN_DECODE_PIPE_CHUNK=8)
#   pipe8w2    pipe8 with 2 key words per score thread (FUSEDATTN_DECODE_PIPE_WORDS=2: 8 threads per key)
#   pipe8w8    pipe8 with 8 key words per score thread (2 threads per key)
# and, not in the default list: pipe16w2 (pipe16, 2 words per thread: 4 threads per key),
# pipe8wg256 (pipe8 in workgroups of 256 threads), chunk16 / chunk4 (the general kernel's
# FUSEDATTN_DECODE_CHUNK, this script's earlier sweep: 8 measured fastest). Each variant ~3-5 s a
# length; the default list about 60-80 s. The summary (bench/gpu/decode-int8-table.mjs) ends the log:
# gpu us per call, the kernel that ran (its passes), the word size and int8's speed against float16.
#   bash bench/gpu/device.sh bench/gpu/session.sh int8=bench/gpu/decode-int8.sh:150
# SMOKE=1: tiny shapes and lengths (any WebGPU adapter, llvmpipe included); DECODE_LENGTHS overrides the lengths.
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
variants=${INT8_VARIANTS:-general,pipe16,pipe8,pipe8w2,pipe8w8}
lengths=${DECODE_LENGTHS:-4096,32768}
shapes=(--shapes llama-8b)
[[ -n ${SMOKE:-} ]] && shapes=(--smoke)
for v in ${variants//,/ }; do
  parts=int8; vars=(FUSEDATTN_DECODE_PIPELINED=2)
  case $v in
    general) parts=contiguous,int8; vars=() ;;
    pipe16) vars+=(FUSEDATTN_DECODE_PIPE_CHUNK=16) ;;
    pipe8) vars+=(FUSEDATTN_DECODE_PIPE_CHUNK=8) ;;
    pipe8w2) vars+=(FUSEDATTN_DECODE_PIPE_CHUNK=8 FUSEDATTN_DECODE_PIPE_WORDS=2) ;;
    pipe8w8) vars+=(FUSEDATTN_DECODE_PIPE_CHUNK=8 FUSEDATTN_DECODE_PIPE_WORDS=8) ;;
    pipe16w2) vars+=(FUSEDATTN_DECODE_PIPE_CHUNK=16 FUSEDATTN_DECODE_PIPE_WORDS=2) ;;
    pipe8wg256) vars+=(FUSEDATTN_DECODE_PIPE_CHUNK=8 FUSEDATTN_DECODE_PIPE_WORKGROUP=256) ;;
    chunk16|chunk4) parts=contiguous,int8; vars=(FUSEDATTN_DECODE_CHUNK=${v#chunk}) ;;
    *) echo "== $v: unknown variant (see the header of $0)"; continue ;;
  esac
  t0=$SECONDS
  env "${vars[@]}" DECODE_LENGTHS="$lengths" timeout "${VARIANT_S:-40}" node bench/decode.mjs --out "$OUT/$v" --parts "$parts" --dtypes float16 "${shapes[@]}" > "$OUT/$v.log" 2>&1
  echo "== $v (${vars[*]:-defaults}): exit $? ($(( SECONDS - t0 )) s)"
  grep -E "^(contiguous|int8) .*(us|ERROR)|FAILED|failed|Error" "$OUT/$v.log" | head -8
done
node bench/gpu/decode-int8-table.mjs "$OUT" ${variants//,/ } | tee "$OUT/summary.md"
echo "call done"
