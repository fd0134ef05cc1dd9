// The attention backward with the forward's score / mask / sink functions and block masks
// (issue 10 after issue 13): the float64 reference backward against central finite differences
// of the float64 forward, then every backend present against the reference on odd sizes
// (head dim 59, lengths 1 / 97, Sq != Sk, GQA, fully masked rows -> zero gradients, never NaN).
import { describe, expect, it } from 'vitest';
import {
  Tensor, UnsupportedError, ValueError, attention, attentionBackward, attentionSinks, attentionWithGrad, finiteDifferenceGradients, referenceGradients,
  validateAttention,
} from '../dist/index.js';
import { type AttentionCase, caseName, checkGradients, makeCase, makeGradCase, normal, randomFloats, uniform } from '../dist/testing/index.js';
import { backendsHere } from './helpers.js';

type Options = Record<string, unknown>;

/** A case: the suite's inputs plus the mods (built per call: they may depend on the sizes). */
interface ModCase {
  name: string;
  c: AttentionCase;
  mods: (c: AttentionCase) => Options;
  sinkGrad?: boolean;
  biasGrad?: boolean;
}

/** Per-head sink logits around the scores' size, so the sink takes a real share of each row. */
const sinkLogits = (heads: number, seed: number) => Float32Array.from({ length: heads }, (_, h) => Math.sin(seed + 1.7 * h) * 1.5);

const SMALL = { batch: 2, headsQ: 2, seqQ: 5, seqK: 6, dimQK: 4 };
const REFERENCE_CASES: ModCase[] = [
  { name: 'sink [Nq] dSink', c: SMALL, mods: (c) => ({ sink: sinkLogits(c.headsQ, 1) }), sinkGrad: true },
  // bottom-right causal with Sq > Sk: rows that see no key but the sink
  { name: 'sink [B, Nq] dSink, GQA, causal', c: { ...SMALL, headsQ: 4, headsKv: 2, seqQ: 7, seqK: 4, causal: true }, mods: (c) => ({ sink: Tensor.fromData(sinkLogits(c.batch * c.headsQ, 2), [c.batch, c.headsQ]) }), sinkGrad: true },
  { name: 'attentionSinks() dSink with bias dBias', c: { ...SMALL, bias: 'random', maskShape: 'full' }, mods: (c) => ({ sink: attentionSinks(sinkLogits(c.headsQ, 3)) }), sinkGrad: true, biasGrad: true },
];

function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
}

describe('float64 reference backward with mods vs finite differences', () => {
  for (const mc of REFERENCE_CASES) {
    it(`${mc.name} (${caseName(mc.c)})`, () => {
      const { q, k, v, options } = makeCase(mc.c, 11);
      Object.assign(options, mc.mods(mc.c));
      const problem = validateAttention(q, k, v, options);
      const dOut = randomFloats(problem.outShape.reduce((a, b) => a * b, 1), normal(uniform(99)));
      const ref = referenceGradients(problem, dOut, mc.biasGrad, 'float64', mc.sinkGrad);
      const fd = finiteDifferenceGradients(q, k, v, options, dOut, { biasGrad: mc.biasGrad, sinkGrad: mc.sinkGrad });
      for (const g of ['dq', 'dk', 'dv', 'dBias', 'dSink'] as const) {
        const a = ref[g];
        const b = fd[g];
        expect(a === undefined, `${g} present in one only`).toBe(b === undefined);
        if (!a || !b) continue;
        const scale = Math.max(maxAbs(b), 1e-3);
        let worst = 0;
        for (let n = 0; n < a.length; n++) {
          expect(Number.isFinite(a[n]), `${g}[${n}] = ${a[n]}`).toBe(true);
          worst = Math.max(worst, Math.abs(a[n] - b[n]));
        }
        expect(worst / scale, `${g}: max |ref - fd| ${worst.toExponential(2)} vs max |fd| ${scale.toExponential(2)}`).toBeLessThan(1e-6);
      }
      if (mc.sinkGrad) expect(maxAbs(ref.dSink!)).toBeGreaterThan(0);
    });
  }

  it('a row that sees no key but its sink has zero gradients', () => {
    // causal bottom-right, Sq 6 > Sk 3: rows 0..2 see nothing
    const c = { batch: 1, headsQ: 1, seqQ: 6, seqK: 3, dimQK: 2, causal: true } as const;
    const { q, k, v, options } = makeCase(c, 3);
    const problem = validateAttention(q, k, v, { ...options, sink: [0.5] });
    const ref = referenceGradients(problem, randomFloats(12, normal(uniform(5))));
    expect(Array.from(ref.dq.subarray(0, 6))).toEqual(new Array(6).fill(0));
    expect(Array.from(ref.dq.subarray(6)).some((x) => x !== 0)).toBe(true);
  });
});

