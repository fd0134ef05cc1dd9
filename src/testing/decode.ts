// Declarative decode test cases: a case is a plain object whose name lists its values; the same
// objects run as correctness tests on every backend and as benchmark shapes. Inputs are seeded.
// What the generated caches hold, to catch addressing bugs:
//   - every position past a sequence's length, every unused page and every page-table entry past
//     the last needed page is poison (NaN, or int8 rows with NaN scales): reading one shows;
//   - paged caches get their pages in a random order out of a pool with free pages between them
//     ("holes"); with sharedPages, sequence 1 reads the full prefix pages of sequence 0 (the pages
//     two sequences share after a fork).
import { floatsToHalf } from '../core/dtype.js';
import { Tensor } from '../core/tensor.js';
import type { CacheDType, DecodeCache, DecodeOptions } from '../ops/decode/index.js';
import { storeRow } from '../ops/decode/index.js';
import { normal, randomFloats, uniform } from './random.js';

export interface DecodeCase {
  batch: number;
  headsQ: number;
  headsKv: number;
  /** New query rows per sequence. */
  seqQ: number;
  dimQK: number;
  /** Default dimQK. */
  dimV?: number;
  /** Valid cache positions per sequence (before the append). */
  lengths: number[];
  cache: CacheDType;
  /** dtype of q (and the appended rows, the output). Default float32. */
  io?: 'float32' | 'float16';
  /** Paged cache with this page size; contiguous without. */
  pageSize?: number;
  /** Paged: sequence 1 shares sequence 0's full prefix pages (needs equal prefixes; see makeDecodeCase). */
  sharedPages?: boolean;
  /** Shared latent cache (MLA): values = first dimV key columns. */
  shared?: boolean;
  layout?: 'BNSD' | 'BSND';
  cacheLayout?: 'BNSD' | 'BSND' | 'HND' | 'NHD';
  append?: boolean;
  causal?: boolean | 'top-left';
  window?: [number, number];
  softcap?: number;
  alibi?: boolean;
  scale?: number;
  returnLse?: boolean;
  /** Extra positions past the longest sequence in a contiguous cache (default 3). */
  slack?: number;
}

export function decodeCaseName(c: DecodeCase): string {
  const parts = [
    c.cache, c.io === 'float16' ? 'q f16' : 'q f32', `B${c.batch}`, `Nq${c.headsQ}/${c.headsKv}`, `Sq${c.seqQ}`, `L[${c.lengths}]`,
    `D${c.dimQK}/${c.dimV ?? c.dimQK}`, c.pageSize ? `paged P${c.pageSize}${c.sharedPages ? ' shared' : ''}` : 'contiguous',
  ];
  if (c.shared) parts.push('latent');
  if (c.layout && c.layout !== 'BNSD') parts.push(c.layout);
  if (c.cacheLayout) parts.push(`cache ${c.cacheLayout}`);
  if (c.append) parts.push('append');
  if (c.causal) parts.push(`causal=${c.causal === true ? 'bottom-right' : c.causal}`);
  if (c.window) parts.push(`window=${c.window}`);
  if (c.softcap) parts.push(`softcap=${c.softcap}`);
  if (c.alibi) parts.push('alibi');
  if (c.returnLse) parts.push('lse');
  return parts.join(' ');
}

export interface DecodeInputs {
  q: Tensor;
  cache: DecodeCache & { k: Tensor; v?: Tensor; lengths: Tensor; blockTable?: Tensor; kScale?: Tensor; vScale?: Tensor };
  options: DecodeOptions;
}

/** Storage for n elements of dtype. */
function storage(dtype: CacheDType, n: number): Float32Array | Uint16Array | Int8Array {
  return dtype === 'float32' ? new Float32Array(n) : dtype === 'int8' ? new Int8Array(n) : new Uint16Array(n);
}

const POISON = [NaN, NaN];

