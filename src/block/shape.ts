// A block call's input: the hidden states, how their rows are ordered, where the new tokens sit
// (start) and the optional KV cache; validateForward() checks all of it against the BlockSpec and
// throws typed errors before any work.
//   layout 'BSH': x [B, S, H], row of (b, s) = b*S + s (the usual [batch, seq, hidden])
//   layout 'SBH': x [S, B, H], row of (b, s) = s*B + b (the model runner's order: the rows of one
//                 position are adjacent, so new K/V append to an SBH cache as one block)
// KV cache: keys and values after RoPE, [capacity, B, Nkv*D] float32 (SBH), on the device of x.
// Positions 0 .. start-1 are read from it; the new tokens' K/V are written at start .. start+S-1.
import { DTypeError, ShapeError, ValueError, show } from '../core/errors.js';
import { Tensor, type TensorInput, toTensor } from '../core/tensor.js';
import type { BlockSpec } from './config.js';

export type BlockLayout = 'BSH' | 'SBH';

export interface BlockKvCache {
  /** [capacity, B, Nkv*D] float32. */
  keys: TensorInput;
  values: TensorInput;
}

export interface BlockForwardOptions {
  /** Row order of x and of the output. Default 'BSH'. */
  layout?: BlockLayout;
  /** Position of the first token of x (= tokens already in the cache). Default 0. */
  start?: number;
  /** Read keys/values of positions < start from here, write the new ones at start .. start+S-1. */
  cache?: BlockKvCache;
}

/** A validated call. */
export interface BlockCall {
  readonly x: Tensor;
  readonly layout: BlockLayout;
  readonly batch: number;
  readonly seq: number;
  readonly rows: number;
  readonly start: number;
  readonly cacheKeys: Tensor | undefined;
  readonly cacheValues: Tensor | undefined;
  readonly capacity: number;
  /** Element strides between batches and between tokens, in rows. */
  readonly rowStrideB: number;
  readonly rowStrideS: number;
}

/** What the kernels read of a call: sizes, row order and the first position. */
export type BlockGeometry = Pick<BlockCall, 'batch' | 'seq' | 'rows' | 'start' | 'rowStrideB' | 'rowStrideS'>;

export function rowOf(layout: BlockLayout, batch: number, seq: number, b: number, s: number): number {
  return layout === 'BSH' ? b * seq + s : s * batch + b;
}

export function rowStrides(layout: BlockLayout, batch: number, seq: number): { b: number; s: number } {
  return layout === 'BSH' ? { b: seq, s: 1 } : { b: 1, s: batch };
}

const OPTION_KEYS = new Set(['layout', 'start', 'cache']);

export function validateForward(spec: BlockSpec, xIn: TensorInput, options: BlockForwardOptions = {}): BlockCall {
  if (options === null || typeof options !== 'object') throw new ValueError('options', `options must be an object, got ${show(options)}`);
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.has(key)) throw new ValueError(`options.${key}`, `options.${key} is not a block forward option (known: ${[...OPTION_KEYS].join(', ')})`);
  }
  const layout = options.layout ?? 'BSH';
  if (layout !== 'BSH' && layout !== 'SBH') throw new ValueError('options.layout', `options.layout must be "BSH" or "SBH", got ${show(layout)}`);
  const x = toTensor(xIn, 'hidden', ['float32']);
  if (x.rank !== 3) throw new ShapeError('hidden', `hidden must have 3 dimensions (${layout === 'BSH' ? '[batch, seq, hidden]' : '[seq, batch, hidden]'}), got shape ${show(x.shape)}`);
  const [d0, d1, h] = x.shape;
  if (h !== spec.hidden) throw new ShapeError('hidden', `hidden's last dimension must be the block's hidden size ${spec.hidden}, got ${h}`);
  const batch = layout === 'BSH' ? d0 : d1;
  const seq = layout === 'BSH' ? d1 : d0;
  if (batch < 1 || seq < 1) throw new ShapeError('hidden', `hidden needs at least one sequence and one token, got shape ${show(x.shape)}`);
  const start = options.start ?? 0;
  if (!Number.isInteger(start) || start < 0) throw new ValueError('options.start', `options.start must be a non-negative integer, got ${show(start)}`);

  let cacheKeys: Tensor | undefined;
  let cacheValues: Tensor | undefined;
  let capacity = 0;
  if (options.cache !== undefined) {
    const cache = options.cache;
    if (cache === null || typeof cache !== 'object') throw new ValueError('options.cache', `options.cache must be {keys, values}, got ${show(cache)}`);
    cacheKeys = toTensor(cache.keys, 'cache.keys', ['float32']);
    cacheValues = toTensor(cache.values, 'cache.values', ['float32']);
    const kvd = spec.kvHeads * spec.headDim;
    for (const [name, t] of [['cache.keys', cacheKeys], ['cache.values', cacheValues]] as const) {
      if (t.rank !== 3 || t.shape[1] !== batch || t.shape[2] !== kvd) {
        throw new ShapeError(name, `${name} must have shape [capacity, ${batch}, ${kvd}] ([capacity, batch, kvHeads*headDim]), got ${show(t.shape)}`);
      }
      if (t.location !== x.location) throw new DTypeError(name, `${name} must live where hidden does (${x.location}), it is on ${t.location}`);
    }
    if (cacheValues.shape[0] !== cacheKeys.shape[0]) {
      throw new ShapeError('cache.values', `cache.values must have the capacity of cache.keys (${cacheKeys.shape[0]}), got ${cacheValues.shape[0]}`);
    }
    capacity = cacheKeys.shape[0];
    if (start + seq > capacity) {
      throw new ShapeError('options.start', `the cache holds ${capacity} positions; start ${start} + ${seq} new tokens do not fit`);
    }
  }
  // without a cache the tokens attend only to each other and start only shifts their positions
  if (start + seq > spec.maxPositions) {
    throw new ValueError('options.start', `positions up to ${start + seq - 1} need a RoPE table of ${start + seq} rows but the block has config.maxPositions = ${spec.maxPositions}`);
  }
  const strides = rowStrides(layout, batch, seq);
  return { x, layout, batch, seq, rows: batch * seq, start, cacheKeys, cacheValues, capacity, rowStrideB: strides.b, rowStrideS: strides.s };
}
