// The float64 reference of the attention backward, written for clarity, not speed: every backend's
// gradients are checked against it, and it is itself checked against central finite differences of
// the float64 forward reference (finite-difference.ts). Per query row i of head (b, h):
//   s_j = final score (the forward's order: scale·q·k (+ rope part), softcap, + bias, - ALiBi,
//         then the score function m; hidden by window, mask or mask function -> -inf)
//   P_j = softmax(s)_j (with a sink: one more term e^sink, no value),  Z_j = dropout factor (0 or 1 / keepProb)
//   dV_j  += P_j Z_j dO_i                      (summed over the query heads of the group)
//   dP_j   = Z_j (dO_i · v_j),   D_i = Σ_j P_j dP_j  (= dO_i · O_i)
//   dS_j   = P_j (dP_j - D_i) · m'(s_j before m)  = dL/d(score before the score function) -> dBias
//   dSink += -P_sink D_i                       (sinkGrad: per-head logits, summed over rows)
//   dX_j   = dS_j (1 - tanh²(x_j / c))         the softcap chain rule (x = scale·q·k); dS_j without softcap
//   dq_i  += scale dX_j k_j,  dk_j += scale dX_j q_i   (rope parts the same with qRope / kRope)
// Fully masked rows (no visible key) contribute nothing: their gradients stay 0.
// With precision 'float16' (or 'float32') each step is rounded as an unfused backward in that
// dtype would round it (P, dO·Vᵀ, dS, each matmul output): the "naive same-dtype" backward whose
// error sets the float16 tolerance, as referenceAttention(p, 'float16') does for the forward.
import { roundToHalf } from '../../../core/dtype.js';
import type { Tensor } from '../../../core/tensor.js';
import { dropoutRow } from '../dropout/philox.js';
import { type AttentionProblem, type StridedView, keyRange, viewIndex } from '../problem.js';
import type { Precision } from '../reference.js';
import { referenceMods } from '../mods/evaluate.js';
import { backwardModsKernel } from '../mods/plan.js';
import type { BackwardProblem } from './problem.js';
import { sinkGradLayout } from './sink.js';

export interface ReferenceGrads {
  /** Each in its input's physical layout (dq like q, dk like k, ...). */
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  dqRope?: Float64Array;
  dkRope?: Float64Array;
  /** In the bias's own shape, summed over its broadcast dimensions. */
  dBias?: Float64Array;
  /** In the sink logits' shape ([Nq] or [B, Nq]), summed over the rows each logit serves. */
  dSink?: Float64Array;
}

const ROUND: Record<Precision, (x: number) => number> = {
  float64: (x) => x,
  float32: Math.fround,
  float16: roundToHalf,
};

/** The reference gradients of a validated backward problem (its out and lse are not read: the reference recomputes them). */
export function referenceAttentionBackward(bp: BackwardProblem, precision: Precision = 'float64'): ReferenceGrads {
  return referenceGradients(bp.forward, bp.dOut.toFloat32(), bp.biasGrad, precision, bp.sinkGrad);
}