export function makeDecodeCase(c: DecodeCase, seed: number): DecodeInputs {
  const rand = uniform(seed);
  const gauss = normal(rand);
  const { batch: B, headsQ: Nq, headsKv: Nkv, seqQ: Sq, dimQK: Dq } = c;
  const Dv = c.shared ? (c.dimV ?? Dq) : (c.dimV ?? Dq);
  const layout = c.layout ?? 'BNSD';
  const paged = c.pageSize !== undefined;
  const cacheLayout = c.cacheLayout ?? (paged ? 'HND' : 'BNSD');
  const added = c.append ? Sq : 0;
  const need = c.lengths.map((n) => n + added);
  const io = c.io ?? 'float32';
  const rowsTensor = (heads: number, dim: number) => {
    const data = randomFloats(B * heads * Sq * dim, gauss);
    const shape = layout === 'BNSD' ? [B, heads, Sq, dim] : [B, Sq, heads, dim];
    return io === 'float16' ? Tensor.fromData(floatsToHalf(data), shape, 'float16') : Tensor.fromData(data, shape, 'float32');
  };

  // page table: random page ids out of a pool with holes; sequence 1 may share sequence 0's prefix
  let P: number;
  let outer: number;
  let table: Int32Array | undefined;
  let maxPages = 1;
  const sharedFull = c.sharedPages ? Math.floor(Math.min(c.lengths[0], c.lengths[1]) / c.pageSize!) : 0;
  if (paged) {
    P = c.pageSize!;
    const pagesOf = need.map((n) => Math.ceil(n / P));
    maxPages = Math.max(1, ...pagesOf) + 1; // one spare column, left as -1
    const owned = pagesOf.reduce((a, n) => a + n, 0) - sharedFull;
    outer = owned + Math.max(2, Math.ceil(owned / 2)); // free pages scattered between the used ones
    const ids = Array.from({ length: outer }, (_, i) => i);
    for (let i = ids.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [ids[i], ids[j]] = [ids[j], ids[i]];
    }
    table = new Int32Array(B * maxPages).fill(-1);
    let next = 0;
    for (let b = 0; b < B; b++) {
      for (let p = 0; p < pagesOf[b]; p++) table[b * maxPages + p] = b === 1 && p < sharedFull ? table[p] : ids[next++];
    }
  } else {
    P = Math.max(1, ...need) + (c.slack ?? 3);
    outer = B;
  }

  // the cache, poison first; then real rows at each sequence's valid positions
  const dims = (dim: number) => (cacheLayout === 'BNSD' || cacheLayout === 'HND' ? [outer, Nkv, P, dim] : [outer, P, Nkv, dim]);
  const at = (page: number, h: number, pos: number, dim: number) => (cacheLayout === 'BNSD' || cacheLayout === 'HND' ? ((page * Nkv + h) * P + pos) * dim : ((page * P + pos) * Nkv + h) * dim);
  const int8 = c.cache === 'int8';
  const make = (dim: number) => {
    const n = outer * Nkv * P * dim;
    const data = storage(c.cache, n);
    const scales = int8 ? new Float32Array(outer * Nkv * P).fill(NaN) : undefined;
    const poison = Float32Array.from({ length: dim }, (_, i) => POISON[i % 2]);
    if (!int8) for (let page = 0; page < outer; page++) for (let h = 0; h < Nkv; h++) for (let pos = 0; pos < P; pos++) storeRow(c.cache, data, at(page, h, pos, dim), poison, 0, dim);
    else data.fill(127);
    return { data, scales };
  };
  const keys = make(Dq);
  const values = c.shared ? undefined : make(Dv);
  const row = new Float32Array(Math.max(Dq, Dv));
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Nkv; h++) {
      for (let pos = 0; pos < c.lengths[b]; pos++) {
        const page = paged ? table![b * maxPages + Math.floor(pos / P)] : b;
        if (paged && b === 1 && pos < sharedFull * P) continue; // shared with sequence 0: already written
        const inPage = paged ? pos % P : pos;
        for (const [target, dim] of [[keys, Dq], [values, Dv]] as const) {
          if (!target) continue;
          for (let d = 0; d < dim; d++) row[d] = gauss();
          storeRow(c.cache, target.data, at(page, h, inPage, dim), row, 0, dim, target.scales, at(page, h, inPage, 1));
        }
      }
    }
  }

  const q = rowsTensor(Nq, Dq);
  const cache: DecodeInputs['cache'] = {
    k: Tensor.fromData(keys.data, dims(Dq), c.cache),
    lengths: Tensor.fromData(Int32Array.from(c.lengths), [B], 'int32'),
    layout: cacheLayout,
  };
  if (values) cache.v = Tensor.fromData(values.data, dims(Dv), c.cache);
  else cache.valueDim = Dv;
  if (int8) {
    cache.kScale = Tensor.fromData(keys.scales!, dims(1).slice(0, 3), 'float32');
    if (values) cache.vScale = Tensor.fromData(values.scales!, dims(1).slice(0, 3), 'float32');
  }
  if (table) cache.blockTable = Tensor.fromData(table, [B, maxPages], 'int32');

  const options: DecodeOptions = { layout };
  if (c.append) options.append = c.shared ? { k: rowsTensor(Nkv, Dq) } : { k: rowsTensor(Nkv, Dq), v: rowsTensor(Nkv, Dv) };
  if (c.causal) options.causal = c.causal;
  if (c.window) options.window = c.window;
  if (c.softcap) options.softcap = c.softcap;
  if (c.scale !== undefined) options.scale = c.scale;
  if (c.returnLse) options.returnLse = true;
  if (c.alibi) options.alibiSlopes = Float32Array.from({ length: Nq }, (_, h) => 2 ** (-8 * (h + 1) / Nq));
  return { q, cache, options };
}

/** A deep copy of the cache tensors (CPU), so a case with append can run twice from the same state. */
export function cloneDecodeInputs(x: DecodeInputs): DecodeInputs {
  const copy = (t: Tensor | undefined) => (t ? Tensor.fromData((t.data as Float32Array).slice(), t.shape, t.dtype) : undefined);
  const cache = { ...x.cache, k: copy(x.cache.k)!, v: copy(x.cache.v), kScale: copy(x.cache.kScale), vScale: copy(x.cache.vScale) };
  for (const key of ['v', 'kScale', 'vScale'] as const) if (cache[key] === undefined) delete cache[key];
  return { q: x.q, cache, options: x.options };
}
