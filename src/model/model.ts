// A loaded transformer: config + weights on a backend + an attention module, behind one small
// interface that hides the backend's types. `loadModel(dir)` reads a Hugging Face model folder
// (config.json, safetensors, optional tokenizer.json); `createModel(config, store)` takes weights
// from any TensorStore (e.g. random weights generated in memory for benchmarks).
import { UnsupportedError, ValueError, show } from '../core/errors.js';
import { autoBackend } from '../ops/attention/index.js';
import { type TensorStore, openSafetensors } from '../io/safetensors.js';
import { type ModelSource, type SourceOptions, modelFiles } from '../io/sources.js';
import type { Activations, AttentionFactory, DecoderOps, KvCache } from './backend.js';
import { type ModelConfig, readModelConfig } from './config.js';
import { Decoder, type ForwardOptions, type PagedCacheOptions } from './decoder.js';
import type { PagedKVCache } from '../ops/decode/index.js';
import { type TextTokenizer, loadTokenizer } from './tokenizer.js';
import { type DecoderWeights, checkWeights, loadWeights, weightSpecs } from './weights.js';
import type { TopCandidates } from './sampling.js';

export type ModelBackendChoice = 'cpu' | 'webgpu' | 'auto';
/** 'fused': the AttentionBlock (packed QKV GEMM, RoPE in the attention kernel); 'unfused': separate steps. */
export type AttentionKind = 'fused' | 'unfused';

export interface ModelOptions {
  /**
   * Default 'auto': WebGPU on a hardware adapter, else the CPU (a software adapter such as Mesa
   * llvmpipe runs the model far slower than the CPU backend; ask for 'webgpu' to use it anyway).
   */
  backend?: ModelBackendChoice;
  /** Default: 'fused' where the backend has it, else 'unfused'. */
  attention?: AttentionKind;
  /** WebGPU: a GPUDevice of the caller's, used instead of acquiring one. */
  device?: GPUDevice;
  /** Scan every weight as it is loaded and throw a ValueError naming the first NaN / ±Inf. */
  checkFinite?: boolean;
  /** WebGPU: store weights as float32 (default) or float16 (half the memory and weight traffic). */
  gpuWeights?: 'float32' | 'float16';
  /** WebGPU: run prefill attention with the split-KV decode kernels too (tests, benchmarks). */
  splitKvPrefill?: boolean;
  /**
   * WebGPU: record a decode step's commands once per shape and replay them as one submission
   * (default true). false runs every op on every step (comparisons, debugging).
   */
  replayDecode?: boolean;
  /**
   * WebGPU, unfused module: decode with the first split-KV kernel (decode-attention.wgsl.ts)
   * instead of the decode op's split-KV kernel (ops/decode/webgpu/split-kv.wgsl.ts; comparisons).
   */
  firstDecodeKernel?: boolean;
}

/** What a paged step returns: logits [B, vocab] without topK, else the candidates of each sequence. */
export interface PagedResult {
  logits?: Float32Array;
  top?: TopCandidates[];
}

export interface TransformerModel {
  readonly config: ModelConfig;
  /** Present when the model folder has tokenizer.json. */
  readonly tokenizer: TextTokenizer | undefined;
  readonly backend: 'cpu' | 'webgpu';
  /** The attention module's name, e.g. "unfused (cpu)". */
  readonly attention: string;
  /** Bytes of weights held by the backend. */
  readonly weightBytes: number;
  /** A preallocated KV cache for `batch` sequences of up to `capacity` positions. */
  createCache(batch: number, capacity: number): KvCache;
  /** See Decoder.forward: logits [B, vocab] of the last new position (or [B, T, vocab]). */
  forward(tokens: readonly (readonly number[])[], cache: KvCache, options?: ForwardOptions): Promise<Float32Array>;
  /** True when forwardTop() can find k candidates on this backend (WebGPU: k <= 64). */
  canTopK(k: number): boolean;
  /** See Decoder.forwardTop: each sequence's k largest logits and their ids, found on the device. */
  forwardTop(tokens: readonly (readonly number[])[], cache: KvCache, k: number): Promise<TopCandidates[]>;
  /**
   * A paged KV cache for this model (continuous batching): sequences are added, forked and freed
   * on it; prefillPaged() fills one, decodePaged() steps several at their own positions.
   */
  createPagedCache(options?: PagedCacheOptions): Promise<PagedKVCache>;
  /** Prefill of an empty sequence of `cache`: its last position's logits [vocab], or its top-k candidates. */
  prefillPaged(tokens: readonly number[], cache: PagedKVCache, seq: number, options?: { topK?: number }): Promise<PagedResult>;
  /** One decode step of `seqs` (token b for seqs[b]): logits [B, vocab], or each sequence's top-k candidates. */
  decodePaged(tokens: readonly number[], cache: PagedKVCache, seqs: readonly number[], options?: { topK?: number }): Promise<PagedResult>;
  /** WebGPU: how many decode steps were recorded and replayed (see ModelOptions.replayDecode). */
  readonly replayStats: () => { records: number; replays: number; lastHostMs: number | undefined } | undefined;
  /** Stop token ids: config eos_token_id plus the tokenizer's eos_token. */
  readonly stopTokenIds: readonly number[];
  /** Frees the weights (CPU engine memory or GPU buffers); the model is unusable afterwards. */
  dispose(): void;
}

