// The decode op as composites call it (queueAttentionDecode on buffers they hold, recorded for
// replay), on the adapter here against the float64 attention reference:
//   cache mode   the unfused runner module: rotated queries [T*B, Nq*D] against its SBH cache
//                [capacity, B, Nkv*D] after its own append, one length for every sequence;
//   packed mode  the fused block: Q and the new K/V read from packed QKV rows, RoPE in the
//                kernel (a position-indexed table), the new K/V stored into the cache by the kernel.
// And the plan: tile size and split count by cache length.
import { describe, expect, it } from 'vitest';
import { Tensor, fromHalfBits, referenceAttention, toHalfBits, validateAttention } from '../dist/index.js';
import { normal, randomFloats, uniform } from '../dist/testing/index.js';
import { applyRope } from '../dist/model/cpu/kernels.js';
import { configFrom, ropeTable, tinyConfigJson } from '../dist/model/index.js';
import { getRuntime } from '../dist/engines/webgpu/runtime.js';
import { type DecodePlan, type DecodeShape, combineWorkgroupSize, decodeSplits, planDecode, prepareDecode, queueAttentionDecode } from '../dist/ops/decode/webgpu/index.js';
import { backendsHere } from './helpers.js';
import { expectClose } from './model-helpers.js';

const webgpu = (await backendsHere()).find((b) => b.name === 'webgpu')!;
if (webgpu.skip) console.warn(`\n!!! SKIPPING the decode composite tests: ${webgpu.skip}\n`);

const gauss = normal(uniform(33));
const rand = (n: number) => randomFloats(n, gauss);

/** float64 reference: causal attention of q [T, B, Nq D] over the first `length` cache positions (SBH). */
function reference(q: Float32Array, keys: Float32Array, values: Float32Array, s: { batch: number; tokens: number; length: number; headsQ: number; headsKv: number; headDim: number }): Float64Array {
  const { batch, tokens, length, headsQ, headsKv, headDim: D } = s;
  const prefix = (x: Float32Array) => Tensor.fromData(x.subarray(0, length * batch * headsKv * D), [length, batch, headsKv * D]);
  const problem = validateAttention(Tensor.fromData(q, [tokens, batch, headsQ * D]), prefix(keys), prefix(values), { layout: 'SBH', heads: headsQ, kvHeads: headsKv, causal: true });
  return referenceAttention(problem).out;
}

/**
 * The compiled plan of a step that appends, under FUSEDATTN_DECODE_SEPARATE_APPEND=separate (and
 * `env`), checked to take the append-first path exactly when asked.
 */
async function appendPlan(shape: DecodeShape, separate: '0' | '1', target?: number, env: Record<string, string> = {}): Promise<DecodePlan> {
  const set = { ...env, FUSEDATTN_DECODE_SEPARATE_APPEND: separate };
  for (const [k, v] of Object.entries(set)) process.env[k] = v;
  const plan = planDecode(shape, (await getRuntime()).limits, target);
  for (const k of Object.keys(set)) delete process.env[k];
  if (typeof plan === 'string') throw new Error(plan);
  expect(plan.pipelined?.append !== undefined).toBe(separate === '1');
  await prepareDecode(await getRuntime(), plan, false);
  return plan;
}

const shapeOf = (D: number, G: number, Nkv: number, B: number, T: number, keys: number, packed: boolean) => ({
  dimQK: D, dimV: D, group: G, headsKv: Nkv, batch: B, tokens: T, maxKeys: keys, cache: 'float32' as const, io: 'float32' as const,
  paged: false, sharedKV: false, append: packed, rope: packed, softcap: false, alibi: false, lse: false,
});

