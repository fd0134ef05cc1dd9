#!/usr/bin/env bash
# Everything that must hold on the real GPU at one commit, in one device call: the whole vitest
# suite (its 46 GPU-only tests skip on llvmpipe, they run here), the fast tiers on every SUITE case
# against float64, the block's float64 checks on the flash tiers, then the block benchmark with its
# decode rows (fused, scope replay, unfused). From the repo root after `npm run build`, with a
# node_modules lacking webgpu and typescript (env.sh links Dawn in; see docs/GPU-NOTES.md):
#   source .gpu/env.sh && OUT=$OUT bash bench/gpu/final-check.sh
set -o pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export FUSEDATTN_COMMIT=${FUSEDATTN_COMMIT:-unknown}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
step() { echo "== $1: exit $2 ($(( SECONDS - t0 )) s)"; }
t0=$SECONDS; timeout 200 node node_modules/vitest/vitest.mjs run > "$OUT/vitest.log" 2>&1; step vitest $?
grep -E "✓|×|FAIL|Test Files|Tests |SKIPPING" "$OUT/vitest.log" | grep -v "^ *✓ .*[0-9]ms$" | tail -40
t0=$SECONDS; timeout 120 node bench/gpu/check-tiers.mjs > "$OUT/check-tiers.log" 2>&1; step check-tiers $?
tail -4 "$OUT/check-tiers.log"
t0=$SECONDS; timeout 90 node bench/gpu/block-fast.mjs --parts block-check --out "$OUT/block-fast.jsonl" > "$OUT/block-fast.log" 2>&1; step block-check $?
grep -E "FAIL|^failures" "$OUT/block-fast.log"; tail -2 "$OUT/block-fast.log"
t0=$SECONDS; timeout 200 node bench/block.mjs --backend webgpu --iterations 5 --back-to-back 4 --tiers subgroup-matrix:float16,portable:float32 \
  --out "$OUT/block-gpu.jsonl" 2>&1 | grep -v '^timing' > "$OUT/block.log"; step block $?
cat "$OUT/block.log" | tail -40
echo "call done"
