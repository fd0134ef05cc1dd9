// The attention block: fused and unfused, on every backend present, against the float64 reference
// of the module (projections, biases, RoPE, causal GQA attention over cache + new tokens, O proj),
// with fresh seeded weights and inputs; KV cache prefill -> chunk -> decode; dispatch counts; typed
// errors before any work.
import { describe, expect, it, onTestFinished } from 'vitest';
import { AttentionBlock, DTypeError, ShapeError, Tensor, UnsupportedError, ValueError, referenceBlock, validateBlock } from '../dist/index.js';
import type { AttentionBlockConfig, BlockLayout } from '../dist/index.js';
import { randomBlockWeights, randomHidden } from '../dist/block/random.js';
import { checkF32, checkLowPrecision } from '../dist/testing/index.js';
import { backendsHere } from './helpers.js';

const backends = await backendsHere();
const seed = Number(process.env.FUSEDATTN_SEED ?? 4321);
// three chained f32 GEMMs + attention against float64: a little looser than attention's 1e-5
const RTOL = 3e-5;
// float16 weights on a GPU with subgroup matrices take the tensor-core GEMM ('auto'), which rounds
// the activations to float16 on the way in: its error is at the 1e-4 level (bench/block.mjs checks it)
const RTOL_TENSOR_CORES = 1e-2;

interface BlockCase {
  name: string;
  config: AttentionBlockConfig;
  batch: number;
  seq: number;
  layout?: BlockLayout;
  qkvBias?: boolean;
  oBias?: boolean;
  dtype?: 'float32' | 'float16';
}

const CASES: BlockCase[] = [
  { name: 'Qwen2-like GQA 4/2, biases, B2 S37', config: { hidden: 48, heads: 4, kvHeads: 2, headDim: 16, rope: { theta: 1e6 } }, batch: 2, seq: 37 },
  { name: 'Llama-like MHA, no bias, o bias, odd S 61, linear RoPE scaling', config: { hidden: 40, heads: 2, headDim: 20, rope: { theta: 500000, factor: 4 } }, batch: 1, seq: 61, qkvBias: false, oBias: true },
  { name: 'MQA 6/1, D 24 != H/Nq, SBH rows, float16 weights', config: { hidden: 36, heads: 6, kvHeads: 1, headDim: 24 }, batch: 3, seq: 19, layout: 'SBH', dtype: 'float16' },
  { name: 'D 128 (the benchmark head dim), GQA 2/1, S 70', config: { hidden: 64, heads: 2, kvHeads: 1, headDim: 128 }, batch: 1, seq: 70 },
];

function check(what: string, got: Float32Array, ref: Float64Array, rtol = RTOL): string {
  return checkF32(what, got, ref, rtol) ?? '';
}

