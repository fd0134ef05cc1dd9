// Built-in score, mask and sink functions, each written with the public expression builders (so
// each is also an example of them), and each checked against the float64 reference in the tests.
// Masks align the way attention()'s options do: `bottom-right` puts the diagonal at
// kv = q + kvLen - qLen (the last query sees every key; what KV-cache decoding needs), `top-left`
// at kv = q (PyTorch's is_causal).
import { Tensor } from '../../../core/tensor.js';
import { ValueError, show } from '../../../core/errors.js';
import type { CausalAlign } from '../options.js';
import { type BoolExpr, type FloatTensor, type IntExpr, type IntTensor, capture, int } from './expr.js';
import { type MaskContext, type MaskMod, type ScoreMod, type SinkMod, maskMod, scoreMod, sinkMod } from './program.js';

/** kv - q - diag: 0 on the diagonal, negative for keys before it. */
function offsetFromDiagonal({ q, kv, qLen, kvLen }: MaskContext, align: CausalAlign): IntExpr {
  return align === 'top-left' ? kv.sub(q) : kv.sub(q).sub(kvLen.sub(qLen));
}

function checkAlign(align: unknown, name: string): CausalAlign {
  if (align !== 'bottom-right' && align !== 'top-left') throw new ValueError(name, `${name}: align must be "bottom-right" or "top-left", got ${show(align)}`);
  return align;
}

function checkCount(value: unknown, name: string): number {
  if (value === Infinity || value === -1) return Infinity;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new ValueError(name, `${name} must be an integer >= 0 (-1 or Infinity = unbounded), got ${show(value)}`);
  return value;
}

/** Query q sees key kv iff kv is not after the diagonal. */
export function causal(align: CausalAlign = 'bottom-right'): MaskMod {
  const a = checkAlign(align, 'causal');
  return maskMod((ctx) => offsetFromDiagonal(ctx, a).le(0), `causal(${a})`);
}

/**
 * Keys from `left` before the diagonal to `right` after it (options.window's [left, right]);
 * -1 or Infinity leaves a side unbounded. slidingWindow(w) is causal with w keys of history.
 */
export function slidingWindow(left: number, right = 0, align: CausalAlign = 'bottom-right'): MaskMod {
  const l = checkCount(left, 'slidingWindow left');
  const r = checkCount(right, 'slidingWindow right');
  const a = checkAlign(align, 'slidingWindow');
  return maskMod((ctx) => {
    const rel = offsetFromDiagonal(ctx, a);
    const sides: BoolExpr[] = [];
    if (l !== Infinity) sides.push(rel.ge(-l));
    if (r !== Infinity) sides.push(rel.le(r));
    return sides.length === 0 ? true : sides.reduce((x, y) => x.and(y));
  }, `slidingWindow(${left}, ${right}, ${a})`);
}

/**
 * Prefix-LM: the first `prefix` keys are visible to every query (bidirectional prefix), the rest
 * causally. `prefix` is one length, or one per batch entry.
 */
export function prefixLM(prefix: number | readonly number[] | Int32Array, align: CausalAlign = 'bottom-right'): MaskMod {
  const a = checkAlign(align, 'prefixLM');
  if (typeof prefix === 'number') {
    const n = checkCount(prefix, 'prefixLM prefix');
    return maskMod((ctx) => ctx.kv.lt(n === Infinity ? 2 ** 31 - 1 : n).or(offsetFromDiagonal(ctx, a).le(0)), `prefixLM(${prefix})`);
  }
  const lengths = capture(Int32Array.from(prefix as ArrayLike<number>), undefined, 'prefixLM lengths');
  return maskMod((ctx) => ctx.kv.lt(lengths.at(ctx.b)).or(offsetFromDiagonal(ctx, a).le(0)), 'prefixLM(per batch)');
}

type Ids = Int32Array | readonly number[] | Tensor;

function ids(values: Ids, name: string): IntTensor {
  const captured = values instanceof Tensor ? capture(values, undefined, name) : capture(Int32Array.from(values as ArrayLike<number>), undefined, name);
  if (captured.kind !== 'int') throw new ValueError(name, `${name} must hold integer document ids (int32), got float data`);
  if (captured.rank > 2) throw new ValueError(name, `${name} must be [S] or [B, S], got shape ${show(captured.shape)}`);
  return captured as IntTensor;
}

