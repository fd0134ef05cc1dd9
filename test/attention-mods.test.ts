// Score / mask / sink functions and block masks (issue 13): the builders' typing and semantics,
// the generated WebAssembly against the float32 evaluator, every built-in against the float64
// reference on the CPU (odd sizes, GQA, TND), the built-ins against the options they mirror, block
// masks against dense evaluation, and the WebGPU portable tier and naive path on a few combined
// cases (each distinct expression is one pipeline compile, slow on llvmpipe). Tensor-core tier:
// WGSL compile checks here, the same cases on the tier where an adapter has subgroup matrices.
import { describe, expect, it } from 'vitest';
import {
  BlockMask, ShapeError, Tensor, ValueError, attention, attentionSinks, alibi, alibiSlopes, capture, causal, createBlockMask,
  documentMask, float, int, maskMod, prefixLM, referenceAttention, scoreMod, slidingWindow, softcap, streamingMask, t5Bucket,
  t5RelativeBias, validateAttention, type AttentionOptions, type BackendName,
} from '../dist/index.js';
import { type AttentionCase, checkAgainstReference, makeCase, uniform } from '../dist/testing/index.js';
import { planMods, packModData } from '../dist/ops/attention/mods/plan.js';
import { programEvaluator, makeEnv, VAR_INDEX } from '../dist/ops/attention/mods/evaluate.js';
import { buildModsModule } from '../dist/ops/attention/mods/cpu/wasm.js';
import { scalarModsKernel } from '../dist/ops/attention/mods/cpu/kernel.js';
import { buildFlashSgMatrix, type SgMatrixKernelOptions } from '../dist/ops/attention/webgpu/tiers/flash-sgmatrix-wgsl.js';
import { kernelOptionsOf, SG_MATRIX_CONFIGS, sgMatrixProblemUnsupported } from '../dist/ops/attention/webgpu/tiers/sgmatrix.js';
import { skipNotice } from './webgpu-helpers.js';
import { softcapFunction } from './helpers.js';
import { tintErrors } from './tint.js';

/** Runs `c` + `extra` on `backend` and checks it against the float64 reference (the suite's rules). */
async function check(backend: BackendName, c: AttentionCase, extra: AttentionOptions, seed: number, naive = false): Promise<void> {
  const { q, k, v, options } = makeCase(c, seed);
  const all = { ...options, ...extra };
  const problem = validateAttention(q, k, v, all);
  const run = naive ? (await import('../dist/index.js')).naiveAttention : attention;
  const result = await run(q, k, v, { ...all, backend });
  const { failures } = checkAgainstReference(problem, result);
  expect(failures.join('; '), `seed ${seed}`).toBe('');
}

/** max |a - b| of two attention calls on the same inputs. */
async function difference(backend: BackendName, c: AttentionCase, a: AttentionOptions, b: AttentionOptions, seed: number): Promise<number> {
  const { q, k, v, options } = makeCase(c, seed);
  const [x, y] = await Promise.all([attention(q, k, v, { ...options, ...a, backend }), attention(q, k, v, { ...options, ...b, backend })]);
  const xo = x.out.toFloat32();
  const yo = y.out.toFloat32();
  let max = 0;
  for (let i = 0; i < xo.length; i++) max = Math.max(max, Math.abs(xo[i] - yo[i]));
  return max;
}

const ODD: AttentionCase = { batch: 2, headsQ: 4, headsKv: 2, seqQ: 77, seqK: 93, dimQK: 40, returnLse: true };
const SQUARE: AttentionCase = { batch: 2, headsQ: 3, seqQ: 97, seqK: 97, dimQK: 59, dimV: 33, returnLse: true };
const TND: AttentionCase = { layout: 'TND', batch: 3, headsQ: 4, headsKv: 1, seqQ: 0, seqK: 0, seqLensQ: [33, 1, 70], seqLensK: [40, 9, 70], dimQK: 32, returnLse: true };

