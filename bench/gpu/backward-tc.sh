#!/usr/bin/env bash
# Issue 10's tensor-core backward variants on the H200: checks, then per-pass timings (backward-tc.mjs).
#   bash bench/gpu/device.sh bench/gpu/session.sh tc=bench/gpu/backward-tc.sh:180   (the H200, ≤ 150 s)
#   bash bench/gpu/backward-tc.sh OUTDIR --smoke                                   (here, llvmpipe)
# PyTorch/FA2 anchors: last session's backward_torch.py rows (FA2 250.9 TFLOP/s causal, 280 non-causal).
set -uo pipefail
out=${1:?output folder}
shift
mkdir -p "$out"
timeout "${TC_TIMEOUT:-170}" node bench/gpu/backward-tc.mjs --out "$out" "$@" 2>&1 | grep -v '^Warning' | tee "$out/backward-tc.txt"
echo "backward-tc: exit ${PIPESTATUS[0]}"
exit 0
