// The second split-KV decode kernel pair (src/ops/decode/webgpu/flash-decode.wgsl.ts) on the adapter
// here (Mesa llvmpipe in CI) against the float64 attention reference: cache mode (query rotated
// already, every key in the cache) for decode and short prefill chunks, and packed mode (query and
// the new token's key/value read from packed QKV rows, RoPE in the kernel, the new key/value
// appended to the cache by the kernel). Dispatched by hand, one kernel at a time.
import { describe, expect, it } from 'vitest';
import { acquireDevice } from '../dist/engines/webgpu/device.js';
import { Tensor, referenceAttention, validateAttention } from '../dist/index.js';
import { normal, randomFloats, uniform } from '../dist/testing/index.js';
import { applyRope } from '../dist/model/cpu/kernels.js';
import { configFrom, ropeTable, tinyConfigJson } from '../dist/model/index.js';
import {
  FLASH_COMBINE_PARAMS, FLASH_DECODE_PARAMS, buildFlashCombine, buildFlashDecode, flashDecodeOptions, flashDecodeSplits,
} from '../dist/ops/decode/webgpu/flash-decode.wgsl.js';
import { backendsHere } from './helpers.js';
import { type KernelBinding, runKernel } from './webgpu-helpers.js';
import { expectClose } from './model-helpers.js';

const webgpu = (await backendsHere()).find((b) => b.name === 'webgpu')!;
if (webgpu.skip) console.warn(`\n!!! SKIPPING the flash-decode kernel tests: ${webgpu.skip}\n`);
const device = webgpu.skip ? undefined : (await acquireDevice()).device;

/** Runs one kernel; returns the contents of every binding (inputs too), in binding order. */
const run = (wgsl: string, bindings: KernelBinding[], workgroups: [number, number?, number?]) => runKernel(device!, wgsl, bindings, workgroups);

const gauss = normal(uniform(33));
const rand = (n: number, scale = 1) => randomFloats(n, gauss, scale);

/** float64 reference: causal attention of q [T, B, Nq D] over the first `length` cache positions (SBH). */
function reference(q: Float32Array, keys: Float32Array, values: Float32Array, s: { batch: number; tokens: number; length: number; headsQ: number; headsKv: number; headDim: number }): Float64Array {
  const { batch, tokens, length, headsQ, headsKv, headDim: D } = s;
  const prefix = (x: Float32Array) => Tensor.fromData(x.subarray(0, length * batch * headsKv * D), [length, batch, headsKv * D]);
  const problem = validateAttention(Tensor.fromData(q, [tokens, batch, headsQ * D]), prefix(keys), prefix(values), { layout: 'SBH', heads: headsQ, kvHeads: headsKv, causal: true });
  return referenceAttention(problem).out;
}

const limits = device?.limits;

/** Partial + combine; returns the output and the cache buffers as the kernel left them. */
async function flashDecode(o: { headDim: number; group: number; packed: boolean; workgroupSize: number }, inputs: {
  q: Float32Array; keys: Float32Array; values: Float32Array; rope?: Float32Array; ropeRows?: number;
  batch: number; tokens: number; start: number; headsQ: number; headsKv: number; splits: number; qStride: number; kCol?: number; vCol?: number;
}) {
  const { batch, tokens, start, headsQ, headsKv, splits } = inputs;
  const D = o.headDim;
  const rows = batch * tokens;
  const params = FLASH_DECODE_PARAMS.pack({
    batch, tokens, heads_q: headsQ, heads_kv: headsKv, q_stride: inputs.qStride, k_col: inputs.kCol ?? 0, v_col: inputs.vCol ?? 0,
    kc_off: 0, vc_off: 0, rope_rows: inputs.ropeRows ?? 0, scale: 1 / Math.sqrt(D),
  });
  const partialFloats = rows * headsQ * splits * (D + 4);
  const bindings: KernelBinding[] = [
    { uniform: params }, { read: inputs.q }, { readWrite: inputs.keys }, { readWrite: inputs.values }, { write: partialFloats },
    { read: Uint32Array.of(start, start) },
  ];
  if (o.packed) bindings.push({ read: inputs.rope! });
  const [, , keys, values, partials] = await run(buildFlashDecode(o), bindings, [headsKv, rows, splits]);
  // one split: the partial kernel writes the output itself
  if (splits === 1) return { out: partials.subarray(0, rows * headsQ * D), keys, values };
  const [, , out] = await run(buildFlashCombine({ headDim: D }), [
    { uniform: FLASH_COMBINE_PARAMS.pack({ row_heads: rows * headsQ, splits }) }, { read: partials.subarray(0, partialFloats) }, { write: rows * headsQ * D },
  ], [rows * headsQ, 1]);
  return { out: out.subarray(0, rows * headsQ * D), keys, values };
}