describe('expression builders', () => {
  it('are typed: int with a fraction, float results of masks, variables a role lacks are errors naming the cause', () => {
    expect(() => scoreMod(({ q }) => q.mul(0.5).toFloat())).toThrow(/not an i32 integer.*toFloat/);
    expect(() => maskMod((ctx) => (ctx as unknown as { score: { gt(x: number): unknown } }).score.gt(0) as never)).toThrow(ValueError);
    expect(() => maskMod(({ q }) => q.toFloat() as never)).toThrow(/must return a bool expression/);
    expect(() => scoreMod(() => NaN)).toThrow(/NaN/);
    expect(() => capture(new Float32Array(6), [4])).toThrow(ShapeError);
    const t = capture(new Float32Array(6), [2, 3]);
    expect(() => t.at(1)).toThrow(/takes 2 indices/);
    // int op float promotes; printing shows the tree
    expect(scoreMod(({ score, q, kv }) => score.add(q.sub(kv).mul(float(0.5)))).toString()).toBe('(score + (toFloat((q - kv)) * 0.5))');
  });

  it('lower to one instruction per distinct subexpression (the cache key follows structure, not data)', () => {
    const bias = capture(new Float32Array(8));
    const mod = scoreMod(({ score, q, kv }) => score.add(bias.at(q.sub(kv))).mul(bias.at(q.sub(kv))));
    const plan = planMods({ scoreMod: mod });
    expect(plan.kernel.score!.nodes.filter((n) => n.op === 'load')).toHaveLength(1);
    const other = planMods({ scoreMod: scoreMod(({ score, q, kv }) => { const b2 = capture(new Float32Array(99)); return score.add(b2.at(q.sub(kv))).mul(b2.at(q.sub(kv))); }) });
    expect(JSON.stringify(other.kernel)).toBe(JSON.stringify(plan.kernel));
  });

  it('share one integer semantics: truncating division, x / 0 = x, x % 0 = 0, saturating toInt, clamped loads', () => {
    const table = capture(Int32Array.from([10, 20, 30]));
    const f = (fn: Parameters<typeof scoreMod>[0], vars: Partial<Record<keyof typeof VAR_INDEX, number>>) => {
      const plan = planMods({ scoreMod: scoreMod(fn) });
      const env = makeEnv();
      for (const [k, v] of Object.entries(vars)) env[VAR_INDEX[k as keyof typeof VAR_INDEX]] = v;
      return programEvaluator(plan.kernel.score!, plan.tensors)(env);
    };
    expect(f(({ q, kv }) => q.div(kv).toFloat(), { q: -7, kv: 2 })).toBe(-3);
    expect(f(({ q, kv }) => q.div(kv).toFloat(), { q: 7, kv: 0 })).toBe(7);
    expect(f(({ q, kv }) => q.mod(kv).toFloat(), { q: -7, kv: 3 })).toBe(-1);
    expect(f(({ q, kv }) => q.mod(kv).toFloat(), { q: 7, kv: 0 })).toBe(0);
    expect(f(({ score }) => score.toInt().toFloat(), { score: 1e12 })).toBe(2147483647);
    expect(f(({ score }) => score.toInt().toFloat(), { score: NaN })).toBe(0);
    expect(f(({ q }) => table.at(q).toFloat(), { q: -5 })).toBe(10);
    expect(f(({ q }) => table.at(q).toFloat(), { q: 99 })).toBe(30);
    expect(f(() => int(2147483647).add(1).toFloat(), {})).toBe(-2147483648);
  });
});

