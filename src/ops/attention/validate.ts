// validateAttention(): raw (q, k, v, options) -> AttentionProblem, or a typed error that names the
// argument, the expected and the received value. It runs before any backend work, so nothing
// downstream re-checks shapes; backends only decide whether they *support* a valid problem.
import { firstNonFinite } from '../../core/finite.js';
import { fromHalfBits } from '../../core/dtype.js';
import { DTypeError, ShapeError, UnsupportedError, ValueError, show } from '../../core/errors.js';
import { Tensor, type Layout, type TensorInput, toTensor } from '../../core/tensor.js';
import { LAYOUTS, LAYOUT_LEGEND, contiguousStrides, physicalShape, rankOf } from './layout.js';
import type { AttentionOptions } from './options.js';
import type { AlibiView, AttentionProblem, BroadcastView, KeyWindow, StridedView } from './problem.js';
import { validateMods } from './mods/validate.js';
import { resolveDropout } from './dropout/options.js';

const F32_MAX = 3.4028234663852886e38;

const FLOAT_TYPES = ['float32', 'float16'] as const;
const OPTION_NAMES: ReadonlySet<string> = new Set([
  'layout', 'heads', 'kvHeads', 'cuSeqlensQ', 'cuSeqlensK', 'scale', 'softcap', 'causal', 'window',
  'preTokens', 'nextTokens', 'mask', 'bias', 'alibiSlopes', 'qRope', 'kRope', 'returnLse',
  'checkFinite', 'backend', 'device', 'scoreMod', 'maskMod', 'blockMask', 'sink', 'dropout',
]);
/** CANN's "no limit" value for preTokens / nextTokens. */
const CANN_UNBOUNDED = 2147483647;

/** Sizes read off one input's shape. `seq` is T for TND. */
interface Dims {
  batch: number;
  heads: number;
  seq: number;
  dim: number;
}

