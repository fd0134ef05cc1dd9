#!/usr/bin/env bash
# Several GPU scripts in one device call, each part in its own folder under $OUT with its own time
# limit, then everything packed into $OUT/results.tar.xz (the device tool returns at most 8 files):
#   bash bench/gpu/device.sh bench/gpu/session.sh PART[:SECONDS] ...
# Parts: study (bench/ceiling/run.sh), runner, suite, checks, block (bench/gpu/final.sh parts),
# tests (vitest on the files in $TESTS),
# variants (bench/gpu/variants.sh), tiers (bench/gpu/run.sh, the attention table), and any
# script path given as PART=path (run as `bash path OUTDIR`).
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
for spec in "$@"; do
  part=${spec%%:*}; secs=${spec#*:}; [[ $secs == "$spec" ]] && secs=300
  name=${part%%=*}; dir="$OUT/$name"; mkdir -p "$dir"
  t0=$SECONDS
  case $part in
    study) timeout "$secs" bash bench/ceiling/run.sh "$dir" "${STUDY_SECONDS:-100}" > "$dir/log" 2>&1 ;;
    runner|suite|checks|block) OUT=$dir timeout "$secs" bash bench/gpu/final.sh "$part" > "$dir/log" 2>&1 ;;
    tests) timeout "$secs" node node_modules/vitest/vitest.mjs run ${TESTS:-} > "$dir/log" 2>&1 ;;
    variants) timeout "$secs" bash bench/gpu/variants.sh "$dir" > "$dir/log" 2>&1 ;;
    tiers) timeout "$secs" bash bench/gpu/run.sh "$dir" "${ORT_DIR:-}" > "$dir/log" 2>&1 ;;
    *=*) timeout "$secs" bash "${part#*=}" "$dir" > "$dir/log" 2>&1 ;;
    *) echo "unknown part $part" > "$dir/log"; false ;;
  esac
  echo "== $name: exit $? ($(( SECONDS - t0 )) s)"
  grep -E "^== |FAIL|×|Tests |Test Files|failures|call done|WRONG" "$dir/log" | tail -25
done
tar -C "$OUT" -cJf "$OUT/results.tar.xz" --exclude=results.tar.xz . 2>/dev/null
ls -la "$OUT/results.tar.xz"
