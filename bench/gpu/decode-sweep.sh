#!/usr/bin/env bash
# The decode kernel's plan sweep (bench/decode-sweep.mjs) in one device call part:
#   bash bench/gpu/device.sh bench/gpu/session.sh sweep=bench/gpu/decode-sweep.sh:150
# (a) float16 at 32K: key-chunk and value-row loads in flight; (b) short caches: splits and tiles.
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
j="$OUT/decode-sweep.jsonl"
s() { node bench/decode-sweep.mjs --out "$j" "$@" 2>&1 | grep -v '^Warning'; }
s --shapes llama-8b:32768 --dtypes float32 --layouts bhsd
s --shapes llama-8b:32768,qwen2-0.5b:32768 --dtypes float16 --layouts bhsd --unrolls 2,4 --key-unrolls 4,8,16
s --shapes llama-8b:1024,llama-8b:4096,qwen2-0.5b:1024 --dtypes float16 --layouts bhsd --workgroups plan,128,256 --splits 1,0.5,=1
echo "call done"