export function validateAttention(qIn: TensorInput, kIn: TensorInput, vIn: TensorInput, options: AttentionOptions = {}): AttentionProblem {
  if (options === null || typeof options !== 'object') {
    throw new ValueError('options', `options must be an object, got ${show(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!OPTION_NAMES.has(key)) {
      throw new ValueError(`options.${key}`, `options.${key} is not an attention option (known: ${[...OPTION_NAMES].join(', ')})`);
    }
  }
  const q = toTensor(qIn, 'query', FLOAT_TYPES);
  const k = toTensor(kIn, 'key', FLOAT_TYPES);
  const v = toTensor(vIn, 'value', FLOAT_TYPES);
  if (k.dtype !== q.dtype || v.dtype !== q.dtype) {
    throw new DTypeError(k.dtype !== q.dtype ? 'key' : 'value', `query, key and value must share a dtype, got ${q.dtype}, ${k.dtype}, ${v.dtype}`);
  }
  const layout = resolveLayout(options.layout, [q, k, v]);
  const qRope = options.qRope === undefined ? undefined : toTensor(options.qRope, 'qRope', FLOAT_TYPES);
  const kRope = options.kRope === undefined ? undefined : toTensor(options.kRope, 'kRope', FLOAT_TYPES);
  if ((qRope === undefined) !== (kRope === undefined)) {
    throw new ValueError(qRope ? 'kRope' : 'qRope', `qRope and kRope go together (the MLA split form), got only ${qRope ? 'qRope' : 'kRope'}`);
  }
  for (const [name, t] of [['qRope', qRope], ['kRope', kRope]] as const) {
    if (t && t.dtype !== q.dtype) throw new DTypeError(name, `${name} must have the dtype of query (${q.dtype}), got ${t.dtype}`);
  }
  checkSameLocation([['query', q], ['key', k], ['value', v], ['qRope', qRope], ['kRope', kRope]]);

  // --- sizes of q, k, v
  for (const [name, t] of [['query', q], ['key', k], ['value', v]] as const) checkRank(name, t, layout);
  const heads = layout === 'BSH' || layout === 'SBH' ? headCounts(options, q, k, layout) : undefined;
  const qd = readDims(layout, q, heads?.q);
  const kd = readDims(layout, k, heads?.kv);
  const vd = readDims(layout, v, heads?.kv);
  if (layout !== 'TND') {
    if (kd.batch !== qd.batch) throw new ShapeError('key', `key batch must equal query batch (${qd.batch}), got ${kd.batch}`);
    if (vd.batch !== qd.batch) throw new ShapeError('value', `value batch must equal query batch (${qd.batch}), got ${vd.batch}`);
  }
  if (vd.heads !== kd.heads) throw new ShapeError('value', `value heads must equal key heads (${kd.heads}), got ${vd.heads}`);
  if (vd.seq !== kd.seq) throw new ShapeError('value', `value length must equal key length (${kd.seq}), got ${vd.seq}`);
  if (kd.dim !== qd.dim) throw new ShapeError('key', `key head dim must equal query head dim (${qd.dim}), got ${kd.dim}`);
  for (const [name, d] of [['query', qd], ['key', kd], ['value', vd]] as const) {
    if (d.heads < 1) throw new ShapeError(name, `${name} must have at least 1 head, got ${d.heads}`);
    if (d.dim < 1) throw new ShapeError(name, `${name} head dim must be at least 1, got ${d.dim}`);
  }
  if (qd.heads % kd.heads !== 0) {
    throw new ShapeError('key', `query heads (${qd.heads}) must be a multiple of key/value heads (GQA/MQA), got ${kd.heads} key/value heads`);
  }

  // --- MLA split form
  let dimRope = 0;
  if (qRope && kRope) {
    checkRank('qRope', qRope, layout);
    checkRank('kRope', kRope, layout);
    const qr = readDims(layout, qRope, heads?.q);
    const kr = readDims(layout, kRope, heads?.kv);
    expectSame('qRope', qr, qd, ['batch', 'heads', 'seq'], 'query');
    expectSame('kRope', kr, kd, ['batch', 'heads', 'seq'], 'key');
    if (kr.dim !== qr.dim) throw new ShapeError('kRope', `kRope head dim must equal qRope head dim (${qr.dim}), got ${kr.dim}`);
    if (qr.dim < 1) throw new ShapeError('qRope', `qRope head dim must be at least 1, got ${qr.dim}`);
    dimRope = qr.dim;
  }

  // --- sequences (fixed or variable length)
  const seqs = layout === 'TND' ? varlenSequences(options, qd.seq, kd.seq) : fixedSequences(options, qd.batch, qd.seq, kd.seq);
  const batch = seqs.lensQ.length;
  const seqQ = Math.max(0, ...seqs.lensQ);
  const seqK = Math.max(0, ...seqs.lensK);

  const view = (t: Tensor, d: Dims): StridedView => ({
    tensor: t,
    offset: 0,
    strides: contiguousStrides(layout, batch, d.heads, d.seq, d.dim),
  });

  const scale = options.scale ?? 1 / Math.sqrt(qd.dim + dimRope);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) {
    throw new ValueError('options.scale', `options.scale must be a finite number, got ${show(scale)}`);
  }
  if (Math.abs(scale) > F32_MAX) {
    throw new ValueError('options.scale', `options.scale must be within float32's range (|scale| <= 3.4028235e38), got ${show(scale)}`);
  }
  const softcap = options.softcap ?? 0;
  if (typeof softcap !== 'number' || !Number.isFinite(softcap) || softcap < 0) {
    throw new ValueError('options.softcap', `options.softcap must be a finite number >= 0 (0 = off), got ${show(softcap)}`);
  }
  const returnLse = options.returnLse ?? false;
  if (typeof returnLse !== 'boolean') throw new ValueError('options.returnLse', `options.returnLse must be a boolean, got ${show(returnLse)}`);
  if (options.backend !== undefined && !['cpu', 'webgpu', 'auto'].includes(options.backend)) {
    throw new ValueError('options.backend', `options.backend must be "cpu", "webgpu" or "auto", got ${show(options.backend)}`);
  }

  const target = [batch, qd.heads, seqQ, seqK] as const;
  const mask = options.mask === undefined ? undefined : broadcastView('mask', toTensor(options.mask, 'mask', ['bool', 'uint8']), target);
  const bias = options.bias === undefined ? undefined : broadcastView('bias', toTensor(options.bias, 'bias', FLOAT_TYPES), target);
  const alibi = options.alibiSlopes === undefined ? undefined : alibiView(options.alibiSlopes, batch, qd.heads);
  // a mask or bias may also be CPU data for GPU inputs: it is uploaded per call, and a CPU mask's
  // block structure lets the GPU kernels skip the tiles it hides (issue 13)
  checkSameLocation([['query', q], ['mask', mask?.tensor.location === 'cpu' ? undefined : mask?.tensor], ['bias', bias?.tensor.location === 'cpu' ? undefined : bias?.tensor]]);
  if (alibi && alibi.tensor.location !== 'cpu') {
    throw new UnsupportedError('alibiSlopes', `alibiSlopes must be CPU data (it is tiny), got a ${alibi.tensor.location} tensor`);
  }

  const { mods, blockMask, window } = validateMods(options, { batch, headsQ: qd.heads, seqQ, seqK, seqLensQ: seqs.lensQ, seqLensK: seqs.lensK, window: keyWindow(options) });

  const problem: AttentionProblem = {
    layout,
    dtype: q.dtype as 'float32' | 'float16',
    batch,
    headsQ: qd.heads,
    headsKv: kd.heads,
    seqQ,
    seqK,
    dimQK: qd.dim,
    dimRope,
    dimV: vd.dim,
    varlen: layout === 'TND',
    seqLensQ: seqs.lensQ,
    seqLensK: seqs.lensK,
    seqStartsQ: seqs.startsQ,
    seqStartsK: seqs.startsK,
    totalQ: layout === 'TND' ? qd.seq : batch * seqQ,
    totalK: layout === 'TND' ? kd.seq : batch * seqK,
    q: view(q, qd),
    k: view(k, kd),
    v: view(v, vd),
    qRope: qRope ? view(qRope, { ...qd, dim: dimRope }) : undefined,
    kRope: kRope ? view(kRope, { ...kd, dim: dimRope }) : undefined,
    outShape: physicalShape(layout, batch, qd.heads, qd.seq, vd.dim),
    outStrides: contiguousStrides(layout, batch, qd.heads, qd.seq, vd.dim),
    lseShape: layout === 'TND' ? [qd.heads, qd.seq] : [batch, qd.heads, seqQ],
    lseStrides: layout === 'TND' ? { b: 0, h: qd.seq, s: 1 } : { b: qd.heads * seqQ, h: seqQ, s: 1 },
    scale,
    softcap,
    window,
    mask,
    bias,
    alibi,
    mods,
    blockMask,
    dropout: resolveDropout(options.dropout),
    returnLse,
  };
  if (options.checkFinite) checkFinite(problem);
  return problem;
}

function resolveLayout(option: Layout | undefined, tensors: Tensor[]): Layout {
  const tagged = tensors.map((t) => t.layout).filter((l): l is Layout => l !== undefined);
  const layout = option ?? tagged[0] ?? 'BNSD';
  if (!LAYOUTS.includes(layout)) {
    throw new ValueError('options.layout', `options.layout must be one of ${LAYOUTS.join(', ')}, got ${show(layout)}`);
  }
  for (const tag of tagged) {
    if (tag !== layout) throw new ValueError('options.layout', `tensor layout tag ${show(tag)} disagrees with layout ${show(layout)}`);
  }
  return layout;
}

/** Throws UnsupportedError unless every given tensor lives where the first one does (also used by the backward's validation). */
export function checkSameLocation(tensors: ReadonlyArray<readonly [string, Tensor | undefined]>): void {
  const [firstName, first] = tensors[0] as readonly [string, Tensor];
  for (const [name, t] of tensors) {
    if (!t) continue;
    if (t.location !== first.location || (t.gpu && first.gpu && t.gpu.device !== first.gpu.device)) {
      throw new UnsupportedError(name, `${name} lives on ${t.location} but ${firstName} on ${first.location}: all tensors of one call must share a device`);
    }
  }
}

function checkRank(name: string, t: Tensor, layout: Layout): void {
  const rank = rankOf(layout);
  if (t.rank !== rank) {
    throw new ShapeError(name, `Input '${name}' is expected to have ${rank} dimensions for layout ${layout} ${LAYOUT_LEGEND[layout]}, got ${t.rank} (shape ${show(t.shape)})`);
  }
}

function positiveInt(value: unknown, argument: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new ValueError(argument, `${argument} must be a positive integer, got ${show(value)}`);
  }
  return value;
}

