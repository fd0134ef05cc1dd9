// The runner's WGSL kernels (src/model/webgpu) run on whatever WebGPU adapter is here (Mesa
// llvmpipe in CI) and checked against the CPU runner's kernels, which the float64 reference tests
// already cover, and the float64 attention reference. Dispatched by hand (not through the
// GpuRuntime) so each kernel is tested on its own.
import { describe, expect, it } from 'vitest';
import { acquireDevice } from '../dist/engines/webgpu/device.js';
import { backendsHere } from './helpers.js';
import { type KernelBinding, runKernel } from './webgpu-helpers.js';
import { floatsToHalf } from '../dist/index.js';
import { normal, randomFloats, uniform } from '../dist/testing/index.js';
import { Tensor, referenceAttention, validateAttention } from '../dist/index.js';
import { applyRope, rmsNormRows, swigluInto } from '../dist/model/cpu/kernels.js';
import {
  EMBED_PARAMS, ELEMENTWISE_PARAMS, ELEMENTWISE_WORKGROUP, RMSNORM_PARAMS, ROPE_PARAMS,
  buildElementwise, buildEmbedding, buildRmsNorm, buildRope,
} from '../dist/model/webgpu/kernels.wgsl.js';
import {
  COMBINE_PARAMS, DECODE_PARAMS, buildDecodeCombine, buildDecodePartial, chooseSplits, decodeSharedBytes,
} from '../dist/ops/decode/webgpu/decode-attention.wgsl.js';
import { ropeTable, configFrom, tinyConfigJson } from '../dist/model/index.js';
import { expectClose } from './model-helpers.js';

// the project's own device (Dawn on a GPU, or Mesa llvmpipe here), as every other WebGPU test uses
const webgpu = (await backendsHere()).find((b) => b.name === 'webgpu')!;
if (webgpu.skip) console.warn(`\n!!! SKIPPING the model WGSL kernel tests: ${webgpu.skip}\n`);
const device = webgpu.skip ? undefined : (await acquireDevice()).device;

/** Runs one kernel; returns the contents of the write / readWrite bindings, in binding order. */
async function run(wgsl: string, bindings: KernelBinding[], workgroups: [number, number?, number?]): Promise<Float32Array[]> {
  const contents = await runKernel(device!, wgsl, bindings, workgroups);
  return contents.filter((_, i) => 'write' in bindings[i] || 'readWrite' in bindings[i]);
}

const gauss = normal(uniform(21));
const rand = (n: number, scale = 1) => randomFloats(n, gauss, scale);

