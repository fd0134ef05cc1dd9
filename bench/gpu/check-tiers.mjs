// The correctness suite on the real GPU without vitest (the GPU machine has no test runner): every
// case of SUITE that the fast tiers implement, as float16, forced onto each tier present, plus
// cases that stress the tensor-core kernel (a forced O rescale, long causal rows, MLA split form),
// checked against the float64 reference with FlashAttention's f16 rule (src/testing/compare.ts).
// Usage: node bench/gpu/check-tiers.mjs [tiers=sgmatrix,subgroup]   Exit code 1 on any failure.
import { attention, validateAttention, referenceAttention } from '../../dist/index.js';
import { SUITE, caseName, checkF32, checkLowPrecision, makeCase } from '../../dist/testing/index.js';

const tiers = (process.argv[2] ?? 'sgmatrix,subgroup').split(',');
const EXTRA = [
  { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 300, seqK: 300, dimQK: 64, scale: 2.5, returnLse: true },
  { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 130, seqK: 97, dimQK: 64, causal: 'top-left', returnLse: true },
  { dtype: 'float16', layout: 'BSND', batch: 2, headsQ: 8, headsKv: 2, seqQ: 513, seqK: 513, dimQK: 128, causal: true, returnLse: true },
  { dtype: 'float16', layout: 'BSND', batch: 1, headsQ: 4, headsKv: 1, seqQ: 70, seqK: 97, dimQK: 128, dimRope: 64, dimV: 128, causal: true, returnLse: true },
  { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 257, seqK: 257, dimQK: 192, dimV: 128, causal: true, returnLse: true },
];
const cases = [...SUITE.filter((c) => !c.mask && !c.bias).map((c) => ({ ...c, dtype: 'float16' })), ...EXTRA];
let passed = 0, failed = 0;
for (const tier of tiers) {
  process.env.FUSEDATTN_WEBGPU_TIER = tier;
  for (const [index, c] of cases.entries()) {
    const seed = 9000 + index;
    const { q, k, v, options } = makeCase(c, seed);
    const problem = validateAttention(q, k, v, options);
    let message;
    try {
      const result = await attention(q, k, v, { ...options, backend: 'webgpu' });
      const ref = referenceAttention(problem);
      const naive = referenceAttention(problem, 'float16');
      message = checkLowPrecision('out', result.out.toFloat32(), naive.out, ref.out) ?? '';
      if (c.returnLse) message += checkF32('lse', result.lse.toFloat32(), ref.lse, 1e-3) ?? '';
    } catch (e) {
      message = `threw: ${e.message.split('\n')[0]}`;
    }
    if (message) failed++;
    else passed++;
    console.log(`${message ? 'FAIL' : 'ok  '} ${tier.padEnd(9)} ${caseName(c)} (seed ${seed})${message ? ` ${message}` : ''}`);
  }
}
delete process.env.FUSEDATTN_WEBGPU_TIER;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
