// The unfused three-step attention on the CPU pool, the baseline the fused kernel is compared with:
//   job 1  S = scale·Q·Kᵀ (+ qRope·kRopeᵀ) into an Sq×Sk buffer per (batch, head)   gemm_nt
//   job 2  softmax over each whole row (with softcap, bias, ALiBi, mask, window), P normalised in place, LSE
//   job 3  O = P·V                                                                 gemm_nn
// Heads are processed in groups whose S buffers fit a memory budget, three pool jobs per group;
// the S buffers of one group are the call's intermediate memory.
import type { StagedOperand, StagedProblem } from './flash.js';
import type { GemmKernels } from '../../gemm/cpu/kernels.js';
import type { AttentionKernels } from './kernels.js';
import { scoreUnits } from '../problem.js';
import { modifyScores } from './scores.js';
import { applyMods, foldSinks } from '../mods/cpu/stage.js';
import type { ModsHost } from '../mods/cpu/kernel.js';

/** Rows of S per task. */
export const NAIVE_ROWS = 64;

export interface NaiveParams extends StagedProblem {
  /** Per (b, h) pair of this group: b, h, byte address of its S buffer, S row stride in bytes. */
  pairs: Uint32Array;
  /** Per task: pair index, first row. */
  blocks: Int32Array;
}

/** Groups (b, h) pairs so each group's S buffers stay within `budget` bytes (at least one pair). */
export function naiveGroups(seqLensQ: Int32Array, seqLensK: Int32Array, heads: number, budget: number): Array<Array<[number, number, number]>> {
  const groups: Array<Array<[number, number, number]>> = [];
  let current: Array<[number, number, number]> = [];
  let bytes = 0;
  for (let b = 0; b < seqLensQ.length; b++) {
    for (let h = 0; h < heads; h++) {
      const size = sBufferBytes(seqLensQ[b], seqLensK[b]);
      if (current.length > 0 && bytes + size > budget) {
        groups.push(current);
        current = [];
        bytes = 0;
      }
      current.push([b, h, size]);
      bytes += size;
    }
  }
  if (current.length) groups.push(current);
  return groups;
}

export function sBufferStride(sk: number): number {
  return 4 * Math.max(4, Math.ceil(sk / 4) * 4);
}

export function sBufferBytes(sq: number, sk: number): number {
  return sq * sBufferStride(sk);
}

/** Task list for one group: every NAIVE_ROWS-row block of every pair. */
export function naiveBlocks(seqLensQ: Int32Array, pairs: Uint32Array): Int32Array {
  const blocks: number[] = [];
  for (let p = 0; p < pairs.length / 4; p++) {
    const sq = seqLensQ[pairs[4 * p]];
    for (let i0 = 0; i0 < sq; i0 += NAIVE_ROWS) blocks.push(p, i0);
  }
  return Int32Array.from(blocks);
}

interface Block {
  b: number;
  h: number;
  hk: number;
  sAddr: number;
  lds: number;
  i0: number;
  rows: number;
  sq: number;
  sk: number;
  row: (o: StagedOperand, head: number, s: number, starts: Int32Array) => number;
}

function block(p: NaiveParams, t: number): Block {
  const pair = p.blocks[2 * t];
  const i0 = p.blocks[2 * t + 1];
  const b = p.pairs[4 * pair];
  const h = p.pairs[4 * pair + 1];
  const sq = p.seqLensQ[b];
  return {
    b, h, hk: Math.floor(h / p.group), sAddr: p.pairs[4 * pair + 2], lds: p.pairs[4 * pair + 3], i0,
    rows: Math.min(NAIVE_ROWS, sq - i0), sq, sk: p.seqLensK[b],
    row: (o, head, s, starts) => o.addr + b * o.sb + head * o.sh + (starts[b] + s) * o.ss,
  };
}