for (const backend of backends) {
  if (backend.skip) console.warn(`\n!!! SKIPPING the attention block tests on ${backend.name}: ${backend.skip}\n`);
  describe.skipIf(backend.skip !== undefined)(`attention block on ${backend.name}`, () => {
    CASES.forEach((c, index) => {
      it(`${c.name}: fused and unfused match the float64 module`, async () => {
        const weights = randomBlockWeights(c.config, seed + index, { qkvBias: c.qkvBias, oBias: c.oBias, dtype: c.dtype });
        const spec = validateBlock(c.config, weights);
        const block = await AttentionBlock.create(c.config, weights, { backend: backend.name });
        const layout = c.layout ?? 'BSH';
        const x = randomHidden(c.batch * c.seq, c.config.hidden, seed + 100 + index);
        const shape = layout === 'BSH' ? [c.batch, c.seq, c.config.hidden] : [c.seq, c.batch, c.config.hidden];
        const ref = referenceBlock(spec, { x, layout, batch: c.batch, seq: c.seq, start: 0 });
        const fused = await block.forward({ data: x, shape }, { layout });
        const unfused = await block.forwardUnfused({ data: x, shape }, { layout });
        expect(fused.out.shape).toEqual(shape);
        expect(fused.out.location).toBe('cpu');
        const rtol = block.gpu?.tier === 'subgroup-matrix' ? RTOL_TENSOR_CORES : RTOL;
        const failures = [check('fused', fused.out.toFloat32(), ref.out, rtol), check('unfused', unfused.out.toFloat32(), ref.out, rtol)].filter(Boolean);
        expect(failures.join('; '), `seed ${seed + index}`).toBe('');
        // the two paths agree with each other as closely as each agrees with float64
        expect(checkLowPrecision('fused vs unfused', fused.out.toFloat32(), unfused.out.toFloat32(), ref.out, rtol === RTOL ? 1e-6 : 1e-3) ?? '').toBe('');
        if (backend.name === 'webgpu') {
          // small grids split the keys over more workgroups and merge them in a 4th dispatch
          expect([['qkv-gemm', 'block-attention', 'o-gemm'], ['qkv-gemm', 'block-attention', 'block-attention-combine', 'o-gemm']]).toContainEqual(fused.stats.kernels);
          const unsplit = await AttentionBlock.create(c.config, weights, { backend: backend.name, minWorkgroups: 0 });
          const three = await unsplit.forward({ data: x, shape }, { layout });
          expect(three.stats.kernels).toEqual(['qkv-gemm', 'block-attention', 'o-gemm']);
          expect(check('fused, keys not split', three.out.toFloat32(), ref.out, rtol)).toBe('');
          unsplit.destroy();
          // prefill attention runs on a flash tier (the portable one without subgroup matrices)
          expect(block.gpu!.attentionName({ seq: c.seq }, false)).toMatch(/^flash-/);
          // the block's own kernel layouts (decode's, and the first one kept for comparison), split and not
          for (const attentionKernel of ['tiled', 'rows'] as const) {
            for (const minWorkgroups of [0, 256]) {
              const own = await AttentionBlock.create(c.config, weights, { backend: backend.name, attentionKernel, minWorkgroups });
              expect(own.gpu!.attentionName({ seq: c.seq }, false)).toBe(attentionKernel);
              expect(check(`fused, ${attentionKernel} kernel, minWorkgroups ${minWorkgroups}`, (await own.forward({ data: x, shape }, { layout })).out.toFloat32(), ref.out, rtol)).toBe('');
              own.destroy();
            }
          }
        }
        expect(unfused.stats.dispatches).toBeGreaterThanOrEqual(12);
        expect(unfused.stats.intermediateBytes).toBeGreaterThan(fused.stats.intermediateBytes);
        block.destroy();
      });
    });

    // head dim 8 reads K/V 4 at a time on the portable flash tier, 12 element by element (RoPE partners are not whole quads)
    it.each([8, 12])('KV cache (head dim %i): prefill, a chunk, then decode steps match the reference and fill the cache', async (headDim) => {
      const config: AttentionBlockConfig = { hidden: 32, heads: 4, kvHeads: 2, headDim, rope: { theta: 10000 } };
      const weights = randomBlockWeights(config, seed + 7, { oBias: true });
      const spec = validateBlock(config, weights);
      const block = await AttentionBlock.create(config, weights, { backend: backend.name });
      const unsplit = await AttentionBlock.create(config, weights, { backend: backend.name, minWorkgroups: 0 });
      const B = 2;
      const capacity = 96;
      const kvd = 2 * headDim;
      let splitSeen = false;
      let appendFirstSeen = false;
      // steps that append take the pipelined kernel (their append a dispatch of its own) wherever it fits
      process.env.FUSEDATTN_DECODE_SEPARATE_APPEND = '1';
      onTestFinished(() => { delete process.env.FUSEDATTN_DECODE_SEPARATE_APPEND; });
      const runs: Array<['forward' | 'forwardUnfused', AttentionBlock]> = [['forward', block], ['forwardUnfused', block], ...(backend.name === 'webgpu' ? [['forward', unsplit] as ['forward', AttentionBlock]] : [])];
      for (const [path, runner] of runs) {
        const keys = new Float32Array(capacity * B * kvd);
        const values = new Float32Array(capacity * B * kvd);
        const refKeys = new Float32Array(capacity * B * kvd);
        const refValues = new Float32Array(capacity * B * kvd);
        let start = 0;
        for (const [step, seq] of [13, 60, 1, 1].entries()) {
          const x = randomHidden(B * seq, config.hidden, seed + 50 + step);
          const ref = referenceBlock(spec, { x, layout: 'SBH', batch: B, seq, start, cacheKeys: refKeys, cacheValues: refValues });
          const result = await runner[path]({ data: x, shape: [seq, B, config.hidden] }, {
            layout: 'SBH', start,
            cache: { keys: Tensor.fromData(keys, [capacity, B, kvd]), values: Tensor.fromData(values, [capacity, B, kvd]) },
          });
          const at = start * B * kvd;
          refKeys.set(Float32Array.from(ref.keys), at);
          refValues.set(Float32Array.from(ref.values), at);
          const failures = [
            check(`${path} step ${step} out`, result.out.toFloat32(), ref.out),
            check(`${path} step ${step} cache keys`, keys.subarray(at, at + seq * B * kvd), ref.keys),
            check(`${path} step ${step} cache values`, values.subarray(at, at + seq * B * kvd), ref.values),
          ].filter(Boolean);
          expect(failures.join('; ')).toBe('');
          if (backend.name === 'webgpu' && path === 'forward') {
            // small grids (4 heads x 2 sequences) split the keys (a 4th dispatch merges) unless told not to
            const geometry = { batch: B, seq, rows: B * seq, start, rowStrideB: 1, rowStrideS: B };
            const splits = runner.gpu!.splitsFor(geometry, true);
            // a decode step on the pipelined kernel runs its append as a dispatch of its own first,
            // and merges only where that kernel splits
            const pipelined = runner.gpu!.decodePlan(geometry)?.pipelined;
            if (pipelined?.append) appendFirstSeen = true;
            expect(result.stats.dispatches).toBe(pipelined?.append ? (pipelined.combine ? 5 : 4) : splits > 1 ? 4 : 3);
            if (runner === unsplit) expect(splits).toBe(1);
            else if (splits > 1) splitSeen = true;
          }
          start += seq;
        }
        // positions past the last step were never written
        expect(keys.subarray(start * B * kvd).every((v) => v === 0)).toBe(true);
      }
      if (backend.name === 'webgpu') expect(splitSeen, 'a decode step ran with split keys').toBe(true);
      // head dim 8 (RoPE partners in whole quads) takes the pipelined kernel, its append a dispatch of its own
      if (backend.name === 'webgpu' && headDim === 8) expect(appendFirstSeen, 'a decode step appended first').toBe(true);
      block.destroy();
      unsplit.destroy();
    });

    it('start without a cache shifts RoPE positions only', async () => {
      const config: AttentionBlockConfig = { hidden: 16, heads: 2, headDim: 8 };
      const weights = randomBlockWeights(config, seed + 9);
      const spec = validateBlock(config, weights);
      const block = await AttentionBlock.create(config, weights, { backend: backend.name });
      const x = randomHidden(9, 16, seed + 10);
      const ref = referenceBlock(spec, { x, layout: 'BSH', batch: 1, seq: 9, start: 100 });
      const got = await block.forward({ data: x, shape: [1, 9, 16] }, { start: 100 });
      expect(check('fused start 100', got.out.toFloat32(), ref.out)).toBe('');
      block.destroy();
    });
  });
}

