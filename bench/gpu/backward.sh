#!/usr/bin/env bash
# The attention backward's GPU run (issue 10) in one command, from the repo root on the GPU machine
# (after prepare.sh here; carry [".gpu", "dist", ".gpuwork/nm.tar.xz"]):
#   bash bench/gpu/device.sh bench/gpu/session.sh backward=bench/gpu/backward.sh:300   (the H200, 3-4 min)
#   bash bench/gpu/device.sh bench/gpu/backward.sh OUTDIR                            (the same, alone)
#   bash bench/gpu/backward.sh OUTDIR --smoke                      (here, llvmpipe, tiny shapes)
# 1. PyTorch: float64 reference gradients + inputs of the check shapes, each SDPA backend's error,
#    backward timings (flash, cuDNN, efficient, math f16 and f32);
# 2. fusedattn: checks on the same inputs (f16 within 2e-3, f32 within 1e-4 of the reference),
#    then timings of our fused (best tier) and unfused backward, f16 and f32;
#    (BACKWARD_SHAPES="name,name" times only those bench shapes);
# 3. the markdown table. Each part under its own time limit (90 s, 180 s): one failing part does not
#    stop the rest, and rows written before a time limit are kept.
set -uo pipefail
out=${1:?output folder}
shift
smoke=${1:-}
mkdir -p "$out"
data=$(mktemp -d)
if command -v python3 >/dev/null && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  PYTHONUNBUFFERED=1 timeout "${TORCH_TIMEOUT:-90}" python3 bench/gpu/backward_torch.py --dump "$data" $smoke > "$out/backward-torch.jsonl" 2> "$out/backward-torch.err"
  echo "torch part: exit $?" >&2
else
  echo "no PyTorch with CUDA here: PyTorch rows and torch-based checks skipped (checks use our float64 reference)" | tee "$out/backward-torch.err"
  data=""
fi
export FUSEDATTN_AUTOTUNE=${FUSEDATTN_AUTOTUNE:-on} FUSEDATTN_AUTOTUNE_BACKWARD_FILE="$out/autotune-backward.json"
timeout "${OURS_TIMEOUT:-180}" node bench/gpu/backward.mjs --out "$out" ${data:+--inputs "$data"} ${BACKWARD_SHAPES:+--shapes "$BACKWARD_SHAPES"} $smoke 2>&1 | grep -v '^Warning'
echo "fusedattn part: exit ${PIPESTATUS[0]}" >&2
node bench/gpu/backward-table.mjs "$out/backward-torch.jsonl" "$out/backward-gpu.jsonl" | tee "$out/backward.md"
[[ -n $data ]] && rm -rf "$data"
exit 0