describe('generated WebAssembly SIMD (CPU) against the float32 evaluator', () => {
  const table = capture(Float32Array.from({ length: 24 }, (_, i) => Math.sin(i)), [6, 4]);
  const ids = capture(Int32Array.from({ length: 50 }, (_, i) => Math.floor(i / 7)));
  // [mods, relative tolerance]: single functions within ~2 ulp, a composition within a few more
  const cases: Record<string, [Parameters<typeof planMods>[0], number]> = {
    'exp (subnormal results, overflow)': [{ scoreMod: scoreMod(({ score }) => score.exp()) }, 2.5e-7],
    'log (subnormal, zero, negative inputs)': [{ scoreMod: scoreMod(({ score }) => score.abs().log().add(score.log().mul(0))) }, 2.5e-7],
    tanh: [{ scoreMod: scoreMod(({ score }) => score.tanh()) }, 2.5e-7],
    'a composition of every float op': [{ scoreMod: scoreMod(({ score }) => score.exp().log().add(score.tanh()).add(score.abs().sqrt()).sub(score.mul(3).floor()).add(score.ceil()).div(score.add(0.5))) }, 2e-6],
    'ints, gathers, selects': [{
      scoreMod: scoreMod(({ score, q, kv, h }) => q.sub(kv).div(3).mod(4).gt(0).select(score.add(table.at(q.sub(kv), h)), score.neg().max(-2))),
      maskMod: maskMod(({ q, kv }) => ids.at(q).eq(ids.at(kv)).or(kv.lt(3)).and(q.ne(5))),
    }, 2.5e-7],
  };
  for (const [name, [parts, rtol]] of Object.entries(cases)) {
    it(name, () => {
      const plan = planMods(parts);
      const memory = new WebAssembly.Memory({ initial: 4, maximum: 64 });
      const wasm = new WebAssembly.Instance(new WebAssembly.Module(buildModsModule({ mods: plan.kernel, shared: false, maximumPages: 64 }).bytes()), { env: { memory } }).exports as unknown as ReturnType<typeof scalarModsKernel>;
      const scalar = scalarModsKernel(plan.kernel, memory);
      const words = packModData(plan.tensors);
      new Uint32Array(memory.buffer, 1024, words.length).set(words);
      const f = new Float32Array(memory.buffer);
      const rows = 11;
      const cols = 37;
      const lds = 4 * 40;
      const special = [0, -0, 1e-40, -1e-40, 1e-30, 88, 89, -88, -104, 1e30, -1e30, Infinity, -Infinity, NaN, 0.5, -0.6, 0.7];
      const rand = uniform(7);
      const input = Float32Array.from({ length: rows * 40 }, (_, i) => (i < special.length ? special[i] : (rand() - 0.5) * 40));
      for (const withMask of [0, 1]) {
        f.set(input, 16384);
        f.set(input, 32768);
        wasm.apply(65536, lds, rows, cols, 1, 2, 3, 4, 50, 60, 1024, withMask, 1);
        scalar.apply(131072, lds, rows, cols, 1, 2, 3, 4, 50, 60, 1024, withMask, 1);
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < cols; c++) {
            const a = f[16384 + r * 40 + c];
            const b = f[32768 + r * 40 + c];
            if (Number.isNaN(b)) expect(a, `row ${r} col ${c}`).toBeNaN();
            else if (!Number.isFinite(b)) expect(a).toBe(b);
            else expect(Math.abs(a - b), `row ${r} col ${c}: ${a} vs ${b}`).toBeLessThanOrEqual(rtol * Math.max(1e-30, Math.abs(b)));
          }
        }
      }
      if (plan.kernel.mask) expect(wasm.count(rows, cols, 1, 2, 3, 4, 50, 60, 1024)).toBe(scalar.count(rows, cols, 1, 2, 3, 4, 50, 60, 1024));
    });
  }
});

