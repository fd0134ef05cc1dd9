#!/usr/bin/env bash
# Issue 15: decode steps that append, the append as a dispatch of its own before the pipelined
# kernel against the general kernel's in-dispatch append (bench/gpu/append-first.mjs), 1K-32K keys.
#   bash bench/gpu/device.sh bench/gpu/session.sh append=bench/gpu/append-first.sh:170
set -o pipefail
OUT=${1:-${OUT:-out}}
mkdir -p "$OUT"
t0=$SECONDS; timeout ${APPEND_S:-150} node bench/gpu/append-first.mjs > "$OUT/append-first.log" 2>&1; echo "== append-first: exit $? ($(( SECONDS - t0 )) s)"
grep -E '^\||WRONG|done|Error' "$OUT/append-first.log" | head -24
echo "call done"
