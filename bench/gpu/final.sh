#!/usr/bin/env bash
# Everything that must hold on the real GPU at one commit, in one device call (about 5 minutes):
#   suite   the whole vitest suite (its 46 GPU-only tests skip on llvmpipe; they run here)
#   checks  the fast tiers on every SUITE case against float64, the block's float64 checks
#   block   the block benchmark, prefill and decode rows (fused, scope replay, unfused)
#   runner  the transformer runner end to end (prefill, 63 decode steps; f32 and f16 weights) and
#           the decode-attention bandwidth table
# From the repo root after `npm run build`, with a node_modules lacking webgpu and typescript
# (env.sh links the carried Dawn in; docs/GPU-NOTES.md, "Final runs at main"):
#   source .gpu/env.sh && OUT=$OUT bash bench/gpu/final.sh [suite] [checks] [block] [runner]
set -o pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export FUSEDATTN_COMMIT=${FUSEDATTN_COMMIT:-unknown}
parts=${*:-suite checks block runner}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
step() { echo "== $1: exit $2 ($(( SECONDS - t0 )) s)"; }
want() { [[ " $parts " == *" $1 "* ]]; }
if want suite; then
  t0=$SECONDS; timeout 200 node node_modules/vitest/vitest.mjs run > "$OUT/vitest.log" 2>&1; step vitest $?
  grep -E "×|FAIL|Test Files|Tests |SKIPPING" "$OUT/vitest.log" | tail -30
fi
if want checks; then
  t0=$SECONDS; timeout 120 node bench/gpu/check-tiers.mjs > "$OUT/check-tiers.log" 2>&1; step check-tiers $?
  tail -4 "$OUT/check-tiers.log"
  t0=$SECONDS; timeout 90 node bench/gpu/block-fast.mjs --parts block-check --out "$OUT/block-fast.jsonl" > "$OUT/block-fast.log" 2>&1; step block-check $?
  grep -E "FAIL|^failures" "$OUT/block-fast.log"
fi
if want block; then
  t0=$SECONDS; timeout 200 node bench/block.mjs --backend webgpu --iterations 5 --back-to-back 4 --tiers subgroup-matrix:float16,portable:float32 \
    --out "$OUT/block-gpu.jsonl" 2>&1 | grep -v '^timing' > "$OUT/block.log"; step block $?
  tail -40 "$OUT/block.log"
fi
if want runner; then
  t0=$SECONDS; timeout 200 node bench/model-generate.mjs --backend webgpu --attention fused,unfused --gpu-weights float32,float16 --prompt 512 --new 64 \
    --out "$OUT/model-generate.jsonl" 2>&1 | grep -v '^fatal' > "$OUT/model.log"; step model-generate $?
  tail -8 "$OUT/model.log"
  t0=$SECONDS; timeout 150 node bench/decode.mjs --parts contiguous --out "$OUT/decode" > "$OUT/decode.log" 2>&1; step decode-attention $?
  grep -E "^\| *(part|---|contiguous)" "$OUT/decode.log"
fi
echo "call done"
