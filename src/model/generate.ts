// Text generation on the paged KV cache, with continuous batching: up to `maxBatch` sequences
// decode together, one token each per step, each at its own position; a sequence that stops
// (stop token or its token budget) leaves between two steps and frees its pages, and the next
// prompt of the queue joins with its prefill (one pass over the prompt, its keys and values
// stored into fresh pages). generate() is the one-prompt case.
import { ValueError, show } from '../core/errors.js';
import type { CacheDType } from '../ops/decode/index.js';
import type { PagedKVCache } from '../ops/decode/index.js';
import type { TransformerModel } from './model.js';
import { type SamplingOptions, createCandidateSampler, createSampler } from './sampling.js';

export interface GenerateOptions extends SamplingOptions {
  /** New tokens to produce at most, per prompt (default 32). */
  maxNewTokens?: number;
  /** Ids that end generation (default: the model's eos ids). The stop token is included in the output. */
  stopTokenIds?: readonly number[];
  /** Called with each new token as soon as it is chosen (for streaming output); `prompt` is the prompt's index. */
  onToken?: (id: number, prompt: number) => void;
  /**
   * Allow prompt + maxNewTokens past the model's max_position_embeddings (default false: a
   * ValueError before anything runs; past it, positions the model never saw give poor text, and
   * the KV cache is sized for the whole length).
   */
  pastMaxPositions?: boolean;
}

export interface BatchOptions extends GenerateOptions {
  /** Sequences decoded together at most (default 8); the others wait for a free slot. */
  maxBatch?: number;
  /** Positions per page of the KV cache (default 16). */
  pageSize?: number;
  /** KV cache storage (default float16 on WebGPU, float32 on the CPU). */
  cacheDType?: CacheDType;
}

export interface GenerateResult {
  /** The new tokens (the prompt not included). */
  tokens: number[];
  stopReason: 'stop-token' | 'max-new-tokens';
  promptTokens: number;
  prefillMs: number;
  /** Forward passes after prefill this sequence was part of (new tokens - 1: the first comes from the prefill logits). */
  decodeSteps: number;
  /** Time of those steps (shared with the sequences decoded alongside). */
  decodeMs: number;
  prefillTokensPerSecond: number;
  /** This sequence's tokens per second of its decode steps. */
  decodeTokensPerSecond: number;
  /** Bytes of the KV cache allocated for the generation (all of its sequences). */
  kvCacheBytes: number;
}

export interface BatchResult {
  /** One result per prompt, in prompt order. */
  results: GenerateResult[];
  /** Decode steps run, and the new tokens they made over all sequences per second of decode. */
  decodeSteps: number;
  decodeTokensPerSecond: number;
  /** Most sequences decoded in one step. */
  peakBatch: number;
}

export async function generate(model: TransformerModel, prompt: readonly number[], options: GenerateOptions = {}): Promise<GenerateResult> {
  if (!Array.isArray(prompt) || prompt.length === 0) throw new ValueError('prompt', `prompt must be a non-empty list of token ids, got ${show(prompt)}`);
  return (await generateBatch(model, [prompt], { ...options, maxBatch: 1 })).results[0];
}

interface Active {
  index: number;
  seq: number;
  tokens: number[];
  decodeMs: number;
  decodeSteps: number;
  /** (ids, values) -> next token, and the sampler for full logits. */
  pick: ReturnType<typeof createCandidateSampler>['pick'];
  sample: ReturnType<typeof createSampler>;
}

/**
 * Generates for every prompt, decoding up to maxBatch of them together (continuous batching).
 * Sampling is seeded per prompt (seed + prompt index), so a prompt's tokens do not depend on which
 * others run beside it.
 */