/** Query and key/value head counts for the packed-hidden layouts BSH and SBH. */
function headCounts(options: AttentionOptions, q: Tensor, k: Tensor, layout: Layout): { q: number; kv: number } {
  if (options.heads === undefined) {
    throw new ValueError('options.heads', `options.heads (query heads) is required for layout ${layout}, got undefined`);
  }
  const hq = positiveInt(options.heads, 'options.heads');
  const hiddenQ = q.shape[2];
  if (hiddenQ % hq !== 0) {
    throw new ShapeError('query', `query hidden size ${hiddenQ} is not divisible by options.heads = ${hq}`);
  }
  const dim = hiddenQ / hq;
  const hiddenK = k.shape[2];
  const kv = options.kvHeads === undefined ? hiddenK / dim : positiveInt(options.kvHeads, 'options.kvHeads');
  if (!Number.isInteger(kv) || hiddenK % kv !== 0) {
    throw new ShapeError('key', `key hidden size ${hiddenK} is not a whole number of heads of dim ${dim} (query hidden ${hiddenQ} / ${hq} heads)`);
  }
  return { q: hq, kv };
}

function readDims(layout: Layout, t: Tensor, heads: number | undefined): Dims {
  const s = t.shape;
  switch (layout) {
    case 'BNSD': return { batch: s[0], heads: s[1], seq: s[2], dim: s[3] };
    case 'BSND': return { batch: s[0], seq: s[1], heads: s[2], dim: s[3] };
    case 'TND': return { batch: 1, seq: s[0], heads: s[1], dim: s[2] };
    case 'BSH':
    case 'SBH': {
      const h = heads as number;
      const [batch, seq] = layout === 'BSH' ? [s[0], s[1]] : [s[1], s[0]];
      if (s[2] % h !== 0) throw new ShapeError('hidden', `hidden size ${s[2]} is not divisible by ${h} heads`);
      return { batch, seq, heads: h, dim: s[2] / h };
    }
  }
}

