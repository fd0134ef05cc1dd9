// The fused AttentionBlock inside the transformer runner (the AttentionModule seam, registered as
// attention 'fused'): logits against the float64 reference decoder at every prefill position and
// each decode step, on every backend present, and greedy tokens equal to the unfused module's.
import { describe, expect, it } from 'vitest';
import { generate, loadModel, loadWeights, openSafetensors, readModelConfig, referenceForward } from '../dist/model/index.js';
import { backendsHere } from './helpers.js';
import { expectClose, writeTinyModel } from './model-helpers.js';

async function reference(dir: string, tokens: number[]): Promise<Float64Array> {
  const config = await readModelConfig(dir);
  const store = await openSafetensors(dir);
  const weights = await loadWeights(store, config, 'float32', (t) => t);
  await store.close();
  return referenceForward(config, weights, tokens);
}

const PROMPT = [3, 17, 5, 42, 9, 11, 60, 8, 25];
// float16 weights on a GPU with subgroup matrices take the block's tensor-core GEMM, which rounds
// activations to float16: logits then match at the 1e-3 level, not 1e-5
async function tolerance(backend: string, f16: boolean): Promise<number> {
  if (backend !== 'webgpu' || !f16) return 3e-5;
  const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
  const { gemmUnsupported } = await import('../dist/ops/gemm/webgpu/gemm.js');
  return gemmUnsupported(await getRuntime(), 'subgroup-matrix', 'float16') === undefined ? 1e-2 : 3e-5;
}
const CASES = [
  { name: 'qwen2 (q/k/v biases), GQA', overrides: {}, options: {} },
  { name: 'llama MQA, all biases, untied head, linear RoPE scaling', overrides: { model_type: 'llama', attention_bias: true, mlp_bias: true, tie_word_embeddings: false, num_key_value_heads: 1, rope_scaling: { rope_type: 'linear', factor: 2 } }, options: {} },
  { name: 'float16 weights (GPU: halves on the device)', overrides: { hidden_size: 32, num_attention_heads: 2, num_key_value_heads: 1 }, options: { gpuWeights: 'float16' as const }, dtype: 'F16' as const },
];

for (const backend of await backendsHere()) {
  if (backend.skip) console.warn(`\n!!! SKIPPING the fused block in the runner on ${backend.name}: ${backend.skip}\n`);
  describe.skipIf(backend.skip !== undefined)(`fused attention module in the runner on ${backend.name}`, () => {
    for (const c of CASES) {
      it(`${c.name}: prefill and decode logits match the float64 decoder`, async () => {
        const { dir } = await writeTinyModel(c.overrides, { seed: 9, dtype: c.dtype });
        const full = [...PROMPT, 1, 30, 2];
        const ref = await reference(dir, full);
        const model = await loadModel(dir, { backend: backend.name, attention: 'fused', ...c.options });
        expect(model.attention).toBe(`fused (${backend.name})`);
        const V = model.config.vocabSize;
        const rtol = await tolerance(backend.name, c.dtype === 'F16');
        const cache = model.createCache(1, 16);
        // prefill in two chunks: the second reads the first from the cache
        const first = await model.forward([PROMPT.slice(0, 4)], cache, { allLogits: true });
        expectClose('prefill chunk 1', first, ref.subarray(0, 4 * V), rtol);
        const second = await model.forward([PROMPT.slice(4)], cache, { allLogits: true });
        expectClose('prefill chunk 2', second, ref.subarray(4 * V, PROMPT.length * V), rtol);
        for (let t = PROMPT.length; t < full.length; t++) {
          expectClose(`decode ${t}`, await model.forward([[full[t]]], cache), ref.subarray(t * V, (t + 1) * V), rtol);
        }
        model.dispose();
      });
    }

    it('batch of two: greedy tokens equal to the unfused module', async () => {
      const { dir } = await writeTinyModel({}, { seed: 12 });
      const fused = await loadModel(dir, { backend: backend.name, attention: 'fused' });
      const unfused = await loadModel(dir, { backend: backend.name, attention: 'unfused' });
      for (const prompt of [[5, 6, 7, 8], [40, 30, 20]]) {
        const a = await generate(fused, prompt, { maxNewTokens: 6 });
        const b = await generate(unfused, prompt, { maxNewTokens: 6 });
        expect(a.tokens).toEqual(b.tokens);
      }
      const cacheF = fused.createCache(2, 8);
      const cacheU = unfused.createCache(2, 8);
      const f = await fused.forward([[1, 2, 3], [4, 5, 6]], cacheF, { allLogits: true });
      const u = await unfused.forward([[1, 2, 3], [4, 5, 6]], cacheU, { allLogits: true });
      expectClose('batch of two, fused vs unfused', f, Float64Array.from(u), 3e-5);
      fused.dispose();
      unfused.dispose();
    });
  });
}
