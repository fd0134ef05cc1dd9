# GPU call 5: unrolled vs looped per-lane code (robust and not), the fast tiers' correctness via the
# public API, then the full benchmark with warmed clocks and working autotuning.
set -o pipefail
bash ../fast-ort/unpack-ort.sh
V='[{"subgroups":4,"blockKeys":32,"smemVec4":true,"prefetch":true,"unrolled":false},{"subgroups":4,"blockKeys":32,"smemVec4":true,"prefetch":true},{"subgroups":4,"blockKeys":16,"smemVec4":true,"prefetch":true},{"subgroups":4,"blockKeys":64,"sharedKV":true,"smemVec4":true}]'
SKIP_SMALL=1 SHAPES='B4 H32 S4096 D128,B2 H16 S4096 D192/128 causal (MLA)' VARIANTS="$V" node bench/experiments/sgmatrix-sweep.mjs $OUT/sweep.jsonl 2>&1 | grep -v '^Warning' | grep TFLOP
ROBUST=0 SKIP_SMALL=1 SHAPES='B4 H32 S4096 D128' VARIANTS="$V" node bench/experiments/sgmatrix-sweep.mjs $OUT/sweep-norobust.jsonl 2>&1 | grep -v '^Warning' | grep TFLOP
node bench/gpu/check-tiers.mjs sgmatrix,subgroup 2>&1 | grep -v '^Warning' > $OUT/check.log; tail -1 $OUT/check.log; grep FAIL $OUT/check.log | head -10
ORT_TIMEOUT=150 bash bench/gpu/run.sh $OUT/b ../fast-ort > $OUT/bench.log 2>&1; tail -75 $OUT/b/table.md
