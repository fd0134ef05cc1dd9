// The fused backward's tasks on the CPU pool (FlashAttention-2's backward, no atomics):
//   bwd-pre   per (b, h, block of rows): D = rowsum(dO ∘ O); LSE of fully masked rows -> +inf
//   bwd-kv    per (b, kv head, block of BC keys): for each query head of the group and each block of
//             BR queries that can see the keys:
//               S = scale·Q·Kᵀ (+ rope part)   gemm_nt        -> modifiers (softcap kept as T = tanh)
//                                              -> score / mask functions (mods: S kept as U for the chain rule;
//                                                 tiles a block mask hides are skipped, its full ones not masked)
//               P = exp(S - lse)               bwd_probs      (recomputed: no Sq×Sk buffer; the LSE holds any sink)
//               dP = dO·Vᵀ                     gemm_nt        -> dropout: dP ∘= Z (dropout_rows, WASM SIMD Philox)
//               dV += (P∘Z)ᵀ·dO                transpose + gemm_nn
//               dS = P ∘ (dP - D)              bwd_dscores    -> score function: dS ∘= m'(U);
//                                                                dBias += dS; softcap: dS ∘= 1 - T²
//               dK += dSᵀ·Q (dkRope += dSᵀ·qRope)  transpose + gemm_nn;   finally dK ×= scale
//   bwd-q     per (b, query head, block of BR rows): the same S, P, dP, dS over the visible key
//             blocks, then dQ += dS·K (dqRope += dS·kRope); finally dQ ×= scale.
//   bwd-head  instead of bwd-kv + bwd-q: one task per (b, kv head, key slice) computes each tile
//             once for dV, dK and dQ (5 matmuls, not 7); slice s > 0 writes its dQ into a partial
//             of its own (slices.ts), and
//   bwd-dq-sum per (b, h, block of rows): dQ = scale · (dQ + partial 1 + … ) in slice order.
// Every output element is written by exactly one task, in a fixed order: results are bit-identical
// from run to run. With dBias over a broadcast bias, the kv tasks that would add into the same
// dBias elements are folded into one task (BiasFold) that walks them in order.
import type { BackwardKernels } from './kernels.js';
import { type CompiledMods, type ModsHost, modsKernel } from '../../mods/cpu/kernel.js';
import { type StagedMods, applyMods } from '../../mods/cpu/stage.js';
import { EMPTY, FULL, PARTIAL } from '../../block-mask/grid.js';
import { tileStatus } from '../../block-mask/kernel-grid.js';
import type { GemmKernels } from '../../../gemm/cpu/kernels.js';
import type { StagedOperand } from '../../cpu/flash.js';
import { type BroadcastOperand, type ScoreOptions, modifyScores, windowBounds } from '../../cpu/scores.js';
import type { DropoutSpec } from '../../dropout/philox.js';
import { scoreUnits } from '../../problem.js';

export type TaskKernels = BackwardKernels & GemmKernels & ModsHost;

/** Rows per query block and keys per key block. */
export const BWD_ROWS = 64;
export const BWD_KEYS = 64;

