// validateDecode(): (q, cache, options) -> DecodeProblem, or a typed error naming the argument,
// the expected and the received value, before any work. Backends only decide whether they
// support a valid problem.
import { DTypeError, ShapeError, UnsupportedError, ValueError, show } from '../../core/errors.js';
import { Tensor, type TensorInput, toTensor } from '../../core/tensor.js';
import { alibiView, keyWindow } from '../attention/validate.js';
import { type CacheDType, type CacheLayout, type DecodeCache, type DecodeOptions, type IntInput, MAX_DECODE_QUERIES } from './options.js';
import type { CacheStrides, DecodeCacheView, DecodeProblem, RowStrides } from './problem.js';

const FLOAT_TYPES = ['float32', 'float16'] as const;
const CACHE_TYPES: readonly CacheDType[] = ['float32', 'float16', 'bfloat16', 'int8'];
const OPTION_NAMES: ReadonlySet<string> = new Set([
  'layout', 'scale', 'softcap', 'causal', 'window', 'alibiSlopes', 'append', 'returnLse', 'maxLength', 'backend', 'device',
]);
const CACHE_NAMES: ReadonlySet<string> = new Set(['k', 'v', 'valueDim', 'lengths', 'blockTable', 'layout', 'kScale', 'vScale']);

/** Sizes of a cache tensor read through its layout. */
interface CacheDims {
  /** B (contiguous) or NP (paged). */
  outer: number;
  heads: number;
  /** C (contiguous) or P (paged). */
  positions: number;
  dim: number;
}

const CACHE_LEGEND: Record<CacheLayout, string> = {
  BNSD: '[batch, kv heads, capacity, dim]',
  BSND: '[batch, capacity, kv heads, dim]',
  HND: '[pages, kv heads, page size, dim]',
  NHD: '[pages, page size, kv heads, dim]',
};