/** The reference gradients of `p` for the output gradient `dOut` (in p.outShape's layout). */
export function referenceGradients(p: AttentionProblem, dOut: ArrayLike<number>, biasGrad = false, precision: Precision = 'float64', sinkGrad = false): ReferenceGrads {
  const round = ROUND[precision];
  const values = (t: Tensor | undefined) => (t ? t.toFloat32() : new Float32Array(0));
  const [q, k, v, qr, kr] = [p.q, p.k, p.v, p.qRope, p.kRope].map((view) => values(view?.tensor));
  const mask = p.mask?.tensor.data as Uint8Array | undefined;
  const bias = p.bias ? values(p.bias.tensor) : undefined;
  const slopes = p.alibi ? values(p.alibi.tensor) : undefined;
  const grads: ReferenceGrads = {
    dq: new Float64Array(q.length),
    dk: new Float64Array(k.length),
    dv: new Float64Array(v.length),
    dqRope: p.qRope ? new Float64Array(qr.length) : undefined,
    dkRope: p.kRope ? new Float64Array(kr.length) : undefined,
    dBias: biasGrad && bias ? new Float64Array(bias.length) : undefined,
  };
  // score / mask / sink functions as the forward reference evaluates them, plus the score
  // function's derivative for the chain rule
  const mods = p.mods ? referenceMods({ ...p.mods.kernel, scoreGrad: backwardModsKernel(p.mods)?.scoreGrad }, p.mods.tensors) : {};
  const sinkLayout = sinkGrad ? sinkGradLayout(p) : undefined;
  if (typeof sinkLayout === 'string') throw new Error(`referenceGradients: ${sinkLayout}`);
  if (sinkLayout) grads.dSink = new Float64Array(sinkLayout.shape.reduce((a, b) => a * b, 1));
  const group = p.headsQ / p.headsKv;
  const scores = new Float64Array(p.seqK);
  const tanhs = new Float64Array(p.seqK);
  const modSlopes = new Float64Array(p.seqK).fill(1);
  const probs = new Float64Array(p.seqK);
  const dS = new Float64Array(p.seqK);
  const keep = new Float64Array(p.seqK).fill(1);
  // (strides read into locals: V8 does not hoist a property load out of a typed-array loop)
  const dot = (a: Float32Array, av: StridedView, ia: number, b: Float32Array, bv: StridedView, ib: number, dim: number) => {
    const sa = av.strides.d;
    const sb = bv.strides.d;
    let s = 0;
    for (let d = 0; d < dim; d++) s += a[ia + d * sa] * b[ib + d * sb];
    return s;
  };
  const dotOut = (i0: number, bv: StridedView, b: Float32Array, ib: number) => {
    const so = p.outStrides.d;
    const sb = bv.strides.d;
    const dim = p.dimV;
    let s = 0;
    for (let d = 0; d < dim; d++) s += dOut[i0 + d * so] * b[ib + d * sb];
    return s;
  };
  /** acc[a + d·stride] += w · src[s + d·stride'] over a head dim. */
  const axpy = (acc: Float64Array, av: StridedView, ia: number, w: number, src: ArrayLike<number>, srcStride: number, is: number, dim: number) => {
    const sa = av.strides.d;
    for (let d = 0; d < dim; d++) acc[ia + d * sa] += w * src[is + d * srcStride];
  };

  for (let b = 0; b < p.batch; b++) {
    const sq = p.seqLensQ[b];
    const sk = p.seqLensK[b];
    for (let h = 0; h < p.headsQ; h++) {
      const hk = Math.floor(h / group);
      const slope = slopes ? slopes[b * p.alibi!.strideB + h] : 0;
      for (let i = 0; i < sq; i++) {
        const [lo, hi] = keyRange(p, b, i);
        const iq = viewIndex(p.q, p.seqStartsQ, b, h, i, 0);
        const iqr = p.qRope ? viewIndex(p.qRope, p.seqStartsQ, b, h, i, 0) : 0;
        let max = -Infinity;
        for (let j = 0; j < sk; j++) {
          let s = -Infinity;
          const maskIndex = p.mask ? b * p.mask.strides.b + h * p.mask.strides.h + i * p.mask.strides.i + j * p.mask.strides.j : 0;
          if (j >= lo && j <= hi && (!mask || mask[maskIndex] !== 0) && (!mods.mask || mods.mask(b, h, i, j, sq, sk))) {
            const ik = viewIndex(p.k, p.seqStartsK, b, hk, j, 0);
            let qk = dot(q, p.q, iq, k, p.k, ik, p.dimQK);
            if (p.qRope) qk += dot(qr, p.qRope, iqr, kr, p.kRope!, viewIndex(p.kRope!, p.seqStartsK, b, hk, j, 0), p.dimRope);
            s = round(round(qk) * p.scale);
            if (p.softcap > 0) {
              tanhs[j] = Math.tanh(s / p.softcap);
              s = round(p.softcap * tanhs[j]);
            }
            if (bias) {
              const st = p.bias!.strides;
              s = round(s + bias[b * st.b + h * st.h + i * st.i + j * st.j]);
            }
            if (slopes) s = round(s - slope * Math.abs(i + sk - sq - j));
            // the score function sees finite scores only, as in the forward
            if (mods.score && Number.isFinite(s)) {
              modSlopes[j] = mods.scoreGrad!(b, h, i, j, sq, sk, s);
              s = round(mods.score(b, h, i, j, sq, sk, s));
            }
          }
          scores[j] = s;
          if (s > max) max = s;
        }
        // fully masked row: no gradient flows through it (with a sink, P_sink = 1 but D = 0)
        if (max === -Infinity) continue;
        const sink = mods.sink ? mods.sink(b, h, i, sq, sk) : -Infinity;
        max = Math.max(max, sink);
        let sum = sink === -Infinity ? 0 : Math.exp(sink - max);
        for (let j = 0; j < sk; j++) sum += Math.exp(scores[j] - max);
        for (let j = 0; j < sk; j++) probs[j] = round(Math.exp(scores[j] - max) / sum);
        if (p.dropout) dropoutRow(p.dropout, p.headsQ, b, h, i, 0, sk, keep);

        const io = b * p.outStrides.b + (p.seqStartsQ[b] + i) * p.outStrides.s + h * p.outStrides.h;
        // dP and D = Σ P·dP; dV += (P∘Z)ᵀ dO
        let D = 0;
        for (let j = 0; j < sk; j++) {
          if (probs[j] === 0) {
            dS[j] = 0;
            continue;
          }
          const iv = viewIndex(p.v, p.seqStartsK, b, hk, j, 0);
          const dp = round(round(dotOut(io, p.v, v, iv)) * keep[j]);
          dS[j] = dp; // dP for now
          D += probs[j] * dp;
          if (keep[j] !== 0) axpy(grads.dv, p.v, iv, round(probs[j] * keep[j]), dOut, p.outStrides.d, io, p.dimV);
        }
        D = precision === 'float64' ? D : Math.fround(D); // softmax backward sums in float32
        if (grads.dSink && sink !== -Infinity) grads.dSink[sinkLayout!.index(b, h)] -= (Math.exp(sink - max) / sum) * D;
        for (let j = 0; j < sk; j++) {
          if (probs[j] === 0) continue;
          const ds = mods.score ? round(round(probs[j] * (dS[j] - D)) * modSlopes[j]) : round(probs[j] * (dS[j] - D));
          if (grads.dBias) {
            const st = p.bias!.strides;
            grads.dBias[b * st.b + h * st.h + i * st.i + j * st.j] += ds;
          }
          const dx = p.softcap > 0 ? round(ds * (1 - tanhs[j] * tanhs[j])) : ds;
          const ik = viewIndex(p.k, p.seqStartsK, b, hk, j, 0);
          axpy(grads.dq, p.q, iq, dx, k, p.k.strides.d, ik, p.dimQK);
          axpy(grads.dk, p.k, ik, dx, q, p.q.strides.d, iq, p.dimQK);
          if (p.qRope) {
            const ikr = viewIndex(p.kRope!, p.seqStartsK, b, hk, j, 0);
            axpy(grads.dqRope!, p.qRope, iqr, dx, kr, p.kRope!.strides.d, ikr, p.dimRope);
            axpy(grads.dkRope!, p.kRope!, ikr, dx, qr, p.qRope.strides.d, iqr, p.dimRope);
          }
        }
      }
    }
  }
  // the scale of q·k, applied once; then every output rounded to the working dtype
  for (const g of [grads.dq, grads.dk, grads.dqRope, grads.dkRope]) if (g) for (let n = 0; n < g.length; n++) g[n] = round(g[n] * p.scale);
  for (const g of [grads.dv, grads.dBias, grads.dSink]) if (g && precision !== 'float64') for (let n = 0; n < g.length; n++) g[n] = round(g[n]);
  return grads;
}