describe.skipIf(!device)('model WGSL kernels on WebGPU', () => {
  it('embedding gather, f32 and f16 tables', async () => {
    const [vocab, cols, rows] = [37, 19, 5];
    const table = rand(vocab * cols);
    const ids = Uint32Array.of(3, 0, 36, 3, 17);
    const want = new Float32Array(rows * cols);
    ids.forEach((id, r) => want.set(table.subarray(id * cols, (id + 1) * cols), r * cols));
    const params = { uniform: EMBED_PARAMS.pack({ rows, cols, part_start: 0, part_rows: vocab }) };
    const [f32] = await run(buildEmbedding({ table: 'float32' }), [{ read: table }, { read: ids }, { write: rows * cols }, params], [Math.ceil(cols / 64), rows]);
    expect(f32.subarray(0, rows * cols)).toEqual(want);
    const half = floatsToHalf(table);
    const [f16] = await run(buildEmbedding({ table: 'float16' }), [{ read: half }, { read: ids }, { write: rows * cols }, params], [Math.ceil(cols / 64), rows]);
    expectClose('f16 embedding', f16.subarray(0, rows * cols), want, 1e-3);
    // a table split in parts: the part of rows 20.. leaves the rows of other ids alone
    const partParams = { uniform: EMBED_PARAMS.pack({ rows, cols, part_start: 20, part_rows: 17 }) };
    const [part] = await run(buildEmbedding({ table: 'float32' }), [{ read: table.subarray(20 * cols) }, { read: ids }, { write: rows * cols }, partParams], [Math.ceil(cols / 64), rows]);
    expect(part.subarray(2 * cols, 3 * cols)).toEqual(want.subarray(2 * cols, 3 * cols));
    expect(part.subarray(0, 2 * cols)).toEqual(new Float32Array(2 * cols));
  });

  it('RMSNorm per row (odd width, f32 and f16 weights)', async () => {
    const [rows, cols] = [3, 301];
    const x = rand(rows * cols);
    const w = rand(cols, 0.3).map((v) => 1 + v);
    const want = rmsNormRows(x, rows, cols, w, 1e-6);
    for (const dtype of ['float32', 'float16'] as const) {
      const weight = dtype === 'float32' ? w : floatsToHalf(w);
      const [out] = await run(buildRmsNorm({ weight: dtype, workgroupSize: 64 }), [{ read: x }, { read: weight }, { write: rows * cols }, { uniform: RMSNORM_PARAMS.pack({ cols, eps: 1e-6 }) }], [rows]);
      expectClose(`rmsnorm ${dtype}`, out.subarray(0, rows * cols), want, dtype === 'float32' ? 1e-6 : 1e-3);
    }
  });

  it('SwiGLU, residual add, bias add', async () => {
    const [rows, cols] = [3, 517];
    const n = rows * cols;
    const a = rand(n);
    const b = rand(n);
    const bias = rand(cols);
    const grid: [number, number] = [Math.ceil(n / ELEMENTWISE_WORKGROUP), 1];
    const params = { uniform: ELEMENTWISE_PARAMS.pack({ n, cols }) };
    const [sw] = await run(buildElementwise({ op: 'swiglu' }), [{ read: a }, { read: b }, { write: n }, params], grid);
    expectClose('swiglu', sw.subarray(0, n), swigluInto(a, b), 1e-6);
    const [sum] = await run(buildElementwise({ op: 'add' }), [{ readWrite: a }, { read: b }, params], grid);
    expectClose('add', sum.subarray(0, n), a.map((v, i) => v + b[i]), 1e-6);
    const [biased] = await run(buildElementwise({ op: 'bias' }), [{ readWrite: a }, { read: bias }, params], grid);
    expectClose('bias', biased.subarray(0, n), a.map((v, i) => v + bias[i % cols]), 1e-6);
  });

  it('RoPE in place for a batch of 2 over 3 positions', async () => {
    const config = configFrom(tinyConfigJson({ rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 32 } }));
    const [batch, tokens, heads, D] = [2, 3, 4, 8];
    const table = ropeTable(config, 40, tokens);
    const x = rand(tokens * batch * heads * D);
    const want = x.slice();
    applyRope(want, batch, heads, D, table);
    const pairs = tokens * batch * heads * D / 2;
    const cosSin = new Float32Array(2 * table.cos.length);
    cosSin.set(table.cos, 0);
    cosSin.set(table.sin, table.cos.length);
    const [out] = await run(buildRope(), [{ readWrite: x }, { read: cosSin }, { uniform: ROPE_PARAMS.pack({ rows: tokens * batch, batch, heads, half: D / 2, table_rows: tokens }) }], [Math.ceil(pairs / ELEMENTWISE_WORKGROUP), 1]);
    expectClose('rope', out.subarray(0, x.length), want, 1e-6);
  });

  for (const shape of [
    { name: 'decode: 1 query, 300 cached keys, GQA 6/2, D 16, many splits', batch: 1, tokens: 1, start: 299, headsQ: 6, headsKv: 2, headDim: 16, tileKeys: 16 },
    { name: 'prefill chunk: batch 2, 5 new tokens after 37, MQA 4/1, D 10', batch: 2, tokens: 5, start: 37, headsQ: 4, headsKv: 1, headDim: 10, tileKeys: 8 },
    { name: 'first tokens: 3 new, empty cache, 2/2 heads, D 64', batch: 1, tokens: 3, start: 0, headsQ: 2, headsKv: 2, headDim: 64, tileKeys: 16 },
  ]) {
    it(`split-KV attention, ${shape.name}`, async () => {
      const { batch, tokens, start, headsQ, headsKv, headDim: D, tileKeys } = shape;
      const rows = batch * tokens;
      const length = start + tokens;
      const q = rand(rows * headsQ * D);
      const keys = rand((length + 3) * batch * headsKv * D); // capacity beyond length: never read
      const values = rand(keys.length);
      // the float64 reference of attention() on the cache prefix, read as layout SBH
      const prefix = (x: Float32Array) => Tensor.fromData(x.subarray(0, length * batch * headsKv * D), [length, batch, headsKv * D]);
      const problem = validateAttention(Tensor.fromData(q, [tokens, batch, headsQ * D]), prefix(keys), prefix(values), { layout: 'SBH', heads: headsQ, kvHeads: headsKv, causal: true });
      const want = referenceAttention(problem).out;
      const options = { headDim: D, group: headsQ / headsKv, tileKeys, workgroupSize: 64 };
      expect(decodeSharedBytes(options)).toBeLessThanOrEqual(device!.limits.maxComputeWorkgroupStorageSize);
      const { splits, keysPerSplit } = chooseSplits(length, headsKv, rows, tileKeys, 64);
      expect(splits * keysPerSplit).toBeGreaterThanOrEqual(length);
      const partialCount = rows * headsQ * splits * (D + 2);
      const params = DECODE_PARAMS.pack({ batch, start, heads_q: headsQ, heads_kv: headsKv, splits, keys_per_split: keysPerSplit, scale: 1 / Math.sqrt(D) });
      const [partials] = await run(buildDecodePartial(options), [{ read: q }, { read: keys }, { read: values }, { write: partialCount }, { uniform: params }], [headsKv, rows, splits]);
      const [out] = await run(buildDecodeCombine({ headDim: D }), [{ read: partials.subarray(0, partialCount) }, { write: rows * headsQ * D }, { uniform: COMBINE_PARAMS.pack({ row_heads: rows * headsQ, splits }) }], [rows * headsQ, 1]);
      expectClose('split-KV attention', out.subarray(0, want.length), want, 2e-6);
      if (start > 100) expect(splits).toBeGreaterThan(4);
    });
  }
});
