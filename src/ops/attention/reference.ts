// The float64 reference of attention() semantics, written for clarity, not speed. Tests and the
// `verify` command compare every backend against it. The same loop, rounding after each step to
// float32 or float16, is the "naive same-dtype" attention (QK^T, softmax, PV as three rounded
// steps) whose error sets the tolerance for float16 inputs.
import { roundToHalf } from '../../core/dtype.js';
import type { Tensor } from '../../core/tensor.js';
import { type AttentionProblem, type StridedView, keyRange, viewIndex } from './problem.js';

export type Precision = 'float64' | 'float32' | 'float16';

export interface ReferenceResult {
  /** Output in the problem's output layout (`outShape`). */
  out: Float64Array;
  /** LSE in `lseShape` (natural log; -Infinity for fully masked rows). */
  lse: Float64Array;
}

const ROUND: Record<Precision, (x: number) => number> = {
  float64: (x) => x,
  float32: Math.fround,
  float16: roundToHalf,
};

export function referenceAttention(p: AttentionProblem, precision: Precision = 'float64'): ReferenceResult {
  const round = ROUND[precision];
  const values = (t: Tensor | undefined) => (t ? t.toFloat32() : new Float32Array(0));
  const [q, k, v, qr, kr] = [p.q, p.k, p.v, p.qRope, p.kRope].map((view) => values(view?.tensor));
  const mask = p.mask?.tensor.data as Uint8Array | undefined;
  const bias = p.bias ? values(p.bias.tensor) : undefined;
  const slopes = p.alibi ? values(p.alibi.tensor) : undefined;
  const out = new Float64Array(p.outShape.reduce((a, b) => a * b, 1));
  const lse = new Float64Array(p.lseShape.reduce((a, b) => a * b, 1));
  const group = p.headsQ / p.headsKv;
  const scores = new Float64Array(p.seqK);
  const dot = (a: Float32Array, av: StridedView, b: Float32Array, bv: StridedView, ib: number, hq: number, hk: number, i: number, j: number, dim: number) => {
    let s = 0;
    const ia = viewIndex(av, p.seqStartsQ, ib, hq, i, 0);
    const jb = viewIndex(bv, p.seqStartsK, ib, hk, j, 0);
    for (let d = 0; d < dim; d++) s += a[ia + d * av.strides.d] * b[jb + d * bv.strides.d];
    return s;
  };

  for (let b = 0; b < p.batch; b++) {
    const sq = p.seqLensQ[b];
    const sk = p.seqLensK[b];
    for (let h = 0; h < p.headsQ; h++) {
      const hk = Math.floor(h / group);
      const slope = slopes ? slopes[b * p.alibi!.strideB + h] : 0;
      for (let i = 0; i < sq; i++) {
        const [lo, hi] = keyRange(p, b, i);
        let max = -Infinity;
        for (let j = 0; j < sk; j++) {
          let s = -Infinity;
          const maskIndex = p.mask ? b * p.mask.strides.b + h * p.mask.strides.h + i * p.mask.strides.i + j * p.mask.strides.j : 0;
          if (j >= lo && j <= hi && (!mask || mask[maskIndex] !== 0)) {
            let qk = dot(q, p.q, k, p.k, b, h, hk, i, j, p.dimQK);
            if (p.qRope) qk += dot(qr, p.qRope, kr, p.kRope!, b, h, hk, i, j, p.dimRope);
            s = round(round(qk) * p.scale);
            if (p.softcap > 0) s = round(p.softcap * Math.tanh(s / p.softcap));
            if (bias) {
              const st = p.bias!.strides;
              s = round(s + bias[b * st.b + h * st.h + i * st.i + j * st.j]);
            }
            if (slopes) s = round(s - slope * Math.abs(i + sk - sq - j));
          }
          scores[j] = s;
          if (s > max) max = s;
        }
        const outBase = b * p.outStrides.b + (p.seqStartsQ[b] + i) * p.outStrides.s + h * p.outStrides.h;
        const lseIndex = b * p.lseStrides.b + h * p.lseStrides.h + (p.seqStartsQ[b] + i) * p.lseStrides.s;
        if (max === -Infinity) {
          // fully masked row: output 0 (already), LSE -inf, never NaN
          lse[lseIndex] = -Infinity;
          continue;
        }
        let sum = 0;
        for (let j = 0; j < sk; j++) {
          // softmax runs in float32 in the naive float16 path too (as PyTorch does); P is then rounded
          const e = Math.exp(scores[j] - max);
          scores[j] = e;
          sum += e;
        }
        lse[lseIndex] = max + Math.log(sum);
        for (let d = 0; d < p.dimV; d++) {
          let acc = 0;
          for (let j = 0; j < sk; j++) {
            if (scores[j] === 0) continue;
            const pj = round(scores[j] / sum);
            acc += pj * v[viewIndex(p.v, p.seqStartsK, b, hk, j, d)];
          }
          out[outBase + d * p.outStrides.d] = round(acc);
        }
      }
    }
  }
  return { out, lse };
}
