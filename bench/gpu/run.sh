#!/usr/bin/env bash
# The whole GPU benchmark in one command (what BENCHMARKS.md's table comes from), from the repo root
# or a copy holding dist/ and bench/:
#   bash bench/gpu/run.sh OUTDIR [ORT_DIR]
# 1. PyTorch SDPA (flash, cuDNN, efficient, math) times every shape and dumps inputs + outputs;
# 2. fusedattn on the same inputs: each tier (autotuned: FUSEDATTN_AUTOTUNE=on), naive, ORT WebGPU MHA;
# 3. again with Dawn's robustness off (explicit opt-in, FUSEDATTN_UNSAFE_DISABLE_ROBUSTNESS=1);
# 4. the markdown table.
set -uo pipefail
out=${1:?output folder}
ort=${2:-}
[[ -z $ort && -d bench/node_modules/onnxruntime-node ]] && ort=bench
mkdir -p "$out"
data=$(mktemp -d)
if command -v python3 >/dev/null && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  PYTHONUNBUFFERED=1 python3 bench/gpu/torch_sdpa.py --dump "$data" > "$out/torch.jsonl" 2> "$out/torch.err"
else
  echo "no PyTorch with CUDA here: PyTorch rows skipped" | tee "$out/torch.err"
fi
export FUSEDATTN_AUTOTUNE=on FUSEDATTN_AUTOTUNE_FILE="$out/autotune.json"
node bench/gpu/bench-gpu.mjs --inputs "$data" --out "$out/bench.jsonl" --impls sgmatrix,subgroup,portable,naive 2>&1 | grep -v '^Warning'
FUSEDATTN_UNSAFE_DISABLE_ROBUSTNESS=1 node bench/gpu/bench-gpu.mjs --inputs "$data" --out "$out/bench.jsonl" --impls sgmatrix 2>&1 | grep -v '^Warning'
# ONNX Runtime last, under a time limit of its own: its WebGPU attention may be slow at S = 4096
[[ -n $ort ]] && timeout "${ORT_TIMEOUT:-300}" node bench/gpu/bench-gpu.mjs --inputs "$data" --out "$out/bench.jsonl" --impls ort --ort "$ort" 2>&1 | grep -v '^Warning'
node bench/gpu/table.mjs "$out/torch.jsonl" "$out/bench.jsonl" | tee "$out/table.md"
rm -rf "$data"