describe.skipIf(!device)('flash-decode kernels on WebGPU vs the float64 reference', () => {
  for (const shape of [
    { name: 'decode: 1 query, 300 cached keys, GQA 6/2, D 16, 7 splits', batch: 1, tokens: 1, start: 299, headsQ: 6, headsKv: 2, headDim: 16, splits: 7 },
    { name: 'decode: batch 3, 77 keys, GQA 7/1, D 64, splits past the keys (empty splits)', batch: 3, tokens: 1, start: 76, headsQ: 7, headsKv: 1, headDim: 64, splits: 5 },
    { name: 'prefill chunk: batch 2, 5 new tokens after 37, MQA 4/1, D 12', batch: 2, tokens: 5, start: 37, headsQ: 4, headsKv: 1, headDim: 12, splits: 3 },
    { name: 'first tokens: 3 new, empty cache, 2/2 heads, D 20 (D/4 not a power of two)', batch: 1, tokens: 3, start: 0, headsQ: 2, headsKv: 2, headDim: 20, splits: 1 },
  ]) {
    it(`cache mode, ${shape.name}`, async () => {
      const { batch, tokens, start, headsQ, headsKv, headDim: D } = shape;
      const length = start + tokens;
      const q = rand(batch * tokens * headsQ * D);
      const keys = rand((length + 3) * batch * headsKv * D); // capacity beyond length: never read
      const values = rand(keys.length);
      const want = reference(q, keys, values, { ...shape, length });
      const o = flashDecodeOptions(D, headsQ / headsKv, false, limits!)!;
      expect(o).toBeDefined();
      for (const workgroupSize of [o.workgroupSize, 32]) {
        const { out } = await flashDecode({ ...o, workgroupSize }, { ...shape, q, keys, values, qStride: headsQ * D });
        expectClose(`flash decode WG ${workgroupSize}`, out, want, 2e-6);
      }
    });
  }

  it('packed mode: RoPE on q and the new key in the kernel, the new key/value appended to the cache', async () => {
    const config = configFrom(tinyConfigJson({ rope_scaling: { type: 'linear', factor: 2 } }));
    const [batch, start, headsQ, headsKv, D] = [2, 45, 6, 2, 16];
    const W = (headsQ + 2 * headsKv) * D;
    const capacity = start + 4;
    const qkv = rand(batch * W);
    const keys = rand(capacity * batch * headsKv * D);
    const values = rand(keys.length);
    const table = ropeTable({ ...config, headDim: D }, start, 1);
    // the expected cache: the rotated new key and the raw new value at position `start`
    const q = new Float32Array(batch * headsQ * D);
    const newK = new Float32Array(batch * headsKv * D);
    const wantKeys = keys.slice();
    const wantValues = values.slice();
    for (let b = 0; b < batch; b++) {
      q.set(qkv.subarray(b * W, b * W + headsQ * D), b * headsQ * D);
      newK.set(qkv.subarray(b * W + headsQ * D, b * W + (headsQ + headsKv) * D), b * headsKv * D);
      wantValues.set(qkv.subarray(b * W + (headsQ + headsKv) * D, (b + 1) * W), (start * batch + b) * headsKv * D);
    }
    applyRope(q, batch, headsQ, D, table);
    applyRope(newK, batch, headsKv, D, table);
    wantKeys.set(newK, start * batch * headsKv * D);
    const want = reference(q, wantKeys, wantValues, { batch, tokens: 1, length: start + 1, headsQ, headsKv, headDim: D });
    const rope = new Float32Array(D);
    rope.set(table.cos, 0);
    rope.set(table.sin, D / 2);
    const o = flashDecodeOptions(D, headsQ / headsKv, true, limits!)!;
    for (const splits of [1, 4]) {
      const got = await flashDecode(o, {
        q: qkv, keys, values, rope, ropeRows: 1, batch, tokens: 1, start, headsQ, headsKv, splits, qStride: W, kCol: headsQ * D, vCol: (headsQ + headsKv) * D,
      });
      expectClose(`packed decode, ${splits} splits`, got.out, want, 2e-6);
      expectClose('cache keys after the append', got.keys.subarray(0, keys.length), wantKeys, 1e-6);
      expect(Array.from(got.values.subarray(0, values.length))).toEqual(Array.from(wantValues));
    }
  });

  it('the plan: tile size and split count by cache length', async () => {
    const { flashDecodePlan } = await import('../dist/ops/decode/webgpu/flash-decode.js');
    const big = { limits: { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupSizeX: 1024 } } as never;
    const plan = (D: number, G: number, keys: number, kv: number) => {
      const p = flashDecodePlan(big, D, G, true, keys, kv, 1)!;
      return [p.options.workgroupSize, p.splits];
    };
    expect(plan(64, 7, 550, 2)).toEqual([64, 16]); // short cache: small tiles, splits rounded up
    expect(plan(64, 7, 4096, 2)).toEqual([64, 64]);
    expect(plan(64, 7, 32768, 2)).toEqual([256, 128]);
    expect(plan(128, 7, 4096, 4)).toEqual([128, 32]);
    expect(plan(128, 4, 32768, 8)).toEqual([256, 32]);
    expect(plan(128, 7, 1, 4)).toEqual([64, 1]);
  });

  it('split counts', () => {
    expect(flashDecodeSplits(32768, 2, 1, 256)).toBe(128);
    expect(flashDecodeSplits(300, 2, 1, 256)).toBe(2);
    expect(flashDecodeSplits(1, 8, 4, 256)).toBe(1);
    expect(flashDecodeSplits(1 << 20, 1, 1, 256, 512, 256)).toBe(256);
  });
});
