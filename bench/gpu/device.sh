#!/usr/bin/env bash
# On the GPU machine, from the repo root (what prepare.sh made, carried): puts node_modules in place,
# unpacks Node.js, Dawn and ONNX Runtime, sets the environment, then runs `bash <script> [args]`.
#   bash bench/gpu/device.sh bench/gpu/final.sh suite checks
set -uo pipefail
[[ -f .gpuwork/nm.tar.xz && ! -e node_modules ]] && xz -dc .gpuwork/nm.tar.xz | tar -xf - -C .gpuwork && mv .gpuwork/nm node_modules
source .gpu/env.sh
[[ -f .gpuwork/ort/unpack-ort.sh ]] && bash .gpuwork/ort/unpack-ort.sh
export FUSEDATTN_COMMIT=${FUSEDATTN_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
script=${1:?script to run}
shift
bash "$script" "$@"