describe('attention block: typed errors before any work', () => {
  const config: AttentionBlockConfig = { hidden: 16, heads: 4, kvHeads: 2 };
  const weights = randomBlockWeights(config, 1);

  it('rejects bad configs, naming the field', () => {
    expect(() => validateBlock({ ...config, kvHeads: 3 }, weights)).toThrow(ValueError);
    expect(() => validateBlock({ ...config, kvHeads: 3 }, weights)).toThrow(/config.kvHeads/);
    expect(() => validateBlock({ ...config, headDim: 5 }, weights)).toThrow(/must be even/);
    expect(() => validateBlock({ ...config, rope: { theta: -1 } }, weights)).toThrow(/config.rope.theta/);
    expect(() => validateBlock({ ...config, heads: 0 }, weights)).toThrow(/config.heads must be a positive integer, got 0/);
    expect(() => validateBlock({ ...config, colour: 'red' } as unknown as AttentionBlockConfig, weights)).toThrow(/config.colour is not/);
  });

  it('rejects weights of the wrong size or dtype, naming the weight and its shape', () => {
    expect(() => validateBlock(config, { ...weights, k: new Float32Array(3) })).toThrow(ShapeError);
    expect(() => validateBlock(config, { ...weights, k: new Float32Array(3) })).toThrow(/weights.k must hold 128 elements \(shape \[8, 16\]\), got 3/);
    expect(() => validateBlock(config, { ...weights, o: new Uint16Array(256) })).toThrow(DTypeError);
    expect(() => validateBlock(config, { q: weights.q, k: weights.k, v: weights.v } as never)).toThrow(/weights.o is required/);
  });

  it('rejects bad calls on the CPU backend', async () => {
    const block = await AttentionBlock.create(config, weights, { backend: 'cpu' });
    const x = { data: new Float32Array(2 * 3 * 16), shape: [2, 3, 16] };
    await expect(block.forward({ data: new Float32Array(2 * 3 * 15), shape: [2, 3, 15] })).rejects.toThrow(/hidden's last dimension must be the block's hidden size 16, got 15/);
    await expect(block.forward({ data: new Float32Array(6), shape: [6] })).rejects.toThrow(ShapeError);
    await expect(block.forward(x, { start: -1 })).rejects.toThrow(/options.start must be a non-negative integer/);
    await expect(block.forward(x, { start: 5000 })).rejects.toThrow(/maxPositions/);
    const cache = { keys: new Float32Array(4 * 2 * 8), values: new Float32Array(4 * 2 * 8) };
    await expect(block.forward(x, { start: 2, cache: { keys: { data: cache.keys, shape: [4, 2, 8] }, values: { data: cache.values, shape: [4, 2, 8] } } }))
      .rejects.toThrow(/the cache holds 4 positions; start 2 \+ 3 new tokens do not fit/);
    await expect(block.forward(x, { cache: { keys: { data: cache.keys, shape: [8, 8] }, values: { data: cache.values, shape: [8, 8] } } }))
      .rejects.toThrow(/cache.keys must have shape \[capacity, 2, 8\]/);
    await expect(block.forward(x, { layout: 'NCHW' as never })).rejects.toThrow(ValueError);
    await expect(AttentionBlock.create(config, weights, { backend: 'cpu', gemm: 'subgroup-matrix' })).rejects.toThrow(UnsupportedError);
  });
});