export function validateDecode(qIn: TensorInput, cache: DecodeCache, options: DecodeOptions = {}): DecodeProblem {
  if (options === null || typeof options !== 'object') throw new ValueError('options', `options must be an object, got ${show(options)}`);
  for (const key of Object.keys(options)) {
    if (!OPTION_NAMES.has(key)) throw new ValueError(`options.${key}`, `options.${key} is not a decode option (known: ${[...OPTION_NAMES].join(', ')})`);
  }
  if (cache === null || typeof cache !== 'object') throw new ValueError('cache', `cache must be an object { k, v, lengths, blockTable? }, got ${show(cache)}`);
  for (const key of Object.keys(cache)) {
    if (!CACHE_NAMES.has(key)) throw new ValueError(`cache.${key}`, `cache.${key} is not a cache field (known: ${[...CACHE_NAMES].join(', ')})`);
  }

  // --- queries
  const layout = options.layout ?? 'BNSD';
  if (layout !== 'BNSD' && layout !== 'BSND') throw new ValueError('options.layout', `options.layout must be "BNSD" or "BSND", got ${show(layout)}`);
  const q = toTensor(qIn, 'query', FLOAT_TYPES);
  if (q.rank !== 4) throw new ShapeError('query', `Input 'query' is expected to have 4 dimensions for layout ${layout} ${layout === 'BNSD' ? '[batch, heads, new tokens, dim]' : '[batch, new tokens, heads, dim]'}, got ${q.rank} (shape ${show(q.shape)})`);
  const [batch, headsQ, seqQ, dimQK] = layout === 'BNSD' ? q.shape : [q.shape[0], q.shape[2], q.shape[1], q.shape[3]];
  if (batch < 1) throw new ShapeError('query', `query batch must be at least 1, got ${batch}`);
  if (headsQ < 1) throw new ShapeError('query', `query must have at least 1 head, got ${headsQ}`);
  if (dimQK < 1) throw new ShapeError('query', `query head dim must be at least 1, got ${dimQK}`);
  if (seqQ < 1 || seqQ > MAX_DECODE_QUERIES) {
    throw new ShapeError('query', `query must have 1 to ${MAX_DECODE_QUERIES} new rows per sequence for decode, got ${seqQ} (use attention() for longer prefills)`);
  }

  // --- the cache tensors
  const paged = cache.blockTable !== undefined;
  const cacheLayout = cache.layout ?? (paged ? 'HND' : 'BNSD');
  const allowed: CacheLayout[] = paged ? ['HND', 'NHD'] : ['BNSD', 'BSND'];
  if (!allowed.includes(cacheLayout)) {
    throw new ValueError('cache.layout', `cache.layout of a ${paged ? 'paged' : 'contiguous'} cache must be ${allowed.map((l) => JSON.stringify(l)).join(' or ')}, got ${show(cacheLayout)}`);
  }
  const k = toTensor(cache.k, 'cache.k', CACHE_TYPES);
  const kd = cacheDims('cache.k', k, cacheLayout);
  const dtype = k.dtype as CacheDType;
  let v: Tensor | undefined;
  let dimV: number;
  if (cache.v !== undefined) {
    if (cache.valueDim !== undefined) throw new ValueError('cache.valueDim', 'cache.valueDim is only for a shared latent cache (cache.v omitted), got it with cache.v');
    v = toTensor(cache.v, 'cache.v', CACHE_TYPES);
    if (v.dtype !== dtype) throw new DTypeError('cache.v', `cache.v must have the dtype of cache.k (${dtype}), got ${v.dtype}`);
    const vd = cacheDims('cache.v', v, cacheLayout);
    for (const key of ['outer', 'heads', 'positions'] as const) {
      if (vd[key] !== kd[key]) throw new ShapeError('cache.v', `cache.v shape ${show(v.shape)} must match cache.k ${show(k.shape)} in every dimension but the last`);
    }
    dimV = vd.dim;
  } else {
    if (cache.valueDim === undefined) throw new ValueError('cache.valueDim', 'give cache.v, or cache.valueDim for a shared latent cache (values = the first valueDim columns of cache.k), got neither');
    dimV = cache.valueDim;
    if (!Number.isInteger(dimV) || dimV < 1 || dimV > kd.dim) throw new ValueError('cache.valueDim', `cache.valueDim must be an integer in 1..${kd.dim} (the key head dim), got ${show(dimV)}`);
  }
  if (kd.dim !== dimQK) throw new ShapeError('cache.k', `cache.k head dim must equal the query head dim (${dimQK}), got ${kd.dim}`);
  if (kd.heads < 1 || headsQ % kd.heads !== 0) {
    throw new ShapeError('cache.k', `query heads (${headsQ}) must be a multiple of the cache's key/value heads (GQA/MQA), got ${kd.heads}`);
  }
  if (!paged && kd.outer !== batch) throw new ShapeError('cache.k', `a contiguous cache must have the query batch (${batch}) as its batch, got ${kd.outer} (shape ${show(k.shape)})`);
  if (kd.positions < 1) throw new ShapeError('cache.k', `cache.k must hold at least one position per ${paged ? 'page' : 'sequence'}, got shape ${show(k.shape)}`);

  // --- int8 scales
  let kScale: Tensor | undefined;
  let vScale: Tensor | undefined;
  const scaleShape = k.shape.slice(0, 3);
  if (dtype === 'int8') {
    if (cache.kScale === undefined) throw new ValueError('cache.kScale', 'an int8 cache needs cache.kScale (float32, the cache shape without its last dim), got undefined');
    kScale = scaleTensor('cache.kScale', cache.kScale, scaleShape);
    if (v) {
      if (cache.vScale === undefined) throw new ValueError('cache.vScale', 'an int8 cache needs cache.vScale (float32, the cache shape without its last dim), got undefined');
      vScale = scaleTensor('cache.vScale', cache.vScale, scaleShape);
    } else if (cache.vScale !== undefined) throw new ValueError('cache.vScale', 'a shared latent cache has its values in cache.k, so cache.kScale scales both; got cache.vScale too');
  } else {
    for (const name of ['kScale', 'vScale'] as const) {
      if (cache[name] !== undefined) throw new ValueError(`cache.${name}`, `cache.${name} is only for int8 caches, got it with a ${dtype} cache`);
    }
  }

  // --- lengths and the block table
  const lengths = intTensor('cache.lengths', cache.lengths, [batch]);
  let blockTable: Tensor | undefined;
  let maxPages = 1;
  if (paged) {
    blockTable = intTensor('cache.blockTable', cache.blockTable!, [batch, -1]);
    maxPages = blockTable.shape[1];
    if (maxPages < 1) throw new ShapeError('cache.blockTable', `cache.blockTable must have at least one page per sequence, got shape ${show(blockTable.shape)}`);
  }
  const pageSize = kd.positions;
  const capacity = maxPages * pageSize;

  // --- appended keys and values
  let append: DecodeProblem['append'];
  if (options.append !== undefined) {
    const a = options.append;
    if (a === null || typeof a !== 'object' || a.k === undefined) throw new ValueError('options.append', `options.append must be { k, v } (new keys and values), got ${show(a)}`);
    const ak = toTensor(a.k, 'options.append.k', FLOAT_TYPES);
    const rowShape = (heads: number, dim: number) => (layout === 'BNSD' ? [batch, heads, seqQ, dim] : [batch, seqQ, heads, dim]);
    expectShape('options.append.k', ak, rowShape(kd.heads, dimQK));
    let av: Tensor | undefined;
    if (v) {
      if (a.v === undefined) throw new ValueError('options.append.v', 'options.append needs v (new values) for a cache with values, got undefined');
      av = toTensor(a.v, 'options.append.v', FLOAT_TYPES);
      expectShape('options.append.v', av, rowShape(kd.heads, dimV));
    } else if (a.v !== undefined) throw new ValueError('options.append.v', 'a shared latent cache takes options.append.k only (its values are the first valueDim key columns), got append.v too');
    for (const [name, t] of [['options.append.k', ak], ['options.append.v', av]] as const) {
      if (t && t.dtype !== q.dtype) throw new DTypeError(name, `${name} must have the dtype of query (${q.dtype}), got ${t.dtype}`);
    }
    append = { k: ak, v: av, kStrides: rowStrides(layout, kd.heads, seqQ, dimQK), vStrides: rowStrides(layout, kd.heads, seqQ, dimV) };
  }

  // --- where everything lives
  const located: Array<[string, Tensor | undefined]> = [['query', q], ['cache.k', k], ['cache.v', v], ['cache.kScale', kScale], ['cache.vScale', vScale], ['options.append.k', append?.k], ['options.append.v', append?.v]];
  for (const [name, t] of located) {
    if (t && (t.location !== q.location || (t.gpu && q.gpu && t.gpu.device !== q.gpu.device))) {
      throw new UnsupportedError(name, `${name} lives on ${t.location} but query on ${q.location}: the query, the cache and the appended rows must share a device`);
    }
  }
  for (const [name, t] of [['cache.lengths', lengths], ['cache.blockTable', blockTable]] as const) {
    if (t?.gpu && (!q.gpu || t.gpu.device !== q.gpu.device)) throw new UnsupportedError(name, `${name} lives on a GPU, so the query and the cache must live on that GPU too`);
  }

  // --- host-side checks of the lengths and the table (when they are CPU data)
  const hostLengths = lengths.data ? Int32Array.from(lengths.data as Int32Array) : undefined;
  const added = append ? seqQ : 0;
  if (hostLengths) {
    hostLengths.forEach((n, b) => {
      if (n < 0) throw new ValueError('cache.lengths', `cache.lengths[${b}] must be >= 0, got ${n}`);
      if (n + added > capacity) {
        throw new ValueError('cache.lengths', `sequence ${b} needs ${n + added} positions (${n}${added ? ` + ${added} appended` : ''}) but the cache holds ${capacity}${paged ? ` (${maxPages} pages of ${pageSize})` : ''}`);
      }
    });
    if (blockTable?.data) {
      const table = blockTable.data as Int32Array;
      hostLengths.forEach((n, b) => {
        for (let p = 0; p < Math.ceil((n + added) / pageSize); p++) {
          const page = table[b * maxPages + p];
          if (!Number.isInteger(page) || page < 0 || page >= kd.outer) {
            throw new ValueError('cache.blockTable', `cache.blockTable[${b}][${p}] must be a page of the pool (0..${kd.outer - 1}) for the ${n + added} positions of sequence ${b}, got ${page}`);
          }
        }
      });
    }
  }
  let maxKeys: number;
  if (hostLengths) maxKeys = Math.max(0, ...hostLengths) + added;
  else if (options.maxLength !== undefined) {
    if (!Number.isInteger(options.maxLength) || options.maxLength < 0 || options.maxLength > capacity) {
      throw new ValueError('options.maxLength', `options.maxLength must be an integer in 0..${capacity} (the cache capacity), got ${show(options.maxLength)}`);
    }
    maxKeys = Math.max(options.maxLength, added);
  } else maxKeys = capacity;

  // --- scalar options
  const scale = options.scale ?? 1 / Math.sqrt(dimQK);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new ValueError('options.scale', `options.scale must be a finite number, got ${show(scale)}`);
  const softcap = options.softcap ?? 0;
  if (typeof softcap !== 'number' || !Number.isFinite(softcap) || softcap < 0) {
    throw new ValueError('options.softcap', `options.softcap must be a finite number >= 0 (0 = off), got ${show(softcap)}`);
  }
  const returnLse = options.returnLse ?? false;
  if (typeof returnLse !== 'boolean') throw new ValueError('options.returnLse', `options.returnLse must be a boolean, got ${show(returnLse)}`);
  if (options.backend !== undefined && !['cpu', 'webgpu', 'auto'].includes(options.backend)) {
    throw new ValueError('options.backend', `options.backend must be "cpu", "webgpu" or "auto", got ${show(options.backend)}`);
  }
  const alibi = options.alibiSlopes === undefined ? undefined : alibiView(options.alibiSlopes, batch, headsQ);
  if (alibi && !alibi.tensor.data) throw new UnsupportedError('alibiSlopes', 'alibiSlopes must be CPU data (it is tiny), got a GPU tensor');

  const view: DecodeCacheView = {
    dtype,
    layout: cacheLayout,
    paged,
    pageSize,
    numPages: kd.outer,
    maxPages,
    capacity,
    k,
    v,
    kStrides: cacheStrides(cacheLayout, kd.heads, pageSize, dimQK),
    vStrides: v ? cacheStrides(cacheLayout, kd.heads, pageSize, dimV) : cacheStrides(cacheLayout, kd.heads, pageSize, dimQK),
    kScale,
    vScale,
    scaleStrides: cacheStrides(cacheLayout, kd.heads, pageSize, 1),
    blockTable,
  };
  return {
    dtype: q.dtype as 'float32' | 'float16',
    layout,
    batch,
    headsQ,
    headsKv: kd.heads,
    seqQ,
    dimQK,
    dimV,
    q,
    qStrides: rowStrides(layout, headsQ, seqQ, dimQK),
    cache: view,
    lengths,
    hostLengths,
    maxKeys,
    append,
    scale,
    softcap,
    window: keyWindow(options),
    alibi: alibi ? alibi.tensor.toFloat32() : undefined,
    alibiStrideB: alibi?.strideB ?? 0,
    returnLse,
    outShape: layout === 'BNSD' ? [batch, headsQ, seqQ, dimV] : [batch, seqQ, headsQ, dimV],
    outStrides: rowStrides(layout, headsQ, seqQ, dimV),
    lseShape: [batch, headsQ, seqQ],
  };
}

