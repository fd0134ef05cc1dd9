#!/usr/bin/env bash
# Issue 15's GPU work in one device call (about 3 minutes on an H200):
#   tests   the decode, paged-cache, composite and runner-batching suites on the real GPU (their
#           kernels unrolled as on hardware; llvmpipe runs them without unrolling)
#   torch   PyTorch SDPA decode on the bench shapes (bench/decode_torch.py), checked vs float64
#   ours    bench/decode.mjs: contiguous f16/f32, paged P16/P64, int8, MLA; every variant checked
#           against float64 before it is timed; the table with PyTorch beside
# From the repo root after bash bench/gpu/prepare.sh --no-ort, carrying [".gpu", "dist", ".gpuwork/nm.tar.xz"]:
#   bash bench/gpu/device.sh bench/gpu/decode.sh [OUTDIR]   (default $OUT; 7 files)
# or as a part of bench/gpu/session.sh: decode=bench/gpu/decode.sh:240
# (DECODE_TESTS=0 skips the tests, DECODE_SHAPES="llama-8b,qwen2-0.5b" times those shapes only)
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
export FUSEDATTN_COMMIT=${FUSEDATTN_COMMIT:-unknown}
smoke=${SMOKE:+--smoke}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
step() { echo "== $1: exit $2 ($(( SECONDS - t0 )) s)"; }
if [[ -z $smoke && ${DECODE_TESTS:-1} != 0 ]]; then
  t0=$SECONDS; timeout 120 node node_modules/vitest/vitest.mjs run test/decode.test.ts test/paged-cache.test.ts test/decode-composite.test.ts test/decode-wgsl.test.ts test/model-batching.test.ts > "$OUT/decode-tests.log" 2>&1; step tests $?
  grep -E "×|FAIL|Test Files|Tests " "$OUT/decode-tests.log" | tail -20
fi
t0=$SECONDS; timeout ${TORCH_S:-70} python3 bench/decode_torch.py $smoke > "$OUT/torch-decode.jsonl" 2> "$OUT/torch-decode.err"; step torch $?
tail -3 "$OUT/torch-decode.err"
t0=$SECONDS; timeout ${OURS_S:-200} node bench/decode.mjs --out "$OUT" --torch "$OUT/torch-decode.jsonl" ${DECODE_SHAPES:+--shapes "$DECODE_SHAPES"} $smoke > "$OUT/decode.log" 2>&1; step decode $?
grep -v '^Warning' "$OUT/decode.log" | grep -E "^\||FAILED|failed|checked" | head -80
echo "call done"
