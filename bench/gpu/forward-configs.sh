#!/usr/bin/env bash
# Issue 14: tensor-core forward configurations that are not autotuner candidates, on the GPU.
# FWD_CONFIGS picks them: pairs (a subgroup pair per 16 query rows, SG_MATRIX_PAIRS_CONFIGS),
# occupancy (small workgroup memory, Q in passes: SG_MATRIX_OCCUPANCY_CONFIGS) or indices (18,19)
# into check-tiers' numbering (candidates, then pairs, then occupancy).
# 1. every such configuration forced on every SUITE case (f16) and the tensor-core stress cases,
# against float64 (bench/gpu/check-tiers.mjs --configs KIND); any failure: no timings. 2. the
# default configuration (index 0) and each of them timed on the shapes in the same call
# (bench-gpu.mjs: GPU timestamps, steady state, sampled float64 rows checked again).
#   FWD_CONFIGS=occupancy bash bench/gpu/device.sh bench/gpu/session.sh fwd=bench/gpu/forward-configs.sh:150
set -uo pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
t0=$SECONDS
kind=${FWD_CONFIGS:-pairs}
timeout "${CHECK_S:-80}" node bench/gpu/check-tiers.mjs --configs "$kind" > "$OUT/check.log" 2>&1
rc=$?
echo "== checks: exit $rc ($(( SECONDS - t0 )) s)"
grep -v '^Warning' "$OUT/check.log" | grep -E 'FAIL|passed|failed|n/a' | tail -8
if [[ $rc != 0 ]]; then echo "WRONG: a $kind configuration failed (or did not finish) its float64 checks: no timings"; echo "call done"; exit 0; fi
# the default (candidate 0), then each configuration of the kind (numbered as check-tiers numbers them)
all='m => [...m.SG_MATRIX_CONFIGS, ...m.SG_MATRIX_PAIRS_CONFIGS, ...m.SG_MATRIX_OCCUPANCY_CONFIGS]'
pick="(c, i) => '$kind'.split(',').includes(String(i)) || ('$kind' === 'pairs' && c.pairs) || ('$kind' === 'occupancy' && c.qPasses) || ('$kind' === 'wide' && c.rowsPerSubgroup === 32)"
indices=$(node -e "import('./dist/ops/attention/webgpu/tiers/sgmatrix.js').then(m => console.log([0, ...($all)(m).map((c, i) => [c, i]).filter(([c, i]) => i > 0 && ($pick)(c, i)).map(([, i]) => i)].join(' ')))")
shapes=${FWD_SHAPES:-B4 H32 S4096 D128,B4 H32 S4096 D128 causal,B4 H32 S1024 D64,B1 H32 S1024 D128 causal,B4 H32/8 S4096 D128 causal (GQA)}
for i in $indices; do
  config=$(node -e "import('./dist/ops/attention/webgpu/tiers/sgmatrix.js').then(m => console.log(JSON.stringify(($all)(m)[$i])))")
  t0=$SECONDS
  FUSEDATTN_SGMATRIX_CONFIG=$config timeout "${TIME_S:-25}" node bench/gpu/bench-gpu.mjs --shapes "$shapes" --impls sgmatrix --label "config $i" --out "$OUT/forward.jsonl" > "$OUT/time-$i.log" 2>&1
  echo "== config $i $config: exit $? ($(( SECONDS - t0 )) s)"
done
node -e "
const rows = require('fs').readFileSync('$OUT/forward.jsonl', 'utf8').trim().split('\\n').filter(Boolean).map(JSON.parse).filter((r) => r.kind === 'bench');
for (const r of rows) {
  // FlashAttention's rule on the sampled float64 rows: within 2x the error of naive f16 attention
  const ok = r.err !== undefined && r.err <= 2 * Math.max(r.naiveErr, 1e-3);
  console.log([r.shape, r.impl, r.error ?? (ok ? r.ms.toFixed(3) + ' ms ' + r.tflops.toFixed(1) + ' TFLOP/s' : 'WRONG (no time)'), 'err ' + r.err + ' naive ' + r.naiveErr].join(' | '));
}
" 2>&1 | tee "$OUT/summary.txt"
echo "call done"
