#!/usr/bin/env bash
# The test suite again on the real GPU, then the transformer runner end to end (prefill and 63 decode
# steps, fused vs unfused, f32 and f16 weights) and the decode-attention bandwidth table, in one
# device call. Same set-up as bench/gpu/final-check.sh:
#   source .gpu/env.sh && OUT=$OUT bash bench/gpu/final-runner.sh
set -o pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export FUSEDATTN_COMMIT=${FUSEDATTN_COMMIT:-unknown}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
step() { echo "== $1: exit $2 ($(( SECONDS - t0 )) s)"; }
t0=$SECONDS; timeout 180 node node_modules/vitest/vitest.mjs run > "$OUT/vitest.log" 2>&1; step vitest $?
grep -E "×|FAIL|Test Files|Tests |SKIPPING" "$OUT/vitest.log" | tail -30
t0=$SECONDS; timeout 200 node bench/model-generate.mjs --backend webgpu --attention fused,unfused --gpu-weights float32,float16 --prompt 512 --new 64 \
  --out "$OUT/model-generate.jsonl" 2>&1 | grep -v '^fatal' > "$OUT/model.log"; step model-generate $?
tail -30 "$OUT/model.log"
t0=$SECONDS; timeout 150 node bench/model-decode-attention.mjs --out "$OUT/decode.jsonl" > "$OUT/decode.log" 2>&1; step decode-attention $?
tail -30 "$OUT/decode.log"
echo "call done"
