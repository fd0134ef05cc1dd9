#!/usr/bin/env bash
# Issue 14, applying the ceiling study: the fused block (Qwen-7B, S 1024, B 8, float16 weights on
# tensor cores) with the previous GEMM tile (the tiled kernel's 128x256, --gemm-tile 0) and with the
# study's winner (the default), in the same run; every timed path checks its own output.
#   bash bench/gpu/gemm-apply.sh OUTDIR
set -uo pipefail
out=${1:?output folder}
mkdir -p "$out"
for which in before after; do
  tile=(); [[ $which == before ]] && tile=(--gemm-tile 0)
  timeout "${BLOCK_S:-40}" node bench/block.mjs --backend webgpu --iterations 3 --back-to-back 4 --tiers subgroup-matrix:float16 --batch 8 \
    "${tile[@]}" --out "$out/block-$which.jsonl" 2>&1 | grep -v '^timing' > "$out/block-$which.log"
  echo "== block $which: exit ${PIPESTATUS[0]}"
  grep -E "^\||check|WRONG|FAIL" "$out/block-$which.log" | head -8
done
