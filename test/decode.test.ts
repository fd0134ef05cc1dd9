// attentionDecode() and mergeAttention() against the float64 reference on every backend here
// (the CPU, and WebGPU on Mesa llvmpipe in CI): contiguous and paged caches (random page tables
// with free pages between the used ones, pages out of order, prefix pages shared by two
// sequences; poison in every position and page nothing should read), float32 / float16 /
// bfloat16 / int8 storage, shared latent caches, appends (on the host for CPU-resident caches, in
// the kernel for GPU-resident ones, checked against the host's), causal alignments, windows,
// softcap, ALiBi, LSE, empty sequences, odd head dims (CPU) and real widths.
import { describe, expect, it } from 'vitest';
import {
  DTypeError, ShapeError, Tensor, UnsupportedError, ValueError, attentionDecode, getScope, mergeAttention, referenceDecode, scope, validateDecode,
} from '../dist/index.js';
import { type DecodeCase, checkF32, compare, decodeCaseName, makeDecodeCase } from '../dist/testing/index.js';
import { backendsHere } from './helpers.js';
import { checkDecodeCase, destroyGpu, inputsOnGpu, toCpu, toGpu } from './decode-helpers.js';
import { pipelinedLayout } from '../dist/ops/decode/webgpu/split-kv-pipelined.wgsl.js';

const webgpu = (await backendsHere()).find((b) => b.name === 'webgpu')!;
if (webgpu.skip) console.warn(`\n!!! SKIPPING the WebGPU decode tests: ${webgpu.skip}\n`);

/**
 * Cases both backends run (head dims multiples of 4, as the WebGPU kernel needs). On WebGPU with
 * CPU tensors the appends happen on the host; few distinct kernels, since llvmpipe compiles each
 * one for seconds.
 */
const COMMON: DecodeCase[] = [
  { batch: 3, headsQ: 6, headsKv: 3, seqQ: 5, dimQK: 32, lengths: [97, 0, 64], cache: 'float32', causal: 'top-left', returnLse: true },
  { batch: 2, headsQ: 2, headsKv: 2, seqQ: 2, dimQK: 20, lengths: [33, 20], cache: 'bfloat16', cacheLayout: 'BSND', layout: 'BSND', causal: true, append: true },
];

/** Appends: on the CPU, and on WebGPU with GPU tensors, where the kernel itself stores the rows. */
const APPENDS: DecodeCase[] = [
  { batch: 3, headsQ: 4, headsKv: 1, seqQ: 4, dimQK: 36, dimV: 44, lengths: [41, 0, 19], cache: 'int8', pageSize: 8, append: true, causal: true, alibi: true, softcap: 4, returnLse: true },
  { batch: 2, headsQ: 4, headsKv: 2, seqQ: 3, dimQK: 24, lengths: [60, 9], cache: 'float16', window: [6, 0], causal: true, append: true, pageSize: 4, cacheLayout: 'NHD' },
  { batch: 2, headsQ: 2, headsKv: 2, seqQ: 16, dimQK: 16, lengths: [18, 40], cache: 'int8', causal: true, append: true, io: 'float16', pageSize: 16, sharedPages: true },
];

/** CPU only: any head dim, and variants whose WebGPU kernels the cases above already cover. */
const CPU_ONLY: DecodeCase[] = [
  { batch: 3, headsQ: 6, headsKv: 3, seqQ: 1, dimQK: 59, lengths: [97, 1, 64], cache: 'float32', returnLse: true },
  { batch: 2, headsQ: 4, headsKv: 2, seqQ: 3, dimQK: 37, dimV: 11, lengths: [25, 7], cache: 'int8', pageSize: 5, append: true, causal: true, sharedPages: true },
  { batch: 2, headsQ: 16, headsKv: 1, seqQ: 1, dimQK: 72, dimV: 64, lengths: [40, 3], cache: 'bfloat16', shared: true, append: true, returnLse: true },
  { batch: 2, headsQ: 4, headsKv: 2, seqQ: 1, dimQK: 64, lengths: [70, 50], cache: 'float16', pageSize: 16, sharedPages: true, returnLse: true },
  { batch: 1, headsQ: 8, headsKv: 1, seqQ: 2, dimQK: 48, dimV: 32, lengths: [300], cache: 'int8', shared: true, append: true, causal: true, pageSize: 32, scale: 0.05 },
];

