// The fused forward (FlashAttention-2 schedule) on the CPU, two pool jobs:
//   pack   K (+ kRope) and V of every (batch, kv head) into panels once (wasm/tile-kernels.ts),
//          so query blocks and GQA query heads share them instead of re-packing per task;
//   flash  one task per (batch, query head, block of BR query rows); each walks the K/V tiles its
//          rows can see, BC keys at a time:
//     S = scale·Q·Kᵀ (+ qRope·kRopeᵀ)   qk_tile on the Q panel (packed per task) and the K panel
//     modifiers                         softcap, bias, ALiBi, mask; window clip on edge tiles only
//     online softmax                    softmax_update: m, l, alpha per row; S becomes P
//     O = alpha·O + P·V                 pv_tile, the rescale folded into the accumulators
//   then O / l into the output and m + log(l) into the LSE.
// Whole tiles outside the rows' key window are never visited, so causal and sliding-window
// attention do proportionally less work. Scratch per worker: S tile, O block, Q panel and row
// statistics; nothing of size Sq×Sk exists.
import type { AttentionKernels, TileGeometry } from './kernels.js';
import { scoreUnits } from '../problem.js';
import { type ScoreOptions, hasValueModifiers, modifyScores, windowBounds } from './scores.js';
import { type StagedMods, applyMods, foldSinks, forEachTile } from '../mods/cpu/stage.js';
import type { ModsHost } from '../mods/cpu/kernel.js';

/** An attention input in the staged memory: byte address of (0,0,0,0) and byte strides. */
export interface StagedOperand {
  addr: number;
  sb: number;
  sh: number;
  ss: number;
}

/** The staged problem, as plain data (it is posted to the workers); shared by fused and naive jobs. */
export interface StagedProblem extends ScoreOptions {
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
  /** v holds a NaN or ±Inf: P·V skips weights of 0 (0·NaN would reach rows that do not see the key). */
  vNonFinite?: boolean;
  /** Score/mask/sink functions and block structure of the call (ops/attention/mods). */
  mods?: StagedMods;
}

/** Everything a flash task needs. */
export interface FlashParams extends StagedProblem {
  br: number;
  bc: number;
  /** (b, h, i0) per task, heaviest first. */
  tasks: Int32Array;
  /** Byte address of the K panel and V panel of (b, kv head), index b * headsKv + hk. */
  kPanels: Uint32Array;
  vPanels: Uint32Array;
  /** Bytes between V panel column blocks of sequence b (its padded key count × block width). */
  vBlockStride: Int32Array;
  headsKv: number;
  /** Pack job: (b, hk, first key) per task. */
  packTasks: Int32Array;
}

/** Keys per pack task. */
export const PACK_KEYS = 256;

/** Bytes of the K and V panels of one (b, kv head) with sk keys. */
export function panelBytes(sk: number, tiles: TileGeometry, dimQK: number, dimRope: number, dimV: number): { k: number; v: number; vBlockStride: number } {
  const keys = Math.ceil(sk / 4) * 4;
  const width = 16 * tiles.pvVectors;
  const blocks = Math.ceil(dimV / (4 * tiles.pvVectors));
  return { k: 16 * keys * panelChunks(dimQK, dimRope), v: blocks * keys * width, vBlockStride: keys * width };
}

/** Pack task t: K (+ kRope) rows and V rows [j0, j0 + PACK_KEYS) of (b, hk) into their panels. */
export function flashPackTask(kernels: AttentionKernels, _buffer: () => ArrayBufferLike, p: FlashParams, t: number): void {
  const b = p.packTasks[3 * t];
  const hk = p.packTasks[3 * t + 1];
  const j0 = p.packTasks[3 * t + 2];
  const keys = Math.min(PACK_KEYS, p.seqLensK[b] - j0);
  const chunks = panelChunks(p.dimQK, p.dimRope);
  const row = (o: StagedOperand) => o.addr + b * o.sb + hk * o.sh + (p.seqStartsK[b] + j0) * o.ss;
  const kPanel = p.kPanels[b * p.headsKv + hk] + (j0 / 4) * chunks * 64;
  kernels.pack_panel(row(p.k), p.k.ss, keys, p.dimQK, kPanel, 4, chunks, 0);
  if (p.kRope) kernels.pack_panel(row(p.kRope), p.kRope.ss, keys, p.dimRope, kPanel, 4, chunks, Math.ceil(p.dimQK / 4));
  const width = 16 * kernels.tiles.pvVectors;
  kernels.pack_v(row(p.v), p.v.ss, keys, p.dimV, p.vPanels[b * p.headsKv + hk] + j0 * width, p.vBlockStride[b]);
}