function expectSame(name: string, got: Dims, want: Dims, keys: Array<keyof Dims>, wantName: string): void {
  for (const key of keys) {
    if (got[key] !== want[key]) throw new ShapeError(name, `${name} ${key} must equal ${wantName} ${key} (${want[key]}), got ${got[key]}`);
  }
}

interface Sequences {
  lensQ: Int32Array;
  lensK: Int32Array;
  startsQ: Int32Array;
  startsK: Int32Array;
}

function fixedSequences(options: AttentionOptions, batch: number, sq: number, sk: number): Sequences {
  for (const name of ['cuSeqlensQ', 'cuSeqlensK'] as const) {
    if (options[name] !== undefined) throw new ValueError(`options.${name}`, `options.${name} applies only to layout TND, got it with a fixed-length layout`);
  }
  return {
    lensQ: new Int32Array(batch).fill(sq),
    lensK: new Int32Array(batch).fill(sk),
    startsQ: new Int32Array(batch),
    startsK: new Int32Array(batch),
  };
}

function varlenSequences(options: AttentionOptions, totalQ: number, totalK: number): Sequences {
  const cuQ = cuSeqlens(options.cuSeqlensQ, 'options.cuSeqlensQ', totalQ);
  const cuK = cuSeqlens(options.cuSeqlensK, 'options.cuSeqlensK', totalK);
  if (cuK.length !== cuQ.length) {
    throw new ShapeError('options.cuSeqlensK', `options.cuSeqlensK must have the length of cuSeqlensQ (${cuQ.length}, batch + 1), got ${cuK.length}`);
  }
  const batch = cuQ.length - 1;
  const seqs: Sequences = {
    lensQ: new Int32Array(batch),
    lensK: new Int32Array(batch),
    startsQ: cuQ.subarray(0, batch),
    startsK: cuK.subarray(0, batch),
  };
  for (let b = 0; b < batch; b++) {
    seqs.lensQ[b] = cuQ[b + 1] - cuQ[b];
    seqs.lensK[b] = cuK[b + 1] - cuK[b];
  }
  return seqs;
}

