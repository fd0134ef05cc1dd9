// Approximate attention (issue 13, seed 004): linear attention and Performer on the CPU and WebGPU
// against their float64 reference (odd sizes, GQA, Sq != Sk, float16, BSND), the causal chunked
// form against the explicit causal sum for several chunk sizes, the seeded projection's
// properties, Performer's error against exact softmax attention shrinking with M, and the errors.
import { describe, expect, it } from 'vitest';
import { Tensor, UnsupportedError, ValueError, featureMap, floatsToHalf, linearAttention, performerAttention, performerProjection, referenceApprox, referenceAttention, validateAttention, type BackendName } from '../dist/index.js';
import { cachedProjection } from '../dist/ops/approx/features.js';
import { validateApprox } from '../dist/ops/approx/problem.js';
import { runApproxGpu, stateChunkKeys } from '../dist/ops/approx/webgpu/index.js';
import { featurePlanesUnsupported } from '../dist/ops/approx/webgpu/fused-features.js';
import { checkF32, normal, randomFloats, uniform } from '../dist/testing/index.js';
import { skipNotice } from './webgpu-helpers.js';

interface Shape { batch: number; headsQ: number; headsKv: number; seqQ: number; seqK: number; dim: number; dimV: number }

function inputs(s: Shape, seed: number, half = false) {
  const gauss = normal(uniform(seed));
  const t = (shape: number[]) => {
    const values = randomFloats(shape.reduce((a, b) => a * b, 1), gauss, 0.7);
    return half ? Tensor.fromData(floatsToHalf(values), shape, 'float16') : Tensor.fromData(values, shape);
  };
  return { q: t([s.batch, s.headsQ, s.seqQ, s.dim]), k: t([s.batch, s.headsKv, s.seqK, s.dim]), v: t([s.batch, s.headsKv, s.seqK, s.dimV]) };
}

type Kind = 'linear' | 'performer';
async function check(backend: BackendName, kind: Kind, s: Shape, options: Record<string, unknown>, seed: number, rtol = 1e-5): Promise<void> {
  const { q, k, v } = inputs(s, seed);
  const ref = referenceApprox(validateApprox(kind, q, k, v, options as never));
  const run = kind === 'linear' ? linearAttention : performerAttention;
  const result = await run(q, k, v, { ...options, backend } as never);
  expect(result.out.shape).toEqual([s.batch, s.headsQ, s.seqQ, s.dimV]);
  expect(checkF32('out', result.out.toFloat32(), ref, rtol), `seed ${seed}`).toBeUndefined();
}

const GQA: Shape = { batch: 2, headsQ: 4, headsKv: 2, seqQ: 77, seqK: 90, dim: 24, dimV: 19 };
const SQUARE: Shape = { batch: 1, headsQ: 3, headsKv: 3, seqQ: 101, seqK: 101, dim: 33, dimV: 16 };
const LONG_KEYS: Shape = { batch: 1, headsQ: 2, headsKv: 1, seqQ: 33, seqK: 1000, dim: 24, dimV: 19 };
const square = featureMap(({ x }) => x.mul(x).add(0.05), 'x^2 + 0.05');

const CASES: Array<[string, Kind, Shape, Record<string, unknown>]> = [
  ['linear elu+1, GQA, Sq != Sk', 'linear', GQA, {}],
  ['linear relu, causal chunk 16', 'linear', GQA, { featureMap: 'relu', causal: true, chunkSize: 16 }],
  ['linear expression map, causal chunk 7 (odd)', 'linear', SQUARE, { featureMap: square, causal: true, chunkSize: 7 }],
  ['Performer M 64', 'performer', GQA, { features: 64, seed: 5 }],
  ['Performer M 40 (not a multiple of D), causal chunk 32', 'performer', SQUARE, { features: 40, seed: 1, causal: true, chunkSize: 32 }],
  // few heads, many keys: WebGPU splits the non-causal state over key chunks (two of 384 and a last
  // of 232 here, stateChunkKeys) and sums them
  ['linear elu+1, GQA, 1000 keys (the state split over key chunks on WebGPU)', 'linear', LONG_KEYS, {}],
];

