# GPU call 6: the benchmark for BENCHMARKS.md (tuner and timing fixes of run 5).
set -o pipefail
bash ../fast-ort/unpack-ort.sh
ORT_TIMEOUT=150 bash bench/gpu/run.sh $OUT/b ../fast-ort > $OUT/bench.log 2>&1; tail -75 $OUT/b/table.md
