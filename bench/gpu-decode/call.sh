#!/usr/bin/env bash
# One GPU call of the decode work (docs/GPU-NOTES.md, "Decode on WebGPU"): decode attention vs
# streaming, then the Qwen2-0.5B-shaped runner, fused/unfused x f32/f16 (+ replay off), with a
# per-kernel GPU profile of decode steps. Run from the folder holding dist/, bench/, package.json:
#   source .gpu/env.sh && cd .gpuwork/decode && FUSEDATTN_COMMIT=<sha> bash bench/gpu-decode/call.sh
set -o pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv | tee "$OUT/gpu.txt"
timeout 240 node bench/model-decode-attention.mjs --out "$OUT/decode-attention.jsonl" ${DECODE_ARGS:-} 2>&1 | grep -v Warning | tee "$OUT/decode-attention.log"
timeout 200 node bench/model-generate.mjs --backend webgpu --attention fused,unfused --gpu-weights float32,float16 --prompt 512 --new 64 --profile 8 \
  --out "$OUT/model-generate.jsonl" ${GENERATE_ARGS:-} 2>&1 | grep -v Warning | tee "$OUT/model-generate.log"
timeout 100 node bench/model-generate.mjs --backend webgpu --attention fused --gpu-weights float32 --replay off --prompt 512 --new 64 --profile 8 \
  --out "$OUT/model-generate.jsonl" 2>&1 | grep -v Warning | tee -a "$OUT/model-generate.log"
