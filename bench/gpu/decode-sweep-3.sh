#!/usr/bin/env bash
# The decode kernel's third sweep (third session of 2026-12-02): with shared weights on (sweep 2:
# 136 -> 92 us at llama-8b 32K f16), do the key lanes summed by subgroup shuffles (no barrier per
# pass, every pass's loads in flight) beat the workgroup-memory sums, and at how many lanes; how many
# value rows should be in flight; which splits then. Per-pass GPU times (split-KV, combine) printed.
#   bash bench/gpu/device.sh bench/gpu/session.sh sweep3=bench/gpu/decode-sweep-3.sh:150
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
j="$OUT/decode-sweep.jsonl"
s() { node bench/decode-sweep.mjs --out "$j" --layouts bhsd --dtypes float16 "$@" 2>&1 | grep -v '^Warning'; }
s --shapes llama-8b:32768 --key-lanes 4,8,16 --lane-reduce workgroup,subgroup --splits 0.5,1,2
s --shapes llama-8b:32768 --key-lanes 8,16 --lane-reduce subgroup --unrolls 2,8,16
s --shapes llama-8b:4096,qwen2-0.5b:32768 --key-lanes 4,8 --lane-reduce workgroup,subgroup --splits 1,2
s --shapes llama-8b:1024,qwen2-0.5b:1024 --key-lanes 4,8 --lane-reduce workgroup,subgroup
for lanes in 4 8; do FUSEDATTN_DECODE_KEY_LANES=$lanes node bench/decode.mjs --out "$OUT/mla-lanes-$lanes" --parts mla 2>&1 | grep -E "^mla|FAILED"; done
echo "call done"
