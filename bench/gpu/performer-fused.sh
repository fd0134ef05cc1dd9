#!/usr/bin/env bash
# Performer and expression feature maps on the fused tensor-core kernels (issue 13,
# approx/webgpu/fused-features.ts): float64 checks, then the crossover timings against exact
# attention (bench/gpu/performer-fused.mjs). Expected ~60 s on the H200, at most PERFORMER_S:
#   bash bench/gpu/device.sh bench/gpu/session.sh performer=bench/gpu/performer-fused.sh:130
#   bash bench/gpu/performer-fused.sh OUTDIR --smoke     # here, on llvmpipe (portable path only)
set -o pipefail
OUT=${1:-out}
mkdir -p "$OUT"
timeout ${PERFORMER_S:-120} node bench/gpu/performer-fused.mjs "$OUT" ${2:-} 2>&1 | grep -v '^Warning' | tee "$OUT/performer-fused.log"
echo "== performer-fused: exit ${PIPESTATUS[0]}"
grep -hE '^(PASS|FAIL|SKIP|time|check FAIL)' "$OUT/performer-fused.log" | sed 's/^/== /'
echo "call done"