export async function generateBatch(model: TransformerModel, prompts: readonly (readonly number[])[], options: BatchOptions = {}): Promise<BatchResult> {
  const maxNewTokens = options.maxNewTokens ?? 32;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new ValueError('maxNewTokens', `maxNewTokens must be a positive integer, got ${show(maxNewTokens)}`);
  if (!Array.isArray(prompts) || prompts.length === 0) throw new ValueError('prompts', `prompts must be a non-empty list of token-id lists, got ${show(prompts)}`);
  prompts.forEach((p, i) => {
    if (!Array.isArray(p) || p.length === 0) throw new ValueError('prompt', `prompt ${i} must be a non-empty list of token ids, got ${show(p)}`);
    const length = p.length + maxNewTokens;
    if (length > model.config.maxPositionEmbeddings && !options.pastMaxPositions) {
      throw new ValueError('maxNewTokens', `prompt${prompts.length > 1 ? ` ${i}` : ''} (${p.length} tokens) + maxNewTokens (${maxNewTokens}) = ${length} positions, past the model's max_position_embeddings (${model.config.maxPositionEmbeddings}); lower maxNewTokens or pass pastMaxPositions: true`);
    }
  });
  const maxBatch = options.maxBatch ?? 8;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new ValueError('maxBatch', `maxBatch must be a positive integer, got ${show(maxBatch)}`);
  const stop = new Set(options.stopTokenIds ?? model.stopTokenIds);
  const samplers = prompts.map((_, i) => ({ candidates: createCandidateSampler({ ...options, seed: (options.seed ?? 0) + i }), full: createSampler({ ...options, seed: (options.seed ?? 0) + i }) }));
  const k = samplers[0].candidates.k;
  const onDevice = model.canTopK(k);
  const longest = Math.max(...prompts.map((p) => p.length)) + maxNewTokens;
  const pageSize = options.pageSize ?? 16;
  const slots = Math.min(maxBatch, prompts.length);
  const cache: PagedKVCache = await model.createPagedCache({
    maxSequences: slots, maxLength: longest, pageSize, numPages: slots * Math.ceil(longest / pageSize), dtype: options.cacheDType,
  });
  const results: GenerateResult[] = new Array(prompts.length);
  const pending = prompts.map((_, i) => i);
  const active: Active[] = [];
  let steps = 0;
  let decodeMs = 0;
  let decodedTokens = 0;
  let peakBatch = 0;

  const finish = (a: Active, reason: GenerateResult['stopReason'], prefillMs: number) => {
    cache.free(a.seq);
    const prompt = prompts[a.index];
    results[a.index] = {
      tokens: a.tokens, stopReason: reason, promptTokens: prompt.length, prefillMs, decodeSteps: a.decodeSteps, decodeMs: a.decodeMs,
      prefillTokensPerSecond: (prompt.length / prefillMs) * 1000, decodeTokensPerSecond: a.decodeSteps > 0 ? (a.decodeSteps / a.decodeMs) * 1000 : 0,
      kvCacheBytes: cache.bytes,
    };
  };
  const prefillTimes = new Map<number, number>();
  const push = (a: Active, token: number): boolean => {
    a.tokens.push(token);
    options.onToken?.(token, a.index);
    if (stop.has(token)) {
      finish(a, 'stop-token', prefillTimes.get(a.index)!);
      return false;
    }
    if (a.tokens.length >= maxNewTokens) {
      finish(a, 'max-new-tokens', prefillTimes.get(a.index)!);
      return false;
    }
    return true;
  };
  const choose = (a: Active, logits: Float32Array | undefined, top: { values: ArrayLike<number>; ids: ArrayLike<number> } | undefined): number => {
    if (top) {
      // NaN logits compare as nothing in the device's top-k: all of them NaN or -inf means NaN
      if (top.values.length === 0 || Array.from(top.values).every((x) => !(x > -Infinity))) {
        throw new ValueError('logits', 'the model produced NaN logits; the weights may hold NaN/Inf or overflow (load with checkFinite to find which)');
      }
      return a.pick(top.values as Float32Array, top.ids as Uint32Array);
    }
    for (let i = 0; i < logits!.length; i++) {
      if (Number.isNaN(logits![i])) throw new ValueError('logits', `the model produced NaN logits (token ${i}); the weights may hold NaN/Inf or overflow`);
    }
    return a.sample(logits!);
  };

  try {
    while (pending.length || active.length) {
      // join: prefill waiting prompts into free slots
      while (pending.length && active.length < slots) {
        const index = pending.shift()!;
        const seq = cache.addSequence();
        const a: Active = { index, seq, tokens: [], decodeMs: 0, decodeSteps: 0, pick: samplers[index].candidates.pick, sample: samplers[index].full };
        const t0 = performance.now();
        const out = await model.prefillPaged(prompts[index], cache, seq, onDevice ? { topK: k } : {});
        prefillTimes.set(index, performance.now() - t0);
        if (push(a, choose(a, out.logits, out.top?.[0]))) active.push(a);
      }
      if (!active.length) continue;
      // one decode step of every active sequence, each at its own position
      peakBatch = Math.max(peakBatch, active.length);
      const t0 = performance.now();
      const out = await model.decodePaged(active.map((a) => a.tokens[a.tokens.length - 1]), cache, active.map((a) => a.seq), onDevice ? { topK: k } : {});
      const ms = performance.now() - t0;
      steps++;
      decodeMs += ms;
      decodedTokens += active.length;
      const vocab = model.config.vocabSize;
      const still: Active[] = [];
      active.forEach((a, b) => {
        a.decodeMs += ms;
        a.decodeSteps++;
        const token = choose(a, out.logits?.subarray(b * vocab, (b + 1) * vocab), out.top?.[b]);
        if (push(a, token)) still.push(a);
      });
      active.splice(0, active.length, ...still);
    }
  } finally {
    cache.dispose();
  }
  return { results, decodeSteps: steps, decodeTokensPerSecond: decodeMs > 0 ? (decodedTokens / decodeMs) * 1000 : 0, peakBatch };
}