/** The staged backward problem, as plain data (posted to the workers). */
export interface BackwardParams extends ScoreOptions {
  q: StagedOperand;
  k: StagedOperand;
  v: StagedOperand;
  qRope: StagedOperand | undefined;
  kRope: StagedOperand | undefined;
  out: StagedOperand;
  dOut: StagedOperand;
  /** The forward's LSE as given, and the two per-row statistics the tasks read (LSE layout, rows contiguous). */
  lse: StagedOperand;
  stats: StagedOperand;
  delta: StagedOperand;
  dq: StagedOperand;
  dk: StagedOperand;
  dv: StagedOperand;
  dqRope: StagedOperand | undefined;
  dkRope: StagedOperand | undefined;
  dBias: BroadcastOperand | undefined;
  seqLensQ: Int32Array;
  seqLensK: Int32Array;
  seqStartsQ: Int32Array;
  seqStartsK: Int32Array;
  headsQ: number;
  group: number;
  dimQK: number;
  dimRope: number;
  dimV: number;
  scale: number;
  dropout: DropoutSpec | undefined;
  /** The score / mask functions (mods/cpu/stage.ts), without the sink: the LSE holds it. */
  mods: StagedMods | undefined;
  /** The score function's derivative, compiled as a score function of its own (same data). */
  modsGrad: CompiledMods | undefined;
  /** bwd-pre: (b, h, i0) per task. */
  preTasks: Int32Array;
  /** bwd-kv: task t walks units kvStarts[t] .. kvStarts[t + 1] - 1, each (b, hk, j0). */
  kvStarts: Int32Array;
  kvUnits: Int32Array;
  /** bwd-q: (b, h, i0) per task. */
  qTasks: Int32Array;
  /** bwd-head: the key slices (slices.ts SlicePlan: count, keys, rows) and the byte addresses of the dQ (and dqRope) partials of slices 1 .. count - 1, laid out as dq (dqRope). */
  sliceCount: number;
  sliceKeys: Int32Array;
  sliceRows: Int32Array;
  dqParts: number[];
  dqRopeParts: number[];
}

/** One worker's tiles (byte addresses): S/P, dP/dS, tanh (softcap), P∘Z (dropout), transposed, U (score before the score function). */
export interface BackwardScratch {
  s: number;
  dp: number;
  t: number;
  z: number;
  tr: number;
  u: number;
  bytes: number;
}

/** Row stride of the S-shaped tiles and of the transposed tile, in bytes. */
export const LDS = 4 * BWD_KEYS;
export const LDT = 4 * BWD_ROWS;

export function backwardScratch(base: number): BackwardScratch {
  const tile = BWD_ROWS * BWD_KEYS * 4 + 64;
  return { s: base, dp: base + tile, t: base + 2 * tile, z: base + 3 * tile, tr: base + 4 * tile, u: base + 5 * tile, bytes: 6 * tile };
}

const rowAddr = (o: StagedOperand, seqStarts: Int32Array, b: number, head: number, s: number) => o.addr + b * o.sb + head * o.sh + (seqStarts[b] + s) * o.ss;

/** bwd-pre task t: D = rowsum(dO ∘ O) and LSE' = LSE (+inf where LSE is -inf) for up to BWD_ROWS rows. */
export function backwardPreTask(_kernels: TaskKernels, buffer: () => ArrayBufferLike, p: BackwardParams, t: number): void {
  const b = p.preTasks[3 * t];
  const h = p.preTasks[3 * t + 1];
  const i0 = p.preTasks[3 * t + 2];
  const rows = Math.min(BWD_ROWS, p.seqLensQ[b] - i0);
  const f = new Float32Array(buffer());
  for (let r = 0; r < rows; r++) {
    const o = rowAddr(p.out, p.seqStartsQ, b, h, i0 + r) >>> 2;
    const g = rowAddr(p.dOut, p.seqStartsQ, b, h, i0 + r) >>> 2;
    let d = 0;
    for (let c = 0; c < p.dimV; c++) d += f[o + c] * f[g + c];
    f[rowAddr(p.delta, p.seqStartsQ, b, h, i0 + r) >>> 2] = d;
    const lse = f[rowAddr(p.lse, p.seqStartsQ, b, h, i0 + r) >>> 2];
    f[rowAddr(p.stats, p.seqStartsQ, b, h, i0 + r) >>> 2] = lse === -Infinity ? Infinity : lse;
  }
}

/** A tile of the problem: query rows i0 .. i0 + rows - 1 of head (b, h), keys j0 .. j0 + cols - 1. */
interface Tile {
  b: number;
  h: number;
  hk: number;
  i0: number;
  rows: number;
  j0: number;
  cols: number;
  sq: number;
  sk: number;
  /** Whether the mask function runs on the tile (not on a FULL block of a block mask). */
  withMask: boolean;
}

/**
 * The tile at (b, h, hk, i0, rows, j0, cols), or undefined when a block mask hides all of it: then
 * P = 0 and dS = 0 there, so skipping it changes no gradient (and no bit).
 */
