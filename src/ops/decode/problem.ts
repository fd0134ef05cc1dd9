// The normalized decode problem: what validateDecode() makes of (q, cache, options), and the only
// thing the reference and the backends read. Contiguous and paged caches are one addressing rule:
//
//   element (b, kv head h, position p, d) of a cache tensor is at
//     off + page(b, p) * strides.page + h * strides.head + (p mod P) * strides.pos + d
//
// where page(b, p) = blockTable[b, floor(p / P)] for a paged cache and page(b, p) = b with
// P = capacity for a contiguous one (so floor(p / P) is always 0 there). int8 scales use the same
// rule without d. Queries, appended keys/values and the output are [b, head, i, d] through their
// own strides (layout BNSD or BSND).
import type { Tensor } from '../../core/tensor.js';
import type { KeyWindow } from '../attention/problem.js';
import type { CacheDType, CacheLayout } from './options.js';

/** Element strides of a cache tensor (scales: d = 0 columns). */
export interface CacheStrides {
  readonly page: number;
  readonly head: number;
  readonly pos: number;
}

/** Element strides of q, appended k/v and the output: [b, head, i, d] with d contiguous. */
export interface RowStrides {
  readonly b: number;
  readonly h: number;
  readonly i: number;
}

export interface DecodeCacheView {
  readonly dtype: CacheDType;
  readonly layout: CacheLayout;
  readonly paged: boolean;
  /** Positions per page; the capacity for a contiguous cache. */
  readonly pageSize: number;
  /** Pages in the pool; B for a contiguous cache. */
  readonly numPages: number;
  /** Block-table width; 1 for a contiguous cache. */
  readonly maxPages: number;
  /** Most positions a sequence can hold: maxPages * pageSize. */
  readonly capacity: number;
  readonly k: Tensor;
  /** Undefined for a shared latent cache: values are the first Dv columns of k. */
  readonly v: Tensor | undefined;
  readonly kStrides: CacheStrides;
  readonly vStrides: CacheStrides;
  readonly kScale: Tensor | undefined;
  readonly vScale: Tensor | undefined;
  readonly scaleStrides: CacheStrides;
  /** int32 [B, maxPages] (paged only). */
  readonly blockTable: Tensor | undefined;
}

export interface DecodeProblem {
  /** dtype of q, appended k/v and the output. */
  readonly dtype: 'float32' | 'float16';
  readonly layout: 'BNSD' | 'BSND';
  readonly batch: number;
  readonly headsQ: number;
  readonly headsKv: number;
  /** New query rows per sequence. */
  readonly seqQ: number;
  readonly dimQK: number;
  readonly dimV: number;
  readonly q: Tensor;
  readonly qStrides: RowStrides;
  readonly cache: DecodeCacheView;
  /** int32 [B]: valid positions before the append. */
  readonly lengths: Tensor;
  /** The same values when lengths are CPU data (checked against the capacity), else undefined. */
  readonly hostLengths: Int32Array | undefined;
  /** Upper bound of visible keys over the batch (exact when hostLengths is known). */
  readonly maxKeys: number;
  /** New rows written at lengths[b] + i (v undefined for a shared latent cache). */
  readonly append: { readonly k: Tensor; readonly v: Tensor | undefined; readonly kStrides: RowStrides; readonly vStrides: RowStrides } | undefined;
  readonly scale: number;
  readonly softcap: number;
  readonly window: KeyWindow;
  /** ALiBi slope of (b, h) = alibi[b * alibiStrideB + h]. */
  readonly alibi: Float32Array | undefined;
  readonly alibiStrideB: number;
  readonly returnLse: boolean;
  readonly outShape: readonly number[];
  readonly outStrides: RowStrides;
  /** [B, Nq, Sq], contiguous. */
  readonly lseShape: readonly number[];
}

/** Keys sequence b sees (the cache's, plus the appended ones). */
export function visibleKeys(p: DecodeProblem, length: number): number {
  return length + (p.append ? p.seqQ : 0);
}

/**
 * Inclusive key range [lo, hi] that query i of a sequence with `keys` visible keys may see
 * (lo > hi: none), as keyRange() of the forward op with Sk = keys, Sq = p.seqQ.
 */
export function decodeKeyRange(p: DecodeProblem, keys: number, i: number): [number, number] {
  const diag = (p.window.align === 'bottom-right' ? keys - p.seqQ : 0) + i;
  const lo = Math.max(0, p.window.left === Infinity ? 0 : diag - p.window.left);
  const hi = Math.min(keys - 1, p.window.right === Infinity ? Infinity : diag + p.window.right);
  return [lo, hi];
}

/** Element index of (b, kv head, position, 0) in a cache tensor, given its strides. */
export function cacheIndex(c: DecodeCacheView, table: Int32Array | undefined, strides: CacheStrides, b: number, h: number, pos: number): number {
  const page = c.paged ? table![b * c.maxPages + Math.floor(pos / c.pageSize)] : b;
  return page * strides.page + h * strides.head + (pos % c.pageSize) * strides.pos;
}

/** Element index of (b, head, i, 0) of a row tensor. */
export function rowIndex(s: RowStrides, b: number, h: number, i: number): number {
  return b * s.b + h * s.h + i * s.i;
}
