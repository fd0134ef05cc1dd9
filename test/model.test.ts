// The transformer runner against the float64 reference decoder, on tiny random models that the
// tests write to disk themselves (config.json + safetensors in f32/f16/bf16, one file or shards).
import { describe, expect, it } from 'vitest';
import { type ModelConfig, configFrom, createModel, generate, loadModel, loadWeights, memoryStore, openSafetensors, randomWeights, readModelConfig, referenceForward, tinyConfigJson } from '../dist/model/index.js';
import { argmax } from '../dist/model/index.js';
import { expectClose, writeTinyModel } from './model-helpers.js';

/** Reference logits of `tokens` computed from the weights exactly as stored in `dir`. */
async function reference(dir: string, tokens: number[]): Promise<{ config: ModelConfig; logits: Float64Array }> {
  const config = await readModelConfig(dir);
  const store = await openSafetensors(dir);
  const weights = await loadWeights(store, config, 'float32', (t) => t);
  await store.close();
  return { config, logits: referenceForward(config, weights, tokens) };
}

const PROMPT = [3, 17, 5, 42, 9, 11, 60];

const VARIANTS: Array<{ name: string; overrides?: Record<string, unknown>; dtype?: 'F32' | 'F16' | 'BF16'; shards?: number }> = [
  { name: 'qwen2 f32, GQA 4/2, tied embeddings' },
  { name: 'qwen2 f16 weights', dtype: 'F16' },
  { name: 'qwen2 bf16 weights, 3 shards', dtype: 'BF16', shards: 3 },
  { name: 'llama, untied lm_head, o/mlp biases, MQA 4/1', overrides: { model_type: 'llama', architectures: ['LlamaForCausalLM'], attention_bias: true, mlp_bias: true, tie_word_embeddings: false, num_key_value_heads: 1 } },
  { name: 'odd sizes: hidden 30, 3 heads of D 10, intermediate 37, 3 layers', overrides: { hidden_size: 30, num_attention_heads: 3, num_key_value_heads: 3, intermediate_size: 37, num_hidden_layers: 3, vocab_size: 71 } },
  { name: 'head_dim given (8) apart from hidden/heads', overrides: { head_dim: 8, num_attention_heads: 6, num_key_value_heads: 2 } },
  { name: 'rope linear x2, theta 5e5', overrides: { rope_theta: 500000, rope_scaling: { rope_type: 'linear', factor: 2 } } },
  { name: 'rope llama3', overrides: { model_type: 'llama', rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 } } },
  { name: 'rope yarn x4', overrides: { rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 32 } } },
];

describe('runner vs the float64 reference (CPU)', () => {
  for (const variant of VARIANTS) {
    it(`${variant.name}: prefill logits at every position, then decode steps`, async () => {
      const model = await writeTinyModel(variant.overrides, { dtype: variant.dtype, shards: variant.shards, seed: 7 });
      const full = [...PROMPT, 1, 30, 2];
      const { config, logits: ref } = await reference(model.dir, full);
      const V = config.vocabSize;
      const runner = await loadModel(model.dir, { backend: 'cpu' });
      expect(runner.backend).toBe('cpu');
      const cache = runner.createCache(1, 16);
      const prefill = await runner.forward([PROMPT], cache, { allLogits: true });
      expectClose('prefill logits', prefill, ref.subarray(0, PROMPT.length * V));
      for (let t = PROMPT.length; t < full.length; t++) {
        const step = await runner.forward([[full[t]]], cache);
        expectClose(`decode logits at position ${t}`, step, ref.subarray(t * V, (t + 1) * V));
      }
      expect(cache.length).toBe(full.length);
    });
  }

  it('a model from weights in memory (createModel + memoryStore), no files', async () => {
    const config = configFrom(tinyConfigJson({ num_hidden_layers: 1 }));
    const store = memoryStore(randomWeights(config, 21));
    const model = await createModel(config, store, { backend: 'cpu' });
    const ref = referenceForward(config, await loadWeights(store, config, 'float32', (t) => t), PROMPT);
    expectClose('in-memory model', await model.forward([PROMPT], model.createCache(1, 8), { allLogits: true }), ref);
    expect(model.tokenizer).toBeUndefined();
    model.dispose();
  });

  it('prefill + decode equals full recompute, and prefill in chunks equals prefill at once', async () => {
    const { dir } = await writeTinyModel({}, { seed: 3 });
    const runner = await loadModel(dir, { backend: 'cpu' });
    const seq = [...PROMPT, 8, 13, 21];
    const whole = await runner.forward([seq], runner.createCache(1, 10), { allLogits: true });
    const V = runner.config.vocabSize;
    const cache = runner.createCache(1, 10);
    await runner.forward([seq.slice(0, 4)], cache);
    const chunk = await runner.forward([seq.slice(4, 7)], cache, { allLogits: true });
    expectClose('chunked prefill', chunk, whole.subarray(4 * V, 7 * V), 1e-6);
    for (let t = 7; t < seq.length; t++) expectClose(`decode ${t}`, await runner.forward([[seq[t]]], cache), whole.subarray(t * V, (t + 1) * V), 1e-6);
  });

  it('batch of two sequences decodes each as if alone', async () => {
    const { dir } = await writeTinyModel({}, { seed: 4 });
    const runner = await loadModel(dir, { backend: 'cpu' });
    const a = [5, 6, 7, 8, 9];
    const b = [40, 30, 20, 10, 0];
    const { logits: refA } = await reference(dir, a);
    const { logits: refB } = await reference(dir, b);
    const V = runner.config.vocabSize;
    const cache = runner.createCache(2, 8);
    const prefill = await runner.forward([a.slice(0, 3), b.slice(0, 3)], cache, { allLogits: true });
    expectClose('batch prefill a', prefill.subarray(0, 3 * V), refA.subarray(0, 3 * V));
    expectClose('batch prefill b', prefill.subarray(3 * V, 6 * V), refB.subarray(0, 3 * V));
    for (let t = 3; t < 5; t++) {
      const step = await runner.forward([[a[t]], [b[t]]], cache);
      expectClose(`batch decode a ${t}`, step.subarray(0, V), refA.subarray(t * V, (t + 1) * V));
      expectClose(`batch decode b ${t}`, step.subarray(V), refB.subarray(t * V, (t + 1) * V));
    }
  });

  it('rope dynamic: equal to the default inside max_position_embeddings, NTK-scaled past it (prefill = full recompute)', async () => {
    const plain = await writeTinyModel({ max_position_embeddings: 8 }, { seed: 9 });
    const dynamic = await writeTinyModel({ max_position_embeddings: 8, rope_scaling: { type: 'dynamic', factor: 2 } }, { seed: 9 });
    const short = PROMPT.slice(0, 6);
    const p = await loadModel(plain.dir, { backend: 'cpu' });
    const d = await loadModel(dynamic.dir, { backend: 'cpu' });
    expectClose('dynamic within max positions', await d.forward([short], d.createCache(1, 6), { allLogits: true }), await p.forward([short], p.createCache(1, 6), { allLogits: true }), 1e-6);
    const long = [...PROMPT, 1, 2, 3, 4, 5];
    const { logits: ref } = await reference(dynamic.dir, long);
    const got = await d.forward([long], d.createCache(1, 12), { allLogits: true });
    expectClose('dynamic past max positions', got, ref);
    const undynamic = await p.forward([long], p.createCache(1, 12), { allLogits: true });
    expect(Math.abs(undynamic[11 * 64 + 3] - got[11 * 64 + 3])).toBeGreaterThan(1e-4);
  });
});