describe('built-ins on the CPU against the float64 reference', () => {
  const slopes = alibiSlopes(4);
  const docs = Int32Array.from({ length: 97 }, (_, i) => Math.floor(i / 23));
  const t5 = Float32Array.from({ length: 32 * 3 }, (_, i) => Math.cos(i) * 2);
  const builtins: Array<[string, AttentionCase, AttentionOptions]> = [
    ['causal (top-left, Sq != Sk)', ODD, { maskMod: causal('top-left') }],
    ['sliding window [9, 3]', ODD, { maskMod: slidingWindow(9, 3) }],
    ['prefix-LM per batch', SQUARE, { maskMod: prefixLM([5, 40], 'top-left') }],
    ['document mask, causal (packed sequences)', SQUARE, { maskMod: documentMask(docs, { causal: true }) }],
    ['StreamingLLM mask + attention sinks', ODD, { maskMod: streamingMask(4, 16), sink: attentionSinks(Float32Array.from([0.5, -1, 2, 0])) }],
    ['softcap 2 at scale 3', ODD, { scoreMod: softcap(2), scale: 3 }],
    ['ALiBi', ODD, { scoreMod: alibi(slopes), maskMod: causal() }],
    ['T5 relative buckets + document mask', SQUARE, { scoreMod: t5RelativeBias(t5), maskMod: documentMask(docs), scale: 1 }],
    ['sinks [B, Nq] on TND with GQA', TND, { sink: { data: Float32Array.from({ length: 12 }, (_, i) => i / 4 - 1), shape: [3, 4] }, maskMod: causal() }],
  ];
  for (const [index, [name, c, extra]] of builtins.entries()) {
    it(name, () => check('cpu', c, extra, 100 + index));
  }

  it('a NaN score poisons its row before and after a score function (the non-finite rule), other rows unchanged', async () => {
    const { q, k, v } = makeCase({ batch: 1, headsQ: 2, seqQ: 9, seqK: 12, dimQK: 8 }, 4);
    (q.data as Float32Array)[3 * 8 + 2] = NaN; // row 3 of head 0
    const nanMod = scoreMod(({ score, q: qi }) => qi.eq(5).select(score.sub(score).div(0), score)); // row 5: 0/0 = NaN
    for (const scoreModOption of [softcap(3), softcapFunction(3), nanMod]) {
      const options = { scoreMod: scoreModOption, returnLse: true };
      const ref = referenceAttention(validateAttention(q, k, v, options));
      const got = await attention(q, k, v, { ...options, backend: 'cpu' });
      const out = got.out.toFloat32();
      for (let i = 0; i < out.length; i++) {
        if (Number.isNaN(ref.out[i])) expect(out[i], `element ${i}`).toBeNaN();
        else expect(Math.abs(out[i] - ref.out[i]), `element ${i}`).toBeLessThan(1e-5);
      }
      expect(Array.from(ref.out.subarray(3 * 8, 4 * 8)).every(Number.isNaN)).toBe(true);
      if (scoreModOption === nanMod) expect(Array.from(ref.out.subarray(5 * 8, 6 * 8)).every(Number.isNaN)).toBe(true);
    }
  });

  it('T5 buckets are Hugging Face\'s', () => {
    expect([-1, 1, -8, -20, -128, 200, 0].map((r) => t5Bucket(r))).toEqual([1, 17, 8, 10, 15, 31, 0]);
    expect([-3, 3, -300].map((r) => t5Bucket(r, { bidirectional: false }))).toEqual([3, 0, 31]);
  });

  it('a sink with no visible key gives output 0 and LSE = the sink logit; a huge sink takes all the weight', async () => {
    const { q, k, v } = makeCase({ batch: 1, headsQ: 2, seqQ: 5, seqK: 6, dimQK: 8 }, 3);
    const none = await attention(q, k, v, { maskMod: maskMod(() => false), sink: [1.5, -2], returnLse: true, backend: 'cpu' });
    expect(Array.from(none.out.toFloat32()).every((x) => x === 0)).toBe(true);
    expect(Array.from(none.lse!.toFloat32())).toEqual([1.5, 1.5, 1.5, 1.5, 1.5, -2, -2, -2, -2, -2]);
    const huge = await attention(q, k, v, { sink: [200, 200], backend: 'cpu' });
    expect(Math.max(...Array.from(huge.out.toFloat32(), Math.abs))).toBeLessThan(1e-30);
  });
});

describe('built-ins agree with the options they mirror (CPU)', () => {
  const c: AttentionCase = { batch: 2, headsQ: 4, seqQ: 70, seqK: 90, dimQK: 48 };
  const pairs: Array<[string, AttentionOptions, AttentionOptions]> = [
    ['softcap (as a function)', { softcap: 5, scale: 2 }, { scoreMod: softcapFunction(5), scale: 2 }],
    ['softcap() (the built-in function)', { softcap: 5, scale: 2 }, { scoreMod: softcap(5), scale: 2 }],
    ['ALiBi', { alibiSlopes: alibiSlopes(4) }, { scoreMod: alibi(alibiSlopes(4)) }],
    ['causal', { causal: true }, { maskMod: causal() }],
    ['window', { window: [20, 5] }, { maskMod: slidingWindow(20, 5) }],
  ];
  for (const [name, a, b] of pairs) it(name, async () => expect(await difference('cpu', c, a, b, 9)).toBeLessThanOrEqual(2e-6));
});

