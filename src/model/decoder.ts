// The Qwen2/Llama decoder loop, written once for every backend (see backend.ts for the seams):
//   x = embed(ids)
//   per layer: x += Attention(RMSNorm(x)); x += down(silu(gate(h)) * up(h)) with h = RMSNorm(x)
//   logits = lmHead(RMSNorm(x)) of the last position of each sequence (or of every position).
// Prefill is one call with the whole prompt; decode is one call per new token. Both go through the
// same code; only T differs.
import { ValueError, show } from '../core/errors.js';
import type { Activations, AttentionModule, DecoderOps, KvCache, StepInfo } from './backend.js';
import type { ModelConfig } from './config.js';
import { ropeTable } from './rope.js';
import type { DecoderWeights } from './weights.js';

export interface ForwardOptions {
  /** Logits for every new position, [B, T, vocab], instead of the last one only, [B, vocab]. */
  allLogits?: boolean;
}

export class Decoder<A extends Activations, W, C extends KvCache> {
  constructor(
    readonly config: ModelConfig,
    readonly weights: DecoderWeights<W>,
    readonly ops: DecoderOps<A, W, C>,
    readonly attention: AttentionModule<A, C>,
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
    const { batch, count } = this.checkTokens(tokens, cache);
    const ops = this.ops;
    const start = cache.length;
    const step: StepInfo = { batch, tokens: count, start, rope: ropeTable(this.config, start, count) };
    const ids = new Int32Array(batch * count);
    for (let t = 0; t < count; t++) for (let b = 0; b < batch; b++) ids[t * batch + b] = tokens[b][t];

    const eps = this.config.rmsNormEps;
    const x = await ops.embed(this.weights.embed, ids);
    for (let l = 0; l < this.weights.layers.length; l++) {
      const w = this.weights.layers[l];
      const normed = await ops.rmsNorm(x, w.inputNorm, eps);
      const attn = await this.attention.forward(normed, l, cache, step);
      await ops.addInPlace(x, attn);
      const h = await ops.rmsNorm(x, w.postNorm, eps);
      const gate = await ops.linear(h, w.gate, w.gateBias);
      const up = await ops.linear(h, w.up, w.upBias);
      const act = await ops.swiglu(gate, up);
      const down = await ops.linear(act, w.down, w.downBias);
      await ops.addInPlace(x, down);
      ops.release(normed, attn, h, gate, up, act, down);
    }
    ops.advanceCache(cache, start + count);

    const rows = options.allLogits ? x : await ops.lastRows(x, batch);
    const normed = await ops.rmsNorm(rows, this.weights.finalNorm, eps);
    const logits = await ops.linear(normed, this.weights.lmHead);
    const values = await ops.read(logits);
    ops.release(x, normed, logits);
    if (rows !== x) ops.release(rows);
    if (!options.allLogits || count === 1) return values;
    // rows are t * B + b; callers want [B, T, vocab]
    const vocab = this.config.vocabSize;
    const out = new Float32Array(values.length);
    for (let t = 0; t < count; t++) {
      for (let b = 0; b < batch; b++) out.set(values.subarray((t * batch + b) * vocab, (t * batch + b + 1) * vocab), (b * count + t) * vocab);
    }
    return out;
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