function cacheDims(name: string, t: Tensor, layout: CacheLayout): CacheDims {
  if (t.rank !== 4) throw new ShapeError(name, `Input '${name}' is expected to have 4 dimensions for cache layout ${layout} ${CACHE_LEGEND[layout]}, got ${t.rank} (shape ${show(t.shape)})`);
  const s = t.shape;
  switch (layout) {
    case 'BNSD':
    case 'HND': return { outer: s[0], heads: s[1], positions: s[2], dim: s[3] };
    case 'BSND':
    case 'NHD': return { outer: s[0], heads: s[2], positions: s[1], dim: s[3] };
  }
}

/** Strides of (page, head, position) of a row-major cache tensor with `dim` columns. */
function cacheStrides(layout: CacheLayout, heads: number, positions: number, dim: number): CacheStrides {
  return layout === 'BNSD' || layout === 'HND'
    ? { page: heads * positions * dim, head: positions * dim, pos: dim }
    : { page: positions * heads * dim, head: dim, pos: heads * dim };
}

export function rowStrides(layout: 'BNSD' | 'BSND', heads: number, seq: number, dim: number): RowStrides {
  return layout === 'BNSD' ? { b: heads * seq * dim, h: seq * dim, i: dim } : { b: seq * heads * dim, h: dim, i: heads * dim };
}