/** WebGPU at real widths and lengths (GPU tensors), where the keys are split over many workgroups. */
const GPU_REAL: DecodeCase[] = [
  { batch: 1, headsQ: 32, headsKv: 8, seqQ: 1, dimQK: 128, lengths: [1500], cache: 'float16', returnLse: true },
  { batch: 2, headsQ: 14, headsKv: 2, seqQ: 1, dimQK: 64, lengths: [1100, 301], cache: 'float32', pageSize: 16, append: true, sharedPages: true },
  { batch: 1, headsQ: 16, headsKv: 1, seqQ: 1, dimQK: 576, dimV: 512, lengths: [257], cache: 'int8', shared: true, pageSize: 64, append: true, scale: 0.07 },
  // grouped-query shapes that take the tensor-core kernel where the adapter has subgroup matrices
  // (7 rows per KV head; 8 with two causal query rows), the SIMT kernels elsewhere
  { batch: 2, headsQ: 14, headsKv: 2, seqQ: 1, dimQK: 64, lengths: [1100, 301], cache: 'float16', io: 'float16', pageSize: 16, sharedPages: true, returnLse: true },
  { batch: 1, headsQ: 32, headsKv: 8, seqQ: 2, dimQK: 128, lengths: [1500], cache: 'float16', io: 'float16', causal: true },
];

/** The pipelined kernel's cases (no appends; WebGPU only: the CPU backend has no such kernel). */
const PIPELINED: DecodeCase[] = [
  { batch: 1, headsQ: 32, headsKv: 8, seqQ: 1, dimQK: 128, lengths: [1500], cache: 'float16' },
  { batch: 2, headsQ: 8, headsKv: 2, seqQ: 1, dimQK: 64, lengths: [700, 333], cache: 'int8', pageSize: 16, sharedPages: true, softcap: 5, alibi: true, returnLse: true },
  { batch: 2, headsQ: 6, headsKv: 2, seqQ: 3, dimQK: 32, lengths: [260, 45], cache: 'bfloat16', cacheLayout: 'BSND', layout: 'BSND', causal: true, window: [50, 0] },
  { batch: 3, headsQ: 4, headsKv: 4, seqQ: 2, dimQK: 48, dimV: 32, lengths: [300, 0, 129], cache: 'float32', causal: 'top-left', returnLse: true, io: 'float16' },
];

describe('attentionDecode on cpu', () => {
  for (const c of [...COMMON, ...APPENDS, ...CPU_ONLY]) {
    it(decodeCaseName(c), async () => {
      await checkDecodeCase(c, 5, { backend: 'cpu' });
    });
  }
});

