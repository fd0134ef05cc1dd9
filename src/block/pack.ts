// Packing the three projections into one: [Wq; Wk; Wv] is [W, H] (rows stacked, W = (Nq + 2 Nkv) D),
// so x [rows, H] times its transpose gives the packed QKV rows [rows, W] in ONE GEMM, and the
// packed bias [bq; bk; bv] (zeros for a missing one) is added in the same pass.
import { halfToFloats } from '../core/dtype.js';
import type { BlockSpec, WeightData } from './config.js';

export interface PackedQkv<T extends WeightData> {
  /** [W, H] */
  weight: T;
  /** [W] float32, or undefined when the block has no q/k/v bias. */
  bias: Float32Array | undefined;
}

export function packQkv(spec: BlockSpec): PackedQkv<WeightData> {
  const w = spec.weights;
  const parts = [w.q, w.k, w.v];
  const total = parts.reduce((n, p) => n + p.length, 0);
  const weight = spec.weightDType === 'float16' ? new Uint16Array(total) : new Float32Array(total);
  let at = 0;
  for (const p of parts) {
    (weight as Float32Array).set(p as Float32Array, at);
    at += p.length;
  }
  return { weight, bias: packBias(spec) };
}

/** [bq; bk; bv] as float32, zeros where a bias is missing; undefined when all are missing. */
export function packBias(spec: BlockSpec): Float32Array | undefined {
  if (!spec.hasQkvBias) return undefined;
  const qd = spec.heads * spec.headDim;
  const kvd = spec.kvHeads * spec.headDim;
  const bias = new Float32Array(qd + 2 * kvd);
  const w = spec.weights;
  if (w.qBias) bias.set(asFloat32(w.qBias), 0);
  if (w.kBias) bias.set(asFloat32(w.kBias), qd);
  if (w.vBias) bias.set(asFloat32(w.vBias), qd + kvd);
  return bias;
}

/** Float32 values of a weight (float16 bits converted; float32 returned as is). */
export function asFloat32(w: WeightData): Float32Array {
  return w instanceof Uint16Array ? halfToFloats(w) : w;
}
