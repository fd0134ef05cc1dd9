#!/usr/bin/env bash
# Fused linear attention on tensor cores, non-causal and causal (issue 13, FUSEDATTN_APPROX_TIER=fused;
# LINEAR_FUSED_ARGS=--causal-only for the causal checks and timings alone): float64
# checks of the fused path (each run proven fused), then GPU times fused vs portable at B4 H32 S4096
# D128 fp16 elu+1 (bench/gpu/linear-fused.mjs; none for fused if a check failed), the same again
# with Dawn's robustness off (LINEAR_FUSED_UNSAFE=0 skips it), then PyTorch's fp16 einsum in the
# same part (bench/gpu/linear_torch.py) where python3 has torch. Not yet run on a GPU; expected
# ~60-120 s on the H200, at most 190 s (the timeouts below):
#   bash bench/gpu/device.sh bench/gpu/session.sh linfused=bench/gpu/linear-fused.sh:190
#   bash bench/gpu/linear-fused.sh OUTDIR --smoke     # here, on llvmpipe: portable timed, fused refused
set -o pipefail
OUT=${1:-out}
SMOKE=${2:-}
mkdir -p "$OUT"
step() { echo "== $1: exit $2 ($(( SECONDS - t0 )) s)"; }
t0=$SECONDS; timeout ${LINEAR_FUSED_S:-80} node bench/gpu/linear-fused.mjs "$OUT" $SMOKE ${LINEAR_FUSED_ARGS:-} 2>&1 | tee "$OUT/linear-fused.log"; step linear-fused $?
# again with Dawn's robustness off (explicit opt-in, as bench/gpu/run.sh: every matrix load is
# bounds-tested with it on, 43.8 -> 108 TFLOP/s for the flash kernel, docs/GPU-NOTES.md run 3);
# its own checks first, its own jsonl
if [[ ${LINEAR_FUSED_UNSAFE:-1} == 1 ]]; then
  mkdir -p "$OUT/unsafe"
  t0=$SECONDS; FUSEDATTN_UNSAFE_DISABLE_ROBUSTNESS=1 timeout ${LINEAR_FUSED_S:-80} node bench/gpu/linear-fused.mjs "$OUT/unsafe" $SMOKE 2>&1 | tee "$OUT/linear-fused-unsafe.log"; step linear-fused-unsafe $?
fi
if command -v python3 >/dev/null && python3 -c 'import torch' 2>/dev/null; then
  t0=$SECONDS; timeout ${TORCH_S:-25} python3 bench/gpu/linear_torch.py $SMOKE > "$OUT/linear-torch.jsonl" 2> "$OUT/linear-torch.err"; step torch $?
  grep '^torch' "$OUT/linear-torch.err"; grep -v '^torch' "$OUT/linear-torch.err" | tail -3
else
  echo "== torch: not available here"
fi
# the summary again with "== " so session.sh's excerpt of the log shows it
grep -hE '^(PASS|FAIL|SKIP|time|torch|check FAIL)' "$OUT/linear-fused.log" "$OUT/linear-fused-unsafe.log" "$OUT/linear-torch.err" 2>/dev/null | sed 's/^/== /'
echo "call done"
