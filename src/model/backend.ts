// The seams of the transformer runner. The decoder loop (decoder.ts) is written once against two
// interfaces that each backend implements:
//   DecoderOps       embeddings, RMSNorm, linear layers, SwiGLU, residual adds, reading results;
//   AttentionModule  the attention half of a layer, from normed hidden states to the O projection,
//                    KV-cache append included. The unfused module (separate projections, RoPE,
//                    attention, O proj) and the fused AttentionBlock (packed QKV GEMM -> attention
//                    reading the packed buffer with RoPE in-kernel -> O proj) both implement it.
//
// Shape legend: B batch (sequences decoded together, equal lengths), T new tokens per sequence,
// H hidden size, Nq / Nkv query / key-value heads, D head dim, L positions in the cache.
// Activations are row-major [T * B, features] with row t * B + b ("SBH"), so the rows of one
// position are adjacent: the K/V of new tokens append to the cache as one contiguous block.
import type { PagedKVCache } from '../ops/decode/index.js';
import type { ModelConfig } from './config.js';
import type { RopeTable } from './rope.js';
import type { DecoderWeights, LayerWeights } from './weights.js';

/** A [rows, cols] float32 matrix of activations on a backend's device. */
export interface Activations {
  readonly rows: number;
  readonly cols: number;
}

/** What one forward pass over new tokens is. */
export interface StepInfo {
  readonly batch: number;
  /** New tokens per sequence (T); T = prompt length for prefill, 1 for decode. */
  readonly tokens: number;
  /** Position of the first new token (= cache.length before this step). */
  readonly start: number;
  /** cos/sin for positions start .. start + tokens - 1, [T, D/2] (paged steps: one row per sequence, at its position). */
  readonly rope: RopeTable;
  /**
   * A decode step on the paged cache (continuous batching): one new token for each of `seqs`,
   * which sit at different positions (`positions`, their lengths before the step; `start` is then
   * the largest). The attention module reads and appends through `cache` (reserved for this step,
   * advanced by the decoder after every layer) instead of the KvCache argument.
   */
  readonly paged?: PagedStep;
}

export interface PagedStep {
  readonly cache: PagedKVCache;
  readonly seqs: readonly number[];
  readonly positions: Int32Array;
}

/**
 * The KV cache: per layer, keys and values after RoPE, preallocated for `capacity` positions in
 * layout [capacity, B, Nkv * D] (SBH). The first L positions are then one contiguous prefix,
 * which attention() takes without a copy as layout 'SBH' with heads = Nkv.
 */
export interface KvCache {
  readonly batch: number;
  readonly capacity: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Positions filled (the same for every layer once a step is done). */
  readonly length: number;
  /** Bytes held by all layers' K and V. */
  readonly bytes: number;
}

/**
 * The attention half of a decoder layer. Given x = RMSNorm(hidden) of the new tokens,
 * [T * B, H] with row t * B + b, it must
 *   1. project to Q [T*B, Nq*D], K and V [T*B, Nkv*D], with the biases the config has;
 *   2. rotate Q and K with `step.rope` (position step.start + t);
 *   3. write K and V of the new tokens into `cache` layer `layer` at positions
 *      step.start .. step.start + T - 1 (it must not change cache.length: the decoder advances it
 *      once every layer has run);
 *   4. attend causally (bottom-right: new token t sees cache positions <= step.start + t) over the
 *      first step.start + T cache positions, GQA head h reading KV head floor(h / (Nq / Nkv)),
 *      scale 1/sqrt(D), never materialising a T x L score matrix in memory;
 *   5. return the O projection (+ bias), [T * B, H].
 */
export interface AttentionModule<A extends Activations, C extends KvCache = KvCache, W = unknown> {
  /** 'unfused' or 'fused', and what it runs on, for logs and benchmarks. */
  readonly name: string;
  forward(x: A, layer: number, cache: C, step: StepInfo): Promise<A>;
  /**
   * Optional, used with backends that fuse norms into projections (DecoderOps.normLinear):
   * hidden += forward(RMSNorm(hidden) * inputNorm), with the norm and the residual add done by
   * the module's own kernels where it can (the fused block at decode: in its first and last GEMV).
   */
  forwardResidual?(hidden: A, inputNorm: W, eps: number, layer: number, cache: C, step: StepInfo): Promise<void>;
  /**
   * What, besides the batch and the cache, decides the commands a decode step of this module
   * queues (e.g. its split count), for backends that record a step and replay it (runStep).
   */
  stepKey?(step: StepInfo, cache: C): unknown;
}

