#!/usr/bin/env bash
# Issue 14's GPU work in one device call (about 8.5 minutes on an H200; every part under `timeout`):
#   study      the GEMM ceiling study (bench/ceiling/run.sh): sweep per Dawn toggle set vs cuBLAS,
#              SPIR-V opcode counts, the driver's machine code where readable, summary tables
#   attention  the wide (32-row) tensor-core configurations forced on every check-tiers case against
#              float64, then the tensor-core tier autotuned (wide candidates included) on the six
#              benchmark shapes beside PyTorch SDPA; again with the hardware bounds-check toggles;
#              ONNX Runtime at D 64 when ORT_DIR is given (the row that read -2.162 ms)
#   gemm       the study's best tile (best-tile.mjs) checked in the block's GEMM and block against
#              float64, then the fused block (Qwen-7B, S 1024, B 8) and the runner's f16 prefill,
#              before (default tile, portable runner GEMM) and after, in the same run
# Prepared here with `bash bench/gpu/prepare.sh`; on the GPU machine, carry
# [".gpu", "dist", ".gpuwork/nm.tar.xz", ".gpuwork/ort"] and run
#   bash bench/gpu/device.sh bench/ceiling/gpu-call.sh [study] [attention] [gemm]
# ($OUT is the device tool's output folder; ORT_DIR defaults to .gpuwork/ort when it is there).
set -o pipefail
OUT=${OUT:-out}
ORT_DIR=${ORT_DIR:-$([[ -f .gpuwork/ort/unpack-ort.sh ]] && echo .gpuwork/ort)}
# one deadline for the whole call (the device tool allows 9 minutes, Dawn's start-up included):
# every step's time limit is its own or what is left, whichever is smaller
DEADLINE=$(( SECONDS + ${CALL_SECONDS:-500} ))
lim() { local left=$(( DEADLINE - SECONDS )); (( left < 5 )) && left=5; (( left < $1 )) && echo $left || echo "$1"; }
mkdir -p "$OUT"
export FUSEDATTN_COMMIT=${FUSEDATTN_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
parts=${*:-study attention gemm}
want() { [[ " $parts " == *" $1 "* ]]; }
step() { echo "== $1: exit $2 ($(( SECONDS - t0 )) s)"; }
HWBOUNDS=vulkan_use_buffer_robust_access_2,vulkan_use_cooperative_matrix_robust_access,enable_integer_range_analysis_in_robustness
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"

if want study; then
  t0=$SECONDS; timeout $(lim 215) bash bench/ceiling/run.sh "$OUT/ceiling" "${STUDY_SECONDS:-125}" > "$OUT/ceiling.log" 2>&1; step study $?
  grep -E "^== |TIMEOUT|COMPILE FAIL" "$OUT/ceiling.log" | tail -12
  sed -n '1,14p' "$OUT/ceiling/summary.md" 2>/dev/null
  grep -A 8 "^### What bounds" "$OUT/ceiling/summary.md" 2>/dev/null
fi

if want attention; then
  mkdir -p "$OUT/attn"
  t0=$SECONDS; timeout $(lim 50) node bench/gpu/check-tiers.mjs --configs wide > "$OUT/attn/check-wide.log" 2>&1; step check-wide $?
  grep -E "^FAIL" "$OUT/attn/check-wide.log" | head -8; tail -1 "$OUT/attn/check-wide.log"
  data=$(mktemp -d)
  if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    t0=$SECONDS; PYTHONUNBUFFERED=1 timeout $(lim 40) python3 bench/gpu/torch_sdpa.py --dump "$data" > "$OUT/attn/torch.jsonl" 2> "$OUT/attn/torch.err"; step torch $?
  fi
  t0=$SECONDS
  FUSEDATTN_AUTOTUNE=on FUSEDATTN_AUTOTUNE_FILE="$OUT/attn/autotune.json" timeout $(lim 75) node bench/gpu/bench-gpu.mjs --inputs "$data" --out "$OUT/attn/bench.jsonl" --impls sgmatrix 2>&1 | grep -v '^Warning' > "$OUT/attn/bench.log"
  step sgmatrix $?
  t0=$SECONDS
  GPU_DAWN_TOGGLES="$GPU_DAWN_TOGGLES,$HWBOUNDS" FUSEDATTN_AUTOTUNE=on FUSEDATTN_AUTOTUNE_FILE="$OUT/attn/autotune-hwbounds.json" \
    timeout $(lim 60) node bench/gpu/bench-gpu.mjs --inputs "$data" --out "$OUT/attn/bench.jsonl" --impls sgmatrix --label "hardware bounds checks" --shapes "B4 H32 S4096 D128,B4 H32 S4096 D128 causal,B1 H32 S1024 D128 causal,B4 H32 S1024 D64" 2>&1 | grep -v '^Warning' >> "$OUT/attn/bench.log"
  step sgmatrix-hwbounds $?
  if [[ -n ${ORT_DIR:-} ]]; then
    t0=$SECONDS; timeout $(lim 30) node bench/gpu/bench-gpu.mjs --inputs "$data" --out "$OUT/attn/bench.jsonl" --impls ort --ort "$ORT_DIR" --shapes "B4 H32 S1024 D64" 2>&1 | grep -v '^Warning' >> "$OUT/attn/bench.log"; step ort $?
  fi
  rm -rf "$data"
  node bench/gpu/table.mjs "$OUT/attn/torch.jsonl" "$OUT/attn/bench.jsonl" > "$OUT/attn/table.md" 2>/dev/null
  grep -E "best fusedattn|flash \||cudnn \|" "$OUT/attn/table.md" | cut -c1-160
  node -e "const a=require('$OUT/attn/autotune.json');for(const[k,v]of Object.entries(a))console.log(k.split('|').slice(1).join('|'),JSON.stringify(v.config),v.ms.toFixed(3))" 2>/dev/null
fi

if want gemm; then
  mkdir -p "$OUT/gemm"
  tile=$(node bench/ceiling/best-tile.mjs "$OUT/ceiling" 2>"$OUT/gemm/best-tile.txt"); cat "$OUT/gemm/best-tile.txt"
  if [[ -z $tile ]]; then tile='{"kind":"tensorcore"}'; echo "no study winner: the tensor-core kernel's default tile stands in"; fi
  echo "$tile" > "$OUT/gemm/tile.json"
  t0=$SECONDS; FUSEDATTN_GEMM_TILE="$tile" timeout $(lim 60) node bench/gpu/block-fast.mjs --parts gemm-check,block-check --out "$OUT/gemm/block-fast.jsonl" > "$OUT/gemm/block-fast.log" 2>&1; step gemm-block-check $?
  grep -E "FAIL|^failures" "$OUT/gemm/block-fast.log"
  for which in before after; do
    env=(); [[ $which == after ]] && env=(FUSEDATTN_GEMM_TILE="$tile")
    t0=$SECONDS; env "${env[@]}" timeout $(lim 45) node bench/block.mjs --backend webgpu --iterations 3 --back-to-back 4 --tiers subgroup-matrix:float16 --batch 8 \
      --out "$OUT/gemm/block-$which.jsonl" 2>&1 | grep -v '^timing' > "$OUT/gemm/block-$which.log"; step "block $which" $?
    grep -E "^\| *(GEMM|---|subgroup)" "$OUT/gemm/block-$which.log" | head -4
    [[ $which == after ]] && env+=(FUSEDATTN_RUNNER_GEMM=tensorcore)
    t0=$SECONDS; env "${env[@]}" timeout $(lim 45) node bench/model-generate.mjs --backend webgpu --attention fused --gpu-weights float16 --prompt 512 --new 8 \
      --out "$OUT/gemm/runner-$which.jsonl" 2>&1 | grep -v '^fatal' > "$OUT/gemm/runner-$which.log"; step "runner $which" $?
    grep -iE "prefill|tok/s" "$OUT/gemm/runner-$which.log" | head -3
  done
  # the same random model, greedy: the runner's tokens must not change with its GEMM (f16 rounding of x may flip a near tie)
  node -e "const r=(f)=>require('fs').readFileSync(f,'utf8').trim().split('\\n').map(JSON.parse).at(-1);const a=r('$OUT/gemm/runner-before.jsonl'),b=r('$OUT/gemm/runner-after.jsonl');const same=a.tokens.filter((t,i)=>t===b.tokens[i]).length;console.log('runner tokens before/after agree:',same+'/'+a.tokens.length,'prefill tok/s',a.prefillTokensPerSecond,'->',b.prefillTokensPerSecond)" 2>&1
fi
echo "call done"