describe.skipIf(webgpu.skip !== undefined)('the decode op in the runner\'s modes on WebGPU vs the float64 reference', () => {
  for (const shape of [
    { name: 'decode: 1 query, 300 cached keys, GQA 6/2, D 16, many splits', batch: 1, tokens: 1, start: 299, headsQ: 6, headsKv: 2, headDim: 16, target: 64 },
    { name: 'prefill chunk: batch 2, 5 new tokens after 200, MQA 4/1, D 12, splits', batch: 2, tokens: 5, start: 200, headsQ: 4, headsKv: 1, headDim: 12, target: 64 },
    { name: 'first tokens: 3 new, empty cache, 2/2 heads, D 20, one split', batch: 1, tokens: 3, start: 0, headsQ: 2, headsKv: 2, headDim: 20, target: 1 },
  ]) {
    it(`cache mode, ${shape.name}`, async () => {
      const rt = await getRuntime();
      const { batch: B, tokens: T, start, headsQ: Nq, headsKv: Nkv, headDim: D } = shape;
      const length = start + T;
      const q = rand(B * T * Nq * D);
      const keys = rand((length + 3) * B * Nkv * D); // capacity beyond length: never read
      const values = rand(keys.length);
      const want = reference(q, keys, values, { ...shape, length });
      const plan = planDecode(shapeOf(D, Nq / Nkv, Nkv, B, T, length, false), rt.limits, shape.target);
      if (typeof plan === 'string') throw new Error(plan);
      await prepareDecode(rt, plan, false);
      const out = rt.acquire(B * T * Nq * D * 4, 'output', 'out');
      const rows = (w: number) => ({ off: 0, sb: w, sh: D, si: B * w });
      const sbh = (x: Float32Array) => ({ binding: rt.upload(x, 'cache'), off: 0, sp: Nkv * D, sh: D, spos: B * Nkv * D });
      await queueAttentionDecode(rt, plan, {
        batch: B, tokens: T, headsQ: Nq, headsKv: Nkv, q: { binding: rt.upload(q, 'q'), ...rows(Nq * D) },
        keys: sbh(keys), values: sbh(values), pageSize: 0, maxPages: 1, numPages: B,
        meta: { binding: rt.upload(Uint32Array.of(start, start), 'positions'), lengthsAt: 0, lengthsStride: 0, lengthsAdd: T },
        out: { binding: out, ...rows(Nq * D) }, scale: 1 / Math.sqrt(D), softcap: 0, window: { left: Infinity, right: 0, align: 'bottom-right' },
      });
      const got = new Float32Array(await rt.read(out, 0, B * T * Nq * D * 4));
      expect(plan.splits > 1).toBe(shape.target > 1);
      expectClose(`decode, ${plan.splits} splits`, got, want, 2e-6);
      rt.release(out);
    });
  }

  it('packed mode: RoPE on q and the new key in the kernel, the new key/value appended to the cache', async () => {
    const rt = await getRuntime();
    const config = configFrom(tinyConfigJson({ rope_scaling: { type: 'linear', factor: 2 } }));
    const [B, start, Nq, Nkv, D] = [2, 45, 6, 2, 16];
    const W = (Nq + 2 * Nkv) * D;
    const capacity = start + 4;
    const qkv = rand(B * W);
    const keys = rand(capacity * B * Nkv * D);
    const values = rand(keys.length);
    // a table of positions 40.. (rope_base 40): row start - 40 rotates the new token
    const base = 40;
    const table = ropeTable({ ...config, headDim: D }, base, 8);
    const step = ropeTable({ ...config, headDim: D }, start, 1);
    const q = new Float32Array(B * Nq * D);
    const newK = new Float32Array(B * Nkv * D);
    const wantKeys = keys.slice();
    const wantValues = values.slice();
    for (let b = 0; b < B; b++) {
      q.set(qkv.subarray(b * W, b * W + Nq * D), b * Nq * D);
      newK.set(qkv.subarray(b * W + Nq * D, b * W + (Nq + Nkv) * D), b * Nkv * D);
      wantValues.set(qkv.subarray(b * W + (Nq + Nkv) * D, (b + 1) * W), (start * B + b) * Nkv * D);
    }
    applyRope(q, B, Nq, D, step);
    applyRope(newK, B, Nkv, D, step);
    wantKeys.set(newK, start * B * Nkv * D);
    const want = reference(q, wantKeys, wantValues, { batch: B, tokens: 1, length: start + 1, headsQ: Nq, headsKv: Nkv, headDim: D });
    const rope = new Float32Array(8 * D);
    rope.set(table.cos, 0);
    rope.set(table.sin, 8 * (D / 2));
    // the append and RoPE in a dispatch of their own before the pipelined kernel, and inside the general kernel's
    for (const [separate, target] of [['1', 1], ['1', 64], ['0', 1], ['0', 64]] as const) {
      const plan = await appendPlan(shapeOf(D, Nq / Nkv, Nkv, B, 1, start + 1, true), separate, target);
      const kBuf = rt.upload(keys, 'keys');
      const vBuf = rt.upload(values, 'values');
      const qkvBuf = rt.upload(qkv, 'qkv');
      const out = rt.acquire(B * Nq * D * 4, 'output', 'out');
      const packed = (col: number) => ({ off: col, sb: W, sh: D, si: B * W });
      const sbh = (binding: GPUBuffer) => ({ binding, off: 0, sp: Nkv * D, sh: D, spos: B * Nkv * D });
      await queueAttentionDecode(rt, plan, {
        batch: B, tokens: 1, headsQ: Nq, headsKv: Nkv, q: { binding: qkvBuf, ...packed(0) },
        keys: sbh(kBuf), values: sbh(vBuf), pageSize: 0, maxPages: 1, numPages: B,
        meta: { binding: rt.upload(Uint32Array.of(start, base), 'positions'), lengthsAt: 0, lengthsStride: 0, ropeBaseAt: 1 },
        append: { binding: qkvBuf, k: packed(Nq * D), v: packed((Nq + Nkv) * D) }, rope: { buffer: rt.upload(rope, 'rope'), rows: 8 },
        out: { binding: out, off: 0, sb: Nq * D, sh: D, si: B * Nq * D }, scale: 1 / Math.sqrt(D), softcap: 0, window: { left: Infinity, right: Infinity, align: 'bottom-right' },
      });
      expectClose(`packed decode, ${plan.pipelined ? `append first, ${plan.pipelined.splits}` : plan.splits} splits`, new Float32Array(await rt.read(out)).subarray(0, B * Nq * D), want, 2e-6);
      expectClose('cache keys after the append', new Float32Array(await rt.read(kBuf)).subarray(0, keys.length), wantKeys, 1e-6);
      expect(Array.from(new Float32Array(await rt.read(vBuf)).subarray(0, values.length))).toEqual(Array.from(wantValues));
      for (const b of [kBuf, vBuf, qkvBuf, out]) rt.release(b);
    }
  });
});

