// The float64 reference of linear attention and Performer, written for clarity: features of every
// row, then each output as the explicit sum over its visible keys (O(N²), test sizes only). Kernels
// are tested against it; Performer's error against exact softmax attention is measured against
// referenceAttention.
import { viewIndex } from '../attention/problem.js';
import { VAR_INDEX, makeEnv, programEvaluator } from '../attention/mods/evaluate.js';
import type { ApproxProblem } from './problem.js';

/** Features of rows [0, seq) of head `head` of `view` (q or k) in sequence b: [seq][F]. */
function features(p: ApproxProblem, which: 'q' | 'k', b: number, head: number): Float64Array[] {
  const base = p.base;
  const view = which === 'q' ? base.q : base.k;
  const seq = which === 'q' ? base.seqLensQ[b] : base.seqLensK[b];
  const x = view.tensor.toFloat32();
  const D = base.dimQK;
  const F = p.features;
  const rows: Float64Array[] = [];
  const row = (s: number) => Float64Array.from({ length: D }, (_, d) => x[viewIndex(view, which === 'q' ? base.seqStartsQ : base.seqStartsK, b, head, s, d)]);
  if (p.kind === 'linear') {
    const f = programEvaluator(p.mapPlan!.kernel.score!, p.mapPlan!.tensors);
    const env = makeEnv();
    env[VAR_INDEX.b] = b;
    env[VAR_INDEX.h] = head;
    for (let s = 0; s < seq; s++) {
      const r = row(s);
      rows.push(Float64Array.from({ length: F }, (_, d) => {
        env[VAR_INDEX.score] = r[d];
        env[VAR_INDEX.kv] = d;
        env[VAR_INDEX.q] = s;
        return f(env);
      }));
    }
    return rows;
  }
  // FAVOR+: φ(x) ∝ exp(ω·x' − |x'|²/2) with x' = sqrt(scale)·x; the constant factors (1/√M, and
  // the stabilisers: per row for queries, one per head for keys) cancel in the ratio
  const W = p.projection!;
  const logits: Float64Array[] = [];
  for (let s = 0; s < seq; s++) {
    const r = row(s).map((value) => value * p.scaleSqrt);
    const half = r.reduce((a, value) => a + value * value, 0) / 2;
    logits.push(Float64Array.from({ length: F }, (_, m) => {
      let dot = 0;
      for (let d = 0; d < D; d++) dot += W[m * D + d] * r[d];
      return which === 'q' ? dot : dot - half;
    }));
  }
  let top = -Infinity;
  if (which === 'k') for (const l of logits) for (const value of l) top = Math.max(top, value);
  for (const l of logits) {
    const shift = which === 'q' ? Math.max(...l) : top;
    rows.push(l.map((value) => Math.exp(value - shift)));
  }
  return rows;
}

/** Output in the problem's output layout (base.outShape), float64. */
export function referenceApprox(p: ApproxProblem): Float64Array {
  const base = p.base;
  const out = new Float64Array(base.outShape.reduce((a, b) => a * b, 1));
  const v = base.v.tensor.toFloat32();
  const group = base.headsQ / base.headsKv;
  for (let b = 0; b < base.batch; b++) {
    const sq = base.seqLensQ[b];
    const sk = base.seqLensK[b];
    for (let hk = 0; hk < base.headsKv; hk++) {
      const fk = features(p, 'k', b, hk);
      for (let h = hk * group; h < (hk + 1) * group; h++) {
        const fq = features(p, 'q', b, h);
        for (let i = 0; i < sq; i++) {
          const last = p.causal ? Math.min(sk - 1, i + sk - sq) : sk - 1;
          const acc = new Float64Array(base.dimV);
          let den = 0;
          for (let j = 0; j <= last; j++) {
            let w = 0;
            for (let f = 0; f < p.features; f++) w += fq[i][f] * fk[j][f];
            den += w;
            for (let d = 0; d < base.dimV; d++) acc[d] += w * v[viewIndex(base.v, base.seqStartsK, b, hk, j, d)];
          }
          const o = b * base.outStrides.b + (base.seqStartsQ[b] + i) * base.outStrides.s + h * base.outStrides.h;
          for (let d = 0; d < base.dimV; d++) out[o + d * base.outStrides.d] = den === 0 ? 0 : acc[d] / den;
        }
      }
    }
  }
  return out;
}

/** Output rows `rows` of (b, h) only, float64, [rows.length][Dv] (spot checks of large runs). */
export function referenceApproxRows(p: ApproxProblem, b: number, h: number, rows: readonly number[]): Float64Array[] {
  const base = p.base;
  const hk = Math.floor(h / (base.headsQ / base.headsKv));
  const fk = features(p, 'k', b, hk);
  const fq = features(p, 'q', b, h);
  const v = base.v.tensor.toFloat32();
  const sq = base.seqLensQ[b];
  const sk = base.seqLensK[b];
  return rows.map((i) => {
    const last = p.causal ? Math.min(sk - 1, i + sk - sq) : sk - 1;
    const acc = new Float64Array(base.dimV);
    let den = 0;
    for (let j = 0; j <= last; j++) {
      let w = 0;
      for (let f = 0; f < p.features; f++) w += fq[i][f] * fk[j][f];
      den += w;
      for (let d = 0; d < base.dimV; d++) acc[d] += w * v[viewIndex(base.v, base.seqStartsK, b, hk, j, d)];
    }
    return acc.map((x) => (den === 0 ? 0 : x / den));
  });
}