describe('createBlockMask', () => {
  it('lists partial and full key blocks as dense evaluation finds them; kernels skip and agree', async () => {
    const docs = Int32Array.from({ length: 200 }, (_, i) => (i < 50 ? 0 : i < 130 ? 1 : 2));
    const mask = documentMask(docs, { causal: true });
    const bm = await createBlockMask(mask, 2, 8, 200, 200, { blockSize: 32 });
    expect(bm).toBeInstanceOf(BlockMask);
    expect([bm.batch, bm.heads, bm.qBlocks, bm.kBlocks]).toEqual([1, 1, 7, 7]);
    const visible = (i: number, j: number) => docs[i] === docs[j] && j <= i;
    for (let qb = 0; qb < 7; qb++) {
      const partial: number[] = [];
      const full: number[] = [];
      for (let kb = 0; kb < 7; kb++) {
        let n = 0;
        let size = 0;
        for (let i = qb * 32; i < Math.min(200, qb * 32 + 32); i++) for (let j = kb * 32; j < Math.min(200, kb * 32 + 32); j++, size++) if (visible(i, j)) n++;
        if (n === size) full.push(kb);
        else if (n > 0) partial.push(kb);
      }
      expect(Array.from(bm.kvIndices.subarray(qb * 7, qb * 7 + bm.kvNumBlocks[qb])), `query block ${qb}`).toEqual(partial);
      expect(Array.from(bm.fullKvIndices.subarray(qb * 7, qb * 7 + bm.fullKvNumBlocks[qb]))).toEqual(full);
    }
    const c: AttentionCase = { batch: 2, headsQ: 8, headsKv: 2, seqQ: 200, seqK: 200, dimQK: 32, returnLse: true };
    await check('cpu', c, { blockMask: bm, scoreMod: softcap(4) }, 5);
    expect(await difference('cpu', c, { blockMask: bm }, { maskMod: mask }, 6)).toBeLessThanOrEqual(1e-6);
  });

  it('refuses a block mask that does not fit the call, or disagrees with maskMod', async () => {
    const bm = await createBlockMask(causal(), 1, 1, 64, 64);
    const { q, k, v } = makeCase({ batch: 1, headsQ: 1, seqQ: 60, seqK: 64, dimQK: 8 }, 1);
    expect(() => validateAttention(q, k, v, { blockMask: bm })).toThrow(ShapeError);
    const ok = makeCase({ batch: 1, headsQ: 1, seqQ: 64, seqK: 64, dimQK: 8 }, 1);
    expect(() => validateAttention(ok.q, ok.k, ok.v, { blockMask: bm, maskMod: causal() })).toThrow(/disagree/);
    expect(() => validateAttention(ok.q, ok.k, ok.v, { scoreMod: 'tanh' as never })).toThrow(/must be a ScoreMod/);
    expect(() => validateAttention(ok.q, ok.k, ok.v, { sink: [1, 2] })).toThrow(/\[Nq\] = \[1\]/);
    await expect(createBlockMask(causal(), 1, 1, 64, 64, { blockSize: 6 })).rejects.toThrow(/multiples of 4/);
  });

  it('dense bool masks get the same block skip (derived from the mask) with the same results', async () => {
    const c: AttentionCase = { batch: 1, headsQ: 2, seqQ: 150, seqK: 150, dimQK: 16, mask: 'blocks', maskShape: '2d', returnLse: true };
    await check('cpu', c, {}, 11);
  });
});