interface BackendEntry {
  // each backend has its own activation / weight / cache types; the model hides them
  load(config: ModelConfig, store: TensorStore, options: ModelOptions): Promise<{ ops: DecoderOps<Activations, unknown, KvCache>; weights: DecoderWeights<unknown> }>;
  attention: Partial<Record<AttentionKind, (options: ModelOptions) => Promise<AttentionFactory<Activations, unknown, KvCache>>>>;
}

type AnyFactory = AttentionFactory<Activations, unknown, KvCache>;

/**
 * Backends of the runner and the attention modules each offers. The fused AttentionBlock plugs in
 * here as `attention.fused` of each backend (an AttentionFactory; see docs/MODEL.md) and then
 * becomes the default.
 */
const BACKENDS: Record<'cpu' | 'webgpu', BackendEntry> = {
  cpu: {
    async load(config, store, options) {
      const { CpuOps } = await import('./cpu/ops.js');
      const { cpuEngine } = await import('../ops/cpu-engine.js');
      const bytes = weightSpecs(config).reduce((sum, spec) => sum + 4 * spec.shape.reduce((a, b) => a * b, 1), 0);
      const ops = CpuOps.forModel(await cpuEngine(), bytes);
      const weights = await loadWeights(store, config, 'float32', (tensor) => ops.upload(tensor), options.checkFinite);
      return { ops: ops as unknown as DecoderOps<Activations, unknown, KvCache>, weights };
    },
    attention: {
      unfused: async () => (await import('./cpu/unfused-attention.js')).cpuUnfusedAttention as unknown as AnyFactory,
      fused: async () => (await import('../block/model-attention.js')).cpuFusedAttention as unknown as AnyFactory,
    },
  },
  webgpu: {
    async load(config, store, options) {
      const { GpuOps } = await import('./webgpu/ops.js');
      const { getRuntime } = await import('../engines/webgpu/runtime.js');
      const ops = new GpuOps(await getRuntime(options.device), options.gpuWeights ?? 'float32');
      ops.replayDecode = options.replayDecode ?? true;
      const weights = await loadWeights(store, config, ops.weightDType, (tensor) => ops.upload(tensor), options.checkFinite);
      return { ops: ops as unknown as DecoderOps<Activations, unknown, KvCache>, weights };
    },
    attention: {
      unfused: async (options) => {
        const { gpuUnfusedAttention } = await import('./webgpu/unfused-attention.js');
        return ((config, layers, ops) => gpuUnfusedAttention(config, layers as never, ops as never, { splitKvPrefill: options.splitKvPrefill, firstDecodeKernel: options.firstDecodeKernel })) as AnyFactory;
      },
      fused: async () => {
        const { gpuFusedAttention } = await import('../block/model-attention.js');
        return ((config, layers, ops) => gpuFusedAttention(config, layers as never, ops as never)) as AnyFactory;
      },
    },
  },
};

async function resolveBackend(choice: ModelBackendChoice, device: GPUDevice | undefined): Promise<'cpu' | 'webgpu'> {
  if (choice !== 'cpu' && choice !== 'webgpu' && choice !== 'auto') {
    throw new ValueError('backend', `backend must be "cpu", "webgpu" or "auto", got ${show(choice)}`);
  }
  if (choice !== 'auto') return choice;
  return autoBackend({ device });
}

