#!/usr/bin/env bash
# The decode kernel's plan sweep (bench/decode-sweep.mjs, every variant checked against float64,
# the GPU warmed before each) in one device call part, about 90 s on an H200:
#   bash bench/gpu/device.sh bench/gpu/session.sh sweep=bench/gpu/decode-sweep.sh:150
# What it asks (docs/GPU-NOTES.md, second session of 2026-12-02): the kernel runs float16 no faster
# than float32 at 32K with 256 workgroups of 256 threads (a quarter of the H200's threads), so is it
# occupancy (splits x 2-8: more workgroups), loads in flight (keyUnroll 16: a whole key row), or
# the tile (128 keys), or coalescing (keyLanes: several threads per key)? Then the same at 4K, the
# short caches (1K) where the combine pass and the per-tile barriers dominate, and MLA's 576-wide
# latent rows with threads per key.
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
j="$OUT/decode-sweep.jsonl"
s() { node bench/decode-sweep.mjs --out "$j" "$@" 2>&1 | grep -v '^Warning'; }
s --shapes llama-8b:32768 --dtypes float16,float32 --layouts bhsd --workgroups 256,128 --key-unrolls 4,16 --splits 1,2,4,8
s --shapes llama-8b:32768,llama-8b:4096 --dtypes float16 --layouts bhsd --key-lanes 1,2,4,8,16 --splits 1,4
s --shapes llama-8b:4096,qwen2-0.5b:32768 --dtypes float16 --layouts bhsd --workgroups 256,128 --key-unrolls 4,16 --splits 1,2,4
s --shapes llama-8b:1024,qwen2-0.5b:1024 --dtypes float16 --layouts bhsd --workgroups plan,128 --splits 1,0.5,=1
# MLA's long key rows (576) with threads per key: the decode bench's MLA part under the env override
for lanes in 1 8 16; do FUSEDATTN_DECODE_KEY_LANES=$lanes node bench/decode.mjs --out "$OUT/mla-lanes-$lanes" --parts mla 2>&1 | grep -E "^mla|FAILED"; done
echo "call done"
