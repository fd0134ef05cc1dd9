#!/usr/bin/env bash
# Issue 15, third call of 2026-12-03 (session 7): the decode table with the pipelined kernel (the
# default) beside PyTorch SDPA decode, the general kernel's rows in the same call, and the
# pipelined kernel's overrides on qwen2-0.5b (2 KV heads of 7 query heads: few workgroups per split).
#   bash bench/gpu/device.sh bench/gpu/session.sh final=bench/gpu/decode-final.sh:380
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
export FUSEDATTN_COMMIT=${FUSEDATTN_COMMIT:-unknown}
step() { echo "== $1: exit $2 ($(( SECONDS - t0 )) s)"; }
show() { grep -E "^(contiguous|paged|int8) |FAILED|ERROR" "$1" | sed -E 's/, api [0-9.]+ us//; s/ \(err [^)]*\)//; s/decode attention //g' | head -48; }
t0=$SECONDS; timeout 60 python3 bench/decode_torch.py > "$OUT/torch-decode.jsonl" 2> "$OUT/torch-decode.err"; step torch $?
run() { local name=$1 parts=$2 shapes=$3 lengths=$4 secs=$5; shift 5; t0=$SECONDS; env "$@" DECODE_LENGTHS=$lengths timeout "$secs" node bench/decode.mjs --out "$OUT/$name" --parts "$parts" --shapes "$shapes" --torch "$OUT/torch-decode.jsonl" > "$OUT/$name.log" 2>&1; step "$name" $?; show "$OUT/$name.log"; }
run table contiguous,paged,int8 llama-8b,qwen2-0.5b 1024,4096,16384,32768 200 X=1
run general contiguous,int8 qwen2-0.5b,llama-8b 1024,4096,32768 75 FUSEDATTN_DECODE_PIPELINED=0
run qwen-t128 contiguous qwen2-0.5b 4096,32768 25 FUSEDATTN_DECODE_PIPE_TARGET=128
run qwen-w8 contiguous qwen2-0.5b 4096,32768 25 FUSEDATTN_DECODE_PIPE_WORDS=8
echo "call done"