describe.skipIf(webgpu.skip !== undefined)('attentionDecode on webgpu', () => {
  for (const c of COMMON) {
    it(`${decodeCaseName(c)} (CPU tensors)`, async () => {
      await checkDecodeCase(c, 6, { backend: 'webgpu' });
    });
  }
  for (const c of [...APPENDS, ...GPU_REAL]) {
    it(`${decodeCaseName(c)} (GPU tensors${c.append ? ', append in the kernel' : ''})`, async () => {
      await checkDecodeCase(c, 7, { backend: 'webgpu', gpuResident: true });
    });
  }
  // the score phase with several threads per key (FUSEDATTN_DECODE_KEY_LANES; the default plan
  // keeps one until the GPU shows where more pay): the same answers, paged appends and int8 latent
  // caches included (the plan takes the largest count up to the asked one that divides the chunks:
  // 4, 8 and 2 here, decode-wgsl.test.ts checks the plan)
  for (const [lanes, c] of [[4, GPU_REAL[1]], [8, GPU_REAL[2]], [2, COMMON[0]]] as const) {
    it(`${decodeCaseName(c)} with ${lanes} threads per key in the score phase`, async () => {
      process.env.FUSEDATTN_DECODE_KEY_LANES = String(lanes);
      try {
        await checkDecodeCase(c, 8, { backend: 'webgpu', gpuResident: c.append === true });
      } finally {
        delete process.env.FUSEDATTN_DECODE_KEY_LANES;
      }
    });
  }
  // the softmax weights once per (row, key slice) (FUSEDATTN_DECODE_SHARED_WEIGHTS): the same
  // answers with int8 paged appends, latent caches, several rows per workgroup, and with key lanes
  for (const [lanes, c] of [[1, GPU_REAL[1]], [1, GPU_REAL[2]], [4, COMMON[0]], [1, APPENDS[0]]] as const) {
    it(`${decodeCaseName(c)} with shared softmax weights${lanes > 1 ? ` and ${lanes} threads per key` : ''}`, async () => {
      process.env.FUSEDATTN_DECODE_SHARED_WEIGHTS = '1';
      process.env.FUSEDATTN_DECODE_KEY_LANES = String(lanes);
      try {
        await checkDecodeCase(c, 9, { backend: 'webgpu', gpuResident: c.append === true });
      } finally {
        delete process.env.FUSEDATTN_DECODE_SHARED_WEIGHTS;
        delete process.env.FUSEDATTN_DECODE_KEY_LANES;
      }
    });
  }
  // the pipelined kernel (split-kv-pipelined.wgsl.ts), the default for calls without appends: with
  // one split (many tiles per workgroup: the running max and the rescale across tiles) and with a
  // few (the combine), every cache dtype, paged with shared pages, windows, Sq > 1, odd dims
  for (const c of PIPELINED) {
    for (const target of ['1', '24', 'wide']) {
      it(`${decodeCaseName(c)} on the pipelined kernel, ${target === '1' ? 'one split' : target === 'wide' ? 'one split of a wide workgroup' : 'a few splits'}`, async () => {
        // wide: one split of the largest workgroup (the merge tree's sub-rounds)
        if (target === 'wide') process.env.FUSEDATTN_DECODE_PIPE_WORKGROUP = '1024';
        process.env.FUSEDATTN_DECODE_PIPE_TARGET = target === 'wide' ? '1' : target;
        process.env.FUSEDATTN_DECODE_PIPELINED = '2'; // int8 too (opt-in: the plan keeps int8 on the general kernel)
        try {
          const { q, cache, options } = makeDecodeCase(c, 12);
          const { planFor } = await import('../dist/ops/decode/webgpu/run.js');
          const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
          const plan = planFor(await getRuntime(), validateDecode(q, cache, options));
          expect(plan.pipelined, 'the plan takes the pipelined kernel').toBeDefined();
          const tiles = Math.ceil(Math.max(...c.lengths) / plan.pipelined!.grid[2] / pipelinedLayout(plan.pipelined!.kernel).TK);
          if (target === '1') expect(tiles, 'several tiles per workgroup').toBeGreaterThan(2);
          if (target === 'wide') {
            expect(plan.pipelined!.kernel.workgroupSize).toBe(1024);
            expect(plan.pipelined!.combine, 'no combine pass').toBe(false);
          }
          await checkDecodeCase(c, 12, { backend: 'webgpu', gpuResident: true });
        } finally {
          delete process.env.FUSEDATTN_DECODE_PIPE_TARGET;
          delete process.env.FUSEDATTN_DECODE_PIPE_WORKGROUP;
          delete process.env.FUSEDATTN_DECODE_PIPELINED;
        }
      });
    }
  }
  // int8 caches on the pipelined kernel in words of 8 elements (FUSEDATTN_DECODE_PIPE_CHUNK=8, vec2<u32>
  // loads; issue 15) at real widths: llama-8b's 32/8 heads over one split (many tiles per workgroup),
  // and 4/1 heads paged with shared pages over a few splits (the combine), odd lengths
  for (const [c, target] of [
    [{ batch: 1, headsQ: 32, headsKv: 8, seqQ: 1, dimQK: 128, lengths: [457], cache: 'int8', returnLse: true }, '1'],
    [{ batch: 2, headsQ: 4, headsKv: 1, seqQ: 1, dimQK: 128, lengths: [301, 77], cache: 'int8', pageSize: 16, sharedPages: true }, '24'],
  ] as Array<[DecodeCase, string]>) {
    it(`${decodeCaseName(c)} on the pipelined kernel in words of 8 (${target === '1' ? 'one split' : 'a few splits'})`, async () => {
      process.env.FUSEDATTN_DECODE_PIPELINED = '2';
      process.env.FUSEDATTN_DECODE_PIPE_CHUNK = '8';
      process.env.FUSEDATTN_DECODE_PIPE_TARGET = target;
      try {
        const { q, cache, options } = makeDecodeCase(c, 13);
        const { planFor } = await import('../dist/ops/decode/webgpu/run.js');
        const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
        const plan = planFor(await getRuntime(), validateDecode(q, cache, options));
        expect(plan.pipelined, 'the plan takes the pipelined kernel').toBeDefined();
        expect(plan.pipelined!.kernel.chunk).toBe(8);
        expect(pipelinedLayout(plan.pipelined!.kernel).E).toBe(8);
        const tiles = Math.ceil(Math.max(...c.lengths) / plan.pipelined!.grid[2] / pipelinedLayout(plan.pipelined!.kernel).TK);
        if (target === '1') expect(tiles, 'several tiles per workgroup').toBeGreaterThan(2);
        else expect(plan.pipelined!.combine, 'the combine pass').toBe(true);
        await checkDecodeCase(c, 13, { backend: 'webgpu', gpuResident: true });
      } finally {
        delete process.env.FUSEDATTN_DECODE_PIPELINED;
        delete process.env.FUSEDATTN_DECODE_PIPE_CHUNK;
        delete process.env.FUSEDATTN_DECODE_PIPE_TARGET;
      }
    });
  }
  // README "Decode attention": a decode loop records its call once and replays it (no validation,
  // binding or table upload per step); the kernel re-reads the lengths from their GPU buffer, so a
  // replay after the host rewrote them must equal a fresh call, bit for bit
  it('replays from a scope as the cache grows (GPU lengths): each replay equals a fresh call and the float64 reference', async () => {
    const c: DecodeCase = { batch: 2, headsQ: 4, headsKv: 2, seqQ: 1, dimQK: 32, lengths: [96, 96], cache: 'float16' };
    const made = makeDecodeCase(c, 11);
    const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
    const rt = await getRuntime();
    const gpu = await inputsOnGpu(made);
    const q = gpu.q;
    const cache = { k: gpu.cache.k, v: gpu.cache.v, lengths: gpu.cache.lengths };
    const options = { maxLength: 96, backend: 'webgpu' as const };
    const read = async (t: Tensor) => (await toCpu(t)).toFloat32();
    const modes: string[] = [];
    for (const lens of [[10, 20], [11, 21], [60, 95], [96, 1]]) {
      rt.write(cache.lengths.gpu!.buffer, 0, Int32Array.from(lens));
      const replayed = await read((await scope('decode test', { q, cache }, () => attentionDecode(q, cache, options))).out);
      modes.push((await getScope('decode test'))!.lastRun!.mode);
      const fresh = (await attentionDecode(q, cache, options)).out;
      expect(compare(replayed, await read(fresh)).maxAbsError).toBe(0);
      fresh.gpu!.buffer.destroy();
      const ref = referenceDecode(validateDecode(made.q, { ...made.cache, lengths: Tensor.fromData(Int32Array.from(lens), [2], 'int32') }, {}));
      expect(checkF32('replayed decode', replayed, ref.out, 2e-5) ?? '').toBe('');
    }
    expect(modes).toEqual(['record', 'replay', 'replay', 'replay']);
    (await getScope('decode test'))!.dispose();
    destroyGpu(gpu);
  });
});

