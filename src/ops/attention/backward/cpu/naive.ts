// The unfused backward on the CPU (the baseline benchmarks compare against, as naiveAttention is
// for the forward): per (b, kv head) task, for each query head of the group, the whole Sq×Sk
// matrices are materialised, as an autograd of the three-step forward would keep them:
//   S = scale·Q·Kᵀ -> modifiers -> P = softmax(S) (recomputed from scratch, not from the LSE)
//   dP = dO·Vᵀ (∘ Z),  dV += (P∘Z)ᵀ·dO,  D = rowsum(P ∘ dP),  dS = P ∘ (dP - D)
//   dQ = scale·dS·K,   dK += scale·dSᵀ·Q   (and the rope parts)
// Scratch per worker: five Sq×Sk float32 matrices (S/P, dP/dS, tanh, P∘Z, a transpose).
import { modifyScores } from '../../cpu/scores.js';
import { applyMods } from '../../mods/cpu/stage.js';
import { scoreUnits } from '../../problem.js';
import type { AttentionKernels } from '../../cpu/kernels.js';
import { dropoutTile } from '../../dropout/cpu.js';
import type { BackwardParams, TaskKernels } from './tasks.js';

export interface NaiveBackwardParams extends BackwardParams {
  /** Task t walks units naiveStarts[t] .. naiveStarts[t + 1] - 1, each (b, hk). */
  naiveStarts: Int32Array;
  naiveUnits: Int32Array;
  /** Row stride (bytes) of the Sq×Sk matrices and of their transposes. */
  ldS: number;
  ldT: number;
  /** Rows of the Sq×Sk matrices (the longest sequence, rounded up to 4). */
  rowsS: number;
}

/** Byte addresses of one worker's matrices (S/P, dP/dS, tanh, P∘Z, a transpose) and row statistics. */
export function naiveBackwardScratch(base: number, p: Pick<NaiveBackwardParams, 'ldS' | 'ldT' | 'rowsS'>): { s: number; dp: number; th: number; z: number; tr: number; m: number; l: number; a: number; bytes: number } {
  const matrix = p.rowsS * p.ldS + 64;
  const transposed = (p.ldS / 4) * p.ldT + 64;
  const stats = 4 * p.rowsS + 64;
  const s = base;
  const dp = s + matrix;
  const th = dp + matrix;
  const z = th + matrix;
  const tr = z + matrix;
  const m = tr + transposed;
  const l = m + stats;
  const a = l + stats;
  return { s, dp, th, z, tr, m, l, a, bytes: a + stats - base };
}

const rowAddr = (o: { addr: number; sb: number; sh: number; ss: number }, seqStarts: Int32Array, b: number, head: number, s: number) =>
  o.addr + b * o.sb + head * o.sh + (seqStarts[b] + s) * o.ss;

