#!/usr/bin/env bash
# The tensor-core ceiling study (issue 14) in one command, on whatever GPU is present:
#   bash bench/ceiling/run.sh OUTDIR [SECONDS]        (default 210 s of sweeping; ~40 s more around it)
#   CEILING_SET=occupancy bash bench/ceiling/run.sh OUTDIR 90   (the workgroups-per-SM pairs only)
# 1. cuBLAS anchor (torch.matmul fp16/bf16 at 8192³), when python3 has CUDA PyTorch;
# 2. the GEMM sweep with Dawn's default robustness (every STUDY_VARIANTS row, the SIMT anchor, then
#    one-option changes around the two best), then the best rows again under other Dawn toggle sets:
#    robustness off, hardware bounds checks (robustness2 + cooperative-matrix robust access +
#    integer range analysis), no workgroup zero-init, no div/mod polyfills;
# 3. SPIR-V of the best rows per toggle set (+ the attention kernel), opcode counts;
# 4. the driver's machine code from its shader cache, where readable (registers, spills, HMMA/LDSM);
# 5. the tables (summary.md).
# Each part runs under `timeout`; a sweep process that overruns a variant's limit exits 3 and is
# restarted with --resume (the variant it was on is recorded as timed out and skipped); one that
# crashes (a signal) likewise, the variant recorded as crashed.
# From the repo root (or a copy with dist/ and bench/), after `npm run build`.
set -uo pipefail
out=${1:?output folder}
total=${2:-210}
mkdir -p "$out"
here=$(dirname "$0")
size=${CEILING_SIZE:-8192}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader > "$out/gpu-before.txt" 2>&1
if command -v python3 >/dev/null && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  timeout 60 python3 "$here/cublas.py" --size "$size" > "$out/cublas.jsonl" 2> "$out/cublas.err"; echo "== cublas: exit $?"
  cat "$out/cublas.jsonl"
else
  echo "no PyTorch with CUDA: no cuBLAS anchor" | tee "$out/cublas.err"
fi

# sweep TAG SECONDS [sweep args...]: one toggle set, restarted after a variant timeout
sweep() {
  local tag=$1 secs=$2; shift 2
  local start=$SECONDS resume=() code=0
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    local left=$(( secs - (SECONDS - start) ))
    (( left < 8 )) && break
    timeout $(( left + 30 )) node "$here/gemm-sweep.mjs" --out "$out" --tag "$tag" --size "$size" --budget-s "$left" "${resume[@]}" "$@" 2>&1 | grep -v '^Warning' | tee -a "$out/sweep.log"
    code=${PIPESTATUS[0]}
    # 3: a variant overran its limit; >= 128: the process crashed (a signal) on a variant. Both
    # restart past the variant (its start line is in the JSON lines, with no result)
    [[ $code == 3 || $code -ge 128 ]] || break
    resume=(--resume)
  done
  echo "== sweep $tag: exit $code ($(( SECONDS - start )) s)"
}
share() { echo $(( total * $1 / 100 )); }
if [[ ${CEILING_SET:-study} == occupancy ]]; then
  # CEILING_SET=occupancy: the workgroups-per-SM pairs (gemm-variants.mjs OCCUPANCY_VARIANTS) with
  # Dawn's default robustness, the best three again without it; no SPIR-V or machine-code parts
  sweep robust "$(share 75)" --set occupancy --variant-s 20
  sweep norobust "$(share 25)" --enable disable_robustness --only top:3:robust --variant-s 15
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader > "$out/gpu-after.txt" 2>&1
  node "$here/summary.mjs" "$out" > "$out/summary.md"
  head -c 6000 "$out/summary.md"
  exit 0
fi
sweep robust "$(share 45)" --phase2 2 --variant-s 20
sweep norobust "$(share 17)" --enable disable_robustness --only top:8:robust --variant-s 15
sweep hwbounds "$(share 14)" --enable vulkan_use_buffer_robust_access_2,vulkan_use_cooperative_matrix_robust_access,enable_integer_range_analysis_in_robustness --only top:6:robust --variant-s 15
sweep noinit "$(share 8)" --enable disable_workgroup_init --only top:3:robust --variant-s 15
sweep nodivpoly "$(share 8)" --enable disable_polyfills_on_integer_div_and_mod --only top:3:robust --variant-s 15
sweep novkmm "$(share 8)" --disable use_vulkan_memory_model --only top:3:robust --variant-s 15

t0=$SECONDS
timeout 90 node "$here/dump-spirv.mjs" --out "$out" --top 2 --tags robust,norobust,hwbounds --attention 2>&1 | grep -v '^Warning' | tail -20
echo "== spirv: exit $? ($(( SECONDS - t0 )) s)"
if command -v python3 >/dev/null; then
  timeout 60 python3 "$here/sass.py" "$out" > "$out/sass.jsonl" 2> "$out/sass.err"; echo "== sass: exit $?"
  head -c 3000 "$out/sass.jsonl"
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader > "$out/gpu-after.txt" 2>&1
node "$here/summary.mjs" "$out" > "$out/summary.md"
head -c 6000 "$out/summary.md"
