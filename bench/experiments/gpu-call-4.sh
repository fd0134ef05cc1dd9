# GPU call 4: correctness of the fast tiers through the public API, then the full benchmark
# (PyTorch, fusedattn tiers autotuned, naive, robustness off, ONNX Runtime WebGPU MHA) and its table.
set -o pipefail
bash ../fast-ort/unpack-ort.sh
node bench/gpu/check-tiers.mjs sgmatrix,subgroup 2>&1 | grep -v '^Warning' > $OUT/check.log; tail -1 $OUT/check.log; grep FAIL $OUT/check.log | head -20
bash bench/gpu/run.sh $OUT/b ../fast-ort 2>&1 | tee $OUT/bench.log | grep -v '^ok' | tail -80
