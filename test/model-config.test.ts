// config.json validation, RoPE frequencies for each scaling type, the sampler, the tokenizer, and
// the errors a broken model folder gives.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ShapeError, UnsupportedError, ValueError } from '../dist/index.js';
import {
  configFrom, createSampler, createTokenizer, generate, loadModel, parseModelConfig, ropeFrequencies, tinyConfigJson, topIndices, writeModelFolder, randomWeights,
} from '../dist/model/index.js';
import { TINY_TOKENIZER_VOCAB, tinyTokenizerJson, writeTinyModel } from './model-helpers.js';

const parse = (overrides: Record<string, unknown>) => () => parseModelConfig(tinyConfigJson(overrides), 'm/config.json');

describe('config.json', () => {
  it('reads Qwen2 and Llama fields, biases by model type', () => {
    const qwen = configFrom(tinyConfigJson());
    expect(qwen).toMatchObject({ modelType: 'qwen2', hiddenSize: 32, numHeads: 4, numKvHeads: 2, headDim: 8, qkvBias: true, oBias: false, mlpBias: false, tieWordEmbeddings: true, eosTokenIds: [2], bosTokenId: 1 });
    const llama = configFrom(tinyConfigJson({ model_type: 'llama', attention_bias: true, eos_token_id: [5, 6] }));
    expect(llama).toMatchObject({ modelType: 'llama', qkvBias: true, oBias: true, eosTokenIds: [5, 6] });
    expect(configFrom(tinyConfigJson({ model_type: undefined, architectures: ['LlamaForCausalLM'] })).modelType).toBe('llama');
    // transformers v5 spelling
    expect(configFrom(tinyConfigJson({ rope_theta: undefined, rope_parameters: { rope_type: 'linear', rope_theta: 5e5, factor: 2 } }))).toMatchObject({ ropeTheta: 5e5, ropeScaling: { type: 'linear', factor: 2 } });
  });

  it('names the field, the expectation and the value when invalid', () => {
    expect(parse({ hidden_size: undefined })).toThrow(/m\/config.json: hidden_size must be a positive integer, got undefined/);
    expect(parse({ num_attention_heads: 2.5 })).toThrowError(ValueError);
    expect(parse({ num_key_value_heads: 3 })).toThrow(/num_attention_heads \(4\) must be a multiple of num_key_value_heads, got 3/);
    expect(parse({ num_key_value_heads: 3 })).toThrowError(ShapeError);
    expect(parse({ hidden_size: 30 })).toThrow(/hidden_size \(30\) must be divisible by num_attention_heads \(4\)/);
    expect(parse({ head_dim: 7 })).toThrow(/head_dim must be even/);
    expect(parse({ rms_norm_eps: -1 })).toThrow(/rms_norm_eps must be a positive number, got -1/);
    expect(parse({ tie_word_embeddings: 'yes' })).toThrow(/tie_word_embeddings must be true or false, got "yes"/);
    expect(parse({ eos_token_id: 'x' })).toThrow(/eos_token_id must be a token id below vocab_size \(64\) or a list/);
    expect(parse({ rope_scaling: { rope_type: 'llama3', factor: 8 } })).toThrow(/rope_scaling.low_freq_factor must be a number > 0 for rope_type "llama3", got undefined/);
    expect(() => parseModelConfig([], 'x.json')).toThrow(/x.json must hold a JSON object/);
    try {
      parse({ vocab_size: 0 })();
    } catch (e) {
      expect((e as ValueError).argument).toBe('config.vocab_size');
    }
  });

  it('refuses what it cannot run with UnsupportedError', () => {
    expect(parse({ model_type: 'gpt2' })).toThrowError(UnsupportedError);
    expect(parse({ model_type: 'gpt2' })).toThrow(/model_type must be "qwen2" or "llama".*got "gpt2"/);
    expect(parse({ hidden_act: 'gelu' })).toThrow(/hidden_act must be "silu"/);
    expect(parse({ use_sliding_window: true })).toThrowError(UnsupportedError);
    expect(parse({ rope_scaling: { rope_type: 'longrope', factor: 2 } })).toThrow(/rope_type must be one of default, linear, dynamic, llama3, yarn; got "longrope"/);
    expect(parse({ partial_rotary_factor: 0.5 })).toThrowError(UnsupportedError);
  });
});

