# GPU call 3: after the alignment fix — correctness of every variant, timing sweep, no-robustness timing.
set -o pipefail
node bench/experiments/sgmatrix-sweep.mjs $OUT/sgmatrix.jsonl 2>&1 | grep -v '^Warning' | tee $OUT/sweep.log
ROBUST=0 SKIP_SMALL=1 SHAPES='B4 H32 S4096 D128,B4 H32 S4096 D128 causal,B2 H16 S4096 D192/128 causal (MLA)' \
  VARIANTS='[{"subgroups":4,"blockKeys":64,"sharedKV":true,"smemVec4":true},{"subgroups":4,"blockKeys":32,"smemVec4":true,"prefetch":true},{"subgroups":4,"blockKeys":16,"smemVec4":true,"prefetch":true}]' \
  node bench/experiments/sgmatrix-sweep.mjs $OUT/sgmatrix-norobust.jsonl 2>&1 | grep -v '^Warning' | tee $OUT/norobust.log
