#!/usr/bin/env bash
# The mask / function timings alone (bench/variants/masks.mjs; its spot checks refuse to time a
# wrong result), with the documents block mask and its dense equivalent under each tensor-core
# configuration (MASKS_CONFIGS=1):
#   bash bench/gpu/device.sh bench/gpu/session.sh masks=bench/gpu/masks.sh:200
set -o pipefail
OUT=${1:-out}
mkdir -p "$OUT"
t0=$SECONDS; MASKS_CONFIGS=${MASKS_CONFIGS:-1} timeout ${MASKS_S:-190} node bench/variants/masks.mjs "$OUT" --backend webgpu > "$OUT/masks.log" 2>&1
echo "== masks: exit $? ($(( SECONDS - t0 )) s)"
grep -E '^\|' "$OUT/masks.log" | tail -40
echo "call done"