/** A model from a validated config and a store of weights (HF names). */
export async function createModel(config: ModelConfig, store: TensorStore, options: ModelOptions = {}, tokenizer?: TextTokenizer): Promise<TransformerModel> {
  if (options.attention !== undefined && options.attention !== 'fused' && options.attention !== 'unfused') {
    throw new ValueError('attention', `attention must be "fused" or "unfused", got ${show(options.attention)}`);
  }
  if (options.gpuWeights !== undefined && options.gpuWeights !== 'float32' && options.gpuWeights !== 'float16') {
    throw new ValueError('gpuWeights', `gpuWeights must be "float32" or "float16", got ${show(options.gpuWeights)}`);
  }
  // the config against the file before any backend memory is sized from it
  checkWeights(store, config);
  const backend = await resolveBackend(options.backend ?? 'auto', options.device);
  const entry = BACKENDS[backend];
  const kind = options.attention ?? (entry.attention.fused ? 'fused' : 'unfused');
  const makeAttention = entry.attention[kind];
  if (!makeAttention) {
    throw new UnsupportedError('attention', `the ${kind} attention module is not available on the ${backend} backend in this build (available: ${Object.keys(entry.attention).join(', ')})`);
  }
  const { ops, weights } = await entry.load(config, store, options);
  const attention = (await makeAttention(options))(config, weights.layers, ops);
  const decoder = new Decoder(config, weights, ops, attention);
  const stop = new Set([...config.eosTokenIds, ...(tokenizer?.eosTokenIds ?? [])]);
  let disposed = false;
  return {
    config,
    tokenizer,
    backend,
    attention: attention.name,
    weightBytes: ops.weightBytes(weights),
    stopTokenIds: [...stop],
    createCache: (batch, capacity) => decoder.createCache(batch, capacity),
    forward: async (tokens, cache, opts) => {
      if (disposed) throw new ValueError('model', 'this model was disposed; load it again');
      return decoder.forward(tokens, cache, opts);
    },
    canTopK: (k) => decoder.canTopK(k),
    forwardTop: async (tokens, cache, k) => {
      if (disposed) throw new ValueError('model', 'this model was disposed; load it again');
      return decoder.forwardTop(tokens, cache, k);
    },
    createPagedCache: (opts) => decoder.createPagedCache(opts),
    prefillPaged: async (tokens, cache, seq, opts) => {
      if (disposed) throw new ValueError('model', 'this model was disposed; load it again');
      const k = opts?.topK ?? 0;
      const out = await decoder.prefillPaged(tokens, cache, seq, k);
      return k ? { top: [out as TopCandidates] } : { logits: out as Float32Array };
    },
    decodePaged: async (tokens, cache, seqs, opts) => {
      if (disposed) throw new ValueError('model', 'this model was disposed; load it again');
      const k = opts?.topK ?? 0;
      const out = await decoder.decodePaged(tokens, cache, seqs, k);
      return k ? { top: out as TopCandidates[] } : { logits: out as Float32Array };
    },
    replayStats: () => {
      const stats = (ops as { stepStats?: { records: number; replays: number; lastRun?: { hostMs: number } } }).stepStats;
      return stats && { records: stats.records, replays: stats.replays, lastHostMs: stats.lastRun?.hostMs };
    },
    dispose: () => {
      if (!disposed) ops.dispose(weights);
      disposed = true;
    },
  };
}

/**
 * Loads a Hugging Face model: config.json, model.safetensors (or shards), tokenizer.json if present
 * (required with `requireTokenizer`, checked before any weight is read or device touched), from a
 * folder path, a URL (fetch with range requests; `onProgress` sees the bytes arrive), File / Blob
 * objects or ArrayBuffers by file name (see ModelSource).
 */
export async function loadModel(source: ModelSource, options: ModelOptions & SourceOptions & { requireTokenizer?: boolean } = {}): Promise<TransformerModel> {
  const files = modelFiles(source, options);
  const config = await readModelConfig(files);
  const tokenizer = await loadTokenizer(files);
  if (options.requireTokenizer && !tokenizer) {
    throw new UnsupportedError('tokenizer', `${files.origin} has no tokenizer.json, so text cannot be encoded; pass token ids instead`);
  }
  const store = await openSafetensors(files);
  try {
    return await createModel(config, store, options, tokenizer);
  } finally {
    await store.close();
  }
}