function tileAt(p: BackwardParams, b: number, h: number, hk: number, i0: number, rows: number, j0: number, cols: number, sq: number, sk: number): Tile | undefined {
  const grid = p.mods?.grid;
  const status = grid ? tileStatus(grid, b, h, i0, rows, j0, cols) : PARTIAL;
  return status === EMPTY ? undefined : { b, h, hk, i0, rows, j0, cols, sq, sk, withMask: status !== FULL };
}

/**
 * Leaves dS (already ∘ (1 - T²) when softcap is on, so it is dL/d(scale·q·k)) in x.dp and, for the
 * dV update, P∘Z in `pz` (x.s without dropout, x.z with it). Adds the tile's dS into dBias when asked.
 */
function tileGradient(kernels: TaskKernels, buffer: () => ArrayBufferLike, p: BackwardParams, x: BackwardScratch, tile: Tile): number {
  const { b, h, hk, i0, rows, j0, cols } = tile;
  const qRow = rowAddr(p.q, p.seqStartsQ, b, h, i0);
  const kRow = rowAddr(p.k, p.seqStartsK, b, hk, j0);
  const rope = p.qRope !== undefined;
  // scores in the forward's units: S = alpha·q·k with beta·alpha = scale (scoreUnits), P = exp(beta·S - lse)
  const { alpha, beta } = scoreUnits(p.scale);
  kernels.gemm_nt(qRow, p.q.ss, kRow, p.k.ss, p.dimQK,
    rope ? rowAddr(p.qRope!, p.seqStartsQ, b, h, i0) : 0, rope ? p.qRope!.ss : 0,
    rope ? rowAddr(p.kRope!, p.seqStartsK, b, hk, j0) : 0, rope ? p.kRope!.ss : 0, rope ? p.dimRope : 0,
    x.s, LDS, rows, cols, alpha, 0);
  if (p.softcap > 0) {
    // T = tanh(scale·q·k / c) kept for the chain rule; S = (c / beta)·T as the forward scores it
    const f = new Float32Array(buffer());
    const c = p.softcap;
    for (let r = 0; r < rows; r++) {
      const s = (x.s + r * LDS) >>> 2;
      const tt = (x.t + r * LDS) >>> 2;
      for (let j = 0; j < cols; j++) {
        const th = Math.tanh((f[s + j] * beta) / c);
        f[tt + j] = th;
        f[s + j] = (c / beta) * th;
      }
    }
  }
  modifyScores(buffer(), { ...p, softcap: 0 }, { s: x.s, lds: LDS, rows, cols, b, h, i0, j0, sq: tile.sq, sk: tile.sk }, true, beta);
  if (p.mods) {
    if (p.modsGrad) copyTile(buffer, x.s, x.u, rows, cols);
    applyMods(kernels, p.mods, x.s, LDS, rows, cols, b, h, i0, j0, tile.sq, tile.sk, tile.withMask, beta);
  }
  kernels.bwd_probs(x.s, LDS, rows, cols, rowAddr(p.stats, p.seqStartsQ, b, h, i0), beta);
  kernels.gemm_nt(rowAddr(p.dOut, p.seqStartsQ, b, h, i0), p.dOut.ss, rowAddr(p.v, p.seqStartsK, b, hk, j0), p.v.ss, p.dimV, 0, 0, 0, 0, 0, x.dp, LDS, rows, cols, 1, 0);
  let pz = x.s;
  if (p.dropout) {
    const f = new Float32Array(buffer());
    for (let r = 0; r < rows; r++) f.copyWithin((x.z + r * LDS) >>> 2, (x.s + r * LDS) >>> 2, ((x.s + r * LDS) >>> 2) + cols);
    // the keep mask in WASM SIMD (dropout/wasm.ts; x.tr is free until the transposes)
    const d = p.dropout;
    kernels.dropout_rows(x.z, x.dp, LDS, rows, cols, i0, j0, b * p.headsQ + h, d.offset, d.seedLo, d.seedHi, d.threshold, d.scale, x.tr);
    pz = x.z;
  }
  kernels.bwd_dscores(x.s, x.dp, LDS, rows, cols, rowAddr(p.delta, p.seqStartsQ, b, h, i0));
  if (p.modsGrad) scoreChainRule(kernels, buffer, p, x, tile, beta);
  if (p.dBias) {
    const f = new Float32Array(buffer());
    const db = p.dBias;
    for (let r = 0; r < rows; r++) {
      const ds = (x.dp + r * LDS) >>> 2;
      const at = db.addr + b * db.sb + h * db.sh + (i0 + r) * db.si + j0 * db.sj;
      for (let j = 0; j < cols; j++) f[(at + j * db.sj) >>> 2] += f[ds + j];
    }
  }
  if (p.softcap > 0) {
    const f = new Float32Array(buffer());
    for (let r = 0; r < rows; r++) {
      const ds = (x.dp + r * LDS) >>> 2;
      const tt = (x.t + r * LDS) >>> 2;
      for (let j = 0; j < cols; j++) f[ds + j] *= 1 - f[tt + j] * f[tt + j];
    }
  }
  return pz;
}

