// The float64 reference backward against central finite differences of the float64 forward
// reference, on small seeded cases covering every forward option (and dropout).
import { describe, expect, it } from 'vitest';
import { finiteDifferenceGradients, referenceGradients, validateAttention } from '../dist/index.js';
import { type AttentionCase, caseName, makeCase, normal, randomFloats, uniform } from '../dist/testing/index.js';
import { maxAbs } from './helpers.js';

interface GradCase extends AttentionCase {
  biasGrad?: boolean;
  dropout?: number;
}

const base = { batch: 2, headsQ: 2, seqQ: 5, seqK: 6, dimQK: 4 };
const CASES: GradCase[] = [
  { ...base },
  { ...base, seqQ: 7, seqK: 4, causal: true }, // bottom-right with Sq > Sk: three fully masked rows
  { ...base, seqQ: 4, seqK: 7, causal: 'top-left' },
  { ...base, seqQ: 6, seqK: 8, window: [2, 1] },
  { ...base, seqQ: 6, seqK: 6, preTokens: 2, nextTokens: 0 },
  { ...base, mask: 'full-rows', maskShape: 'full' },
  { ...base, bias: 'random', maskShape: 'full', biasGrad: true },
  { ...base, bias: 'random', maskShape: 'batch', biasGrad: true },
  { ...base, headsQ: 4, headsKv: 2, bias: 'neg-inf-blocks', maskShape: '2d', biasGrad: true },
  { ...base, alibi: true, causal: true },
  { ...base, softcap: 1.5, scale: 1.3 },
  { ...base, headsQ: 4, headsKv: 2 },
  { ...base, headsQ: 3, headsKv: 1, seqQ: 3 },
  { ...base, dimQK: 4, dimRope: 2, dimV: 3, causal: true },
  { ...base, layout: 'BSND', headsQ: 4, headsKv: 2 },
  { ...base, layout: 'BSH', dimV: 3 },
  { ...base, layout: 'SBH', headsQ: 2, headsKv: 1 },
  { ...base, layout: 'TND', seqLensQ: [3, 0, 4], seqLensK: [5, 2, 0], causal: true },
  { ...base, layout: 'TND', seqLensQ: [3, 2], seqLensK: [4, 3], headsQ: 2, headsKv: 1, dimRope: 2, dimV: 3 },
  { ...base, dropout: 0.3 },
  { ...base, dropout: 0.5, headsQ: 4, headsKv: 2, causal: true, bias: 'random', maskShape: 'batch', biasGrad: true, softcap: 2 },
];

describe('float64 reference backward vs finite differences', () => {
  for (const c of CASES) {
    const name = `${caseName(c)}${c.biasGrad ? ' dBias' : ''}${c.dropout ? ` dropout=${c.dropout}` : ''}`;
    it(name, () => {
      const { q, k, v, options } = makeCase(c, 11);
      if (c.dropout) options.dropout = { p: c.dropout, seed: 1234, offset: 7 };
      const problem = validateAttention(q, k, v, options);
      const dOut = randomFloats(problem.outShape.reduce((a, b) => a * b, 1), normal(uniform(99)));
      const ref = referenceGradients(problem, dOut, c.biasGrad);
      const fd = finiteDifferenceGradients(q, k, v, options, dOut, { biasGrad: c.biasGrad });
      const names = ['dq', 'dk', 'dv', 'dqRope', 'dkRope', 'dBias'] as const;
      let checked = 0;
      for (const g of names) {
        const a = ref[g];
        const b = fd[g];
        expect(a === undefined, `${g} present in one only`).toBe(b === undefined);
        if (!a || !b) continue;
        expect(a.length).toBe(b.length);
        const scale = Math.max(maxAbs(b), 1e-3);
        let worst = 0;
        for (let n = 0; n < a.length; n++) {
          expect(Number.isFinite(a[n]), `${g}[${n}] = ${a[n]}`).toBe(true);
          worst = Math.max(worst, Math.abs(a[n] - b[n]));
        }
        expect(worst / scale, `${g}: max |ref - fd| ${worst.toExponential(2)} vs max |fd| ${scale.toExponential(2)}`).toBeLessThan(1e-6);
        checked++;
      }
      expect(checked).toBeGreaterThanOrEqual(3);
      if (c.biasGrad) expect(ref.dBias).toBeDefined();
    });
  }

  it('gives exactly zero gradients to fully masked rows and to keys no query sees', () => {
    // causal bottom-right, Sq 6 > Sk 3: rows 0..2 see nothing
    const { q, k, v, options } = makeCase({ batch: 1, headsQ: 1, seqQ: 6, seqK: 3, dimQK: 2, causal: true }, 3);
    const problem = validateAttention(q, k, v, options);
    const dOut = randomFloats(12, normal(uniform(5)));
    const ref = referenceGradients(problem, dOut);
    expect(Array.from(ref.dq.subarray(0, 6))).toEqual(new Array(6).fill(0));
    expect(Array.from(ref.dq.subarray(6)).some((x) => x !== 0)).toBe(true);
  });
});