describe('approximate attention on the CPU against the float64 reference', () => {
  for (const [index, [name, kind, shape, options]] of CASES.entries()) it(name, () => check('cpu', kind, shape, options, 50 + index));

  it('causal with Sq > Sk: early queries see no key and output 0', async () => {
    const s: Shape = { batch: 1, headsQ: 2, headsKv: 1, seqQ: 40, seqK: 25, dim: 8, dimV: 8 };
    await check('cpu', 'linear', s, { causal: true, chunkSize: 9 }, 3);
    const { q, k, v } = inputs(s, 3);
    const out = (await linearAttention(q, k, v, { causal: true, backend: 'cpu' })).out.toFloat32();
    expect(Array.from(out.subarray(0, 15 * 8)).every((x) => x === 0)).toBe(true);
  });

  it('float16 in BSND stays within float16 rounding of the reference', async () => {
    const { q, k, v } = inputs(SQUARE, 8, true);
    const perm = (t: Tensor, seq: number, dim: number) => {
      const x = t.data as Uint16Array;
      const y = new Uint16Array(x.length);
      for (let h = 0; h < 3; h++) for (let s = 0; s < seq; s++) for (let d = 0; d < dim; d++) y[(s * 3 + h) * dim + d] = x[(h * seq + s) * dim + d];
      return Tensor.fromData(y, [1, seq, 3, dim], 'float16');
    };
    const [q2, k2, v2] = [perm(q, 101, 33), perm(k, 101, 33), perm(v, 101, 16)];
    const ref = referenceApprox(validateApprox('linear', q2, k2, v2, { layout: 'BSND' }));
    const out = (await linearAttention(q2, k2, v2, { layout: 'BSND', backend: 'cpu' })).out;
    expect(out.dtype).toBe('float16');
    expect(checkF32('out', out.toFloat32(), ref, 2e-3)).toBeUndefined();
  });
});

describe('Performer features', () => {
  it('are seeded: same seed and draw, same projection; blocks of D rows are orthogonal; rows have Gaussian norms', () => {
    const a = performerProjection(20, 8, 7, 0);
    expect(performerProjection(20, 8, 7, 0)).toEqual(a);
    expect(performerProjection(20, 8, 7, 1)).not.toEqual(a);
    expect(performerProjection(20, 8, 8, 0)).not.toEqual(a);
    const row = (r: number) => a.subarray(r * 8, r * 8 + 8);
    const dot = (x: Float32Array, y: Float32Array) => x.reduce((s, v, i) => s + v * y[i], 0);
    for (const [r, s] of [[0, 1], [2, 7], [9, 15], [16, 19]]) expect(Math.abs(dot(row(r), row(s))) / Math.sqrt(dot(row(r), row(r)) * dot(row(s), row(s)))).toBeLessThan(1e-5);
    const big = performerProjection(4096, 16, 1, 0);
    let mean = 0;
    for (let r = 0; r < 4096; r++) mean += dot(big.subarray(r * 16, r * 16 + 16), big.subarray(r * 16, r * 16 + 16)) / 4096;
    expect(mean).toBeGreaterThan(15); // E|ω|² = D
    expect(mean).toBeLessThan(17);
  });

  it('are kept for the calls: the same matrix per (M, D, seed, draw), while users get fresh copies', () => {
    const a = cachedProjection(24, 8, 3, 0);
    expect(cachedProjection(24, 8, 3, 0)).toBe(a);
    expect(a).toEqual(performerProjection(24, 8, 3, 0));
    expect(cachedProjection(24, 8, 3, 1)).not.toBe(a);
    // a user's copy written to leaves what the calls use untouched
    const mine = performerProjection(24, 8, 3, 0);
    mine.fill(0);
    expect(cachedProjection(24, 8, 3, 0)).toEqual(performerProjection(24, 8, 3, 0));
    // more keys than the cache holds: the oldest is rebuilt, equal in value
    for (let s = 10; s < 30; s++) cachedProjection(8, 8, s, 0);
    expect(cachedProjection(24, 8, 3, 0)).not.toBe(a);
    expect(cachedProjection(24, 8, 3, 0)).toEqual(a);
  });

  it('approximate exact softmax attention better with more features', async () => {
    const s: Shape = { batch: 1, headsQ: 2, headsKv: 2, seqQ: 64, seqK: 64, dim: 16, dimV: 16 };
    const { q, k, v } = inputs(s, 21);
    const exact = referenceAttention(validateAttention(q, k, v, {})).out;
    const error = async (features: number) => {
      const out = (await performerAttention(q, k, v, { features, seed: 2, backend: 'cpu' })).out.toFloat32();
      let num = 0;
      let den = 0;
      for (let i = 0; i < out.length; i++) {
        num += (out[i] - exact[i]) ** 2;
        den += exact[i] ** 2;
      }
      return Math.sqrt(num / den);
    };
    const [e16, e256, e2048] = [await error(16), await error(256), await error(2048)];
    expect(e256).toBeLessThan(e16);
    expect(e2048).toBeLessThan(e256);
    expect(e2048).toBeLessThan(0.25); // FAVOR+ variance ~ e^{|q+k|²}/M: about 1/sqrt(M) here
  });
});

