// The demo's float64 spot check. The full float64 reference would take minutes at the demo's
// lengths, so we check a few output rows: row i of head h only depends on q[b, h, i] and the keys
// the window lets it see, so a one-query problem over exactly those keys (no causal needed) has
// the same output row, and the float64 reference of that is cheap.
import type { AttentionProblem } from '../ops/attention/index.js';
import { keyRange } from '../ops/attention/index.js';
import { referenceAttention } from '../ops/attention/index.js';
import { validateAttention } from '../ops/attention/index.js';
import type { AttentionResult } from '../ops/attention/index.js';
import { Tensor } from '../core/tensor.js';
import { checkF32, checkLowPrecision, compare } from '../testing/compare.js';
import { uniform } from '../testing/random.js';

export interface SpotCheck {
  rows: number;
  ok: boolean;
  /** Largest max|row - ref| / max|ref| over the checked rows. */
  fusedRelError: number;
  naiveRelError: number | undefined;
  summary: string;
}

/** Checks `count` rows (first, last, random) of BNSD demo results against float64. */
export function spotCheckRows(p: AttentionProblem, fused: AttentionResult, naive: AttentionResult | undefined, count: number, seed: number): SpotCheck {
  if (p.layout !== 'BNSD' || p.mask || p.bias || p.alibi || p.qRope || p.softcap) {
    throw new Error('spotCheckRows handles the demo problem only (BNSD, no mask/bias/alibi/rope/softcap)');
  }
  const rand = uniform(seed + 99);
  const pick = () => [Math.floor(rand() * p.batch), Math.floor(rand() * p.headsQ), Math.floor(rand() * p.seqQ)];
  const rows = [[0, 0, 0], [p.batch - 1, p.headsQ - 1, p.seqQ - 1], ...Array.from({ length: Math.max(0, count - 2) }, pick)];
  const results = [fused, naive].filter((r): r is AttentionResult => r !== undefined).map((r) => r.out.toFloat32());
  const worst = results.map(() => 0);
  const failures: string[] = [];
  for (const [b, h, i] of rows) {
    const sub = rowProblem(p, b, h, i);
    const ref = referenceAttention(sub).out;
    const naive16 = p.dtype === 'float16' ? referenceAttention(sub, 'float16').out : undefined;
    const offset = ((b * p.headsQ + h) * p.seqQ + i) * p.dimV;
    results.forEach((out, n) => {
      const got = out.subarray(offset, offset + p.dimV);
      const what = `${n === 0 ? 'fused' : 'naive'} row (b=${b}, h=${h}, i=${i})`;
      const failure = naive16 ? checkLowPrecision(what, got, naive16, ref) : checkF32(what, got, ref);
      if (failure) failures.push(failure);
      worst[n] = Math.max(worst[n], compare(got, ref).relError);
    });
  }
  const names = ['fused', 'naive'];
  const summary = failures.length > 0
    ? failures.slice(0, 2).join('; ')
    : worst.map((w, n) => `${names[n]} max rel err ${w.toExponential(1)}`).join(', ');
  return { rows: rows.length, ok: failures.length === 0, fusedRelError: worst[0], naiveRelError: worst[1], summary };
}

/** The one-query problem whose output is row (b, h, i) of `p`. */
function rowProblem(p: AttentionProblem, b: number, h: number, i: number) {
  const hk = Math.floor(h / (p.headsQ / p.headsKv));
  const [lo, hi] = keyRange(p, b, i);
  const keys = Math.max(0, hi - lo + 1);
  const slice = (t: Tensor, heads: number, seq: number, dim: number, head: number, from: number, rows: number) => {
    const start = ((b * heads + head) * seq + from) * dim;
    const data = (t.data as Float32Array | Uint16Array).slice(start, start + rows * dim);
    return Tensor.fromData(data, [1, 1, rows, dim], t.dtype);
  };
  const q = slice(p.q.tensor, p.headsQ, p.seqQ, p.dimQK, h, i, 1);
  const k = slice(p.k.tensor, p.headsKv, p.seqK, p.dimQK, hk, lo, keys);
  const v = slice(p.v.tensor, p.headsKv, p.seqK, p.dimV, hk, lo, keys);
  return validateAttention(q, k, v, { scale: p.scale });
}
