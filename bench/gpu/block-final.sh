#!/usr/bin/env bash
# The final (table) run of the block prefill work on the GPU machine: float64 checks of the block on
# the flash tiers, then the block benchmark (steady state, both GEMM tiers) and the model runner's
# prefill, fused vs unfused. From a folder holding dist/, bench/ and package.json, after
# `source .gpu/env.sh`:  OUT=out bash bench/gpu/block-final.sh
set -o pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export FUSEDATTN_COMMIT=${FUSEDATTN_COMMIT:-unknown}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
timeout 90 node bench/gpu/block-fast.mjs --parts block-check --out "$OUT/block-fast.jsonl" > "$OUT/block-fast.log" 2>&1
grep -E "FAIL|^failures" "$OUT/block-fast.log"
timeout 200 node bench/block.mjs --backend webgpu --iterations 5 --back-to-back 4 --tiers subgroup-matrix:float16,portable:float32 \
  --skip-scope --out "$OUT/block-gpu.jsonl" --trace "$OUT/block-trace.json" 2>&1 | grep -v '^timing' | tee "$OUT/block.log"
for w in float32 float16; do
  timeout 80 node bench/model-generate.mjs --backend webgpu --attention unfused,fused --prompt 512 --new 8 --gpu-weights $w \
    --out "$OUT/model-generate.jsonl" 2>&1 | grep -v '^fatal' | tee -a "$OUT/model.log"
done
echo "call done"
