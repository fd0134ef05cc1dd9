#!/usr/bin/env bash
# One GPU-machine call for the fused block's prefill (docs/GPU-NOTES.md, "Block prefill on the flash
# tiers"): checks, then timings, each part under its own time limit so one hang costs only its part.
# Run from a folder holding dist/, bench/ and package.json, after `source .gpu/env.sh`:
#   bash bench/gpu/block-call.sh            (OUT: where logs and JSON lines go)
set -o pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export FUSEDATTN_COMMIT=${FUSEDATTN_COMMIT:-unknown}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$OUT/gpu.txt"
timeout 150 node bench/gpu/block-fast.mjs --out "$OUT/block-fast.jsonl" ${BLOCK_FAST_PARTS:+--parts $BLOCK_FAST_PARTS} 2>&1 | tee "$OUT/block-fast.log"
TILE=${GEMM_TILE:-$(grep '^best-gemm-tile' "$OUT/block-fast.log" | awk '{print $2}')}
echo "block bench with GEMM tile ${TILE:-default}"
timeout 200 node bench/block.mjs --backend webgpu --iterations 5 --back-to-back ${BACK_TO_BACK:-4} --tiers subgroup-matrix:float16,portable:float32 \
  --compare-kernels tiled ${TILE:+--gemm-tile $TILE} --out "$OUT/block-gpu.jsonl" --trace "$OUT/block-trace.json" 2>&1 | tee "$OUT/block.log"
for w in float32 float16; do
  timeout 80 node bench/model-generate.mjs --backend webgpu --attention unfused,fused --prompt 512 --new 8 --gpu-weights $w --profile-prefill \
    --out "$OUT/model-generate.jsonl" 2>&1 | tee -a "$OUT/model.log"
done
echo "call done"