function expectShape(name: string, t: Tensor, shape: readonly number[]): void {
  if (t.rank !== shape.length || t.shape.some((d, i) => d !== shape[i])) throw new ShapeError(name, `${name} must have shape ${show(shape)}, got ${show(t.shape)}`);
}

function scaleTensor(name: string, input: TensorInput, shape: readonly number[]): Tensor {
  const t = toTensor(input, name, ['float32']);
  expectShape(name, t, shape);
  return t;
}

/**
 * An int32 tensor from an array, nested array, Int32Array or Tensor; `shape` entries of -1 are
 * free (a flat Int32Array then takes the rest of its length there).
 */
function intTensor(name: string, input: IntInput, shape: readonly number[]): Tensor {
  let t: Tensor;
  if (Array.isArray(input)) {
    const nested = input.length > 0 && Array.isArray(input[0]);
    if (nested !== (shape.length === 2)) throw new ShapeError(name, `${name} must be ${shape.length === 2 ? 'a [B][pages] nested array' : 'a flat array of B values'}, got ${show(input)}`);
    const rows = nested ? (input as unknown as number[][]) : [input as number[]];
    const width = rows[0]?.length ?? 0;
    if (rows.some((r) => !Array.isArray(r) || r.length !== width)) throw new ShapeError(name, `${name} rows must all have ${width} entries`);
    const flat = rows.flat();
    if (flat.some((x) => !Number.isInteger(x) || x < -(2 ** 31) || x >= 2 ** 31)) throw new ValueError(name, `${name} must hold int32 values, got ${show(flat)}`);
    t = Tensor.fromData(Int32Array.from(flat), nested ? [rows.length, width] : [width], 'int32');
  } else if (input instanceof Int32Array) {
    const width = shape.length === 2 ? input.length / shape[0] : input.length;
    if (!Number.isInteger(width)) throw new ShapeError(name, `${name} has ${input.length} entries, not a multiple of the batch (${shape[0]})`);
    t = Tensor.fromData(input, shape.length === 2 ? [shape[0], width] : [width], 'int32');
  } else t = toTensor(input as TensorInput, name, ['int32']);
  if (t.rank !== shape.length || shape.some((d, i) => d >= 0 && t.shape[i] !== d)) {
    throw new ShapeError(name, `${name} must have shape ${show(shape.map((d) => (d < 0 ? 'any' : d)))}, got ${show(t.shape)}`);
  }
  return t;
}
