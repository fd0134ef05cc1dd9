#!/usr/bin/env bash
# Issue 13's mask, block-mask and score-function timings alone (variants.sh's masks part):
#   bash bench/gpu/device.sh bench/gpu/session.sh masks=bench/gpu/masks.sh:120
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
node bench/variants/masks.mjs "$OUT" --backend webgpu 2>&1 | grep -v '^Warning'
echo "call done"
