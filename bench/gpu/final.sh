#!/usr/bin/env bash
# Everything that must hold on the real GPU at one commit, in one device call (about 5 minutes):
#   suite   the whole vitest suite (its GPU-only tests (74 at this writing) skip on llvmpipe; they run here, among them
#           the runner at Qwen2-0.5B / Qwen2-1.5B / Llama-3.2-1B widths on every GPU variant)
#   checks  the fast tiers on every SUITE case against float64, the block's float64 checks
#   block   the block benchmark, prefill and decode rows (fused, scope replay, unfused)
#   runner  the transformer runner end to end (prefill, 63 decode steps; f32 and f16 weights in
#           the same run) and the decode-attention bandwidth table
# Every benchmark checks its own output against float64 before it times (a wrong variant: WRONG,
# no speed, exit 1). SMOKE=1 runs the block / runner parts at tiny sizes (to try this script on
# llvmpipe).
# From the repo root after `npm run build`, with a node_modules lacking webgpu and typescript
# (env.sh links the carried Dawn in; docs/GPU-NOTES.md, "Final runs at main"):
#   source .gpu/env.sh && OUT=$OUT bash bench/gpu/final.sh [suite] [checks] [block] [runner]
set -o pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export FUSEDATTN_COMMIT=${FUSEDATTN_COMMIT:-unknown}
parts=${*:-suite checks block runner}
smoke=${SMOKE:-}
# the runner's limit: its float64 check takes ~20 s on the GPU machine's CPU, minutes on a loaded dev box
runner_limit=$([[ -n $smoke ]] && echo 1500 || echo 300)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
step() { echo "== $1: exit $2 ($(( SECONDS - t0 )) s)"; }
want() { [[ " $parts " == *" $1 "* ]]; }
if want suite; then
  t0=$SECONDS; timeout 300 node node_modules/vitest/vitest.mjs run > "$OUT/vitest.log" 2>&1; step vitest $?
  grep -E "×|FAIL|Test Files|Tests |SKIPPING" "$OUT/vitest.log" | tail -30
fi
if want checks; then
  t0=$SECONDS; timeout 120 node bench/gpu/check-tiers.mjs > "$OUT/check-tiers.log" 2>&1; step check-tiers $?
  tail -4 "$OUT/check-tiers.log"
  t0=$SECONDS; timeout 90 node bench/gpu/block-fast.mjs --parts block-check --out "$OUT/block-fast.jsonl" > "$OUT/block-fast.log" 2>&1; step block-check $?
  grep -E "FAIL|^failures" "$OUT/block-fast.log"
fi
if want block; then
  t0=$SECONDS; timeout 260 node bench/block.mjs --backend webgpu --iterations 5 --back-to-back 4 ${smoke:+--quick} --tiers subgroup-matrix:float16,portable:float32 \
    --out "$OUT/block-gpu.jsonl" 2>&1 | grep -v '^timing' > "$OUT/block.log"; step block $?
  tail -44 "$OUT/block.log"
fi
if want runner; then
  t0=$SECONDS; timeout "$runner_limit" node bench/model-generate.mjs --backend webgpu --attention fused,unfused --gpu-weights float32,float16 --prompt 512 --new 64 ${smoke:+--smoke} \
    --out "$OUT/model-generate.jsonl" 2>&1 | grep -v '^fatal' > "$OUT/model.log"; step model-generate $?
  grep -E "check (PASS|FAIL)|NOTE" "$OUT/model.log"
  tail -9 "$OUT/model.log"
  t0=$SECONDS; timeout 150 node bench/decode.mjs --parts contiguous ${smoke:+--smoke} --out "$OUT/decode" > "$OUT/decode.log" 2>&1; step decode-attention $?
  grep -E "^\| *(part|---|contiguous)|FAILED|checked" "$OUT/decode.log"
fi
echo "call done"