describe('int8 KV error', () => {
  it('is reported against the float16 cache of the same keys and values', async () => {
    // the same random rows stored as float16 and as int8: the error int8 adds over float16
    const shape: DecodeCase = { batch: 1, headsQ: 8, headsKv: 2, seqQ: 1, dimQK: 64, lengths: [512], cache: 'float16' };
    const f16 = makeDecodeCase(shape, 9);
    const i8 = makeDecodeCase({ ...shape, cache: 'int8' }, 9);
    const exact = referenceDecode(validateDecode(f16.q, f16.cache, f16.options)).out;
    const quantized = referenceDecode(validateDecode(i8.q, i8.cache, i8.options)).out;
    const { relError } = compare(quantized, exact);
    console.log(`int8 KV vs float16 KV (Nq 8/2, D 64, L 512): max error ${relError.toExponential(2)} of the largest output`);
    expect(relError).toBeGreaterThan(0);
    expect(relError).toBeLessThan(0.05);
  });
});

describe('mergeAttention', () => {
  const backends = webgpu.skip ? ['cpu'] as const : ['cpu', 'webgpu'] as const;
  for (const backend of backends) {
    it(`combines two halves of a cache into the whole (${backend})`, async () => {
      const c: DecodeCase = { batch: 2, headsQ: 4, headsKv: 2, seqQ: 2, dimQK: 16, lengths: [50, 3], cache: 'float32', returnLse: true };
      const x = makeDecodeCase(c, 3);
      const whole = referenceDecode(validateDecode(x.q, x.cache, x.options));
      // keys [0, 20) and [20, L): a window of the first part and the rest through a second cache view
      const part = async (from: number) => {
        const lengths = [Math.min(20, c.lengths[0]) - from, Math.max(0, Math.min(20, c.lengths[1]) - from)];
        const k = x.cache.k.toFloat32();
        const v = x.cache.v!.toFloat32();
        const cap = x.cache.k.shape[2];
        const shift = (src: Float32Array, start: number, count: number[]) => {
          const dst = new Float32Array(src.length);
          for (let b = 0; b < c.batch; b++) for (let h = 0; h < c.headsKv; h++) for (let p = 0; p < count[b]; p++) {
            const from = ((b * c.headsKv + h) * cap + start + p) * c.dimQK;
            dst.set(src.subarray(from, from + c.dimQK), ((b * c.headsKv + h) * cap + p) * c.dimQK);
          }
          return Tensor.fromData(dst, x.cache.k.shape);
        };
        const counts = from === 0 ? lengths : [c.lengths[0] - 20, Math.max(0, c.lengths[1] - 20)];
        return attentionDecode(x.q, { k: shift(k, from, counts), v: shift(v, from, counts), lengths: counts }, { returnLse: true, backend });
      };
      const a = await part(0);
      const b = await part(20);
      const onDevice = backend === 'webgpu';
      const pieces = onDevice ? await Promise.all([a, b].map(async (r) => ({ out: (await toGpu(r.out))!, lse: (await toGpu(r.lse))! }))) : [a, b].map((r) => ({ out: r.out, lse: r.lse! }));
      const merged = await mergeAttention(pieces, { backend });
      expect(merged.out.location).toBe(onDevice ? 'webgpu' : 'cpu');
      expect(checkF32('out', (await toCpu(merged.out)).toFloat32(), whole.out, 2e-5)).toBeUndefined();
      // sequence 1 has no keys in the second part: its LSE there is -inf and the merge ignores it
      expect(checkF32('lse', (await toCpu(merged.lse)).toFloat32(), whole.lse, 2e-5)).toBeUndefined();
    });
  }

  it('gives 0 and -inf for rows no partial saw, and merges three float16 partials', async () => {
    const lse = (v: number[]) => Tensor.fromData(Float32Array.from(v), [1, 1, v.length]);
    const out = (v: number[]) => Tensor.fromData(Float32Array.from(v), [1, 1, v.length, 1]);
    const r = await mergeAttention([{ out: out([1, 2]), lse: lse([-Infinity, 0]) }, { out: out([3, 4]), lse: lse([-Infinity, Math.log(3)]) }], { backend: 'cpu' });
    expect(Array.from(r.out.toFloat32())).toEqual([0, expect.closeTo(3.5, 6)]);
    expect(r.lse.toFloat32()[0]).toBe(-Infinity);
    expect(r.lse.toFloat32()[1]).toBeCloseTo(Math.log(4), 6);
  });

  it('rejects mismatched partials with typed errors', async () => {
    const o = Tensor.fromData(new Float32Array(8), [1, 2, 1, 4]);
    const l = Tensor.fromData(new Float32Array(2), [1, 2, 1]);
    await expect(mergeAttention([])).rejects.toThrow(ValueError);
    await expect(mergeAttention([{ out: o, lse: Tensor.fromData(new Float32Array(3), [1, 3, 1]) }])).rejects.toThrow(ShapeError);
    await expect(mergeAttention([{ out: o, lse: l }, { out: Tensor.fromData(new Float32Array(4), [1, 1, 1, 4]), lse: l }])).rejects.toThrow(ShapeError);
    await expect(mergeAttention([{ out: o, lse: Tensor.fromData(new Uint16Array(2), [1, 2, 1]) }])).rejects.toThrow(DTypeError);
  });
});