describe.skipIf(webgpu.skip !== undefined)('the append as a dispatch of its own on WebGPU', () => {
  // the general kernel's append (inside its attention dispatch) is the check: the same cache words
  // and int8 scales, the same output, on an int8 and a float16 cache with RoPE; int8 also in the
  // pipelined kernel's words of 8 (FUSEDATTN_DECODE_PIPE_CHUNK=8: the append stores in them too)
  it.each([['int8', 1, ''], ['float16', 1, ''], ['int8', 3, ''], ['float16', 3, ''], ['int8', 3, ', words of 8']] as const)('%s cache, %i new tokens%s: the append-first step stores what the general kernel stores and attends the same', async (dtype, T, eight) => {
    const rt = await getRuntime();
    const [B, start, Nq, Nkv, D] = [2, 50, 4, 2, 32];
    const W = (Nq + 2 * Nkv) * D;
    const capacity = start + 3;
    const qkv = rand(T * B * W);
    const words = (capacity * B * Nkv * D) / (dtype === 'int8' ? 4 : 2);
    const gen = uniform(dtype === 'int8' ? 5 : 6);
    const cacheWords = () => Uint32Array.from({ length: words }, () => {
      if (dtype === 'int8') return (Math.floor(gen() * 2 ** 32)) >>> 0;
      return (toHalfBits(gen() * 2 - 1) | (toHalfBits(gen() * 2 - 1) << 16)) >>> 0;
    });
    const keys = cacheWords();
    const values = cacheWords();
    const scales = Float32Array.from({ length: capacity * B * Nkv }, () => 0.01 + gen() * 0.02);
    const table = ropeTable({ ...configFrom(tinyConfigJson()), headDim: D }, 0, capacity);
    const rope = new Float32Array(capacity * D);
    rope.set(table.cos, 0);
    rope.set(table.sin, capacity * (D / 2));
    const runs = [];
    for (const separate of ['1', '0']) {
      // int8 caches take the pipelined kernel only when asked (FUSEDATTN_DECODE_PIPELINED=2)
      const plan = await appendPlan({ ...shapeOf(D, Nq / Nkv, Nkv, B, T, start + T, true), cache: dtype }, separate as '0' | '1', undefined, { FUSEDATTN_DECODE_PIPELINED: '2', ...(eight ? { FUSEDATTN_DECODE_PIPE_CHUNK: '8' } : {}) });
      if (eight && plan.pipelined) expect([plan.pipelined.kernel.chunk, plan.pipelined.append?.chunk]).toEqual([8, 8]);
      const kBuf = rt.upload(keys, 'keys');
      const vBuf = rt.upload(values, 'values');
      const ksBuf = rt.upload(scales, 'key scales');
      const vsBuf = rt.upload(scales, 'value scales');
      const qkvBuf = rt.upload(qkv, 'qkv');
      const out = rt.acquire(T * B * Nq * D * 4, 'output', 'out');
      const packed = (col: number) => ({ off: col, sb: W, sh: D, si: B * W });
      const sbh = (binding: GPUBuffer, d: number) => ({ binding, off: 0, sp: Nkv * d, sh: d, spos: B * Nkv * d });
      await queueAttentionDecode(rt, plan, {
        batch: B, tokens: T, headsQ: Nq, headsKv: Nkv, q: { binding: qkvBuf, ...packed(0) },
        keys: sbh(kBuf, D), values: sbh(vBuf, D), ...(dtype === 'int8' ? { kScales: sbh(ksBuf, 1), vScales: sbh(vsBuf, 1) } : {}),
        pageSize: 0, maxPages: 1, numPages: B,
        meta: { binding: rt.upload(Uint32Array.of(start, 0), 'positions'), lengthsAt: 0, lengthsStride: 0, ropeBaseAt: 1 },
        append: { binding: qkvBuf, k: packed(Nq * D), v: packed((Nq + Nkv) * D) }, rope: { buffer: rt.upload(rope, 'rope'), rows: capacity },
        out: { binding: out, off: 0, sb: Nq * D, sh: D, si: B * Nq * D }, scale: 1 / Math.sqrt(D), softcap: 0, window: { left: Infinity, right: Infinity, align: 'bottom-right' },
      });
      runs.push({
        out: new Float32Array(await rt.read(out)).slice(0, T * B * Nq * D),
        keys: new Uint32Array(await rt.read(kBuf)).slice(0, words), values: new Uint32Array(await rt.read(vBuf)).slice(0, words),
        kScales: new Float32Array(await rt.read(ksBuf)).slice(0, scales.length), vScales: new Float32Array(await rt.read(vsBuf)).slice(0, scales.length),
      });
      for (const b of [kBuf, vBuf, ksBuf, vsBuf, qkvBuf, out]) rt.release(b);
    }
    const [first, general] = runs;
    // the new rows were stored (the step's position changed), identically by both
    const row = (start * B * Nkv * D) / (dtype === 'int8' ? 4 : 2);
    expect(Array.from(first.keys.subarray(row, row + 4))).not.toEqual(Array.from(keys.subarray(row, row + 4)));
    // equal within one unit of the cache's last place (a GPU may fuse the RoPE products differently in each kernel)
    const elements = (w: Uint32Array) => (dtype === 'int8' ? Array.from(new Int8Array(w.buffer, 0, w.length * 4)) : Array.from(new Uint16Array(w.buffer, 0, w.length * 2), fromHalfBits));
    const near = (got: Uint32Array, want: Uint32Array, what: string) => {
      const [g, w] = [elements(got), elements(want)];
      const bad = g.findIndex((x, i) => Math.abs(x - w[i]) > (dtype === 'int8' ? 1 : 1e-3 * Math.max(1, Math.abs(w[i]))));
      expect(bad, `${what}: element ${bad}`).toBe(-1);
    };
    near(first.keys, general.keys, 'keys');
    near(first.values, general.values, 'values');
    if (dtype === 'int8') {
      expectClose('key scales', first.kScales, Float64Array.from(general.kScales), 1e-6);
      expectClose('value scales', first.vScales, Float64Array.from(general.vScales), 1e-6);
    }
    expectClose(`${dtype}: append first against the general kernel`, first.out, Float64Array.from(general.out), 1e-5);
  });
});

