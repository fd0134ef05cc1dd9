// Float64 reference of the attention module, the oracle of the block tests: computed the plainest
// way (projections, biases, RoPE with float64 angles, causal softmax over cache + new keys, GQA by
// index, O projection), with no tiling and no shortcuts.
import { halfToFloats, roundToHalf } from '../core/dtype.js';
import type { BlockSpec, WeightData } from './config.js';
import { inverseFrequencies } from './rope.js';
import { type BlockLayout, rowOf } from './shape.js';

export interface ReferenceInput {
  /** Hidden states [B*S, H] in `layout`. */
  x: Float32Array;
  layout: BlockLayout;
  batch: number;
  seq: number;
  /** Position of the first new token; with a cache, keys 0 .. start-1 come from it. */
  start: number;
  /**
   * Keys / values after RoPE, [capacity, B, Nkv*D]. Without them the new tokens attend only to
   * each other (start then only shifts their RoPE positions).
   */
  cacheKeys?: Float32Array;
  cacheValues?: Float32Array;
}

export interface ReferenceOutput {
  /** [B*S, H] in the input's layout. */
  out: Float64Array;
  /** Rotated keys and values of the new tokens, [S, B, Nkv*D] (what a cache holds at start ..). */
  keys: Float64Array;
  values: Float64Array;
}

function f64(w: WeightData | undefined): Float64Array | undefined {
  if (!w) return undefined;
  return Float64Array.from(w instanceof Uint16Array ? halfToFloats(w) : w);
}

/** y[r] = x[r] Wᵀ + b for every row, in float64. */
function linear(x: ArrayLike<number>, rows: number, inDim: number, w: Float64Array, outDim: number, bias?: Float64Array): Float64Array {
  const y = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outDim; o++) {
      let s = bias ? bias[o] : 0;
      const wo = o * inDim;
      const xr = r * inDim;
      for (let i = 0; i < inDim; i++) s += x[xr + i] * w[wo + i];
      y[r * outDim + o] = s;
    }
  }
  return y;
}

export interface ReferenceBlockOptions {
  /**
   * 'float16': round activations to float16 where the tensor-core path stores them (x on its way
   * into the QKV GEMM, q/k/v after the bias and q/k again after RoPE, the softmax numerators, the
   * attention output on its way into the O GEMM). Not the module's value: the yardstick for that
   * path's tolerance (FlashAttention's rule, error <= 2 x this computation's error). Default 'float64'.
   */
  activations?: 'float64' | 'float16';
}

export function referenceBlock(spec: BlockSpec, input: ReferenceInput, options: ReferenceBlockOptions = {}): ReferenceOutput {
  const { hidden: H, heads: Nq, kvHeads: Nkv, headDim: D, group } = spec;
  const { batch: B, seq: S, start, layout } = input;
  const rows = B * S;
  const w = spec.weights;
  const half = options.activations === 'float16';
  const round = (x: Float64Array) => {
    if (half) for (let i = 0; i < x.length; i++) x[i] = roundToHalf(x[i]);
    return x;
  };
  const xIn = half ? round(Float64Array.from(input.x)) : input.x;
  const q = round(linear(xIn, rows, H, f64(w.q)!, Nq * D, f64(w.qBias)));
  const k = round(linear(xIn, rows, H, f64(w.k)!, Nkv * D, f64(w.kBias)));
  const v = round(linear(xIn, rows, H, f64(w.v)!, Nkv * D, f64(w.vBias)));

  const invFreq = inverseFrequencies(spec.rope, D);
  const attnScale = spec.rope.attentionScale ?? 1;
  const halfD = D / 2;
  const rotate = (data: Float64Array, heads: number) => {
    for (let b = 0; b < B; b++) {
      for (let s = 0; s < S; s++) {
        const r = rowOf(layout, B, S, b, s);
        for (let h = 0; h < heads; h++) {
          const base = (r * heads + h) * D;
          for (let i = 0; i < halfD; i++) {
            const a = (start + s) * invFreq[i];
            const c = Math.cos(a) * attnScale;
            const sn = Math.sin(a) * attnScale;
            const x1 = data[base + i];
            const x2 = data[base + i + halfD];
            data[base + i] = x1 * c - x2 * sn;
            data[base + i + halfD] = x2 * c + x1 * sn;
          }
        }
      }
    }
  };
  rotate(q, Nq);
  rotate(k, Nkv);
  round(q);
  round(k);

  // key/value of (b, key j, kv head g, d): the cache below `past`, the new rows from there on
  const kvd = Nkv * D;
  const past = input.cacheKeys && input.cacheValues ? start : 0;
  const keyAt = (b: number, j: number, g: number, d: number, which: 'k' | 'v') => {
    if (j < past) {
      const cache = which === 'k' ? input.cacheKeys! : input.cacheValues!;
      return cache[(j * B + b) * kvd + g * D + d];
    }
    const src = which === 'k' ? k : v;
    return src[rowOf(layout, B, S, b, j - past) * kvd + g * D + d];
  };

  const attn = new Float64Array(rows * Nq * D);
  const scores = new Float64Array(past + S);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      const r = rowOf(layout, B, S, b, s);
      const visible = past + s + 1;
      for (let h = 0; h < Nq; h++) {
        const g = Math.floor(h / group);
        let max = -Infinity;
        for (let j = 0; j < visible; j++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[(r * Nq + h) * D + d] * keyAt(b, j, g, d, 'k');
          scores[j] = dot * spec.scale;
          max = Math.max(max, scores[j]);
        }
        let sum = 0;
        for (let j = 0; j < visible; j++) {
          scores[j] = Math.exp(scores[j] - max);
          sum += scores[j];
          if (half) scores[j] = roundToHalf(scores[j]);
        }
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < visible; j++) acc += scores[j] * keyAt(b, j, g, d, 'v');
          attn[(r * Nq + h) * D + d] = acc / sum;
        }
      }
    }
  }
  const out = linear(round(attn), rows, Nq * D, f64(w.o)!, H, f64(w.oBias));

  // new keys/values in cache order [S, B, Nkv*D]
  const keys = new Float64Array(S * B * kvd);
  const values = new Float64Array(S * B * kvd);
  for (let s = 0; s < S; s++) {
    for (let b = 0; b < B; b++) {
      const r = rowOf(layout, B, S, b, s);
      keys.set(k.subarray(r * kvd, (r + 1) * kvd), (s * B + b) * kvd);
      values.set(v.subarray(r * kvd, (r + 1) * kvd), (s * B + b) * kvd);
    }
  }
  return { out, keys, values };
}
