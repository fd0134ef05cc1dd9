// The public types of attentionDecode(): a few new query rows per sequence against a KV cache.
// Shape legend used in every decode file:
//   B  sequences          Nq / Nkv  query / key-value heads (Nq a multiple of Nkv: GQA, MQA)
//   Sq new query rows per sequence (1..16: decode, speculative verification, chunked prefill)
//   L_b  valid cache positions of sequence b (lengths[b]); C capacity (contiguous cache)
//   P  page size (positions per page), NP pages in the pool, MP block-table width (max pages)
//   Dq query/key head dim, Dv value head dim (MLA latent: Dq 576, Dv 512, values = first Dv key columns)
import type { Layout, TensorInput } from '../../core/tensor.js';
import type { BackendChoice, CausalAlign } from '../attention/options.js';

/** Element types a cache may be stored in (int8 needs per-position-per-head scales). */
export type CacheDType = 'float32' | 'float16' | 'bfloat16' | 'int8';

/**
 * Dimension order of a cache tensor.
 * - contiguous caches: `'BNSD'` [B, Nkv, C, D] (default) or `'BSND'` [B, C, Nkv, D];
 * - paged pools: `'HND'` [NP, Nkv, P, D] (default) or `'NHD'` [NP, P, Nkv, D] (FlashInfer's names).
 * int8 scales drop the last dimension: [B, Nkv, C], [B, C, Nkv], [NP, Nkv, P], [NP, P, Nkv].
 */
export type CacheLayout = 'BNSD' | 'BSND' | 'HND' | 'NHD';

/** Plain int32 data: an array, an Int32Array, or a Tensor (CPU or GPU). */
export type IntInput = TensorInput | Int32Array | readonly number[];

/**
 * A KV cache as attentionDecode() reads it. Contiguous when `blockTable` is absent, paged (a pool
 * of pages plus a block table, as vLLM and FlashInfer) when present.
 */
export interface DecodeCache {
  /** Keys: [B, Nkv, C, Dq] (contiguous) or the page pool [NP, Nkv, P, Dq] (paged); see `layout`. */
  k: TensorInput;
  /**
   * Values, the same layout with head dim Dv. Omit it for a shared latent cache (MLA's absorbed
   * form): the values are then the first `valueDim` columns of each key row, read once.
   */
  v?: TensorInput;
  /** With `v` omitted: the value head dim (Dv <= Dq). */
  valueDim?: number;
  /**
   * Valid positions of each sequence, [B] int32 (before `options.append`). The kernels read it
   * where it lives, so a GPU tensor needs no readback (give options.maxLength for planning then).
   */
  lengths: IntInput;
  /** Paged caches: [B, MP] int32, entry p = the page holding positions [p P, (p + 1) P) of sequence b. */
  blockTable?: IntInput;
  layout?: CacheLayout;
  /** int8 caches: float32 scales of each (position, head), the cache shape without its last dim. */
  kScale?: TensorInput;
  vScale?: TensorInput;
}

export interface DecodeOptions {
  /** Layout of q, the output and options.append: 'BNSD' [B, N, Sq, D] (default) or 'BSND' [B, Sq, N, D]. */
  layout?: Extract<Layout, 'BNSD' | 'BSND'>;
  /** Multiplier of q·k. Default 1/sqrt(Dq). */
  scale?: number;
  /** s -> softcap * tanh(s / softcap); 0 or absent: off. */
  softcap?: number;
  /**
   * With Sq > 1: `true` / 'bottom-right' (speculative verification, chunked prefill): new query i
   * of sequence b sees key j iff j <= i + K_b - Sq, K_b = visible keys (lengths[b], + Sq with
   * append); 'top-left': j <= i. Default false (every visible key), as attention().
   */
  causal?: boolean | CausalAlign;
  /** [left, right] around the bottom-right diagonal, -1 = unbounded; as attention(). */
  window?: readonly [number, number];
  /** ALiBi, [Nq] or [B, Nq] float32: adds -slope * |i + K_b - Sq - j|. */
  alibiSlopes?: TensorInput | Float32Array | readonly number[];
  /**
   * New keys and values [B, Nkv, Sq, Dq] / [B, Nkv, Sq, Dv] (layout as q, dtype of q), written into
   * the cache at positions lengths[b] .. lengths[b] + Sq - 1 by the attention kernel itself
   * (rounded or quantized to the cache's dtype) and attended to in the same call. Shared latent
   * caches take `k` only. The caller advances `lengths` afterwards (PagedKVCache does it).
   */
  append?: { k: TensorInput; v?: TensorInput };
  /** Also return the natural-log logsumexp, float32 [B, Nq, Sq] (the input of mergeAttention). */
  returnLse?: boolean;
  /**
   * Most visible keys of any sequence, for planning the key splits when `lengths` lives on the GPU
   * (default: the cache's capacity). Ignored when lengths are CPU data.
   */
  maxLength?: number;
  backend?: BackendChoice;
  device?: GPUDevice;
}

/** Most query rows per sequence a decode call takes. */
export const MAX_DECODE_QUERIES = 16;
