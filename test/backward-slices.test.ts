// The CPU backward's key slices (backward/cpu/slices.ts): a few (b, kv head) pairs are cut into
// key slices with dQ partials summed in slice order, so the gradients must be the same bits on 1,
// 2 and 5 worker threads (and inline), and still match the float64 reference (the suite's f32 rule).
import { describe, expect, it } from 'vitest';
import { Tensor, attention, validateAttention } from '../dist/index.js';
import { type GradCase, checkGradients, makeCase, makeGradCase } from '../dist/testing/index.js';

interface SliceCase {
  name: string;
  c: GradCase;
  /** A bias of this shape with dBias (a broadcast one folds units into shared tasks). */
  bias?: number[];
}

const CASES: SliceCase[] = [
  { name: 'B1 H8 S301 D40 causal dropout', c: { batch: 1, headsQ: 8, seqQ: 301, seqK: 301, dimQK: 40, causal: true, dropout: 0.15 } },
  // bias [1, 1, Sq, Sk]: every head adds into the same dBias, so the heads of a slice share a task
  { name: 'B1 H8 Sq200 Sk333 D24 causal dropout, dBias over heads', c: { batch: 1, headsQ: 8, seqQ: 200, seqK: 333, dimQK: 24, causal: true, dropout: 0.1 }, bias: [1, 1, 200, 333] },
  // GQA + the MLA split RoPE form + a window, Sq > Sk: dqRope partials too
  { name: 'BSND B1 H4/2 Sq270 Sk190 D32+8/24 window', c: { layout: 'BSND', batch: 1, headsQ: 4, headsKv: 2, seqQ: 270, seqK: 190, dimQK: 32, dimRope: 8, dimV: 24, window: [70, 20] } },
  // varlen with an empty sequence and a per-(b, h) bias with dBias (no fold)
  { name: 'TND B3 H2 varlen causal, dBias per head', c: { layout: 'TND', batch: 3, headsQ: 2, seqQ: 0, seqK: 0, seqLensQ: [130, 0, 70], seqLensK: [200, 40, 65], dimQK: 16, causal: true }, bias: [3, 2, 130, 200] },
];

describe('CPU backward key slices', () => {
  for (const { name, c, bias } of CASES) {
    it(`${name}: bit-identical on 1, 2 and 5 threads and inline; float64 reference`, async () => {
      const { createCpuEngine } = await import('../dist/ops/cpu-engine.js');
      const { runBackward } = await import('../dist/ops/attention/backward/cpu/run.js');
      const { slicePlan } = await import('../dist/ops/attention/backward/cpu/slices.js');
      const { validateAttentionBackward } = await import('../dist/index.js');
      const { q, k, v, options } = makeCase(c, 11);
      if (bias) options.bias = Tensor.fromData(Float32Array.from({ length: bias.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(0.37 * i)), bias);
      const problem = validateAttention(q, k, v, options);
      const { dOut, dOutValues } = makeGradCase(c, 11, problem.outShape);
      const forward = await attention(q, k, v, { ...options, returnLse: true, backend: 'cpu' });
      const bp = validateAttentionBackward(q, k, v, forward.out, dOut, forward.lse!, { ...options, biasGrad: bias !== undefined });
      // the case takes the sliced schedule (more than one slice per pair)
      expect(slicePlan(bp).count).toBeGreaterThan(1);
      const results = [];
      let split;
      let scalar;
      for (const engineOptions of [{ threads: 0 }, { threads: 1, inlineFlops: 0 }, { threads: 2, inlineFlops: 0 }, { threads: 5, inlineFlops: 0 }, { threads: 0, kernels: 'scalar' as const }]) {
        const engine = await createCpuEngine(engineOptions);
        try {
          // the scalar twins (bwd_add_rows among them) against the reference only: their sums are sequential
          if ('kernels' in engineOptions) scalar = await runBackward(engine, bp);
          else results.push(await runBackward(engine, bp));
          // the split schedule (bwd-kv + bwd-q, past the partials' memory cap) on the same problem
          if (engineOptions.threads === 2) split = await runBackward(engine, bp, 'split');
        } finally {
          engine.terminate();
        }
      }
      expect(checkGradients(problem, dOutValues, results[0], bias !== undefined).failures.join('; ')).toBe('');
      expect(checkGradients(problem, dOutValues, split!, bias !== undefined).failures.join('; '), 'split schedule').toBe('');
      expect(checkGradients(problem, dOutValues, scalar!, bias !== undefined).failures.join('; '), 'scalar kernels').toBe('');
      const names = ['dq', 'dk', 'dv', 'dqRope', 'dkRope', 'dBias'] as const;
      for (const r of results.slice(1)) {
        for (const g of names) {
          if (!results[0][g]) continue;
          expect(r[g]!.data, g).toEqual(results[0][g]!.data);
        }
      }
    }, 60_000);
  }
});