function copyTile(buffer: () => ArrayBufferLike, from: number, to: number, rows: number, cols: number): void {
  const f = new Float32Array(buffer());
  for (let r = 0; r < rows; r++) f.copyWithin((to + r * LDS) >>> 2, (from + r * LDS) >>> 2, ((from + r * LDS) >>> 2) + cols);
}

/**
 * dS ∘= m'(U), the score function's chain rule: its derivative program runs as a score function
 * on U (the scores it saw, in units of beta), giving m'(beta·U) / beta. Pairs with dS = 0 (hidden,
 * P = 0) are skipped, so a hidden pair's -inf never meets the derivative.
 */
function scoreChainRule(kernels: TaskKernels, buffer: () => ArrayBufferLike, p: BackwardParams, x: BackwardScratch, tile: Tile, beta: number): void {
  const { b, h, i0, rows, j0, cols } = tile;
  modsKernel(kernels, p.modsGrad!).apply(x.u, LDS, rows, cols, b, h, i0, j0, tile.sq, tile.sk, p.mods!.data, 0, beta);
  const f = new Float32Array(buffer());
  for (let r = 0; r < rows; r++) {
    const ds = (x.dp + r * LDS) >>> 2;
    const u = (x.u + r * LDS) >>> 2;
    for (let j = 0; j < cols; j++) if (f[ds + j] !== 0) f[ds + j] *= f[u + j] * beta;
  }
}

/** rows × dim floats at `addr` (row stride ld bytes) times `factor`. */
function scaleRows(buffer: () => ArrayBufferLike, addr: number, ld: number, rows: number, dim: number, factor: number): void {
  const f = new Float32Array(buffer());
  for (let r = 0; r < rows; r++) {
    const row = (addr + r * ld) >>> 2;
    for (let d = 0; d < dim; d++) f[row + d] *= factor;
  }
}

/** Queries of sequence b that can see some key of [j0, j1] (window only), [lo, hi] clipped. */
export function queriesOfKeys(p: Pick<ScoreOptions, 'window'>, sq: number, sk: number, j0: number, j1: number): [number, number] {
  const diag = p.window.bottomRight ? sk - sq : 0;
  const lo = p.window.right === Infinity ? 0 : Math.max(0, j0 - diag - p.window.right);
  const hi = p.window.left === Infinity ? sq - 1 : Math.min(sq - 1, j1 - diag + p.window.left);
  return [lo, hi];
}