// odd sizes for the backends: head dim 59, lengths 1 and 97, Sq != Sk, GQA
const BACKEND_CASES: ModCase[] = [
  { name: 'sink [Nq] dSink, GQA', c: { batch: 1, headsQ: 4, headsKv: 2, seqQ: 97, seqK: 70, dimQK: 59 }, mods: (c) => ({ sink: sinkLogits(c.headsQ, 4) }), sinkGrad: true },
  { name: 'sink [B, Nq] dSink, causal, fully masked rows', c: { batch: 2, headsQ: 2, seqQ: 97, seqK: 40, dimQK: 32, causal: true }, mods: (c) => ({ sink: Tensor.fromData(sinkLogits(c.batch * c.headsQ, 5), [c.batch, c.headsQ]) }), sinkGrad: true },
  { name: 'sink, one query', c: { batch: 1, headsQ: 2, seqQ: 1, seqK: 97, dimQK: 59, causal: true }, mods: (c) => ({ sink: sinkLogits(c.headsQ, 6) }) },
];

const backends = await backendsHere();
for (const { name, skip } of backends) {
  describe.skipIf(skip !== undefined)(`attention backward with mods on ${name}`, () => {
    for (const mc of BACKEND_CASES) {
      it(`${mc.name} (${caseName(mc.c)})`, async () => {
        const { q, k, v, options } = makeCase(mc.c, 21);
        Object.assign(options, mc.mods(mc.c));
        const problem = validateAttention(q, k, v, options);
        const { dOut, dOutValues } = makeGradCase(mc.c, 21, problem.outShape);
        const forward = await attention(q, k, v, { ...options, returnLse: true, backend: name });
        const grads = await attentionBackward(q, k, v, forward.out, dOut, forward.lse!, { ...options, backend: name, biasGrad: mc.biasGrad, sinkGrad: mc.sinkGrad });
        const { failures } = checkGradients(problem, dOutValues, grads, mc.biasGrad, undefined, mc.sinkGrad);
        expect(failures.join('; ')).toBe('');
      });
    }

    it('attentionWithGrad takes a sink and returns dSink', async () => {
      const c: AttentionCase = { batch: 1, headsQ: 2, seqQ: 33, seqK: 40, dimQK: 16, causal: true };
      const { q, k, v, options } = makeCase(c, 2);
      const sink = sinkLogits(2, 7);
      const problem = validateAttention(q, k, v, { ...options, sink });
      const { dOut, dOutValues } = makeGradCase(c, 2, problem.outShape);
      const step = await attentionWithGrad(q, k, v, { ...options, sink, sinkGrad: true, backend: name });
      const grads = await step.backward(dOut);
      expect(grads.dSink!.shape).toEqual([2]);
      expect(checkGradients(problem, dOutValues, grads, false, undefined, true).failures.join('; ')).toBe('');
    });
  });
}

describe('backward validation with mods', () => {
  const { q, k, v } = makeCase({ batch: 1, headsQ: 2, seqQ: 4, seqK: 4, dimQK: 4 }, 1);
  const out = Tensor.fromData(new Float32Array(32), [1, 2, 4, 4]);
  const lse = Tensor.fromData(new Float32Array(8), [1, 2, 4]);
  it('sinkGrad needs per-head sink logits', async () => {
    const lib = await import('../dist/index.js');
    await expect(attentionBackward(q, k, v, out, out, lse, { sinkGrad: true, backend: 'cpu' })).rejects.toThrow(ValueError);
    await expect(attentionWithGrad(q, k, v, { sinkGrad: true, backend: 'cpu' })).rejects.toThrow(/sinkGrad/);
    const rowSink = lib.sinkMod(({ q: i }) => i.toFloat().mul(0.1));
    await expect(attentionBackward(q, k, v, out, out, lse, { sink: rowSink, sinkGrad: true, backend: 'cpu' })).rejects.toThrow(/per-head sink logits/);
    // without sinkGrad, a sink function of the row is fine
    await expect(attentionBackward(q, k, v, out, out, lse, { sink: rowSink, backend: 'cpu' })).resolves.toBeDefined();
  });

  it('the unfused baseline refuses mods with a typed error', async () => {
    const { naiveAttentionBackward } = await import('../dist/index.js');
    await expect(naiveAttentionBackward(q, k, v, out, out, lse, { sink: [0, 0], backend: 'cpu' })).rejects.toThrow(UnsupportedError);
  });
});