/**
 * Packed sequences: a query sees only keys of its own document. `docIds` is [S] (shared by the
 * batch) or [B, S], one id per position; `kvDocIds` the keys' ids when they differ from the
 * queries' (cross-attention). With `causal`, also no key after the query (top-left: packed
 * documents start together).
 */
export function documentMask(docIds: Ids, options: { kvDocIds?: Ids; causal?: boolean } = {}): MaskMod {
  const qDocs = ids(docIds, 'documentMask docIds');
  const kvDocs = options.kvDocIds === undefined ? qDocs : ids(options.kvDocIds, 'documentMask kvDocIds');
  const at = (t: IntTensor, b: IntExpr, i: IntExpr) => (t.rank === 2 ? t.at(b, i) : t.at(i));
  return maskMod(({ b, q, kv }) => {
    const same = at(qDocs, b, q).eq(at(kvDocs, b, kv));
    return options.causal ? same.and(kv.le(q)) : same;
  }, options.causal ? 'documentMask(causal)' : 'documentMask');
}

/**
 * StreamingLLM: the first `sinkTokens` keys and the last `window` keys (causal), nothing between.
 */
export function streamingMask(sinkTokens: number, window: number, align: CausalAlign = 'bottom-right'): MaskMod {
  const n = checkCount(sinkTokens, 'streamingMask sinkTokens');
  const w = checkCount(window, 'streamingMask window');
  const a = checkAlign(align, 'streamingMask');
  return maskMod((ctx) => {
    const rel = offsetFromDiagonal(ctx, a);
    return rel.le(0).and(ctx.kv.lt(n).or(rel.gt(-w)));
  }, `streamingMask(${sinkTokens}, ${window})`);
}

type Floats = Float32Array | readonly number[] | Tensor;

function floats(values: Floats, name: string): FloatTensor {
  const captured = values instanceof Tensor ? capture(values, undefined, name) : capture(Float32Array.from(values as ArrayLike<number>), undefined, name);
  if (captured.kind !== 'float') throw new ValueError(name, `${name} must be float data, got int`);
  return captured as FloatTensor;
}

function perHead(t: FloatTensor, b: IntExpr, h: IntExpr, name: string) {
  if (t.rank === 1) return t.at(h);
  if (t.rank === 2) return t.at(b, h);
  throw new ValueError(name, `${name} must be [Nq] or [B, Nq], got shape ${show(t.shape)}`);
}

/**
 * Attention sinks (GPT-OSS): one learned logit per head that joins every row's softmax without a
 * value, out = Σ e^s v / (e^sink + Σ e^s). `logits` is [Nq] or [B, Nq].
 */
export function attentionSinks(logits: Floats): SinkMod {
  const t = floats(logits, 'attentionSinks logits');
  perHead(t, int(0), int(0), 'attentionSinks logits');
  return sinkMod(({ b, h }) => perHead(t, b, h, 'attentionSinks logits'), 'attentionSinks');
}

/** Gemma-2 style tanh capping: score -> cap * tanh(score / cap) (options.softcap as an expression). */
export function softcap(cap: number): ScoreMod {
  if (typeof cap !== 'number' || !Number.isFinite(cap) || cap <= 0) throw new ValueError('softcap', `softcap: cap must be a finite number > 0, got ${show(cap)}`);
  return scoreMod(({ score }) => score.div(cap).tanh().mul(cap), `softcap(${cap})`);
}

/** ALiBi: score - slope[h] * |q + kvLen - qLen - kv| (options.alibiSlopes as an expression). */
export function alibi(slopes: Floats): ScoreMod {
  const t = floats(slopes, 'alibi slopes');
  perHead(t, int(0), int(0), 'alibi slopes');
  return scoreMod(({ score, b, h, q, kv, qLen, kvLen }) => score.sub(perHead(t, b, h, 'alibi slopes').mul(q.add(kvLen).sub(qLen).sub(kv).abs())), 'alibi');
}