describe('validateDecode', () => {
  const base = () => makeDecodeCase({ batch: 2, headsQ: 4, headsKv: 2, seqQ: 1, dimQK: 8, lengths: [5, 3], cache: 'float32', pageSize: 4 }, 1);
  it('names the argument, the expected and the received value', () => {
    const x = base();
    const bad = (cache: object, options: object = {}) => () => validateDecode(x.q, { ...x.cache, ...cache }, options);
    expect(bad({ k: Tensor.fromData(new Float32Array(8), [1, 8]) })).toThrow(/cache\.k.*4 dimensions/);
    expect(bad({ lengths: [5, 30] })).toThrow(ValueError);
    expect(bad({ lengths: [5, 30] })).toThrow(/sequence 1 needs 30 positions/);
    expect(bad({ lengths: [5] })).toThrow(ShapeError);
    expect(bad({ blockTable: Tensor.fromData(Int32Array.of(0, 99, 1, 2), [2, 2]) })).toThrow(/blockTable\[0\]\[1\].*got 99/);
    expect(bad({ kScale: Tensor.fromData(new Float32Array(1), [1]) })).toThrow(/only for int8/);
    expect(bad({ v: undefined })).toThrow(/cache\.valueDim/);
    expect(bad({ layout: 'BNSD' })).toThrow(/paged cache must be "HND" or "NHD"/);
    expect(bad({ extra: 1 })).toThrow(/cache\.extra is not a cache field/);
    expect(bad({}, { append: { k: x.q } })).toThrow(/options\.append\.k must have shape/);
    expect(bad({}, { softcap: -1 })).toThrow(ValueError);
    expect(bad({}, { causal: 'top-left', window: [2, 0] })).toThrow(/ambiguous/);
    expect(() => validateDecode(Tensor.fromData(new Float32Array(2 * 4 * 17 * 8), [2, 4, 17, 8]), x.cache)).toThrow(/1 to 16 new rows/);
    expect(bad({ k: Tensor.fromData(new Float32Array(x.cache.k.size / 2), [x.cache.k.shape[0], 1, 4, 8]) })).toThrow(/cache\.v shape/);
    const three = () => Tensor.fromData(new Float32Array((x.cache.k.size * 3) / 2), [x.cache.k.shape[0], 3, 4, 8]);
    expect(bad({ k: three(), v: three() })).toThrow(/multiple of the cache's key\/value heads/);
    expect(() => validateDecode(x.q, { ...x.cache, k: Tensor.fromData(new Float64Array(4) as unknown as Float32Array, [1, 1, 1, 4]) })).toThrow(DTypeError);
  });

  it('refuses what the WebGPU kernel cannot take, saying why', async () => {
    if (webgpu.skip) return;
    const x = makeDecodeCase({ batch: 1, headsQ: 2, headsKv: 1, seqQ: 1, dimQK: 59, lengths: [10], cache: 'float32' }, 2);
    await expect(attentionDecode(x.q, x.cache, { backend: 'webgpu' })).rejects.toThrow(UnsupportedError);
    await expect(attentionDecode(x.q, x.cache, { backend: 'webgpu' })).rejects.toThrow(/multiples of 4.*CPU backend takes any/);
  });
});