describe('RoPE frequencies', () => {
  const base = (overrides: Record<string, unknown>) => configFrom(tinyConfigJson({ hidden_size: 64, num_attention_heads: 4, max_position_embeddings: 64, ...overrides }));
  const plain = ropeFrequencies(base({}), 10).invFreq;

  it('default: theta^(-2i/D)', () => {
    expect(plain.length).toBe(8);
    for (let i = 0; i < 8; i++) expect(plain[i]).toBeCloseTo(10000 ** (-(2 * i) / 16), 15);
  });
  it('linear divides every frequency by the factor', () => {
    const f = ropeFrequencies(base({ rope_scaling: { type: 'linear', factor: 4 } }), 10).invFreq;
    for (let i = 0; i < 8; i++) expect(f[i]).toBeCloseTo(plain[i] / 4, 15);
  });
  it('dynamic enlarges the base only past max_position_embeddings', () => {
    const cfg = base({ rope_scaling: { type: 'dynamic', factor: 2 } });
    expect(Array.from(ropeFrequencies(cfg, 64).invFreq)).toEqual(Array.from(plain));
    const grown = 10000 * ((2 * 128) / 64 - 1) ** (16 / 14);
    const f = ropeFrequencies(cfg, 128).invFreq;
    for (let i = 0; i < 8; i++) expect(f[i]).toBeCloseTo(grown ** (-(2 * i) / 16), 15);
  });
  it('llama3 keeps short wavelengths, divides long ones, blends between', () => {
    const f = ropeFrequencies(base({ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } }), 10).invFreq;
    for (let i = 0; i < 8; i++) {
      const wavelen = (2 * Math.PI) / plain[i];
      if (wavelen < 16) expect(f[i]).toBe(plain[i]);
      else if (wavelen > 64) expect(f[i]).toBeCloseTo(plain[i] / 8, 15);
      else {
        const smooth = (64 / wavelen - 1) / 3;
        expect(f[i]).toBeCloseTo((1 - smooth) * (plain[i] / 8) + smooth * plain[i], 15);
      }
    }
    expect(f[0]).toBe(plain[0]);
    expect(f[7]).toBeCloseTo(plain[7] / 8, 15);
  });
  it('yarn: high frequencies kept, low ones interpolated, attention factor 0.1 ln(s) + 1', () => {
    const r = ropeFrequencies(base({ rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 64 } }), 10);
    expect(r.attentionScale).toBeCloseTo(0.1 * Math.log(4) + 1, 12);
    expect(r.invFreq[0]).toBe(plain[0]);
    expect(r.invFreq[7]).toBeCloseTo(plain[7] / 4, 15);
    for (let i = 0; i < 8; i++) expect(r.invFreq[i]).toBeLessThanOrEqual(plain[i]);
  });
});

