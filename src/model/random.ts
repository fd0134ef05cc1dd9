// Random models for tests and benchmarks: a config.json object, seeded random weights with sane
// scales (so activations neither vanish nor blow up through the layers), an in-memory TensorStore,
// and a writer of complete model folders (config.json + safetensors, optionally sharded).
import { platform } from '#platform';
import { ValueError, show } from '../core/errors.js';
import { type ReadAs, type ReadResult, type SafetensorsEntry, type StoredDType, type TensorStore, encodeSafetensors } from '../io/safetensors.js';
import { floatsToHalf } from '../core/dtype.js';
import { normal, uniform } from '../testing/random.js';
import { type ModelConfig, parseModelConfig } from './config.js';
import { weightSpecs } from './weights.js';

/** A Qwen2-style config.json object of a tiny model; `overrides` replace or add fields. */
export function tinyConfigJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    vocab_size: 64,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 128,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: true,
    hidden_act: 'silu',
    bos_token_id: 1,
    eos_token_id: 2,
    ...overrides,
  };
}

/** Qwen2-0.5B's shapes (hidden 896, 14 heads / 2 KV heads, D 64, 24 layers, vocab 151936). */
export function qwen2HalfBConfigJson(): Record<string, unknown> {
  return tinyConfigJson({
    vocab_size: 151936,
    hidden_size: 896,
    intermediate_size: 4864,
    num_hidden_layers: 24,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    max_position_embeddings: 32768,
    rope_theta: 1000000,
    tie_word_embeddings: true,
    eos_token_id: 151643,
  });
}

export interface RandomTensor {
  shape: readonly number[];
  data: Float32Array;
}

/**
 * Seeded random weights, by Hugging Face name, for every tensor the config needs. Linear weights
 * ~ N(0, 1/in), norms ~ 1 + N(0, 0.1²), biases and embeddings ~ N(0, 0.1²)... chosen so the tiny
 * models give logits of order 1 whose argmax is not a tie.
 */
export function randomWeights(config: ModelConfig, seed: number): Record<string, RandomTensor> {
  const gauss = normal(uniform(seed));
  const out: Record<string, RandomTensor> = {};
  for (const spec of weightSpecs(config)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const role = spec.role;
    if (role === 'inputNorm' || role === 'postNorm' || role === 'finalNorm') for (let i = 0; i < n; i++) data[i] = 1 + 0.1 * gauss();
    else if (role === 'embed' || role.endsWith('Bias')) for (let i = 0; i < n; i++) data[i] = (role === 'embed' ? 1 : 0.1) * gauss();
    else {
      const std = 1 / Math.sqrt(spec.shape[1]);
      for (let i = 0; i < n; i++) data[i] = std * gauss();
    }
    out[spec.name] = { shape: spec.shape, data };
  }
  return out;
}

/**
 * Seeded random weights like randomWeights() (same roles, same standard deviations), but uniform
 * and with every value exactly a float16: k * 2^-e with |k| <= 2047. A model made of them is the
 * same model stored as F32 or F16 and loaded with float32 or float16 GPU weights, so one float64
 * reference serves all of those paths. Several times faster than randomWeights() (no
 * Box-Muller): 1.3 s against 8 s for a 2-layer model at Llama-3.2-1B widths (122M values).
 */
export function randomHalfWeights(config: ModelConfig, seed: number): Record<string, RandomTensor> {
  let state = seed >>> 0;
  const out: Record<string, RandomTensor> = {};
  for (const spec of weightSpecs(config)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const role = spec.role;
    const isNorm = role === 'inputNorm' || role === 'postNorm' || role === 'finalNorm';
    const std = isNorm || role.endsWith('Bias') ? 0.1 : role === 'embed' ? 1 : 1 / Math.sqrt(spec.shape[1]);
    // uniform on [-a, a] has standard deviation a / sqrt(3); the grid step 2^-e keeps 11 bits
    const a = Math.sqrt(3) * std;
    const e = Math.min(24, Math.floor(Math.log2(2047 / a)));
    // norms: 1 + k * 2^-10 is a float16 for |k| < 1024 (spacing 2^-11 below 1, 2^-10 above)
    const step = isNorm ? 2 ** -10 : 2 ** -e;
    const K = Math.round(a / step);
    const offset = isNorm ? 1 : 0;
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      // mulberry32 (as testing/random.ts), inlined: this loop runs 10^8 times for a 1B-wide model
      state = (state + 0x6d2b79f5) >>> 0;
      let t = Math.imul(state ^ (state >>> 15), state | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      data[i] = offset + (Math.floor(u * (2 * K + 1)) - K) * step;
    }
    out[spec.name] = { shape: spec.shape, data };
  }
  return out;
}

