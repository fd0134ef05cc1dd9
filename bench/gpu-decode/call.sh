#!/usr/bin/env bash
# One GPU call of the decode work (docs/GPU-NOTES.md, "Decode on WebGPU"): decode attention vs
# streaming, then the Qwen2-0.5B-shaped runner, fused/unfused x f32/f16, with a per-kernel GPU
# profile of decode steps, then replay variants (submissions per step, replay off). Run from the
# folder holding dist/, bench/, package.json:
#   source .gpu/env.sh && cd .gpuwork/decode && FUSEDATTN_COMMIT=<sha> bash bench/gpu-decode/call.sh
set -o pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
# Dawn rounds timestamps to 2^16 ns unless told not to: short kernels need the real values
export GPU_DAWN_DISABLE_TOGGLES=timestamp_quantization
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv | tee "$OUT/gpu.txt"
timeout 200 node bench/decode.mjs --parts contiguous --out "$OUT/decode" ${DECODE_ARGS:-} 2>&1 | grep -v Warning | tee "$OUT/decode-attention.log"
gen() { local limit=$1; shift; timeout "$limit" node bench/model-generate.mjs --backend webgpu --prompt 512 --new 64 --out "$OUT/model-generate.jsonl" "$@" 2>&1 | grep -v Warning | tee -a "$OUT/model-generate.log"; }
gen 150 --attention fused,unfused --gpu-weights float32,float16 --profile 8
for every in 0 24 96; do FUSEDATTN_REPLAY_SUBMIT_EVERY=$every gen 40 --attention fused --gpu-weights float32; done
gen 40 --attention fused --gpu-weights float32 --replay off