export function backwardNaiveTask(kernels: TaskKernels & AttentionKernels, buffer: () => ArrayBufferLike, p: NaiveBackwardParams, t: number, scratch: number): void {
  const x = naiveBackwardScratch(scratch, p);
  const { ldS, ldT } = p;
  for (let u = p.naiveStarts[t]; u < p.naiveStarts[t + 1]; u++) {
    const b = p.naiveUnits[2 * u];
    const hk = p.naiveUnits[2 * u + 1];
    const sq = p.seqLensQ[b];
    const sk = p.seqLensK[b];
    if (sq === 0 || sk === 0) continue;
    const kRow = rowAddr(p.k, p.seqStartsK, b, hk, 0);
    const vRow = rowAddr(p.v, p.seqStartsK, b, hk, 0);
    for (let h = hk * p.group; h < (hk + 1) * p.group; h++) {
      const qRow = rowAddr(p.q, p.seqStartsQ, b, h, 0);
      const gRow = rowAddr(p.dOut, p.seqStartsQ, b, h, 0);
      const rope = p.qRope !== undefined;
      // scores in the forward's units (scoreUnits): S = alpha·q·k, softmax weights exp(beta·(S - max))
      const { alpha, beta } = scoreUnits(p.scale);
      kernels.gemm_nt(qRow, p.q.ss, kRow, p.k.ss, p.dimQK,
        rope ? rowAddr(p.qRope!, p.seqStartsQ, b, h, 0) : 0, rope ? p.qRope!.ss : 0,
        rope ? rowAddr(p.kRope!, p.seqStartsK, b, hk, 0) : 0, rope ? p.kRope!.ss : 0, rope ? p.dimRope : 0,
        x.s, ldS, sq, sk, alpha, 0);
      let f = new Float32Array(buffer());
      if (p.softcap > 0) {
        for (let r = 0; r < sq; r++) {
          const s = (x.s + r * ldS) >>> 2;
          const tt = (x.th + r * ldS) >>> 2;
          for (let j = 0; j < sk; j++) {
            const th = Math.tanh((f[s + j] * beta) / p.softcap);
            f[tt + j] = th;
            f[s + j] = (p.softcap / beta) * th;
          }
        }
      }
      modifyScores(buffer(), { ...p, softcap: 0 }, { s: x.s, lds: ldS, rows: sq, cols: sk, b, h, i0: 0, j0: 0, sq, sk }, true, beta);
      // mask functions (and a block mask's) on whole rows; score functions and sinks stay with the fused path
      if (p.mods) applyMods(kernels, p.mods, x.s, ldS, sq, sk, b, h, 0, 0, sq, sk, true, beta);
      f = new Float32Array(buffer());
      f.fill(-Infinity, x.m >>> 2, (x.m >>> 2) + sq);
      f.fill(0, x.l >>> 2, (x.l >>> 2) + sq);
      kernels.softmax_update(x.s, ldS, sq, sk, x.m, x.l, x.a, beta);
      kernels.finalize_rows(x.s, ldS, x.s, ldS, sq, sk, x.l);
      kernels.gemm_nt(gRow, p.dOut.ss, vRow, p.v.ss, p.dimV, 0, 0, 0, 0, 0, x.dp, ldS, sq, sk, 1, 0);
      let pz = x.s;
      if (p.dropout) {
        f = new Float32Array(buffer());
        for (let r = 0; r < sq; r++) f.copyWithin((x.z + r * ldS) >>> 2, (x.s + r * ldS) >>> 2, ((x.s + r * ldS) >>> 2) + sk);
        dropoutTile(buffer(), p.dropout, p.headsQ, b, h, 0, sq, 0, sk, [x.z, x.dp], ldS);
        pz = x.z;
      }
      // dV += (P∘Z)ᵀ·dO
      kernels.transpose(pz, ldS, sq, sk, x.tr, ldT);
      kernels.gemm_nn(x.tr, ldT, gRow, p.dOut.ss, sq, rowAddr(p.dv, p.seqStartsK, b, hk, 0), p.dv.ss, sk, p.dimV, 1, 0);
      // D = rowsum(P ∘ dP), then dS = P ∘ (dP - D)
      f = new Float32Array(buffer());
      for (let r = 0; r < sq; r++) {
        const pr = (x.s + r * ldS) >>> 2;
        const dr = (x.dp + r * ldS) >>> 2;
        let d = 0;
        for (let j = 0; j < sk; j++) d += f[pr + j] * f[dr + j];
        f[(x.l >>> 2) + r] = d;
      }
      kernels.bwd_dscores(x.s, x.dp, ldS, sq, sk, x.l);
      f = new Float32Array(buffer());
      if (p.dBias) {
        const db = p.dBias;
        for (let r = 0; r < sq; r++) {
          const ds = (x.dp + r * ldS) >>> 2;
          const at = db.addr + b * db.sb + h * db.sh + r * db.si;
          for (let j = 0; j < sk; j++) f[(at + j * db.sj) >>> 2] += f[ds + j];
        }
      }
      if (p.softcap > 0) {
        for (let r = 0; r < sq; r++) {
          const ds = (x.dp + r * ldS) >>> 2;
          const tt = (x.th + r * ldS) >>> 2;
          for (let j = 0; j < sk; j++) f[ds + j] *= 1 - f[tt + j] * f[tt + j];
        }
      }
      // dQ = dS·K, dK += dSᵀ·Q (scale applied at the end)
      const dqRow = rowAddr(p.dq, p.seqStartsQ, b, h, 0);
      kernels.gemm_nn(x.dp, ldS, kRow, p.k.ss, sk, dqRow, p.dq.ss, sq, p.dimQK, 0, 0);
      scale(buffer, dqRow, p.dq.ss, sq, p.dimQK, p.scale);
      if (p.dqRope) {
        const at = rowAddr(p.dqRope, p.seqStartsQ, b, h, 0);
        kernels.gemm_nn(x.dp, ldS, rowAddr(p.kRope!, p.seqStartsK, b, hk, 0), p.kRope!.ss, sk, at, p.dqRope.ss, sq, p.dimRope, 0, 0);
        scale(buffer, at, p.dqRope.ss, sq, p.dimRope, p.scale);
      }
      kernels.transpose(x.dp, ldS, sq, sk, x.tr, ldT);
      kernels.gemm_nn(x.tr, ldT, qRow, p.q.ss, sq, rowAddr(p.dk, p.seqStartsK, b, hk, 0), p.dk.ss, sk, p.dimQK, 1, 0);
      if (p.dkRope) kernels.gemm_nn(x.tr, ldT, rowAddr(p.qRope!, p.seqStartsQ, b, h, 0), p.qRope!.ss, sq, rowAddr(p.dkRope, p.seqStartsK, b, hk, 0), p.dkRope.ss, sk, p.dimRope, 1, 0);
    }
    scale(buffer, rowAddr(p.dk, p.seqStartsK, b, hk, 0), p.dk.ss, sk, p.dimQK, p.scale);
    if (p.dkRope) scale(buffer, rowAddr(p.dkRope, p.seqStartsK, b, hk, 0), p.dkRope.ss, sk, p.dimRope, p.scale);
  }
}

function scale(buffer: () => ArrayBufferLike, addr: number, ld: number, rows: number, dim: number, factor: number): void {
  const f = new Float32Array(buffer());
  for (let r = 0; r < rows; r++) {
    const row = (addr + r * ld) >>> 2;
    for (let d = 0; d < dim; d++) f[row + d] *= factor;
  }
}