/** bwd-kv task t: dK, dV (and dkRope) of each of its units' key blocks. */
export function backwardKvTask(kernels: TaskKernels, buffer: () => ArrayBufferLike, p: BackwardParams, t: number, scratch: number): void {
  const x = backwardScratch(scratch);
  for (let u = p.kvStarts[t]; u < p.kvStarts[t + 1]; u++) {
    const b = p.kvUnits[3 * u];
    const hk = p.kvUnits[3 * u + 1];
    const j0 = p.kvUnits[3 * u + 2];
    const sq = p.seqLensQ[b];
    const sk = p.seqLensK[b];
    const cols = Math.min(BWD_KEYS, sk - j0);
    const dkRow = rowAddr(p.dk, p.seqStartsK, b, hk, j0);
    const dvRow = rowAddr(p.dv, p.seqStartsK, b, hk, j0);
    const dkrRow = p.dkRope ? rowAddr(p.dkRope, p.seqStartsK, b, hk, j0) : 0;
    const [lo, hi] = queriesOfKeys(p, sq, sk, j0, j0 + cols - 1);
    for (let h = hk * p.group; h < (hk + 1) * p.group; h++) {
      for (let i0 = lo; i0 <= hi; i0 += BWD_ROWS) {
        const rows = Math.min(BWD_ROWS, hi + 1 - i0);
        const tile = tileAt(p, b, h, hk, i0, rows, j0, cols, sq, sk);
        if (!tile) continue;
        const pz = tileGradient(kernels, buffer, p, x, tile);
        // dV += (P∘Z)ᵀ·dO; dK += dSᵀ·Q (+ rope)
        kernels.transpose(pz, LDS, rows, cols, x.tr, LDT);
        kernels.gemm_nn(x.tr, LDT, rowAddr(p.dOut, p.seqStartsQ, b, h, i0), p.dOut.ss, rows, dvRow, p.dv.ss, cols, p.dimV, 1, 0);
        kernels.transpose(x.dp, LDS, rows, cols, x.tr, LDT);
        kernels.gemm_nn(x.tr, LDT, rowAddr(p.q, p.seqStartsQ, b, h, i0), p.q.ss, rows, dkRow, p.dk.ss, cols, p.dimQK, 1, 0);
        if (p.dkRope) kernels.gemm_nn(x.tr, LDT, rowAddr(p.qRope!, p.seqStartsQ, b, h, i0), p.qRope!.ss, rows, dkrRow, p.dkRope.ss, cols, p.dimRope, 1, 0);
      }
    }
    scaleRows(buffer, dkRow, p.dk.ss, cols, p.dimQK, p.scale);
    if (p.dkRope) scaleRows(buffer, dkrRow, p.dkRope.ss, cols, p.dimRope, p.scale);
  }
}

/**
 * bwd-head task t: everything of its units (b, kv head, slice s): for each key block of the slice,
 * each query head of the group and each visible query block, one tile gives dV, dK and dQ at once
 * (5 matmuls, S and dP computed once). dQ is accumulated in key order into rows only this unit
 * writes: dq itself for slice 0, the slice's partial (zeroed here over the query blocks its tiles
 * reach) for the others; bwd-dq-sum adds them up and scales. With one slice the task scales dQ.
 */
