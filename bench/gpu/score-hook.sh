#!/usr/bin/env bash
# The score-hook rework (docs/GPU-NOTES.md, "Score hook rework (third session of 2026-12-02)") in
# one part, correctness before speed: the float64 checks of check-gpu.mjs (masks, bias, block masks
# with FULL and PARTIAL tiles, score/mask/sink functions, the exp2 tanh, on the tensor-core and
# portable tiers), the test files whose tensor-core blocks only run on a GPU (mods on the tier, the
# non-finite rule with hidden NaN keys, functions and sinks), then the mask/function timings
# (masks.mjs; its spot checks refuse to time a wrong result).
#   bash bench/gpu/device.sh bench/gpu/session.sh hook=bench/gpu/score-hook.sh:360
#   here, without a GPU: bash bench/gpu/score-hook.sh OUT --smoke
set -o pipefail
OUT=${1:-out}
SMOKE=${2:-}
mkdir -p "$OUT"
step() { echo "== $1: exit $2 ($(( SECONDS - t0 )) s)"; }
t0=$SECONDS; timeout ${CHECK_S:-120} node bench/variants/check-gpu.mjs $SMOKE > "$OUT/check-gpu.log" 2>&1; step check-gpu $?
grep -E "FAIL|passed" "$OUT/check-gpu.log"
t0=$SECONDS; timeout ${TESTS_S:-90} node node_modules/vitest/vitest.mjs run test/sgmatrix-score-hook.test.ts test/attention-mods.test.ts test/non-finite.test.ts test/mods-as-options.test.ts > "$OUT/tests.log" 2>&1; step tests $?
grep -E "FAIL|×|SKIPPING|Tests |Test Files" "$OUT/tests.log" | tail -12
t0=$SECONDS; timeout ${MASKS_S:-140} node bench/variants/masks.mjs "$OUT" --backend webgpu $SMOKE > "$OUT/masks.log" 2>&1; step masks $?
grep -E '^\|' "$OUT/masks.log" | tail -24
echo "call done"