function cuSeqlens(input: TensorInput | readonly number[] | undefined, argument: string, total: number): Int32Array {
  if (input === undefined) throw new ValueError(argument, `${argument} is required for layout TND ([batch + 1] prefix sums), got undefined`);
  let values: number[];
  if (Array.isArray(input)) values = [...(input as number[])];
  else if (input instanceof BigInt64Array) values = Array.from(input, Number);
  else if (input instanceof Int32Array) values = [...input];
  else if (input instanceof Tensor || (typeof input === 'object' && 'data' in (input as object))) {
    const raw = input instanceof Tensor ? input.data : (input as { data: ArrayBufferView }).data;
    if (raw instanceof BigInt64Array) values = Array.from(raw, Number);
    else {
      const t = toTensor(input as TensorInput, argument, ['int32', 'float32', 'float16', 'bool', 'uint8']);
      if (t.dtype !== 'int32') throw new DTypeError(argument, `${argument} must have dtype int32 or int64, got ${t.dtype}`);
      values = Array.from(t.data as Int32Array);
    }
  } else throw new DTypeError(argument, `${argument} must be an int32/int64 array, got ${show(input)}`);
  if (values.length < 2) throw new ShapeError(argument, `${argument} must have batch + 1 >= 2 entries, got ${values.length}`);
  if (values[0] !== 0) throw new ValueError(argument, `${argument} must start at 0, got ${values[0]}`);
  for (let i = 0; i < values.length; i++) {
    if (!Number.isInteger(values[i])) throw new ValueError(argument, `${argument}[${i}] must be an integer, got ${show(values[i])}`);
    if (i > 0 && values[i] < values[i - 1]) {
      throw new ValueError(argument, `${argument} must be non-decreasing, got ${values[i - 1]} then ${values[i]} at index ${i}`);
    }
  }
  if (values[values.length - 1] !== total) {
    throw new ValueError(argument, `${argument} must end at the total token count ${total}, got ${values[values.length - 1]}`);
  }
  return Int32Array.from(values);
}

export function keyWindow(options: Pick<AttentionOptions, 'causal' | 'window' | 'preTokens' | 'nextTokens'>): KeyWindow {
  const { causal, window, preTokens, nextTokens } = options;
  if (causal !== undefined && causal !== true && causal !== false && causal !== 'bottom-right' && causal !== 'top-left') {
    throw new ValueError('options.causal', `options.causal must be a boolean, "bottom-right" or "top-left", got ${show(causal)}`);
  }
  const cann = preTokens !== undefined || nextTokens !== undefined;
  if (window !== undefined && cann) {
    throw new ValueError('options.window', 'options.window and options.preTokens/nextTokens say the same thing twice; give one');
  }
  const align = causal === 'top-left' ? 'top-left' : 'bottom-right';
  if (align === 'top-left' && (window !== undefined || cann)) {
    throw new ValueError('options.window', 'a window is aligned to the bottom-right diagonal, so combining it with causal: "top-left" is ambiguous; use causal: true (bottom-right) with the window, or a mask');
  }
  let left = Infinity;
  let right = Infinity;
  if (window !== undefined) {
    if (!Array.isArray(window) || window.length !== 2 || !window.every((w) => Number.isInteger(w) && w >= -1)) {
      throw new ValueError('options.window', `options.window must be [left, right] with integers >= -1 (-1 = unbounded), got ${show(window)}`);
    }
    left = window[0] < 0 ? Infinity : window[0];
    right = window[1] < 0 ? Infinity : window[1];
  }
  if (cann) {
    for (const [name, value] of [['preTokens', preTokens], ['nextTokens', nextTokens]] as const) {
      if (value !== undefined && !Number.isInteger(value)) {
        throw new ValueError(`options.${name}`, `options.${name} must be an integer, got ${show(value)}`);
      }
    }
    left = preTokens === undefined || preTokens >= CANN_UNBOUNDED ? Infinity : preTokens;
    right = nextTokens === undefined || nextTokens >= CANN_UNBOUNDED ? Infinity : nextTokens;
    if (left + right < 0) {
      throw new ValueError('options.nextTokens', `preTokens + nextTokens must be >= 0 or no key is visible, got ${preTokens} + ${nextTokens}`);
    }
  }
  if (causal) right = Math.min(right, 0);
  if (causal && left !== Infinity && left < 0) {
    throw new ValueError('options.preTokens', `with causal, preTokens must be >= 0, got ${left}`);
  }
  return { left, right, align };
}

