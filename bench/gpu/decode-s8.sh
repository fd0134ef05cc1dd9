#!/usr/bin/env bash
# Issue 15, session 8 of 2026-12-03, last call: the MLA decode variants (staged with Q in words, the
# default; Q element by element; two score chains, with and without two slabs ahead; the direct form) checked and timed beside PyTorch, then the llama-8b
# and qwen2-0.5b decode rows with the combine's automatic width against 256 threads (the wide
# combine applies to few rows over 32+ splits).
#   bash bench/gpu/device.sh bench/gpu/session.sh s8=bench/gpu/decode-s8.sh:400
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
source bench/gpu/decode-steps.sh
t0=$SECONDS; MLA_S=${MLA_S:-200} TORCH_S=70 MLA_LENGTHS=32768,4096,1024 MLA_VARIANTS=${MLA_VARIANTS:-1:1:128:1,1:1:128:1:::0,1:1:128:1::::2,1:1:128:1::2::2,1:1:128:0} bash bench/gpu/mla-decode.sh "$OUT/mla" > "$OUT/mla.log" 2>&1; step mla $?
grep -E '^\||variant|checks' "$OUT/mla/mla-decode.log" | head -40
t0=$SECONDS; timeout 40 python3 bench/decode_torch.py > "$OUT/torch-decode.jsonl" 2> "$OUT/torch-decode.err"; step torch $?
rows=(--parts contiguous --shapes llama-8b,qwen2-0.5b --torch "$OUT/torch-decode.jsonl")
decode_run combine-auto 60 DECODE_LENGTHS=4096,32768 -- "${rows[@]}"
decode_run combine-256 60 DECODE_LENGTHS=4096,32768 FUSEDATTN_DECODE_COMBINE_WG=256 -- "${rows[@]}"
echo "call done"