/** A TensorStore over float32 arrays in memory; reads as float32 hand out the arrays themselves. */
export function memoryStore(tensors: Record<string, RandomTensor>, origin = 'memory'): TensorStore {
  const entry = (name: string): SafetensorsEntry | undefined => {
    const t = tensors[name];
    return t && { name, dtype: 'F32', shape: t.shape, byteOffset: 0, byteLength: t.data.byteLength, file: origin };
  };
  return {
    origin,
    names: () => Object.keys(tensors),
    entry,
    read: async <T extends ReadAs>(name: string, as: T) => {
      const t = tensors[name];
      if (!t) throw new ValueError(name, `${origin} has no tensor ${show(name)}`);
      return (as === 'float16' ? floatsToHalf(t.data) : t.data) as ReadResult<T>;
    },
    close: async () => {},
  };
}

export interface WriteModelOptions {
  /** Stored element type (default F32). */
  dtype?: StoredDType;
  /** Split the weights over this many shards with model.safetensors.index.json (default 1: one file). */
  shards?: number;
  /** Extra files to write, name -> JSON value (e.g. tokenizer.json). */
  extraFiles?: Record<string, unknown>;
}

/**
 * The files of a Hugging Face model folder (config.json, the weights, optional shards index and
 * extra files) as bytes by name: write them to disk (writeModelFolder), serve them, or pass the
 * map to loadModel() as it is.
 */
export function modelFolderFiles(configJson: Record<string, unknown>, tensors: Record<string, RandomTensor>, options: WriteModelOptions = {}): Map<string, Uint8Array> {
  const dtype = options.dtype ?? 'F32';
  const shards = options.shards ?? 1;
  const files = new Map<string, Uint8Array>();
  const text = (value: unknown, indent?: number) => new TextEncoder().encode(JSON.stringify(value, null, indent));
  files.set('config.json', text({ ...configJson, torch_dtype: { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype] }, 2));
  const names = Object.keys(tensors);
  const groups: string[][] = Array.from({ length: shards }, () => []);
  names.forEach((name, i) => groups[Math.floor((i * shards) / names.length)].push(name));
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const file = shards === 1 ? 'model.safetensors' : `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = Object.fromEntries(groups[s].map((name) => [name, { dtype, shape: tensors[name].shape, data: tensors[name].data }]));
    files.set(file, encodeSafetensors(part, { format: 'pt' }));
    for (const name of groups[s]) weightMap[name] = file;
  }
  if (shards > 1) files.set('model.safetensors.index.json', text({ metadata: {}, weight_map: weightMap }, 2));
  for (const [name, value] of Object.entries(options.extraFiles ?? {})) files.set(name, text(value));
  return files;
}

/** Writes config.json and the weights as a Hugging Face model folder (Node, Bun, Deno). */
export async function writeModelFolder(dir: string, configJson: Record<string, unknown>, tensors: Record<string, RandomTensor>, options: WriteModelOptions = {}): Promise<void> {
  const fs = platform.fs;
  if (!fs) throw new ValueError('dir', `${dir}: writing a model folder needs Node, Bun or Deno; modelFolderFiles() gives the bytes`);
  await fs.mkdir(dir);
  for (const [name, bytes] of modelFolderFiles(configJson, tensors, options)) await fs.writeFile(fs.join(dir, name), bytes);
}

/** Parses a config.json object (shorthand for tests and benchmarks). */
export const configFrom = (json: Record<string, unknown>): ModelConfig => parseModelConfig(json, 'config.json');
