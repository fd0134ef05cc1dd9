#!/usr/bin/env bash
# The decode kernel's second sweep (third session of 2026-12-02): the first showed the time follows
# the (key, query row) pairs, not the bytes (f16 as slow as f32; qwen2-0.5b and llama-8b at the
# same ns per pair), and 4 threads per key at 0.39 of streaming the best plan. This one asks whether
# the softmax weights computed once per (row, key slice) (--shared-weights 1) remove that cost, alone
# and with key lanes, and what splits and unrolls then suit each shape; MLA under the same env.
#   bash bench/gpu/device.sh bench/gpu/session.sh sweep2=bench/gpu/decode-sweep-2.sh:200
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
j="$OUT/decode-sweep.jsonl"
s() { node bench/decode-sweep.mjs --out "$j" "$@" 2>&1 | grep -v '^Warning'; }
s --shapes llama-8b:32768 --dtypes float16 --layouts bhsd --shared-weights 0,1 --key-lanes 1,2,4 --splits 0.5,1,2
s --shapes llama-8b:32768 --dtypes float32 --layouts bhsd --shared-weights 0,1 --key-lanes 1,4 --splits 1,2
s --shapes llama-8b:4096 --dtypes float16 --layouts bhsd --workgroups 256,128 --shared-weights 0,1 --key-lanes 1,4 --splits 1,2
s --shapes qwen2-0.5b:32768 --dtypes float16 --layouts bhsd --workgroups 256,128 --shared-weights 0,1 --key-lanes 1,2,4 --splits 0.5,1
s --shapes llama-8b:1024,qwen2-0.5b:1024 --dtypes float16 --layouts bhsd --shared-weights 0,1 --key-lanes 1,4 --key-unrolls 4,16 --unrolls 4,16
for sw in 0 1; do FUSEDATTN_DECODE_SHARED_WEIGHTS=$sw FUSEDATTN_DECODE_KEY_LANES=4 node bench/decode.mjs --out "$OUT/mla-sw-$sw" --parts mla 2>&1 | grep -E "^mla|FAILED"; done
echo "call done"
