#!/usr/bin/env bash
# The decode suites on the GPU with the pipelined kernel's query words in registers
# (FUSEDATTN_DECODE_PIPE_QREG=4, opt-in: it needs the 'subgroups' feature, which llvmpipe lacks, so
# CI only compiles it): every case of these files against float64, as on the default path.
#   bash bench/gpu/device.sh bench/gpu/session.sh qregtests=bench/gpu/decode-qreg-tests.sh:200
OUT=${1:-out}
mkdir -p "$OUT"
FUSEDATTN_DECODE_PIPE_QREG=${QREG:-4} node node_modules/vitest/vitest.mjs run test/decode.test.ts test/decode-composite.test.ts test/paged-cache.test.ts test/decode-wgsl.test.ts 2>&1 | tee "$OUT/vitest.log" | tail -40
echo "call done"
