// The float64 reference of attention() semantics, written for clarity, not speed. Tests and the
// `verify` command compare every backend against it. The same loop, rounding after each step to
// float32 or float16, is the "naive same-dtype" attention (QK^T, softmax, PV as three rounded
// steps) whose error sets the tolerance for float16 inputs.
// Non-finite values follow the rule every backend follows (README "Failure behaviour"): a key
// the row does not see never reaches it; a -inf score hides its key; a NaN or +inf score makes
// the row's output and LSE NaN; a NaN/inf value in v reaches the output columns it is in through
// the weights p > 0. Scores are kept in units of `beta = max(1, |scale|)` (see scoreUnits), as
// the kernels keep them, so a huge finite scale rounds the same way and never overflows.
import { roundToHalf } from '../../core/dtype.js';
import type { Tensor } from '../../core/tensor.js';
import { type AttentionProblem, type StridedView, keyRange, scoreUnits, viewIndex } from './problem.js';
import { referenceMods } from './mods/evaluate.js';

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
  const { alpha, beta } = scoreUnits(p.scale);
  // score / mask / sink functions: the score function after the built-in options, on visible
  // finite scores only (in natural units); the mask with the others; the sink as one more softmax
  // term without a value
  const mods = p.mods ? referenceMods(p.mods.kernel, p.mods.tensors) : {};
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
        let poisoned = false;
        for (let j = 0; j < sk; j++) {
          // scores in units of beta: s / beta (scoreUnits)
          let s = -Infinity;
          const maskIndex = p.mask ? b * p.mask.strides.b + h * p.mask.strides.h + i * p.mask.strides.i + j * p.mask.strides.j : 0;
          if (j >= lo && j <= hi && (!mask || mask[maskIndex] !== 0) && (!mods.mask || mods.mask(b, h, i, j, sq, sk))) {
            let qk = dot(q, p.q, k, p.k, b, h, hk, i, j, p.dimQK);
            if (p.qRope) qk += dot(qr, p.qRope, kr, p.kRope!, b, h, hk, i, j, p.dimRope);
            s = round(round(qk) * alpha);
            if (p.softcap > 0) s = round((p.softcap / beta) * Math.tanh((s * beta) / p.softcap));
            if (bias) {
              const st = p.bias!.strides;
              s = round(s + bias[b * st.b + h * st.h + i * st.i + j * st.j] / beta);
            }
            if (slopes) s = round(s - (slope / beta) * Math.abs(i + sk - sq - j));
            if (Number.isNaN(s) || s === Infinity) poisoned = true;
            else if (mods.score && s !== -Infinity) {
              s = round(mods.score(b, h, i, j, sq, sk, s * beta) / beta);
              if (Number.isNaN(s) || s === Infinity) poisoned = true;
            }
          }
          scores[j] = s;
          if (s > max) max = s;
        }
        const outBase = b * p.outStrides.b + (p.seqStartsQ[b] + i) * p.outStrides.s + h * p.outStrides.h;
        const lseIndex = b * p.lseStrides.b + h * p.lseStrides.h + (p.seqStartsQ[b] + i) * p.lseStrides.s;
        if (poisoned) {
          // a NaN or +inf score: softmax is undefined there (PyTorch gives NaN), never a silent 0
          for (let d = 0; d < p.dimV; d++) out[outBase + d * p.outStrides.d] = NaN;
          lse[lseIndex] = NaN;
          continue;
        }
        const sink = mods.sink ? mods.sink(b, h, i, sq, sk) : -Infinity;
        if (max === -Infinity) {
          // fully masked row: output 0 (already), LSE -inf (the sink's logit with a sink), never NaN
          lse[lseIndex] = sink;
          continue;
        }
        // scores are in units of beta, the sink in natural units
        max = Math.max(max, sink / beta);
        let sum = sink === -Infinity ? 0 : Math.exp(sink - beta * max);
        for (let j = 0; j < sk; j++) {
          // softmax runs in float32 in the naive float16 path too (as PyTorch does); P is then rounded
          const e = Math.exp(beta * (scores[j] - max));
          scores[j] = e;
          sum += e;
        }
        lse[lseIndex] = beta * max + Math.log(sum);
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

