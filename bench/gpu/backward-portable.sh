#!/usr/bin/env bash
# Issue 10's portable backward on the H200: PyTorch's math backward (the tier's anchor, f32 and f16)
# on the bench shapes, then our classic and register-tiled kernels checked and timed per pass.
#   bash bench/gpu/device.sh bench/gpu/session.sh portable=bench/gpu/backward-portable.sh:300   (the H200)
#   bash bench/gpu/backward-portable.sh OUTDIR --smoke                                        (here, llvmpipe)
# PORTABLE_SHAPES / PORTABLE_VARIANTS / PORTABLE_DTYPES narrow the run (backward-portable.mjs).
set -uo pipefail
out=${1:?output folder}
shift
mkdir -p "$out"
shapes=${PORTABLE_SHAPES:-B4 H32 S4096 D128 causal,B4 H32 S4096 D128,B2 H16 S4096 D192/128 causal (MLA),B4 H32 S1024 D64}
if command -v python3 >/dev/null && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  PYTHONUNBUFFERED=1 timeout "${TORCH_TIMEOUT:-60}" python3 bench/gpu/backward_torch.py --backends math --shapes "$shapes" > "$out/backward-torch-math.jsonl" 2> "$out/backward-torch.err"
  echo "torch math part: exit $?"
  cat "$out/backward-torch-math.jsonl"
else
  echo "no PyTorch with CUDA here: no PyTorch rows"
fi
PORTABLE_SHAPES="$shapes" timeout "${PORTABLE_TIMEOUT:-240}" node bench/gpu/backward-portable.mjs --out "$out" "$@" 2>&1 | grep -v '^Warning' | tee "$out/backward-portable.txt"
echo "backward-portable: exit ${PIPESTATUS[0]}"
exit 0