describe('sampling', () => {
  const logits = Float32Array.of(0.5, 3, -1, 2.9, 3, 1);
  it('greedy takes the first maximum; topIndices orders ties by index', () => {
    expect(createSampler()(logits)).toBe(1);
    expect(createSampler({ topK: 1, temperature: 2 })(logits)).toBe(1);
    expect(topIndices(logits, 3)).toEqual([1, 4, 3]);
    expect(topIndices(logits, 10)).toEqual([1, 4, 3, 5, 0, 2]);
  });
  it('top-k draws only from the k best, with softmax(logits / T) frequencies', () => {
    const sample = createSampler({ topK: 3, temperature: 1, seed: 5 });
    const counts = new Map<number, number>();
    const n = 6000;
    for (let i = 0; i < n; i++) {
      const id = sample(logits);
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual([1, 3, 4]);
    const z = Math.exp(3) * 2 + Math.exp(2.9);
    for (const id of [1, 3, 4]) expect(Math.abs(counts.get(id)! / n - Math.exp(logits[id]) / z)).toBeLessThan(0.03);
  });
  it('seeded: same seed, same draws', () => {
    const draws = (seed: number) => Array.from({ length: 20 }, ((s) => () => s(logits))(createSampler({ topK: 0, temperature: 3, seed })));
    expect(draws(7)).toEqual(draws(7));
    expect(draws(7)).not.toEqual(draws(8));
  });
  it('rejects bad options naming them', () => {
    expect(() => createSampler({ topK: -1 })).toThrow(/topK must be an integer >= 0/);
    expect(() => createSampler({ temperature: NaN })).toThrow(/temperature must be a finite number >= 0/);
    expect(() => createSampler({ temperature: 1, seed: 0.5 })).toThrow(/seed must be an integer/);
    expect(() => createSampler({ topK: 2, temperature: 1 })(Float32Array.of(1, NaN))).toThrow(/NaN at index 1/);
  });
});

describe('tokenizer (@huggingface/tokenizers on a tokenizer.json written here)', () => {
  it('round-trips text, merges, special tokens', async () => {
    const tok = await createTokenizer(tinyTokenizerJson(), { eos_token: '<|endoftext|>' });
    const ids = tok.encode('hello world');
    expect(ids).toEqual([258, 111, 261, 108, 100]); // hell o Ġwor l d
    expect(tok.decode(ids)).toBe('hello world');
    for (const text of ['héllo wörld 123 ✓\n  tabs\tand spaces ', 'x<|endoftext|>']) expect(tok.decode(tok.encode(text))).toBe(text);
    expect(tok.encode('<|endoftext|>')).toEqual([262]);
    expect(tok.eosTokenIds).toEqual([262]);
    expect(tok.decode([104, 262], { skipSpecialTokens: true })).toBe('h');
  });

  it('a model folder with tokenizer.json generates from text', async () => {
    const { dir } = await writeTinyModel({ vocab_size: TINY_TOKENIZER_VOCAB, eos_token_id: 262 }, { tokenizer: true });
    const model = await loadModel(dir, { backend: 'cpu' });
    expect(model.tokenizer).toBeDefined();
    expect(model.stopTokenIds).toEqual([262]);
    const prompt = model.tokenizer!.encode('hello world');
    const result = await generate(model, prompt, { maxNewTokens: 5 });
    expect(typeof model.tokenizer!.decode(result.tokens)).toBe('string');
  });
});

describe('bad model folders', () => {
  it('missing config.json, invalid JSON, invalid fields', async () => {
    const { dir } = await writeTinyModel();
    await writeFile(join(dir, 'config.json'), '{ nope');
    await expect(loadModel(dir)).rejects.toThrow(/config.json is not valid JSON/);
    await writeFile(join(dir, 'config.json'), JSON.stringify(tinyConfigJson({ num_hidden_layers: 0 })));
    await expect(loadModel(dir)).rejects.toThrow(/config.json: num_hidden_layers must be a positive integer, got 0/);
    await rm(join(dir, 'config.json'));
    await expect(loadModel(dir)).rejects.toThrow(/config.json not found: a model folder needs config.json/);
  });

  it('a missing tensor, a wrong shape, a missing lm_head are named before any is read', async () => {
    const json = tinyConfigJson();
    const tensors = randomWeights(configFrom(json), 1);
    const { dir } = await writeTinyModel();
    const missing = { ...tensors };
    delete missing['model.layers.1.mlp.up_proj.weight'];
    await writeModelFolder(dir, json, missing);
    await expect(loadModel(dir)).rejects.toThrow(/has no tensor "model.layers.1.mlp.up_proj.weight"/);
    await writeModelFolder(dir, json, { ...tensors, 'model.layers.0.self_attn.k_proj.weight': { shape: [8, 32], data: new Float32Array(256) } });
    const wrong = loadModel(dir);
    await expect(wrong).rejects.toBeInstanceOf(ShapeError);
    await expect(loadModel(dir)).rejects.toThrow(/model.safetensors: tensor "model.layers.0.self_attn.k_proj.weight" has shape \[8, 32\], but config.json implies \[16, 32\]/);
    await writeModelFolder(dir, { ...json, tie_word_embeddings: false }, tensors);
    await expect(loadModel(dir)).rejects.toThrow(/has no tensor "lm_head.weight" \(config says tie_word_embeddings: false\)/);
    await rm(join(dir, 'model.safetensors'));
    await expect(loadModel(dir)).rejects.toThrow(/holds neither model.safetensors nor model.safetensors.index.json/);
  });

  it('bad tokens, a full cache, an unknown backend or attention kind', async () => {
    const { dir } = await writeTinyModel();
    const model = await loadModel(dir, { backend: 'cpu' });
    const cache = model.createCache(1, 4);
    await expect(model.forward([[1, 64]], cache)).rejects.toThrow(/token ids must be integers in \[0, 64\) \(vocab_size\), got 64 at sequence 0, position 1/);
    await expect(model.forward([[1], [2]], cache)).rejects.toThrow(/2 sequences but the KV cache was made for batch 1/);
    await expect(model.forward([[]], cache)).rejects.toThrow(/at least one token/);
    await model.forward([[1, 2, 3]], cache);
    await expect(model.forward([[4, 5]], cache)).rejects.toThrow(/KV cache holds 4 positions; 3 are used and 2 more do not fit/);
    expect(cache.length).toBe(3);
    expect(() => model.createCache(0, 4)).toThrow(/batch must be a positive integer, got 0/);
    await expect(generate(model, [], {})).rejects.toThrow(/prompt must be a non-empty list/);
    await expect(generate(model, [1], { maxNewTokens: 0 })).rejects.toThrow(/maxNewTokens must be a positive integer/);
    await expect(loadModel(dir, { backend: 'tpu' as never })).rejects.toThrow(/backend must be "cpu", "webgpu" or "auto", got "tpu"/);
    await expect(loadModel(dir, { backend: 'cpu', attention: 'sparse' as never })).rejects.toThrow(/attention must be "fused" or "unfused"/);
    await expect(loadModel(dir, { gpuWeights: 'int8' as never })).rejects.toThrow(/gpuWeights must be "float32" or "float16", got "int8"/);
    // the fused AttentionBlock is registered (issue 4) and is the default where present
    const fused = await loadModel(dir, { backend: 'cpu', attention: 'fused' });
    expect(fused.attention).toBe('fused (cpu)');
    fused.dispose();
  });
});