export function backwardHeadTask(kernels: TaskKernels, buffer: () => ArrayBufferLike, p: BackwardParams, t: number, scratch: number): void {
  const x = backwardScratch(scratch);
  const n = p.sliceCount;
  for (let u = p.kvStarts[t]; u < p.kvStarts[t + 1]; u++) {
    const b = p.kvUnits[3 * u];
    const hk = p.kvUnits[3 * u + 1];
    const s = p.kvUnits[3 * u + 2];
    const sq = p.seqLensQ[b];
    const sk = p.seqLensK[b];
    const dq = s === 0 ? p.dq : { ...p.dq, addr: p.dqParts[s - 1] };
    const dqRope = !p.dqRope || s === 0 ? p.dqRope : { ...p.dqRope, addr: p.dqRopeParts[s - 1] };
    if (s > 0) {
      const first = p.sliceRows[2 * (b * n + s)];
      const last = p.sliceRows[2 * (b * n + s) + 1];
      const r0 = first * BWD_ROWS;
      const r1 = Math.min(sq, (last + 1) * BWD_ROWS);
      for (let h = hk * p.group; h < (hk + 1) * p.group && r0 < r1; h++) {
        zeroRows(buffer, rowAddr(dq, p.seqStartsQ, b, h, r0), dq.ss, r1 - r0, p.dimQK);
        if (dqRope) zeroRows(buffer, rowAddr(dqRope, p.seqStartsQ, b, h, r0), dqRope.ss, r1 - r0, p.dimRope);
      }
    }
    const jEnd = Math.min(sk, p.sliceKeys[b * (n + 1) + s + 1] * BWD_KEYS);
    for (let j0 = p.sliceKeys[b * (n + 1) + s] * BWD_KEYS; j0 < jEnd; j0 += BWD_KEYS) {
      const cols = Math.min(BWD_KEYS, sk - j0);
      const dkRow = rowAddr(p.dk, p.seqStartsK, b, hk, j0);
      const dvRow = rowAddr(p.dv, p.seqStartsK, b, hk, j0);
      const dkrRow = p.dkRope ? rowAddr(p.dkRope, p.seqStartsK, b, hk, j0) : 0;
      const kRow = rowAddr(p.k, p.seqStartsK, b, hk, j0);
      const [lo, hi] = queriesOfKeys(p, sq, sk, j0, j0 + cols - 1);
      for (let h = hk * p.group; h < (hk + 1) * p.group; h++) {
        // query blocks aligned to BWD_ROWS, so each dQ row block is the same from key block to key block
        for (let i0 = lo - (lo % BWD_ROWS); i0 <= hi; i0 += BWD_ROWS) {
          const rows = Math.min(BWD_ROWS, sq - i0);
          const tile = tileAt(p, b, h, hk, i0, rows, j0, cols, sq, sk);
          if (!tile) continue;
          const pz = tileGradient(kernels, buffer, p, x, tile);
          kernels.transpose(pz, LDS, rows, cols, x.tr, LDT);
          kernels.gemm_nn(x.tr, LDT, rowAddr(p.dOut, p.seqStartsQ, b, h, i0), p.dOut.ss, rows, dvRow, p.dv.ss, cols, p.dimV, 1, 0);
          kernels.gemm_nn(x.dp, LDS, kRow, p.k.ss, cols, rowAddr(dq, p.seqStartsQ, b, h, i0), dq.ss, rows, p.dimQK, 1, 0);
          if (dqRope) kernels.gemm_nn(x.dp, LDS, rowAddr(p.kRope!, p.seqStartsK, b, hk, j0), p.kRope!.ss, cols, rowAddr(dqRope, p.seqStartsQ, b, h, i0), dqRope.ss, rows, p.dimRope, 1, 0);
          kernels.transpose(x.dp, LDS, rows, cols, x.tr, LDT);
          kernels.gemm_nn(x.tr, LDT, rowAddr(p.q, p.seqStartsQ, b, h, i0), p.q.ss, rows, dkRow, p.dk.ss, cols, p.dimQK, 1, 0);
          if (p.dkRope) kernels.gemm_nn(x.tr, LDT, rowAddr(p.qRope!, p.seqStartsQ, b, h, i0), p.qRope!.ss, rows, dkrRow, p.dkRope.ss, cols, p.dimRope, 1, 0);
        }
      }
      scaleRows(buffer, dkRow, p.dk.ss, cols, p.dimQK, p.scale);
      if (p.dkRope) scaleRows(buffer, dkrRow, p.dkRope.ss, cols, p.dimRope, p.scale);
    }
    if (n === 1) {
      for (let h = hk * p.group; h < (hk + 1) * p.group; h++) {
        scaleRows(buffer, rowAddr(p.dq, p.seqStartsQ, b, h, 0), p.dq.ss, sq, p.dimQK, p.scale);
        if (p.dqRope) scaleRows(buffer, rowAddr(p.dqRope, p.seqStartsQ, b, h, 0), p.dqRope.ss, sq, p.dimRope, p.scale);
      }
    }
  }
}

