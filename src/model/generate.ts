// Text generation: prefill the prompt in one forward pass, then decode one token per pass against
// the KV cache, sampling each next token. Times prefill and decode separately (tokens/s).
import { ValueError, show } from '../core/errors.js';
import type { TransformerModel } from './model.js';
import { type SamplingOptions, createCandidateSampler, createSampler } from './sampling.js';

export interface GenerateOptions extends SamplingOptions {
  /** New tokens to produce at most (default 32). */
  maxNewTokens?: number;
  /** Ids that end generation (default: the model's eos ids). The stop token is included in the output. */
  stopTokenIds?: readonly number[];
  /** Called with each new token as soon as it is chosen (for streaming output). */
  onToken?: (id: number) => void;
  /**
   * Allow prompt + maxNewTokens past the model's max_position_embeddings (default false: a
   * ValueError before anything runs; past it, positions the model never saw give poor text, and
   * the KV cache is sized for the whole length).
   */
  pastMaxPositions?: boolean;
}

export interface GenerateResult {
  /** The new tokens (the prompt not included). */
  tokens: number[];
  stopReason: 'stop-token' | 'max-new-tokens';
  promptTokens: number;
  prefillMs: number;
  /** Forward passes after prefill (new tokens - 1: the first comes from the prefill logits). */
  decodeSteps: number;
  decodeMs: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  /** Bytes of the KV cache allocated for this generation. */
  kvCacheBytes: number;
}

export async function generate(model: TransformerModel, prompt: readonly number[], options: GenerateOptions = {}): Promise<GenerateResult> {
  const maxNewTokens = options.maxNewTokens ?? 32;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) {
    throw new ValueError('maxNewTokens', `maxNewTokens must be a positive integer, got ${show(maxNewTokens)}`);
  }
  if (!Array.isArray(prompt) || prompt.length === 0) {
    throw new ValueError('prompt', `prompt must be a non-empty list of token ids, got ${show(prompt)}`);
  }
  const length = prompt.length + maxNewTokens;
  if (length > model.config.maxPositionEmbeddings && !options.pastMaxPositions) {
    throw new ValueError('maxNewTokens', `prompt (${prompt.length} tokens) + maxNewTokens (${maxNewTokens}) = ${length} positions, past the model's max_position_embeddings (${model.config.maxPositionEmbeddings}); lower maxNewTokens or pass pastMaxPositions: true`);
  }
  const sample = createSampler(options);
  const candidates = createCandidateSampler(options);
  const stop = new Set(options.stopTokenIds ?? model.stopTokenIds);
  const cache = model.createCache(1, prompt.length + maxNewTokens);

  // where the backend finds the k largest logits itself (the GPU), only those are read back
  const onDevice = model.canTopK(candidates.k);
  const next = async (tokens: number[]) => {
    if (onDevice) {
      const [top] = await model.forwardTop([tokens], cache, candidates.k);
      // NaN logits compare as nothing in the device's top-k: all of them NaN or -inf means NaN
      if (top.values.length === 0 || Array.from(top.values).every((x) => !(x > -Infinity))) {
        throw new ValueError('logits', 'the model produced NaN logits; the weights may hold NaN/Inf or overflow (load with checkFinite to find which)');
      }
      return candidates.pick(top.values, top.ids);
    }
    const logits = await model.forward([tokens], cache);
    for (let i = 0; i < logits.length; i++) {
      if (Number.isNaN(logits[i])) throw new ValueError('logits', `the model produced NaN logits (token ${i}); the weights may hold NaN/Inf or overflow`);
    }
    return sample(logits);
  };
  const t0 = performance.now();
  let token = await next(prompt);
  const prefillMs = performance.now() - t0;
  const tokens = [token];
  options.onToken?.(token);
  let stopReason: GenerateResult['stopReason'] = stop.has(token) ? 'stop-token' : 'max-new-tokens';
  const t1 = performance.now();
  while (stopReason !== 'stop-token' && tokens.length < maxNewTokens) {
    token = await next([token]);
    tokens.push(token);
    options.onToken?.(token);
    if (stop.has(token)) stopReason = 'stop-token';
  }
  const decodeMs = performance.now() - t1;
  const decodeSteps = tokens.length - 1;
  return {
    tokens,
    stopReason,
    promptTokens: prompt.length,
    prefillMs,
    decodeSteps,
    decodeMs,
    prefillTokensPerSecond: (prompt.length / prefillMs) * 1000,
    decodeTokensPerSecond: decodeSteps > 0 ? (decodeSteps / decodeMs) * 1000 : 0,
    kvCacheBytes: cache.bytes,
  };
}