/** Where one worker's scratch regions are (byte addresses), for tiles of br × bc. */
export interface FlashScratch {
  s: number;
  o: number;
  ldo: number;
  qPanel: number;
  m: number;
  l: number;
  alpha: number;
  bytes: number;
}

/** Depth chunks of 4 floats in the Q/K panels: NoPE part then RoPE part. */
export function panelChunks(dimQK: number, dimRope: number): number {
  return Math.ceil(dimQK / 4) + Math.ceil(dimRope / 4);
}

export function flashScratch(base: number, tiles: TileGeometry, dimQK: number, dimRope: number, dimV: number): FlashScratch {
  const chunks = panelChunks(dimQK, dimRope);
  const dimVp = Math.ceil(dimV / (4 * tiles.pvVectors)) * 4 * tiles.pvVectors;
  const sizes = {
    s: 4 * tiles.br * tiles.bc,
    o: 4 * tiles.br * dimVp,
    qPanel: 16 * Math.ceil(tiles.br / tiles.qkRows) * tiles.qkRows * chunks,
    m: 4 * tiles.br,
    l: 4 * tiles.br,
    alpha: 4 * tiles.br,
  };
  const at: Record<string, number> = {};
  let offset = base;
  for (const [name, size] of Object.entries(sizes)) {
    at[name] = offset;
    offset += Math.ceil(size / 64) * 64 + 64;
  }
  return { s: at.s, o: at.o, ldo: 4 * dimVp, qPanel: at.qPanel, m: at.m, l: at.l, alpha: at.alpha, bytes: offset - base };
}

/** Keys the rows [i0, i0 + rows) of sequence b can see at all: [lo, hi], clipped to [0, sk - 1]. */
export function blockKeyRange(p: ScoreOptions, sq: number, sk: number, i0: number, rows: number): [number, number] {
  const lo = Math.max(0, windowBounds(p, sq, sk, i0)[0]);
  const hi = Math.min(sk - 1, windowBounds(p, sq, sk, i0 + rows - 1)[1]);
  return [lo, hi];
}

/**
 * Builds the task list: every (b, h, query block), heads in order (consecutive tasks share K/V
 * panels in cache) and, within a head, heaviest block first so the job's tail is short.
 */
export function flashTasks(p: Pick<FlashParams, 'seqLensQ' | 'seqLensK' | 'br' | 'window' | 'softcap' | 'bias' | 'mask' | 'alibi' | 'alibiStrideB'>, heads: number): Int32Array {
  const list: Array<[number, number, number, number]> = [];
  for (let b = 0; b < p.seqLensQ.length; b++) {
    const sq = p.seqLensQ[b];
    const sk = p.seqLensK[b];
    const blocks: Array<[number, number]> = [];
    for (let i0 = 0; i0 < sq; i0 += p.br) {
      const rows = Math.min(p.br, sq - i0);
      const [lo, hi] = blockKeyRange(p as ScoreOptions, sq, sk, i0, rows);
      blocks.push([rows * Math.max(0, hi - lo + 1) + rows, i0]);
    }
    blocks.sort((x, y) => y[0] - x[0]);
    for (let h = 0; h < heads; h++) for (const [work, i0] of blocks) list.push([work, b, h, i0]);
  }
  const tasks = new Int32Array(list.length * 3);
  list.forEach(([, b, h, i0], t) => tasks.set([b, h, i0], 3 * t));
  return tasks;
}