/**
 * bwd-dq-sum task t (the bwd-pre tasks' (b, h, i0)): dQ = scale · (dQ + partial 1 + … + partial
 * count - 1) over the block's rows, in slice order, skipping the slices whose tiles never reach it.
 */
export function backwardDqSumTask(kernels: TaskKernels, buffer: () => ArrayBufferLike, p: BackwardParams, t: number): void {
  const b = p.preTasks[3 * t];
  const h = p.preTasks[3 * t + 1];
  const i0 = p.preTasks[3 * t + 2];
  const rows = Math.min(BWD_ROWS, p.seqLensQ[b] - i0);
  const block = i0 / BWD_ROWS;
  const n = p.sliceCount;
  const parts: number[] = [];
  for (let s = 1; s < n; s++) {
    const at = 2 * (b * n + s);
    if (p.sliceRows[at] <= block && block <= p.sliceRows[at + 1]) parts.push(s);
  }
  // dq = (((dq + part) + part) …) · scale, the scale folded into the last addition
  const sum = (o: StagedOperand, addrs: number[], dim: number) => {
    const row = rowAddr(o, p.seqStartsQ, b, h, i0);
    if (parts.length === 0) scaleRows(buffer, row, o.ss, rows, dim, p.scale);
    parts.forEach((s, n) => kernels.bwd_add_rows(row, row - o.addr + addrs[s - 1], o.ss, rows, dim, n === parts.length - 1 ? p.scale : 1));
  };
  sum(p.dq, p.dqParts, p.dimQK);
  if (p.dqRope) sum(p.dqRope, p.dqRopeParts, p.dimRope);
}

function zeroRows(buffer: () => ArrayBufferLike, addr: number, ld: number, rows: number, dim: number): void {
  const f = new Float32Array(buffer());
  for (let r = 0; r < rows; r++) f.fill(0, (addr + r * ld) >>> 2, ((addr + r * ld) >>> 2) + dim);
}

/** bwd-q task t: dQ (and dqRope) of one block of query rows. */
export function backwardQTask(kernels: TaskKernels, buffer: () => ArrayBufferLike, p: BackwardParams, t: number, scratch: number): void {
  const x = backwardScratch(scratch);
  const b = p.qTasks[3 * t];
  const h = p.qTasks[3 * t + 1];
  const i0 = p.qTasks[3 * t + 2];
  const hk = Math.floor(h / p.group);
  const sq = p.seqLensQ[b];
  const sk = p.seqLensK[b];
  const rows = Math.min(BWD_ROWS, sq - i0);
  const dqRow = rowAddr(p.dq, p.seqStartsQ, b, h, i0);
  const dqrRow = p.dqRope ? rowAddr(p.dqRope, p.seqStartsQ, b, h, i0) : 0;
  const lo = Math.max(0, windowBounds(p, sq, sk, i0)[0]);
  const hi = Math.min(sk - 1, windowBounds(p, sq, sk, i0 + rows - 1)[1]);
  const noBias = { ...p, dBias: undefined };
  for (let j0 = lo; j0 <= hi; j0 += BWD_KEYS) {
    const cols = Math.min(BWD_KEYS, hi + 1 - j0);
    const tile = tileAt(p, b, h, hk, i0, rows, j0, cols, sq, sk);
    if (!tile) continue;
    tileGradient(kernels, buffer, noBias, x, tile);
    kernels.gemm_nn(x.dp, LDS, rowAddr(p.k, p.seqStartsK, b, hk, j0), p.k.ss, cols, dqRow, p.dq.ss, rows, p.dimQK, 1, 0);
    if (p.dqRope) kernels.gemm_nn(x.dp, LDS, rowAddr(p.kRope!, p.seqStartsK, b, hk, j0), p.kRope!.ss, cols, dqrRow, p.dqRope.ss, rows, p.dimRope, 1, 0);
  }
  scaleRows(buffer, dqRow, p.dq.ss, rows, p.dimQK, p.scale);
  if (p.dqRope) scaleRows(buffer, dqrRow, p.dqRope.ss, rows, p.dimRope, p.scale);
}
