#!/usr/bin/env bash
# Issue 15, third call of 2026-12-03 (session 7): the decode table with the pipelined kernel (the
# default) beside PyTorch SDPA decode, the general kernel's rows in the same call, and the
# pipelined kernel's overrides on qwen2-0.5b (2 KV heads of 7 query heads: few workgroups per split).
#   bash bench/gpu/device.sh bench/gpu/session.sh final=bench/gpu/decode-final.sh:380
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
export FUSEDATTN_COMMIT=${FUSEDATTN_COMMIT:-unknown}
source bench/gpu/decode-steps.sh
t0=$SECONDS; timeout 60 python3 bench/decode_torch.py > "$OUT/torch-decode.jsonl" 2> "$OUT/torch-decode.err"; step torch $?
torch=(--torch "$OUT/torch-decode.jsonl")
decode_run table 200 DECODE_LENGTHS=1024,4096,16384,32768 -- --parts contiguous,paged,int8 --shapes llama-8b,qwen2-0.5b "${torch[@]}"
decode_run general 75 DECODE_LENGTHS=1024,4096,32768 FUSEDATTN_DECODE_PIPELINED=0 -- --parts contiguous,int8 --shapes qwen2-0.5b,llama-8b "${torch[@]}"
decode_run qwen-t128 25 DECODE_LENGTHS=4096,32768 FUSEDATTN_DECODE_PIPE_TARGET=128 -- --parts contiguous --shapes qwen2-0.5b "${torch[@]}"
decode_run qwen-w8 25 DECODE_LENGTHS=4096,32768 FUSEDATTN_DECODE_PIPE_WORDS=8 -- --parts contiguous --shapes qwen2-0.5b "${torch[@]}"
echo "call done"