/** Runs task `t` of a flash job with this worker's kernels and scratch. */
export function flashTask(kernels: AttentionKernels & ModsHost, buffer: () => ArrayBufferLike, p: FlashParams, t: number, scratch: number): void {
  const b = p.tasks[3 * t];
  const h = p.tasks[3 * t + 1];
  const i0 = p.tasks[3 * t + 2];
  const hk = Math.floor(h / p.group);
  const sq = p.seqLensQ[b];
  const sk = p.seqLensK[b];
  const rows = Math.min(p.br, sq - i0);
  const { qkRows } = kernels.tiles;
  const x = flashScratch(scratch, kernels.tiles, p.dimQK, p.dimRope, p.dimV);
  const lds = 4 * p.bc;
  const chunks = panelChunks(p.dimQK, p.dimRope);
  const ropeChunk = Math.ceil(p.dimQK / 4);
  const f = new Float32Array(buffer());
  f.fill(0, x.o >>> 2, (x.o + rows * x.ldo) >>> 2);
  f.fill(-Infinity, x.m >>> 2, (x.m >>> 2) + rows);
  f.fill(0, x.l >>> 2, (x.l >>> 2) + rows);

  const row = (o: StagedOperand, seqStarts: Int32Array, head: number, s: number) => o.addr + b * o.sb + head * o.sh + (seqStarts[b] + s) * o.ss;
  kernels.pack_panel(row(p.q, p.seqStartsQ, h, i0), p.q.ss, rows, p.dimQK, x.qPanel, qkRows, chunks, 0);
  if (p.qRope) kernels.pack_panel(row(p.qRope, p.seqStartsQ, h, i0), p.qRope.ss, rows, p.dimRope, x.qPanel, qkRows, chunks, ropeChunk);
  const { alpha, beta } = scoreUnits(p.scale);
  const [lo, hi] = blockKeyRange(p, sq, sk, i0, rows);
  // a tile needs the window clip unless every row of the block sees all of it
  const firstRowHi = windowBounds(p, sq, sk, i0)[1];
  const lastRowLo = windowBounds(p, sq, sk, i0 + rows - 1)[0];

  const kPanel = p.kPanels[b * p.headsKv + hk];
  const vPanel = p.vPanels[b * p.headsKv + hk];
  const vld = p.vBlockStride[b];
  const width = 16 * kernels.tiles.pvVectors;
  // on a block that no mask hides any pair of (block masks), the masks are not evaluated
  const unmasked = p.mask ? { ...p, mask: undefined } : p;
  const tile = (j0: number, cols: number, withMask: boolean) => {
    kernels.qk_tile(x.qPanel, kPanel + (j0 / 4) * chunks * 64, chunks, rows, cols, x.s, alpha);
    const clip = j0 < lastRowLo || j0 + cols - 1 > firstRowHi;
    const o = withMask ? p : unmasked;
    if (hasValueModifiers(o) || clip) modifyScores(buffer(), o, { s: x.s, lds, rows, cols, b, h, i0, j0, sq, sk }, clip, beta);
    if (p.mods) applyMods(kernels, p.mods, x.s, lds, rows, cols, b, h, i0, j0, sq, sk, withMask, beta);
    kernels.softmax_update(x.s, lds, rows, cols, x.m, x.l, x.alpha, beta);
    if (p.vNonFinite) pvSkippingZeros(buffer(), x.s, lds, vPanel + j0 * width, vld, width, cols, x.o, x.ldo, rows, p.dimV, x.alpha);
    else kernels.pv_tile(x.s, vPanel + j0 * width, vld, cols, x.o, x.ldo, rows, p.dimV, x.alpha);
  };
  if (p.mods) forEachTile(p.mods, b, h, i0, lo, hi, p.bc, tile);
  // tiles start on a multiple of 4 keys (the K panel's groups); keys before lo are clipped
  else for (let j0 = lo - (lo % 4); j0 <= hi; j0 += p.bc) tile(j0, Math.min(p.bc, hi + 1 - j0), true);

  const sinkLse = foldSinks(buffer(), p.mods, b, h, i0, rows, x.m, x.l, beta);
  kernels.finalize_rows(x.o, x.ldo, row(p.out, p.seqStartsQ, h, i0), p.out.ss, rows, p.dimV, x.l);
  if (p.lse) {
    const g = new Float32Array(buffer());
    for (let r = 0; r < rows; r++) {
      const l = g[(x.l >>> 2) + r];
      g[row(p.lse, p.seqStartsQ, h, i0 + r) >>> 2] = sinkLse ? sinkLse[r] : l === 0 ? -Infinity : beta * g[(x.m >>> 2) + r] + Math.log(l);
    }
  }
}

/**
 * pv_tile's arithmetic in plain JavaScript, skipping keys whose weight is 0 (hidden by the window,
 * the mask or a -inf score, or underflowed): runs only when v holds NaN or ±Inf, so that such a
 * value reaches exactly the rows that give its key a weight, as in the reference. V panel layout:
 * column blocks of `width` bytes per key, `vld` bytes apart.
 */
function pvSkippingZeros(buffer: ArrayBufferLike, pAddr: number, lds: number, vAddr: number, vld: number, width: number, keys: number, o: number, ldo: number, rows: number, dim: number, scales: number): void {
  const f = new Float32Array(buffer);
  const perBlock = width >>> 2;
  for (let r = 0; r < rows; r++) {
    const orow = (o + r * ldo) >>> 2;
    const scale = f[(scales >>> 2) + r];
    for (let d = 0; d < dim; d++) f[orow + d] *= scale;
    const prow = (pAddr + r * lds) >>> 2;
    for (let j = 0; j < keys; j++) {
      const pj = f[prow + j];
      if (pj === 0) continue;
      for (let d = 0; d < dim; d++) {
        const block = Math.floor(d / perBlock);
        f[orow + d] += pj * f[((vAddr + block * vld) >>> 2) + j * perBlock + (d % perBlock)];
      }
    }
  }
}