describe('generation', () => {
  it('greedy generation is deterministic and follows the reference argmax at every step', async () => {
    const { dir } = await writeTinyModel({ eos_token_id: 63 }, { seed: 11 });
    const runner = await loadModel(dir, { backend: 'cpu' });
    const first = await generate(runner, PROMPT, { maxNewTokens: 8 });
    const second = await generate(runner, PROMPT, { maxNewTokens: 8 });
    expect(second.tokens).toEqual(first.tokens);
    expect(first.promptTokens).toBe(PROMPT.length);
    expect(first.tokens.length).toBeGreaterThan(0);
    expect(first.decodeSteps).toBe(first.tokens.length - 1);
    expect(first.prefillTokensPerSecond).toBeGreaterThan(0);
    // every chosen token is the float64 reference's argmax given the tokens before it
    const seq = [...PROMPT];
    for (const token of first.tokens) {
      const { logits } = await reference(dir, seq);
      const last = logits.subarray((seq.length - 1) * 64, seq.length * 64);
      expect(token).toBe(argmax(last));
      seq.push(token);
    }
    // the paged cache: 2 layers x (K, V) x whole pages of 16 positions x 2 KV heads x D 8, float32 on the CPU
    expect(first.kvCacheBytes).toBe(2 * 2 * Math.ceil((PROMPT.length + 8) / 16) * 16 * 2 * 8 * 4);
  });

  it('stops at a stop token and includes it', async () => {
    const { dir } = await writeTinyModel({}, { seed: 11 });
    const runner = await loadModel(dir, { backend: 'cpu' });
    const free = await generate(runner, PROMPT, { maxNewTokens: 6, stopTokenIds: [] });
    const stopAt = free.tokens[2];
    const stopped = await generate(runner, PROMPT, { maxNewTokens: 6, stopTokenIds: [stopAt] });
    expect(stopped.stopReason).toBe('stop-token');
    expect(stopped.tokens).toEqual(free.tokens.slice(0, free.tokens.indexOf(stopAt) + 1));
  });

  it('top-k sampling: seeded runs repeat, tokens stay within the top k', async () => {
    const { dir } = await writeTinyModel({}, { seed: 12 });
    const runner = await loadModel(dir, { backend: 'cpu' });
    const options = { maxNewTokens: 6, topK: 3, temperature: 1.5, seed: 99, stopTokenIds: [] };
    const tokensSeen: number[][] = [];
    const a = await generate(runner, PROMPT, { ...options, onToken: (id) => tokensSeen.push([id]) });
    const b = await generate(runner, PROMPT, options);
    expect(b.tokens).toEqual(a.tokens);
    expect(tokensSeen.flat()).toEqual(a.tokens);
    const seq = [...PROMPT];
    for (const token of a.tokens) {
      const { logits } = await reference(dir, seq);
      const last = Array.from(logits.subarray((seq.length - 1) * 64, seq.length * 64));
      const third = [...last].sort((x, y) => y - x)[2];
      expect(last[token]).toBeGreaterThanOrEqual(third - 1e-4);
      seq.push(token);
    }
  });
});
