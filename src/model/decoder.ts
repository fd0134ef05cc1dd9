// The Qwen2/Llama decoder loop, written once for every backend (see backend.ts for the seams):
//   x = embed(ids)
//   per layer: x += Attention(RMSNorm(x)); x += down(silu(gate(h)) * up(h)) with h = RMSNorm(x)
//   logits = lmHead(RMSNorm(x)) of the last position of each sequence (or of every position).
// Prefill is one call with the whole prompt; decode is one call per new token. Both go through the
// same code; only T differs.
import { UnsupportedError, ValueError, show } from '../core/errors.js';
import { PagedKVCache } from '../ops/decode/index.js';
import type { CacheDType } from '../ops/decode/index.js';
import type { Activations, AttentionModule, DecoderOps, KvCache, StepInfo } from './backend.js';
import type { ModelConfig } from './config.js';
import { ropeRows, ropeTable } from './rope.js';
import { type TopCandidates, mergeCandidates } from './sampling.js';
import type { DecoderWeights } from './weights.js';

export interface ForwardOptions {
  /** Logits for every new position, [B, T, vocab], instead of the last one only, [B, vocab]. */
  allLogits?: boolean;
}

/** A paged KV cache for continuous batching (Decoder.createPagedCache). */
export interface PagedCacheOptions {
  /** Most sequences decoded together (default 8). */
  maxSequences?: number;
  /** Most positions one sequence may hold, prompt included (default: the model's max_position_embeddings). */
  maxLength?: number;
  /** Pages in the pool (default: maxSequences sequences of maxLength). */
  numPages?: number;
  /** Positions per page (default 16). */
  pageSize?: number;
  /** Storage (default float16 on WebGPU, float32 on the CPU, where converting costs more than it saves). */
  dtype?: CacheDType;
}

export class Decoder<A extends Activations, W, C extends KvCache> {
  constructor(
    readonly config: ModelConfig,
    readonly weights: DecoderWeights<W>,
    readonly ops: DecoderOps<A, W, C>,
    readonly attention: AttentionModule<A, C, W>,
  ) {}

