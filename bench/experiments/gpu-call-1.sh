# GPU call 1 (run from .gpuwork/fast on the GPU machine after `source .gpu/env.sh`):
# matrix sanity, the subgroup-matrix sweep with and without robustness, PyTorch SDPA, SPIR-V dump.
set -o pipefail
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv > $OUT/gpu.txt 2>&1
node bench/experiments/matrix-sanity.mjs 2>&1 | grep -v '^Warning' | tee $OUT/sweep.log
node bench/experiments/dump-spirv.mjs '{}' 1 > $OUT/spirv-robust.txt 2>&1
node bench/experiments/dump-spirv.mjs '{}' 0 > $OUT/spirv-norobust.txt 2>&1
node bench/experiments/sgmatrix-sweep.mjs $OUT/sgmatrix.jsonl 2>&1 | grep -v '^Warning' | tee -a $OUT/sweep.log
ROBUST=0 SKIP_SMALL=1 SHAPES='B4 H32 S4096 D128,B4 H32 S4096 D128 causal' \
  VARIANTS='[{"subgroups":4,"blockKeys":32},{"subgroups":4,"blockKeys":64,"sharedKV":true},{"subgroups":2,"blockKeys":64}]' \
  node bench/experiments/sgmatrix-sweep.mjs $OUT/sgmatrix-norobust.jsonl 2>&1 | grep -v '^Warning' | tee $OUT/norobust.log
PYTHONUNBUFFERED=1 timeout 150 python3 bench/gpu/torch_sdpa.py > $OUT/torch.jsonl 2>&1
cat $OUT/torch.jsonl
