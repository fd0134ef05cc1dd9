// The CPU backend's unfused three-step path (naiveAttention) against the float64 reference with
// every option, its run stats, and the internal batched matmul it is built on (issue 4 uses it).
import { describe, expect, it } from 'vitest';
import { naiveAttention, referenceAttention, validateAttention } from '../dist/index.js';
import { type AttentionCase, SUITE, caseName, checkF32, checkLowPrecision, makeCase, normal, randomFloats, uniform } from '../dist/testing/index.js';
import { runNaive } from '../dist/ops/attention/cpu/index.js';
import { createCpuEngine } from '../dist/ops/cpu-engine.js';
import { matmul } from '../dist/ops/gemm/cpu/index.js';

// a spread of the shared suite: odd sizes, every layout, GQA, MLA split, windows, masks, bias, ALiBi, f16
const NAIVE_CASES = SUITE.filter((c) => c.seqQ * c.seqK <= 10_000 || c.layout === 'TND');

describe('naive three-step attention on the CPU', () => {
  NAIVE_CASES.forEach((c, index) => {
    it(caseName(c), async () => {
      const seed = 700 + index;
      const { q, k, v, options } = makeCase(c, seed);
      const problem = validateAttention(q, k, v, options);
      const r = await naiveAttention(q, k, v, { ...options, backend: 'cpu' });
      const ref = referenceAttention(problem);
      const out = r.out.toFloat32();
      const failure = problem.dtype === 'float32'
        ? checkF32('out', out, ref.out)
        : checkLowPrecision('out', out, referenceAttention(problem, 'float16').out, ref.out);
      expect(failure ?? '', `seed ${seed}`).toBe('');
      if (c.returnLse) expect(checkF32('lse', r.lse!.toFloat32(), ref.lse, problem.dtype === 'float16' ? 1e-3 : 1e-5) ?? '').toBe('');
      // S is materialised: at least one (b, h) pair's Sq×Sk floats, three pool jobs per head group
      expect(r.stats!.launches % 3).toBe(0);
      expect(r.stats!.intermediateBytes).toBeGreaterThanOrEqual(4 * Math.min(...problem.seqLensQ) * Math.min(...problem.seqLensK));
    });
  });

  it('groups heads under a memory budget and reports the peak S buffer', async () => {
    const c: AttentionCase = { batch: 2, headsQ: 3, seqQ: 40, seqK: 50, dimQK: 16, causal: true, returnLse: true };
    const { q, k, v, options } = makeCase(c, 9);
    const p = validateAttention(q, k, v, options);
    const engine = await createCpuEngine({ threads: 0 });
    const budget = 2 * 40 * 4 * 52; // two heads' S buffers (rows padded to 52 floats)
    const r = await runNaive(engine, p, budget);
    expect(r.stats!.launches).toBe(3 * 3); // 6 (b, h) pairs, 2 per group
    expect(r.stats!.intermediateBytes).toBeGreaterThanOrEqual(budget);
    expect(r.stats!.intermediateBytes).toBeLessThan(budget + 4096);
    const ref = referenceAttention(p);
    expect(checkF32('out', r.out.toFloat32(), ref.out) ?? '').toBe('');
    engine.terminate();
  });
});

describe('internal CPU matmul', () => {
  const rand = normal(uniform(17));
  /** out[t][i][j] = Σ_p a(t, i, p) · b(t, p, j) in float64, with the same strided indexing. */
  function reference(spec: Parameters<typeof matmul>[0], out0: Float32Array | undefined) {
    const batch = spec.batch ?? 1;
    const out = new Float64Array(batch * spec.m * spec.n);
    for (let t = 0; t < batch; t++) {
      for (let i = 0; i < spec.m; i++) {
        for (let j = 0; j < spec.n; j++) {
          let s = 0;
          for (let p = 0; p < spec.k; p++) {
            const a = spec.a.data[(spec.a.offset ?? 0) + t * (spec.a.batchStride ?? 0) + i * spec.a.rowStride + p];
            const b = spec.transposeB
              ? spec.b.data[(spec.b.offset ?? 0) + t * (spec.b.batchStride ?? 0) + j * spec.b.rowStride + p]
              : spec.b.data[(spec.b.offset ?? 0) + t * (spec.b.batchStride ?? 0) + p * spec.b.rowStride + j];
            s += a * b;
          }
          out[(t * spec.m + i) * spec.n + j] = s + (out0 ? out0[(t * spec.m + i) * spec.n + j] : 0);
        }
      }
    }
    return out;
  }

  for (const transposeB of [false, true]) {
    it(`batched, strided, odd sizes, broadcast weight (transposeB ${transposeB})`, async () => {
      for (const [batch, m, n, k] of [[3, 70, 33, 19], [2, 1, 300, 130], [1, 129, 257, 5], [2, 5, 7, 0]]) {
        const aStride = k + 3;
        const a = { data: randomFloats(2 + batch * m * aStride, rand), offset: 2, rowStride: aStride, batchStride: m * aStride };
        const bRows = transposeB ? n : k;
        const bCols = transposeB ? k : n;
        const b = { data: randomFloats(bRows * (bCols + 1) + 1, rand), offset: 1, rowStride: bCols + 1, batchStride: 0 };
        const spec = { batch, m, n, k, a, b, transposeB };
        const { out } = await matmul(spec);
        expect(checkF32(`matmul ${batch}x${m}x${n}x${k}`, out, reference(spec, undefined)) ?? '').toBe('');
        // accumulate into a given output
        const start = randomFloats(batch * m * n, rand);
        const into = { data: Float32Array.from(start), rowStride: n, batchStride: m * n };
        await matmul({ ...spec, out: into, accumulate: true });
        expect(checkF32('accumulate', into.data, reference(spec, start)) ?? '').toBe('');
      }
    });
  }

  it('rejects operands too small for their strides, naming them', async () => {
    const data = new Float32Array(10);
    await expect(matmul({ m: 4, n: 4, k: 4, a: { data, rowStride: 4 }, b: { data: new Float32Array(16), rowStride: 4 } })).rejects.toThrow(/a needs 16 elements/);
    await expect(matmul({ m: 2, n: 2, k: 4, a: { data: new Float32Array(8), rowStride: 3 }, b: { data: new Float32Array(8), rowStride: 2 } })).rejects.toThrow(/a.rowStride must be >= 4/);
  });
});