/** The standard ALiBi slopes of `heads` heads (Press et al.; the BLOOM recipe for non-powers of 2). */
export function alibiSlopes(heads: number): Float32Array {
  if (!Number.isInteger(heads) || heads < 1) throw new ValueError('heads', `alibiSlopes: heads must be a positive integer, got ${show(heads)}`);
  const pow2 = 2 ** Math.floor(Math.log2(heads));
  const base = (n: number) => Array.from({ length: n }, (_, i) => 2 ** (-8 * (i + 1) / n));
  const slopes = base(pow2);
  if (pow2 < heads) slopes.push(...base(2 * pow2).filter((_, i) => i % 2 === 0).slice(0, heads - pow2));
  return Float32Array.from(slopes);
}

export interface T5Options {
  /** Keys before and after the query get separate buckets (encoders). Default true. */
  bidirectional?: boolean;
  /** Default 32. */
  numBuckets?: number;
  /** Default 128: distances beyond it share the last bucket. */
  maxDistance?: number;
}

/**
 * T5's bucket of relative position kv - q, computed as Hugging Face's
 * `_relative_position_bucket` does in float32 (exact bucket edges match it).
 */
export function t5Bucket(relative: number, options: T5Options = {}): number {
  const { bidirectional = true, numBuckets = 32, maxDistance = 128 } = options;
  let buckets = numBuckets;
  let bucket = 0;
  let rel = relative;
  if (bidirectional) {
    buckets = Math.floor(buckets / 2);
    if (rel > 0) bucket += buckets;
    rel = Math.abs(rel);
  } else {
    rel = -Math.min(rel, 0);
  }
  const maxExact = Math.floor(buckets / 2);
  if (rel < maxExact) return bucket + rel;
  const f = Math.fround;
  const scaled = f(f(f(Math.log(f(rel / maxExact))) / Math.log(maxDistance / maxExact)) * (buckets - maxExact));
  return bucket + Math.min(maxExact + Math.trunc(scaled), buckets - 1);
}

/**
 * T5 relative position bias: score + table[bucket(kv - q), h], `table` the model's
 * relative_attention_bias weight, [numBuckets, Nq]. Buckets come from a captured lookup table of
 * every distance up to maxDistance (beyond it the bucket no longer changes; indices clamp).
 * T5 does not scale scores: call attention with scale: 1.
 */
export function t5RelativeBias(table: Floats, options: T5Options = {}): ScoreMod {
  const { numBuckets = 32, maxDistance = 128 } = options;
  if (!Number.isInteger(numBuckets) || numBuckets < 2) throw new ValueError('numBuckets', `t5RelativeBias: numBuckets must be an integer >= 2, got ${show(numBuckets)}`);
  if (!Number.isInteger(maxDistance) || maxDistance < 1) throw new ValueError('maxDistance', `t5RelativeBias: maxDistance must be a positive integer, got ${show(maxDistance)}`);
  // a flat array is read as [numBuckets, Nq]
  const flat = table instanceof Tensor ? undefined : Float32Array.from(table as ArrayLike<number>);
  const shape = flat && flat.length % numBuckets === 0 ? [numBuckets, flat.length / numBuckets] : undefined;
  const weights = table instanceof Tensor ? capture(table, undefined, 't5 bias table') : capture(flat!, shape, 't5 bias table');
  if (weights.kind !== 'float' || weights.rank !== 2 || weights.shape[0] !== numBuckets) {
    throw new ValueError('table', `t5RelativeBias: table must be float [numBuckets = ${numBuckets}, Nq], got ${weights.kind} ${show(weights.shape)}`);
  }
  const lookup = Int32Array.from({ length: 2 * maxDistance + 1 }, (_, i) => t5Bucket(i - maxDistance, options));
  const buckets = capture(lookup, undefined, 't5 buckets');
  const bias = weights as FloatTensor;
  return scoreMod(({ score, h, q, kv }) => score.add(bias.at(buckets.at(kv.sub(q).add(maxDistance)), h)), 't5RelativeBias');
}
