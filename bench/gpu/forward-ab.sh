#!/usr/bin/env bash
# The tensor-core forward of two builds on the same shapes, alternating (old, new, old, new) so that
# clock drift shows up as a spread rather than as a difference: is a slower row a regression of
# the code or of the machine? The old build is carried in .gpuwork/old (its dist/ and bench/),
# made here by: git worktree add /tmp/old <commit>; (cd /tmp/old && npx tsc -p tsconfig.json);
# cp -r /tmp/old/dist /tmp/old/bench .gpuwork/old/
#   bash bench/gpu/device.sh bench/gpu/session.sh ab=bench/gpu/forward-ab.sh:120
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
shapes=${AB_SHAPES:-"B4 H32 S4096 D128,B4 H32 S4096 D128 causal,B4 H32 S1024 D64"}
nvidia-smi --query-gpu=clocks.sm,clocks.mem,clocks.max.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv 2>&1 | tee "$OUT/clocks-before.txt"
for round in 1 2; do
  for build in old new; do
    script=bench/gpu/bench-gpu.mjs
    [[ $build == old ]] && script=.gpuwork/old/bench/gpu/bench-gpu.mjs
    echo "== $build (round $round)"
    node "$script" --shapes "$shapes" --impls sgmatrix --reps 10 --label "$build" --out "$OUT/forward-ab.jsonl" 2>&1 | grep -v '^Warning'
  done
done
nvidia-smi --query-gpu=clocks.sm,clocks.mem,clocks.max.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv 2>&1 | tee "$OUT/clocks-after.txt"
echo "call done"