  /** A KV cache for `batch` sequences of up to `capacity` positions, preallocated. */
  createCache(batch: number, capacity: number): C {
    for (const [name, v] of [['batch', batch], ['capacity', capacity]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new ValueError(name, `${name} must be a positive integer, got ${show(v)}`);
    }
    return this.ops.createCache(this.config, batch, capacity);
  }

  /**
   * Runs `tokens` (B sequences of T new token ids each) through the model at positions
   * cache.length .. cache.length + T - 1, appending their keys and values to `cache`.
   * Returns float32 logits, [B, vocab] (last position) or [B, T, vocab] with allLogits.
   */
  async forward(tokens: readonly (readonly number[])[], cache: C, options: ForwardOptions = {}): Promise<Float32Array> {
    return (await this.pass(tokens, cache, options.allLogits === true, 0)) as Float32Array;
  }

  /** A paged KV cache on this model's backend, one layer per decoder layer. */
  createPagedCache(options: PagedCacheOptions = {}): Promise<PagedKVCache> {
    const { numKvHeads: kvHeads, headDim, numLayers: layers } = this.config;
    const maxSequences = options.maxSequences ?? 8;
    const pageSize = options.pageSize ?? 16;
    const maxLength = options.maxLength ?? this.config.maxPositionEmbeddings;
    const backend = this.ops.pagedBackend;
    return PagedKVCache.create({
      numPages: options.numPages ?? maxSequences * Math.ceil(maxLength / pageSize), pageSize, kvHeads, headDim, layers, maxLength, maxSequences,
      dtype: options.dtype ?? (backend === 'webgpu' ? 'float16' : 'float32'), backend,
      device: (this.ops as { runtime?: { device: GPUDevice } }).runtime?.device,
    });
  }

  /**
   * Prefill of one empty sequence of a paged cache: runs `tokens` through the model (on a
   * contiguous cache of their own), stores their keys and values into `seq`'s pages and returns
   * the last position's logits [vocab] (or its `topK` candidates).
   */
  async prefillPaged(tokens: readonly number[], paged: PagedKVCache, seq: number, topK = 0): Promise<Float32Array | TopCandidates> {
    if (paged.length(seq) !== 0) throw new UnsupportedError('seq', `sequence ${seq} already holds ${paged.length(seq)} positions; a prefill starts an empty sequence (extend it with decode steps)`);
    if (topK && !this.canTopK(topK)) throw new ValueError('k', `k must be an integer in 1..${this.ops.maxTopK ?? 0} on the ${this.ops.name} backend, got ${show(topK)}`);
    paged.reserve([seq], tokens.length);
    const cache = this.ops.createCache(this.config, 1, tokens.length);
    try {
      const out = await this.pass([tokens], cache, false, topK);
      await this.ops.storePrefill(cache, paged, seq, tokens.length);
      paged.advance([seq], tokens.length);
      return topK ? (out as TopCandidates[])[0] : (out as Float32Array);
    } finally {
      this.ops.disposeCache?.(cache);
    }
  }

  /**
   * One decode step of several sequences of a paged cache, at their own positions (continuous
   * batching): token b is the next token of seqs[b]. Returns logits [B, vocab] (or each
   * sequence's `topK` candidates); the attention kernels append the new keys and values.
   */
  async decodePaged(tokens: readonly number[], paged: PagedKVCache, seqs: readonly number[], topK = 0): Promise<Float32Array | TopCandidates[]> {
    const batch = seqs.length;
    if (!Array.isArray(tokens) || tokens.length !== batch) throw new ValueError('tokens', `give one token per sequence (${batch}), got ${show(tokens)}`);
    const vocab = this.config.vocabSize;
    tokens.forEach((id, b) => {
      if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new ValueError('tokens', `token ids must be integers in [0, ${vocab}) (vocab_size), got ${show(id)} for sequence ${seqs[b]}`);
    });
    if (topK && !this.canTopK(topK)) throw new ValueError('k', `k must be an integer in 1..${this.ops.maxTopK ?? 0} on the ${this.ops.name} backend, got ${show(topK)}`);
    const positions = Int32Array.from(seqs, (s) => paged.length(s));
    paged.reserve(seqs, 1);
    // the step's lengths and block table, written before its commands (a replay reads them too)
    paged.view(seqs, 0);
    const step: StepInfo = { batch, tokens: 1, start: Math.max(...positions), rope: ropeRows(this.config, positions), paged: { cache: paged, seqs, positions } };
    const ids = Int32Array.from(tokens);
    const ops = this.ops;
    const none = undefined as unknown as C;
    ops.beginStep?.(step, ids);
    const run = async () => {
      const logits = await this.layers(ids, none, step, false);
      if (!topK) return logits;
      const candidates = await ops.topK!(logits, topK);
      ops.release(logits);
      return candidates;
    };
    const attention = ops.runStep ? this.attention.stepKey?.(step, none) : undefined;
    const replayable = attention !== undefined && attention !== null;
    const logits = replayable ? await ops.runStep!({ batch, paged, attention, topK }, run) : await run();
    paged.advance(seqs, 1);
    const values = await ops.read(logits);
    if (!replayable) ops.release(logits);
    if (topK) {
      const k = Math.min(topK, vocab);
      return mergeCandidates(new Uint32Array(values.buffer, values.byteOffset, values.length), batch, logits.cols / (2 * topK + 1), topK, k);
    }
    return values;
  }

  /** True when forwardTop() can find `k` candidates on the backend. */
  canTopK(k: number): boolean {
    return this.ops.topK !== undefined && k >= 1 && k <= (this.ops.maxTopK ?? 0);
  }

  /**
   * Like forward() for the last position, but returns each sequence's `k` largest logits and their
   * ids (largest first, ties: lower id first), found where the logits are: only those are read
   * back. Throws ValueError if any logit is NaN. See canTopK().
   */
  async forwardTop(tokens: readonly (readonly number[])[], cache: C, k: number): Promise<TopCandidates[]> {
    if (!this.canTopK(k)) throw new ValueError('k', `k must be an integer in 1..${this.ops.maxTopK ?? 0} on the ${this.ops.name} backend, got ${show(k)}`);
    return (await this.pass(tokens, cache, false, k)) as TopCandidates[];
  }

  private async pass(tokens: readonly (readonly number[])[], cache: C, allLogits: boolean, topK: number): Promise<Float32Array | TopCandidates[]> {
    const options = { allLogits };
    const { batch, count } = this.checkTokens(tokens, cache);
    const ops = this.ops;
    const start = cache.length;
    const step: StepInfo = { batch, tokens: count, start, rope: ropeTable(this.config, start, count) };
    const ids = new Int32Array(batch * count);
    for (let t = 0; t < count; t++) for (let b = 0; b < batch; b++) ids[t * batch + b] = tokens[b][t];

    ops.beginStep?.(step, ids);
    const run = async () => {
      const logits = await this.layers(ids, cache, step, allLogits);
      if (!topK) return logits;
      const candidates = await ops.topK!(logits, topK);
      ops.release(logits);
      return candidates;
    };
    // decode steps after the first forward pass (every module's weights are ready by then) may be
    // recorded once per key and replayed
    const attention = count === 1 && start > 0 && ops.runStep ? this.attention.stepKey?.(step, cache) : undefined;
    const replayable = attention !== undefined && attention !== null;
    const key = replayable ? { batch, cache, attention, topK } : undefined;
    const logits = replayable ? await ops.runStep!(key, run) : await run();
    // outside the step's ops: a replay does not run them
    ops.advanceCache(cache, start + count);
    const values = await ops.read(logits);
    if (!replayable) ops.release(logits);
    if (topK) {
      const k = Math.min(topK, this.config.vocabSize);
      return mergeCandidates(new Uint32Array(values.buffer, values.byteOffset, values.length), batch, logits.cols / (2 * topK + 1), topK, k);
    }
    if (!options.allLogits || count === 1) return values;
    // rows are t * B + b; callers want [B, T, vocab]
    const vocab = this.config.vocabSize;
    const out = new Float32Array(values.length);
    for (let t = 0; t < count; t++) {
      for (let b = 0; b < batch; b++) out.set(values.subarray((t * batch + b) * vocab, (t * batch + b + 1) * vocab), (b * count + t) * vocab);
    }
    return out;
  }

  /** Every op of one forward pass, from token ids to logits (as activations on the backend). */
  private async layers(ids: Int32Array, cache: C, step: StepInfo, allLogits: boolean): Promise<A> {
    const ops = this.ops;
    const eps = this.config.rmsNormEps;
    const layers = this.weights.layers;
    const x = await ops.embed(this.weights.embed, ids);
    // backends with normLinear fuse each RMSNorm into the projection after it
    const fusedNorms = ops.normLinear !== undefined;
    for (let l = 0; l < layers.length; l++) {
      const w = layers[l];
      // x += Attention(RMSNorm(x))
      if (fusedNorms && this.attention.forwardResidual) await this.attention.forwardResidual(x, w.inputNorm, eps, l, cache, step);
      else {
        const normed = await ops.rmsNorm(x, w.inputNorm, eps);
        const attn = await this.attention.forward(normed, l, cache, step);
        await ops.addInPlace(x, attn);
        ops.release(normed, attn);
      }
      // x += down(silu(gate(h)) * up(h)), h = RMSNorm(x)
      let act: A;
      if (fusedNorms && ops.swigluLinear) act = await ops.swigluLinear(x, w.gate, w.up, w.gateBias, w.upBias, { weight: w.postNorm, eps });
      else {
        const h = await ops.rmsNorm(x, w.postNorm, eps);
        if (ops.swigluLinear) act = await ops.swigluLinear(h, w.gate, w.up, w.gateBias, w.upBias);
        else {
          const gate = await ops.linear(h, w.gate, w.gateBias);
          const up = await ops.linear(h, w.up, w.upBias);
          act = await ops.swiglu(gate, up);
          ops.release(gate, up);
        }
        ops.release(h);
      }
      if (ops.linearAdd) await ops.linearAdd(act, w.down, w.downBias, x);
      else {
        const down = await ops.linear(act, w.down, w.downBias);
        await ops.addInPlace(x, down);
        ops.release(down);
      }
      ops.release(act);
    }

    const rows = allLogits || step.tokens === 1 ? x : await ops.lastRows(x, step.batch);
    let logits: A;
    if (ops.normLinear) logits = await ops.normLinear(rows, this.weights.finalNorm, eps, this.weights.lmHead);
    else {
      const final = await ops.rmsNorm(rows, this.weights.finalNorm, eps);
      logits = await ops.linear(final, this.weights.lmHead);
      ops.release(final);
    }
    ops.release(x);
    if (rows !== x) ops.release(rows);
    return logits;
  }

  private checkTokens(tokens: readonly (readonly number[])[], cache: C): { batch: number; count: number } {
    if (!Array.isArray(tokens) || tokens.length === 0 || !tokens.every((seq) => Array.isArray(seq))) {
      throw new ValueError('tokens', `tokens must be a non-empty list of token-id sequences ([batch][tokens]), got ${show(tokens)}`);
    }
    const batch = tokens.length;
    const count = tokens[0].length;
    if (batch !== cache.batch) throw new ValueError('tokens', `tokens has ${batch} sequences but the KV cache was made for batch ${cache.batch}`);
    if (count < 1) throw new ValueError('tokens', 'tokens must hold at least one token per sequence, got 0');
    const vocab = this.config.vocabSize;
    for (let b = 0; b < batch; b++) {
      if (tokens[b].length !== count) {
        throw new ValueError('tokens', `every sequence must have the same number of new tokens (${count}), sequence ${b} has ${tokens[b].length}`);
      }
      for (let t = 0; t < count; t++) {
        const id = tokens[b][t];
        if (!Number.isInteger(id) || id < 0 || id >= vocab) {
          throw new ValueError('tokens', `token ids must be integers in [0, ${vocab}) (vocab_size), got ${show(id)} at sequence ${b}, position ${t}`);
        }
      }
    }
    if (cache.length + count > cache.capacity) {
      throw new ValueError('tokens', `the KV cache holds ${cache.capacity} positions; ${cache.length} are used and ${count} more do not fit (make the cache larger)`);
    }
    return { batch, count };
  }
}
