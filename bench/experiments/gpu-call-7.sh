# GPU call 7: the benchmark for BENCHMARKS.md, steady-state timing (calls queued back to back).
set -o pipefail
bash ../fast-ort/unpack-ort.sh
ORT_TIMEOUT=150 bash bench/gpu/run.sh $OUT/b ../fast-ort > $OUT/bench.log 2>&1; tail -75 $OUT/b/table.md
