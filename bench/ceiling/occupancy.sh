#!/usr/bin/env bash
# The occupancy probe (bench/ceiling/occupancy.mjs) on the GPU machine:
#   bash bench/gpu/device.sh bench/gpu/session.sh occ=bench/ceiling/occupancy.sh:120
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
timeout ${OCC_S:-110} node bench/ceiling/occupancy.mjs --sms ${SMS:-132} ${OCC_ARGS:-} > "$OUT/occupancy.log" 2>&1; echo "== occupancy: exit $?"
grep -v '^Warning' "$OUT/occupancy.log" | grep -E '^\||adapter|done|Error' | head -20
echo "call done"