describe('mods on WebGPU (portable tier and naive path)', async () => {
  const skip = await skipNotice('the WebGPU mods tests');
  const docs = Int32Array.from({ length: 97 }, (_, i) => Math.floor(i / 20));
  const docsT = capture(Int32Array.from({ length: 150 }, (_, i) => Math.floor(i / 40)));
  const rel = capture(Float32Array.from({ length: 3 * 64 }, (_, i) => Math.sin(i)), [3, 64]);
  const combined: AttentionOptions = {
    scoreMod: scoreMod(({ score, h, q, kv }) => score.add(rel.at(h, q.sub(kv).add(32))).div(3).tanh().mul(3)),
    maskMod: documentMask(docs, { causal: true }).or(prefixLM(3, 'top-left')),
    sink: [0.25, -1, 3],
  };
  it.skipIf(skip)('score + mask + sink functions with tensors, odd sizes (one compile)', () => check('webgpu', SQUARE, combined, 21));
  it.skipIf(skip)('a block mask together with a dense bool mask (block table path)', async () => {
    const bm = await createBlockMask(documentMask(docs, { causal: true }), 1, 1, 97, 97, { blockSize: 32 });
    await check('webgpu', { ...SQUARE, mask: 'blocks', maskShape: 'batch' }, { blockMask: bm }, 22);
  });
  it.skipIf(skip)('createBlockMask on the GPU finds the CPU\'s block lists (per batch and head)', async () => {
    const mask = maskMod(({ b, h, q, kv }) => q.add(b.mul(7)).add(h.mul(3)).ge(kv).and(docsT.at(q).eq(docsT.at(kv))));
    const [cpu, gpu] = [await createBlockMask(mask, 2, 3, 150, 130, { blockSize: 32 }), await createBlockMask(mask, 2, 3, 150, 130, { blockSize: 32, backend: 'webgpu' })];
    expect([gpu.batch, gpu.heads, gpu.qBlocks, gpu.kBlocks]).toEqual([2, 3, 5, 5]);
    expect(Array.from(gpu.grid.status)).toEqual(Array.from(cpu.grid.status));
  });
  it.skipIf(skip)('a dense mask on the GPU gets its block table found on the GPU (same results, tiles skipped)', async () => {
    const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
    const runtime = await getRuntime();
    const c: AttentionCase = { batch: 2, headsQ: 2, seqQ: 90, seqK: 110, dimQK: 16, mask: 'blocks', maskShape: 'batch', causal: true, returnLse: true };
    const { q, k, v, options } = makeCase(c, 31);
    const toGpu = (t: Tensor) => Tensor.fromGpuBuffer({ device: runtime.device, buffer: runtime.upload(t.data as ArrayBufferView, 'test'), byteOffset: 0 }, t.shape, t.dtype);
    const mask = options.mask as Tensor;
    const problem = validateAttention(q, k, v, options);
    const result = await attention(toGpu(q), toGpu(k), toGpu(v), { ...options, mask: toGpu(mask), backend: 'webgpu' });
    expect(result.stats?.launches).toBe(3); // tile status, block lists, attention
    const read = async (t: Tensor) => new Float32Array(await runtime.read(t.gpu!.buffer, 0, t.size * 4));
    const host = { out: Tensor.fromData(await read(result.out), result.out.shape), lse: Tensor.fromData(await read(result.lse!), result.lse!.shape) };
    expect(checkAgainstReference(problem, host).failures.join('; ')).toBe('');
  });
  it.skipIf(skip)('the naive path runs score and mask functions too', () => check('webgpu', SQUARE, { scoreMod: combined.scoreMod, maskMod: combined.maskMod }, 23, true));
  it.skipIf(skip)('softcap as a function agrees with options.softcap', async () => {
    expect(await difference('webgpu', { batch: 1, headsQ: 2, seqQ: 40, seqK: 40, dimQK: 32 }, { softcap: 5, scale: 2 }, { scoreMod: softcapFunction(5), scale: 2 }, 24)).toBeLessThanOrEqual(2e-6);
  });
});

