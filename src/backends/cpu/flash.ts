// The fused forward (FlashAttention-2 schedule) on the CPU: one task per (batch, query head,
// block of BR query rows); each task walks the K/V tiles its rows can see, BC keys at a time:
//   S = scale·Q·Kᵀ (+ qRope·kRopeᵀ)   gemm_nt, K read in place (no transposition)
//   modifiers                         softcap, bias, ALiBi, mask; window clip on edge tiles only
//   online softmax                    softmax_update: m, l, alpha per row; S becomes P
//   O = alpha·O + P·V                 gemm_nn with the rescale folded into the accumulators
// then O / l into the output and m + log(l) into the LSE. Whole tiles outside the rows' key
// window are never visited, so causal and sliding-window attention do proportionally less work.
// Scratch per worker: S tile, O block and the row statistics; nothing of size Sq×Sk exists.
import type { Kernels } from './kernels.js';
import { type ScoreOptions, hasValueModifiers, modifyScores, windowBounds } from './scores.js';

/** An attention input in the staged memory: byte address of (0,0,0,0) and byte strides. */
export interface StagedOperand {
  addr: number;
  sb: number;
  sh: number;
  ss: number;
}

/** Everything a flash task needs, as plain data (it is posted to the workers). */
export interface FlashParams extends ScoreOptions {
  q: StagedOperand;
  k: StagedOperand;
  v: StagedOperand;
  qRope: StagedOperand | undefined;
  kRope: StagedOperand | undefined;
  out: StagedOperand;
  lse: StagedOperand | undefined;
  seqLensQ: Int32Array;
  seqLensK: Int32Array;
  seqStartsQ: Int32Array;
  seqStartsK: Int32Array;
  group: number;
  dimQK: number;
  dimRope: number;
  dimV: number;
  scale: number;
  br: number;
  bc: number;
  /** (b, h, i0) per task, heaviest first. */
  tasks: Int32Array;
}

/** Scratch bytes one worker needs for tiles of br × bc and head dim dimV. */
export function flashScratchBytes(br: number, bc: number, dimV: number): number {
  const dimVp = Math.ceil(dimV / 4) * 4;
  return 4 * (br * bc + br * dimVp + 3 * br) + 3 * 64;
}

/** Keys the rows [i0, i0 + rows) of sequence b can see at all: [lo, hi], clipped to [0, sk - 1]. */
export function blockKeyRange(p: ScoreOptions, sq: number, sk: number, i0: number, rows: number): [number, number] {
  const lo = Math.max(0, windowBounds(p, sq, sk, i0)[0]);
  const hi = Math.min(sk - 1, windowBounds(p, sq, sk, i0 + rows - 1)[1]);
  return [lo, hi];
}

/** Builds the task list: every (b, h, query block), heaviest first so the tail of the job is short. */
export function flashTasks(p: Pick<FlashParams, 'seqLensQ' | 'seqLensK' | 'br' | 'window' | 'softcap' | 'bias' | 'mask' | 'alibi' | 'alibiStrideB'>, heads: number): Int32Array {
  const list: Array<[number, number, number, number]> = [];
  for (let b = 0; b < p.seqLensQ.length; b++) {
    const sq = p.seqLensQ[b];
    const sk = p.seqLensK[b];
    for (let i0 = 0; i0 < sq; i0 += p.br) {
      const rows = Math.min(p.br, sq - i0);
      const [lo, hi] = blockKeyRange(p as ScoreOptions, sq, sk, i0, rows);
      const work = rows * Math.max(0, hi - lo + 1) + rows;
      for (let h = 0; h < heads; h++) list.push([work, b, h, i0]);
    }
  }
  list.sort((x, y) => y[0] - x[0]);
  const tasks = new Int32Array(list.length * 3);
  list.forEach(([, b, h, i0], t) => tasks.set([b, h, i0], 3 * t));
  return tasks;
}

/** Runs task `t` of a flash job with this worker's kernels and scratch. */
export function flashTask(kernels: Kernels, buffer: () => ArrayBufferLike, p: FlashParams, t: number, scratch: number): void {
  const b = p.tasks[3 * t];
  const h = p.tasks[3 * t + 1];
  const i0 = p.tasks[3 * t + 2];
  const hk = Math.floor(h / p.group);
  const sq = p.seqLensQ[b];
  const sk = p.seqLensK[b];
  const rows = Math.min(p.br, sq - i0);
  const dimVp = Math.ceil(p.dimV / 4) * 4;

  // scratch layout: S [br × bc], O [br × dimVp], m, l, alpha [br]
  const S = scratch;
  const lds = 4 * p.bc;
  const O = S + 4 * p.br * p.bc + 64;
  const ldo = 4 * dimVp;
  const M = O + 4 * p.br * dimVp + 64;
  const L = M + 4 * p.br;
  const A = L + 4 * p.br;
  const f = new Float32Array(buffer());
  f.fill(0, O >> 2, (O >> 2) + rows * dimVp);
  f.fill(-Infinity, M >> 2, (M >> 2) + rows);
  f.fill(0, L >> 2, (L >> 2) + rows);

  const row = (o: StagedOperand, seqStarts: Int32Array, head: number, s: number) => o.addr + b * o.sb + head * o.sh + (seqStarts[b] + s) * o.ss;
  const qRow = row(p.q, p.seqStartsQ, h, i0);
  const qRopeRow = p.qRope ? row(p.qRope, p.seqStartsQ, h, i0) : 0;
  const modify = hasValueModifiers(p);
  const [lo, hi] = blockKeyRange(p, sq, sk, i0, rows);
  // tiles inside [needClipBelow, needClipAbove] are visible to every row of the block
  const firstRowHi = windowBounds(p, sq, sk, i0)[1];
  const lastRowLo = windowBounds(p, sq, sk, i0 + rows - 1)[0];

  for (let j0 = lo; j0 <= hi; j0 += p.bc) {
    const cols = Math.min(p.bc, hi + 1 - j0);
    kernels.gemm_nt(
      qRow, p.q.ss, row(p.k, p.seqStartsK, hk, j0), p.k.ss, p.dimQK,
      qRopeRow, p.qRope?.ss ?? 0, p.kRope ? row(p.kRope, p.seqStartsK, hk, j0) : 0, p.kRope?.ss ?? 0, p.dimRope,
      S, lds, rows, cols, p.scale, 0,
    );
    const clip = j0 < lastRowLo || j0 + cols - 1 > firstRowHi;
    if (modify || clip) modifyScores(buffer(), p, { s: S, lds, rows, cols, b, h, i0, j0, sq, sk }, clip);
    kernels.softmax_update(S, lds, rows, cols, M, L, A);
    kernels.gemm_nn(S, lds, row(p.v, p.seqStartsK, hk, j0), p.v.ss, cols, O, ldo, rows, p.dimV, 2, A);
  }

  kernels.finalize_rows(O, ldo, row(p.out, p.seqStartsQ, h, i0), p.out.ss, rows, p.dimV, L);
  if (p.lse) {
    const g = new Float32Array(buffer());
    for (let r = 0; r < rows; r++) {
      const l = g[(L >> 2) + r];
      g[row(p.lse, p.seqStartsQ, h, i0 + r) >> 2] = l === 0 ? -Infinity : g[(M >> 2) + r] + Math.log(l);
    }
  }
}