/** Builds an AttentionModule for a loaded model (it may repack the layer weights it is given). */
export type AttentionFactory<A extends Activations, W, C extends KvCache> = (
  config: ModelConfig,
  layers: readonly LayerWeights<W>[],
  ops: DecoderOps<A, W, C>,
) => AttentionModule<A, C, W>;

/** Everything else a decoder layer needs, on one backend. W is the backend's weight handle. */
export interface DecoderOps<A extends Activations, W, C extends KvCache = KvCache> {
  readonly name: string;
  /** Rows of the embedding table [vocab, H] for each id. */
  embed(table: W, ids: Int32Array): Promise<A>;
  /** x / sqrt(mean(x²) + eps) * weight, per row. */
  rmsNorm(x: A, weight: W, eps: number): Promise<A>;
  /** x Wᵀ (+ bias), W [out, in]: [rows, in] -> [rows, out]. */
  linear(x: A, weight: W, bias?: W): Promise<A>;
  /** x += y (the residual stream). */
  addInPlace(x: A, y: A): Promise<void>;
  /** silu(gate) * up. */
  swiglu(gate: A, up: A): Promise<A>;
  /** The last `count` rows (the last position of each sequence, for the LM head). */
  lastRows(x: A, count: number): Promise<A>;
  /** Copies activations to CPU memory. */
  read(x: A): Promise<Float32Array>;
  /** Returns buffers to a pool (GPU); a no-op where the garbage collector does it. */
  release(...xs: A[]): void;
  createCache(config: ModelConfig, batch: number, capacity: number): C;
  /** Sets cache.length after every layer has written a step. */
  advanceCache(cache: C, length: number): void;
  /** Bytes of weights held on the device. */
  weightBytes(weights: DecoderWeights<W>): number;
  /** Frees a cache (its GPU buffers); optional where the garbage collector does it. */
  disposeCache?(cache: C): void;
  /**
   * Copies the first `tokens` positions of a batch-1 cache (a prefill's) into `seq`'s pages, for
   * every layer (positions already reserved; the decoder advances them).
   */
  storePrefill(cache: C, paged: PagedKVCache, seq: number, tokens: number): Promise<void>;
  /** The backend the paged cache of this model lives on. */
  readonly pagedBackend: 'cpu' | 'webgpu';
  /** Frees the weights' device memory; the model is unusable afterwards. */
  dispose(weights: DecoderWeights<W>): void;

  /**
   * Optional: called before a forward pass queues anything, with its token ids (row t * B + b):
   * a GPU backend writes the step's ids, positions and RoPE rows to its step buffers here.
   */
  beginStep?(step: StepInfo, ids: Int32Array): void;
  /**
   * Optional: runs a decode step's ops (`fn`), or replays the commands recorded for `key` by an
   * earlier run. The result belongs to the backend (it is overwritten by the next replay).
   */
  runStep?(key: unknown, fn: () => Promise<A>): Promise<A>;

  /** Optional: the largest k supported by topK(). */
  readonly maxTopK?: number;
  /**
   * Optional: the k largest logits of each row where the logits are: [rows, chunks * (2k + 1)]
   * u32 candidate lists as model/sampling.ts mergeCandidates() reads them.
   */
  topK?(logits: A, k: number): Promise<A>;

  // Optional fusions a backend may offer (the decoder falls back to the ops above without them).
  /**
   * (RMSNorm(x) * norm) Wᵀ (+ bias): the norm fused into the projection. A backend that has it
   * also takes `norm` in swigluLinear().
   */
  normLinear?(x: A, norm: W, eps: number, weight: W, bias?: W): Promise<A>;
  /** residual += x Wᵀ (+ bias) (a projection that adds into the residual stream). */
  linearAdd?(x: A, weight: W, bias: W | undefined, residual: A): Promise<void>;
  /** silu(x' Wgᵀ + bg) * (x' Wuᵀ + bu), x' = x or RMSNorm(x) * norm.weight (SwiGLU's projections and product). */
  swigluLinear?(x: A, gate: W, up: W, gateBias?: W, upBias?: W, norm?: { weight: W; eps: number }): Promise<A>;
}
