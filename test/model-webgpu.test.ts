// The transformer runner on WebGPU (Mesa llvmpipe in CI) against the float64 reference decoder:
// weights and KV cache on the GPU, the library's flash attention for prefill, the split-KV kernels
// for decode.
import { describe, expect, it } from 'vitest';
import { listBackends } from '../dist/index.js';
import { generate, loadModel, loadWeights, openSafetensors, readModelConfig, referenceForward } from '../dist/model/index.js';
import { backendsHere } from './helpers.js';
import { expectClose, writeTinyModel } from './model-helpers.js';

const webgpu = (await backendsHere()).find((b) => b.name === 'webgpu')!;
if (webgpu.skip) console.warn(`\n!!! SKIPPING the WebGPU model runner tests: ${webgpu.skip}\n`);

async function reference(dir: string, tokens: number[]): Promise<Float64Array> {
  const config = await readModelConfig(dir);
  const store = await openSafetensors(dir);
  const weights = await loadWeights(store, config, 'float32', (t) => t);
  await store.close();
  return referenceForward(config, weights, tokens);
}

const PROMPT = [3, 17, 5, 42, 9, 11, 60];

describe.skipIf(webgpu.skip !== undefined)('runner on WebGPU vs the float64 reference', () => {
  const cases = [
    { name: 'qwen2 f32, flash prefill, split-KV decode', overrides: {}, options: {} },
    { name: 'split-KV prefill too, llama MQA with biases, untied head', overrides: { model_type: 'llama', attention_bias: true, mlp_bias: true, tie_word_embeddings: false, num_key_value_heads: 1 }, options: { splitKvPrefill: true } },
    { name: 'f16 weights stored as halves on the GPU, D 16', overrides: { hidden_size: 32, num_attention_heads: 2, num_key_value_heads: 1 }, options: { gpuWeights: 'float16' as const }, dtype: 'F16' as const },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const { dir } = await writeTinyModel(c.overrides, { seed: 5, dtype: c.dtype });
      const full = [...PROMPT, 1, 30, 2];
      const ref = await reference(dir, full);
      const model = await loadModel(dir, { backend: 'webgpu', attention: 'unfused', ...c.options });
      expect(model.backend).toBe('webgpu');
      expect(model.attention).toBe('unfused (webgpu)');
      const V = model.config.vocabSize;
      const cache = model.createCache(1, 12);
      expectClose('prefill', await model.forward([PROMPT], cache, { allLogits: true }), ref.subarray(0, PROMPT.length * V));
      for (let t = PROMPT.length; t < full.length; t++) {
        expectClose(`decode ${t}`, await model.forward([[full[t]]], cache), ref.subarray(t * V, (t + 1) * V));
      }
      model.dispose();
    });
  }

  it('batch of two, and greedy generation equal to the CPU runner', async () => {
    const { dir } = await writeTinyModel({}, { seed: 6 });
    const gpu = await loadModel(dir, { backend: 'webgpu' });
    const cpu = await loadModel(dir, { backend: 'cpu' });
    const a = [5, 6, 7, 8];
    const b = [40, 30, 20, 10];
    const [refA, refB] = [await reference(dir, a), await reference(dir, b)];
    const V = gpu.config.vocabSize;
    const cache = gpu.createCache(2, 4);
    const pre = await gpu.forward([a.slice(0, 3), b.slice(0, 3)], cache, { allLogits: true });
    expectClose('batch a', pre.subarray(0, 3 * V), refA.subarray(0, 3 * V));
    expectClose('batch b', pre.subarray(3 * V), refB.subarray(0, 3 * V));
    const step = await gpu.forward([[a[3]], [b[3]]], cache);
    expectClose('batch decode a', step.subarray(0, V), refA.subarray(3 * V));
    expectClose('batch decode b', step.subarray(V), refB.subarray(3 * V));
    const g = await generate(gpu, PROMPT, { maxNewTokens: 6, stopTokenIds: [] });
    const c = await generate(cpu, PROMPT, { maxNewTokens: 6, stopTokenIds: [] });
    expect(g.tokens).toEqual(c.tokens);
    gpu.dispose();
    cpu.dispose();
    await expect(gpu.forward([[1]], gpu.createCache(1, 1))).rejects.toThrow(/disposed/);
  });
});

describe('backend choice', () => {
  it("'auto' takes the CPU where the only WebGPU adapter is a software one (llvmpipe)", async () => {
    const { dir } = await writeTinyModel();
    const model = await loadModel(dir);
    const gpuInfo = (await listBackends()).find((b) => b.name === 'webgpu')!;
    const software = !gpuInfo.available || /llvmpipe|lavapipe|swiftshader/i.test(gpuInfo.detail);
    expect(model.backend).toBe(software ? 'cpu' : 'webgpu');
    model.dispose();
  });
});

describe.skipIf(webgpu.skip !== undefined)('big weights split in parts', () => {
  it('an embedding table and LM head over several buffers give the same embeddings and logits', async () => {
    const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
    const { GpuOps } = await import('../dist/model/webgpu/ops.js');
    const runtime = await getRuntime();
    const [vocab, hidden] = [37, 24];
    const table = Float32Array.from({ length: vocab * hidden }, (_, i) => Math.sin(i * 0.7));
    for (const dtype of ['float32', 'float16'] as const) {
      const ops = new GpuOps(runtime, dtype, 10 * hidden * 4); // parts of at most 10 rows
      const data = dtype === 'float32' ? table : (await import('../dist/index.js')).floatsToHalf(table);
      const weight = ops.upload({ name: 'embed', shape: [vocab, hidden], data } as never);
      expect(weight.parts.map((p) => p.rows)).toEqual(dtype === 'float32' ? [10, 10, 10, 7] : [20, 17]); // halves: twice the rows per part
      const ids = Int32Array.of(0, 36, 9, 10, 25);
      const x = await ops.embed(weight, ids);
      const got = await ops.read(x);
      const values = dtype === 'float32' ? table : (await import('../dist/index.js')).halfToFloats(data as Uint16Array);
      ids.forEach((id, r) => expect(Array.from(got.subarray(r * hidden, (r + 1) * hidden))).toEqual(Array.from(values.subarray(id * hidden, (id + 1) * hidden))));
      const logits = await ops.read(await ops.linear(x, weight));
      for (let r = 0; r < ids.length; r++) {
        for (let n = 0; n < vocab; n++) {
          let s = 0;
          for (let k = 0; k < hidden; k++) s += values[ids[r] * hidden + k] * values[n * hidden + k];
          expect(Math.abs(logits[r * vocab + n] - s)).toBeLessThan(1e-4 * Math.max(1, Math.abs(s)));
        }
      }
      ops.dispose({ embed: weight, finalNorm: weight, lmHead: weight, layers: [] });
    }
  });
});
