#!/usr/bin/env bash
# Issue 10 on the H200: the tensor-core backward with bool masks, biases and dBias (backward-masks.mjs:
# float64 checks of four layouts first, then the tensor-core default against the portable tier).
#   bash bench/gpu/device.sh bench/gpu/session.sh masks=bench/gpu/backward-masks.sh:240
#   bash bench/gpu/backward-masks.sh OUTDIR --smoke     (here, llvmpipe: the portable rows only)
set -uo pipefail
out=${1:?output folder}
shift
mkdir -p "$out"
timeout "${MASKS_TIMEOUT:-230}" node bench/gpu/backward-masks.mjs --out "$out" "$@" 2>&1 | grep -v '^Warning' | tee "$out/backward-masks.txt"
echo "backward-masks: exit ${PIPESTATUS[0]}"
echo "call done"
exit 0