describe('approximate attention checks its arguments', () => {
  const { q, k, v } = inputs({ batch: 1, headsQ: 2, headsKv: 1, seqQ: 5, seqK: 6, dim: 4, dimV: 4 }, 1);
  it('with typed errors naming the option', () => {
    expect(() => validateApprox('linear', q, k, v, { mask: 1 } as never)).toThrow(/options.mask is not a linearAttention option/);
    expect(() => validateApprox('linear', q, k, v, { featureMap: 'gelu' } as never)).toThrow(ValueError);
    expect(() => validateApprox('performer', q, k, v, { features: 0 })).toThrow(/positive integer/);
    expect(() => validateApprox('performer', q, k, v, { projection: new Float32Array(7) })).toThrow(/M x D/);
    expect(() => validateApprox('linear', q, k, v, { chunkSize: 0 })).toThrow(/chunkSize/);
    expect(() => validateApprox('linear', q, k, v, { layout: 'TND' as never })).toThrow(UnsupportedError);
    expect(() => validateApprox('linear', q, Tensor.fromData(new Float32Array(30), [1, 1, 6, 5]), v, {})).toThrow(/head dim/);
  });
});

describe('approximate attention on WebGPU', async () => {
  const skip = await skipNotice('the WebGPU approximate attention tests');
  for (const [index, [name, kind, shape, options]] of CASES.entries()) {
    if (index === 2) continue; // the expression map runs on the CPU; its WGSL is the scoreMod path the mods tests cover
    it.skipIf(skip)(name, () => check('webgpu', kind, shape, options, 70 + index));
  }
  it('splits the non-causal state over key chunks only where the heads do not fill the GPU', () => {
    expect(stateChunkKeys(1000, 2, 24, 20)).toBe(384);
    expect(stateChunkKeys(4096, 8, 64, 65)).toBe(256);
    expect(stateChunkKeys(4096, 128, 128, 129)).toBe(4096);
    expect(stateChunkKeys(300, 1, 16, 17)).toBe(300);
    // the tensor-core tier's larger tiles (64 x 64: 6 per head at F 128, W 129) split B4 H32 S4096 in 3
    expect(stateChunkKeys(4096, 128, 128, 129, { m: 64, n: 64 })).toBe(1408);
  });
  // the tensor-core tier's host path (per-product routing, states and chunk scores times 1/Sk) on
  // the portable matmul: its kernel alone needs a GPU (bench/gpu/linear-tc.sh checks it there)
  const scaled: Array<[string, Shape, Record<string, unknown>]> = [
    ['non-causal elu+1, GQA', GQA, {}],
    ['non-causal relu, 1000 keys (state split over key chunks)', LONG_KEYS, { featureMap: 'relu' }],
    ['causal elu+1, chunk 16, Sq != Sk (keys before the first chunk)', GQA, { causal: true, chunkSize: 16 }],
    ['causal relu, chunk 7', SQUARE, { featureMap: 'relu', causal: true, chunkSize: 7 }],
  ];
  for (const [index, [name, shape, options]] of scaled.entries()) {
    it.skipIf(skip)(`tensor-core host path, scaled on the portable matmul: ${name}`, async () => {
      for (const half of [false, true]) {
        const { q, k, v } = inputs(shape, 90 + index, half);
        const p = validateApprox('linear', q, k, v, options as never);
        const ref = referenceApprox(p);
        const out = (await runApproxGpu(p, undefined, { scaledPortable: true })).out;
        expect(checkF32('out', out.toFloat32(), ref, half ? 2e-3 : 1e-5), `half ${half}`).toBeUndefined();
        // φ and [V | 1] stored as float16 pairs (non-causal only; causal ignores it): f16 rounding
        // of the operands, as the tensor cores stage them
        const halfFeatures = (await runApproxGpu(p, undefined, { scaledPortable: true, halfFeatures: true })).out;
        expect(checkF32('out', halfFeatures.toFloat32(), ref, half ? 1e-2 : options.causal ? 1e-5 : 1e-2), `half ${half}, float16 features`).toBeUndefined();
      }
    });
  }
  it.skipIf(skip)('forcing the tensor-core tier: refused with the reason without subgroup matrices, within f16 error with them', async () => {
    const { q, k, v } = inputs(GQA, 4, true);
    const saved = process.env.FUSEDATTN_APPROX_TIER;
    process.env.FUSEDATTN_APPROX_TIER = 'tensorcore';
    try {
      const run = linearAttention(q, k, v, { backend: 'webgpu' });
      const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
      const { sgMatrixAdapterUnsupported } = await import('../dist/ops/attention/webgpu/tiers/sgmatrix.js');
      const reason = sgMatrixAdapterUnsupported(await getRuntime());
      if (reason) await expect(run).rejects.toThrow(/FUSEDATTN_APPROX_TIER.*cannot run here/);
      else {
        // a GPU with subgroup matrices runs it: f16 operands (bench/gpu/linear-tc.sh checks more shapes)
        const ref = referenceApprox(validateApprox('linear', q, k, v, {}));
        expect(checkF32('out', (await run).out.toFloat32(), ref, 2e-2)).toBeUndefined();
      }
    } finally {
      if (saved === undefined) delete process.env.FUSEDATTN_APPROX_TIER;
      else process.env.FUSEDATTN_APPROX_TIER = saved;
    }
  });
  // the fused route's feature planes (fused-features.ts: φ(Q), φ(K) per key head as float16, the
  // identity map after), here consumed by the portable products since llvmpipe has no subgroup
  // matrices; the fused kernels' identity map is emulated in approx-fused-wgsl.test.ts
  const planes: Array<[string, 'linear' | 'performer', Shape, Record<string, unknown>]> = [
    ['Performer M 40, GQA, Sq != Sk', 'performer', GQA, { features: 40, seed: 3 }],
    ['Performer M 24 (fewer features than D 33), one key head per query head', 'performer', SQUARE, { features: 24, seed: 5, draw: 1 }],
    ['expression map x² + 0.05, 1000 keys, GQA', 'linear', LONG_KEYS, { featureMap: square }],
    ['causal Performer M 40, GQA, Sq != Sk', 'performer', GQA, { features: 40, seed: 3, causal: true }],
    ['causal expression map x² + 0.05, 1000 keys, GQA', 'linear', LONG_KEYS, { featureMap: square, causal: true }],
  ];
  for (const [index, [name, kind, shape, options]] of planes.entries()) {
    it.skipIf(skip)(`feature planes for the fused kernels: ${name}`, async () => {
      const { q, k, v } = inputs(shape, 110 + index, true);
      const p = validateApprox(kind, q, k, v, options as never);
      const ref = referenceApprox(p);
      const out = (await runApproxGpu(p, undefined, { featurePlanes: true })).out;
      // float16 inputs and float16 features: f16 rounding twice
      expect(checkF32('out', out.toFloat32(), ref, 1e-2)).toBeUndefined();
    });
  }
  it('feature planes: causal beyond 128 features and float32 problems keep the portable path', () => {
    const { q, k, v } = inputs(GQA, 120, true);
    expect(featurePlanesUnsupported(validateApprox('performer', q, k, v, { features: 16, causal: true }))).toBeUndefined();
    expect(featurePlanesUnsupported(validateApprox('performer', q, k, v, { features: 160, causal: true }))).toMatch(/at most 128 features/);
    const f32 = inputs(GQA, 121);
    expect(featurePlanesUnsupported(validateApprox('performer', f32.q, f32.k, f32.v, { features: 16 }))).toMatch(/float32/);
    expect(featurePlanesUnsupported(validateApprox('performer', q, k, v, { features: 16 }))).toBeUndefined();
  });
  it.skipIf(skip)('CPU and GPU draw the same Performer projection (results agree)', async () => {
    const { q, k, v } = inputs(GQA, 9);
    const [a, b] = [await performerAttention(q, k, v, { features: 32, seed: 11, backend: 'cpu' }), await performerAttention(q, k, v, { features: 32, seed: 11, backend: 'webgpu' })];
    expect(checkF32('out', b.out.toFloat32(), a.out.toFloat32(), 1e-5)).toBeUndefined();
  });
});