describe('the decode plan', () => {
  const h200 = { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupSizeX: 1024, maxStorageBuffersPerShaderStage: 16, maxComputeWorkgroupsPerDimension: 65535 };
  it('picks the tile size and split count by cache length (as the runner\'s H200 runs chose)', () => {
    const plan = (D: number, G: number, keys: number, kv: number) => {
      const p = planDecode(shapeOf(D, G, kv, 1, 1, keys, true), h200);
      if (typeof p === 'string') throw new Error(p);
      return [p.kernel.workgroupSize, p.splits];
    };
    expect(plan(64, 7, 550, 2)).toEqual([64, 16]); // short cache: small tiles, splits rounded up
    expect(plan(64, 7, 4096, 2)).toEqual([64, 64]);
    expect(plan(64, 7, 32768, 2)).toEqual([256, 128]);
    expect(plan(128, 7, 4096, 4)).toEqual([128, 32]);
    expect(plan(128, 4, 32768, 8)).toEqual([256, 32]);
    expect(plan(128, 7, 1, 4)).toEqual([64, 1]);
  });

  it('fits MLA\'s 576 / 512 latent heads by heads per workgroup, and says why when nothing fits', () => {
    const mla = { ...shapeOf(576, 128, 1, 1, 1, 32768, false), dimV: 512, cache: 'float16' as const, sharedKV: true };
    const p = planDecode(mla, h200);
    if (typeof p === 'string') throw new Error(p);
    expect(p.kernel.headsPerBlock).toBeLessThan(128);
    expect(p.grid[0]).toBe(128 / p.kernel.headsPerBlock);
    expect(planDecode(mla, { ...h200, maxComputeWorkgroupStorageSize: 2048 })).toMatch(/workgroup memory/);
    expect(planDecode({ ...mla, dimQK: 58 }, h200)).toMatch(/multiples of 4/);
  });

  it('split counts', () => {
    expect(decodeSplits(32768, 2, 256)).toBe(128);
    expect(decodeSplits(300, 2, 256)).toBe(2);
    expect(decodeSplits(1, 32, 256)).toBe(1);
    expect(decodeSplits(1 << 20, 1, 256, 512)).toBe(256);
  });

  it('combine width: 1024 threads per row only for few rows of Dv 512+ over many splits, within the device, a power of two', () => {
    expect(combineWorkgroupSize(16, 128, 512, 1024)).toBe(1024); // MLA: 16 heads, 128 splits
    expect(combineWorkgroupSize(16, 128, 512, 256)).toBe(256); // a device of 256 threads
    expect(combineWorkgroupSize(16, 16, 512, 1024)).toBe(256); // few splits
    expect(combineWorkgroupSize(256, 128, 512, 1024)).toBe(256); // many rows
    expect(combineWorkgroupSize(32, 128, 128, 1024)).toBe(256); // llama-8b's rows of 128 (slower wide on the H200)
    expect(combineWorkgroupSize(16, 128, 512, 1024, 300)).toBe(256); // an override rounds down to a power of two
  });
});
