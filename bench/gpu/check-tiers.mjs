// The correctness suite on the real GPU without vitest (the GPU machine has no test runner): every
// case of SUITE that the fast tiers implement, as float16, forced onto each tier present, plus
// cases that stress the tensor-core kernel (a forced O rescale, long causal rows, MLA split form),
// checked against the float64 reference with FlashAttention's f16 rule (src/testing/compare.ts).
// Usage: node bench/gpu/check-tiers.mjs [tiers=sgmatrix,subgroup] [--configs wide|pairs|occupancy|all|I,J,...]   Exit code 1 on any failure.
// --configs: each tensor-core configuration of that kind (SG_MATRIX_CONFIGS; 'wide' = 32 rows per
// subgroup, 'pairs' = a subgroup pair per 16 rows) forced in turn (FUSEDATTN_SGMATRIX_CONFIG) on every case, as the tier "sgmatrix#N";
// cases a configuration cannot run (e.g. the MLA split form on the wide kernel) count as n/a.
import { attention, validateAttention, referenceAttention } from '../../dist/index.js';
import { SUITE, caseName, checkF32, checkLowPrecision, makeCase } from '../../dist/testing/index.js';
import { SG_MATRIX_CONFIGS, SG_MATRIX_OCCUPANCY_CONFIGS, SG_MATRIX_PAIRS_CONFIGS } from '../../dist/ops/attention/webgpu/tiers/sgmatrix.js';

const configsArg = process.argv.indexOf('--configs');
const configKind = configsArg >= 0 ? process.argv[configsArg + 1] : undefined;
const positional = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && all[i - 1] !== '--configs');
// the pairs and occupancy configurations are not candidates: numbered after the candidates
const CONFIGS = [...SG_MATRIX_CONFIGS, ...SG_MATRIX_PAIRS_CONFIGS, ...SG_MATRIX_OCCUPANCY_CONFIGS];
const indices = /^[0-9,]+$/.test(configKind ?? '') ? new Set(configKind.split(',').map(Number)) : undefined;
const forced = configKind ? CONFIGS.map((c, i) => [i, c]).filter(([i, c]) => indices?.has(i) || configKind === 'all' || (configKind === 'wide' && c.rowsPerSubgroup === 32) || (configKind === 'pairs' && c.pairs) || (configKind === 'occupancy' && c.qPasses)) : [];
const tiers = configKind ? forced.map(([i]) => `sgmatrix#${i}`) : (positional[0] ?? 'sgmatrix,subgroup').split(',');
let na = 0;
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
  process.env.FUSEDATTN_WEBGPU_TIER = tier.split('#')[0];
  if (tier.includes('#')) process.env.FUSEDATTN_SGMATRIX_CONFIG = JSON.stringify(CONFIGS[Number(tier.split('#')[1])]);
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
      if (tier.includes('#') && /FUSEDATTN_SGMATRIX_CONFIG/.test(e.message)) {
        na++;
        console.log(`n/a  ${tier.padEnd(9)} ${caseName(c)}: ${e.message.split('\n')[0].slice(0, 120)}`);
        continue;
      }
      message = `threw: ${e.message.split('\n')[0]}`;
    }
    if (message) failed++;
    else passed++;
    console.log(`${message ? 'FAIL' : 'ok  '} ${tier.padEnd(9)} ${caseName(c)} (seed ${seed})${message ? ` ${message}` : ''}`);
  }
}
delete process.env.FUSEDATTN_WEBGPU_TIER;
delete process.env.FUSEDATTN_SGMATRIX_CONFIG;
console.log(`${passed} passed, ${failed} failed${na ? `, ${na} n/a` : ''}`);
process.exit(failed ? 1 : 0);