export function naiveScoresTask(kernels: AttentionKernels & GemmKernels, _buffer: () => ArrayBufferLike, p: NaiveParams, t: number): void {
  const k = block(p, t);
  kernels.gemm_nt(
    k.row(p.q, k.h, k.i0, p.seqStartsQ), p.q.ss, k.row(p.k, k.hk, 0, p.seqStartsK), p.k.ss, p.dimQK,
    p.qRope ? k.row(p.qRope, k.h, k.i0, p.seqStartsQ) : 0, p.qRope?.ss ?? 0, p.kRope ? k.row(p.kRope, k.hk, 0, p.seqStartsK) : 0, p.kRope?.ss ?? 0, p.dimRope,
    k.sAddr + k.i0 * k.lds, k.lds, k.rows, k.sk, scoreUnits(p.scale).alpha, 0,
  );
}

export function naiveSoftmaxTask(kernels: AttentionKernels & GemmKernels & ModsHost, buffer: () => ArrayBufferLike, p: NaiveParams, t: number, scratch: number): void {
  const k = block(p, t);
  const s = k.sAddr + k.i0 * k.lds;
  const { beta } = scoreUnits(p.scale);
  modifyScores(buffer(), p, { s, lds: k.lds, rows: k.rows, cols: k.sk, b: k.b, h: k.h, i0: k.i0, j0: 0, sq: k.sq, sk: k.sk }, true, beta);
  if (p.mods) applyMods(kernels, p.mods, s, k.lds, k.rows, k.sk, k.b, k.h, k.i0, 0, k.sq, k.sk, true, beta);
  const M = scratch;
  const L = M + 4 * NAIVE_ROWS;
  const A = L + 4 * NAIVE_ROWS;
  const f = new Float32Array(buffer());
  f.fill(-Infinity, M >>> 2, (M >>> 2) + k.rows);
  f.fill(0, L >>> 2, (L >>> 2) + k.rows);
  kernels.softmax_update(s, k.lds, k.rows, k.sk, M, L, A, beta);
  const sinkLse = foldSinks(buffer(), p.mods, k.b, k.h, k.i0, k.rows, M, L, beta);
  kernels.finalize_rows(s, k.lds, s, k.lds, k.rows, k.sk, L);
  if (p.lse) {
    const g = new Float32Array(buffer());
    for (let r = 0; r < k.rows; r++) {
      const l = g[(L >>> 2) + r];
      g[k.row(p.lse, k.h, k.i0 + r, p.seqStartsQ) >>> 2] = sinkLse ? sinkLse[r] : l === 0 ? -Infinity : beta * g[(M >>> 2) + r] + Math.log(l);
    }
  }
}

export function naivePvTask(kernels: AttentionKernels & GemmKernels, buffer: () => ArrayBufferLike, p: NaiveParams, t: number): void {
  const k = block(p, t);
  if (p.vNonFinite) {
    // skip weights of 0: a NaN/Inf in v reaches only the rows that give its key a weight
    const f = new Float32Array(buffer());
    for (let r = 0; r < k.rows; r++) {
      const prow = (k.sAddr + (k.i0 + r) * k.lds) >>> 2;
      const orow = k.row(p.out, k.h, k.i0 + r, p.seqStartsQ) >>> 2;
      f.fill(0, orow, orow + p.dimV);
      for (let j = 0; j < k.sk; j++) {
        const pj = f[prow + j];
        if (pj === 0) continue;
        const vrow = k.row(p.v, k.hk, j, p.seqStartsK) >>> 2;
        for (let d = 0; d < p.dimV; d++) f[orow + d] += pj * f[vrow + d];
      }
    }
    return;
  }
  kernels.gemm_nn(k.sAddr + k.i0 * k.lds, k.lds, k.row(p.v, k.hk, 0, p.seqStartsK), p.v.ss, k.sk, k.row(p.out, k.h, k.i0, p.seqStartsQ), p.out.ss, k.rows, p.dimV, 0, 0);
}

export const NAIVE_SCRATCH_BYTES = 3 * 4 * NAIVE_ROWS + 64;