describe('tensor-core tier with masks, bias and functions', () => {
  const base = { dtype: 'float16' as const, batch: 1, headsQ: 4, headsKv: 2, seqQ: 40, seqK: 50, dimQK: 64 };
  it('takes masks, bias and functions now (one head per workgroup when a block table may apply)', () => {
    const withMask = makeCase({ ...base, mask: 'blocks' }, 1);
    const p = validateAttention(withMask.q, withMask.k, withMask.v, withMask.options);
    const H200: Parameters<typeof sgMatrixProblemUnsupported>[1] = {
      features: new Set(['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix']),
      limits: { maxComputeWorkgroupStorageSize: 49152, maxStorageBuffersPerShaderStage: 16, maxStorageBufferBindingSize: 2 ** 31, maxComputeWorkgroupsPerDimension: 65535, minStorageBufferOffsetAlignment: 256 },
      adapter: { subgroupMinSize: 32, subgroupMaxSize: 32, subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 }] },
    };
    expect(sgMatrixProblemUnsupported(p, H200)).toBeUndefined();
    const o = kernelOptionsOf(p, { ...SG_MATRIX_CONFIGS[0], headsPerTile: 2 }, undefined, true);
    expect(o.headsPerTile).toBe(1);
    expect(o.score).toMatchObject({ mask: true, blockTable: true });
  });

  it('the hook variants compile (Tint, via Dawn\'s null backend)', () => {
    const mods = planMods({ scoreMod: t5RelativeBias(new Float32Array(64), {}), maskMod: documentMask(new Int32Array(64)), sinkMod: attentionSinks([1, 2]) }).kernel;
    const BASE: SgMatrixKernelOptions = {
      dimQK: 128, dimRope: 0, dimV: 128, subgroups: 4, blockKeys: 32, headsPerTile: 1, sharedKV: false, vectorLoads: true,
      rescaleThreshold: 8, causalOrWindow: true, softcap: false, alibi: false, returnLse: true, rowPad: 8, smemVec4: true, prefetch: true, unrolled: false,
    };
    const hook = (x: Partial<NonNullable<SgMatrixKernelOptions['score']>>) => ({ mask: false, bias: 'none' as const, windowed: true, softcap: false, alibi: false, blockTable: false, ...x });
    const variants: SgMatrixKernelOptions[] = [
      { ...BASE, score: hook({ mask: true }) },
      { ...BASE, score: hook({ bias: 'float16', mods }) },
      { ...BASE, score: hook({ mask: true, blockTable: true, mods }) },
      { ...BASE, prefetch: false, smemVec4: false, score: hook({ blockTable: true, mods }) },
      { ...BASE, unrolled: true, softcap: true, alibi: true, score: hook({ softcap: true, alibi: true, bias: 'float32', mask: true, blockTable: true }) },
      { ...BASE, dimQK: 59, dimV: 111, vectorLoads: false, prefetch: false, smemVec4: false, causalOrWindow: false, score: hook({ windowed: false, mods, blockTable: true }) },
    ];
    const errors = tintErrors(Object.fromEntries(variants.map((o, i) => [`variant ${i}`, buildFlashSgMatrix(o)])), 'the tensor-core tier score hook');
    if (errors) for (const [label, list] of Object.entries(errors)) expect(list, label).toEqual([]);
  });
});

// On the GPU machine: the same mods cases on the tensor-core tier, float16 (oracle: float64 reference)
const { listBackends } = await import('../dist/index.js');
const gpu = (await listBackends()).find((b) => b.name === 'webgpu');
const hasMatrices = Boolean(gpu?.available && /subgroup-matrix/.test(gpu.detail));
if (!hasMatrices) console.warn('\n!!! SKIPPING the tensor-core tier mods cases: no adapter with chromium-experimental-subgroup-matrix here (they run on the GPU machine)\n');
describe.skipIf(!hasMatrices)('mods on the tensor-core tier (float16)', () => {
  const docs = Int32Array.from({ length: 300 }, (_, i) => Math.floor(i / 70));
  const c16 = (c: AttentionCase): AttentionCase => ({ ...c, dtype: 'float16' });
  const cases: Array<[string, AttentionCase, () => Promise<AttentionOptions>]> = [
    ['dense bool mask (blocks)', c16({ batch: 2, headsQ: 4, headsKv: 2, seqQ: 300, seqK: 300, dimQK: 64, mask: 'blocks', returnLse: true }), async () => ({})],
    ['additive bias with -inf blocks', c16({ batch: 1, headsQ: 4, seqQ: 130, seqK: 190, dimQK: 128, bias: 'neg-inf-blocks', returnLse: true }), async () => ({})],
    ['block mask (document, causal) + softcap + sinks', c16({ batch: 2, headsQ: 4, seqQ: 300, seqK: 300, dimQK: 128, returnLse: true }),
      async () => ({ blockMask: await createBlockMask(documentMask(docs, { causal: true }), 1, 1, 300, 300), scoreMod: softcap(20), sink: [1, 0, -1, 2] })],
    ['T5 bias + sliding window function, odd dims', c16({ batch: 1, headsQ: 3, seqQ: 77, seqK: 93, dimQK: 59, dimV: 111, returnLse: true }),
      async () => ({ scoreMod: t5RelativeBias(Float32Array.from({ length: 96 }, (_, i) => Math.sin(i))), maskMod: slidingWindow(30, 2), scale: 1 })],
  ];
  for (const [index, [name, c, extra]] of cases.entries()) {
    it(name, async () => {
      process.env.FUSEDATTN_WEBGPU_TIER = 'sgmatrix';
      try {
        await check('webgpu', c, await extra(), 800 + index);
      } finally {
        delete process.env.FUSEDATTN_WEBGPU_TIER;
      }
    });
  }
});