/** Right-aligned broadcast of a mask/bias to [B, Nq, Sq, Sk] (PyTorch rules: each dim 1 or equal). */
function broadcastView(argument: string, t: Tensor, target: readonly [number, number, number, number]): BroadcastView {
  if (t.rank < 1 || t.rank > 4) {
    throw new ShapeError(argument, `Input '${argument}' is expected to have 1 to 4 dimensions (broadcastable to [B, Nq, Sq, Sk] = ${show(target)}), got ${t.rank}`);
  }
  const names = ['batch', 'heads', 'query length', 'key length'];
  const strides = [0, 0, 0, 0];
  let stride = 1;
  for (let axis = 3; axis >= 4 - t.rank; axis--) {
    const size = t.shape[axis - (4 - t.rank)];
    if (size !== 1 && size !== target[axis]) {
      throw new ShapeError(argument, `${argument} of shape ${show(t.shape)} is not broadcastable to [B, Nq, Sq, Sk] = ${show(target)}: its ${names[axis]} dimension is ${size}, expected 1 or ${target[axis]}`);
    }
    strides[axis] = size === 1 ? 0 : stride;
    stride *= size;
  }
  return { tensor: t, strides: { b: strides[0], h: strides[1], i: strides[2], j: strides[3] } };
}

export function alibiView(input: TensorInput | Float32Array | readonly number[], batch: number, heads: number): AlibiView {
  let t: Tensor;
  if (Array.isArray(input)) t = Tensor.fromData(Float32Array.from(input as number[]), [input.length]);
  else if (input instanceof Float32Array) t = Tensor.fromData(input, [input.length]);
  else t = toTensor(input as TensorInput, 'alibiSlopes', ['float32']);
  const ok = (t.rank === 1 && t.shape[0] === heads) || (t.rank === 2 && t.shape[0] === batch && t.shape[1] === heads);
  if (!ok) {
    throw new ShapeError('alibiSlopes', `alibiSlopes must have shape [Nq] = [${heads}] or [B, Nq] = [${batch}, ${heads}], got ${show(t.shape)}`);
  }
  if (t.data) {
    const d = t.data as Float32Array;
    for (let i = 0; i < d.length; i++) {
      if (!Number.isFinite(d[i])) throw new ValueError('alibiSlopes', `alibiSlopes[${i}] must be finite, got ${d[i]}`);
    }
  }
  return { tensor: t, strideB: t.rank === 2 ? heads : 0 };
}

/**
 * Throws a ValueError naming the first NaN/Inf in q, k, v, qRope, kRope, or the first NaN/+Inf in
 * bias (CPU tensors): -inf in a bias is the documented way to hide a key, not an error.
 */
function checkFinite(p: AttentionProblem): void {
  const inputs: Array<[string, Tensor | undefined]> = [
    ['query', p.q.tensor], ['key', p.k.tensor], ['value', p.v.tensor],
    ['qRope', p.qRope?.tensor], ['kRope', p.kRope?.tensor], ['bias', p.bias?.tensor],
  ];
  for (const [name, t] of inputs) {
    if (!t) continue;
    if (!t.data) throw new UnsupportedError('options.checkFinite', `options.checkFinite needs CPU tensors; ${name} lives on the GPU`);
    const bad = firstNonFinite(t.data as ArrayLike<number>, t.dtype, name === 'bias');
    if (bad >= 0) {
      const value = t.dtype === 'float16' ? fromHalfBits((t.data as Uint16Array)[bad]) : (t.data as Float32Array)[bad];
      throw new ValueError(name, `${name} holds a non-finite value at flat index ${bad}: ${value}`);
    }
  }
}


