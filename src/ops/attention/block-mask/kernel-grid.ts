// The block structure a kernel reads for one call, at its own tile sizes: the call's BlockMask
// (coarsened so a kernel tile of `rows` queries lies in one query block and key blocks are whole
// kernel key tiles) and the block structure of a dense bool mask (`mask` option, CPU data, when
// scanning it is cheap), intersected. FULL then means "no mask of any kind hides a pair here", so a
// kernel may skip every mask evaluation on such a tile; EMPTY tiles are never visited.
import { readEnv } from '../../../core/env.js';
import type { AttentionProblem } from '../problem.js';
import { type BlockGrid, EMPTY, FULL, PARTIAL, coarsenGrid, combineGrids, denseMaskGrid, lcm } from './grid.js';

export interface KernelTiles {
  /** Query rows one kernel tile (workgroup / task) covers; query blocks are multiples of it. */
  rows: number;
  /** Key blocks are multiples of this. */
  keys: number;
  /** Key block of a grid derived from a dense mask alone (a multiple of `keys`). */
  denseKeys: number;
}

/** Intersection of two grids of equal block sizes (batch / heads broadcast where either is 1). */
function intersect(a: BlockGrid, b: BlockGrid): BlockGrid {
  return combineGrids(a, b, (x, y) => (x === EMPTY || y === EMPTY ? EMPTY : x === FULL && y === FULL ? FULL : PARTIAL));
}

/** FULL tiles become PARTIAL (a mask the grid does not describe must still be evaluated there). */
function withoutFull(g: BlockGrid): BlockGrid {
  return { ...g, status: g.status.map((s) => (s === FULL ? PARTIAL : s)) };
}

/** FUSEDATTN_MASK_BLOCKS=off: no block structure from dense masks (benchmarks measure what it saves). */
export function denseBlocksEnabled(): boolean {
  return readEnv('FUSEDATTN_MASK_BLOCKS')?.toLowerCase() !== 'off';
}

/**
 * The grid a kernel with tiles `t` reads for `p`, or undefined when the call has neither a
 * block mask nor a dense mask whose structure is cheap to find.
 */
export function kernelGrid(p: AttentionProblem, t: KernelTiles): BlockGrid | undefined {
  const bm = p.blockMask?.grid;
  if (bm) {
    const g = coarsenGrid(bm, lcm(bm.blockQ, t.rows), lcm(bm.blockK, t.keys));
    if (!p.mask) return g;
    const dense = denseBlocksEnabled() ? denseMaskGrid(p.mask, p.batch, p.headsQ, p.seqQ, p.seqK, g.blockQ, g.blockK) : undefined;
    return dense ? intersect(g, dense) : withoutFull(g);
  }
  if (p.mask && denseBlocksEnabled()) return denseMaskGrid(p.mask, p.batch, p.headsQ, p.seqQ, p.seqK, t.rows, t.denseKeys);
  return undefined;
}

/**
 * Status of the tile of query rows [i0, i0 + rows) and keys [j0, j0 + cols) of (b, h), a tile that
 * need not be aligned to the grid's blocks: EMPTY when every block it touches is, FULL when every
 * one is, PARTIAL otherwise (kernels that walk tiles of their own, such as the backward's).
 */
export function tileStatus(g: BlockGrid, b: number, h: number, i0: number, rows: number, j0: number, cols: number): number {
  const head = ((g.batch === 1 ? 0 : b) * g.heads + (g.heads === 1 ? 0 : h)) * g.qBlocks;
  const block = (i: number, size: number, count: number) => Math.min(Math.floor(i / size), count - 1);
  let empty = true;
  let full = true;
  for (let qb = block(i0, g.blockQ, g.qBlocks); qb <= block(i0 + rows - 1, g.blockQ, g.qBlocks); qb++) {
    for (let kb = block(j0, g.blockK, g.kBlocks); kb <= block(j0 + cols - 1, g.blockK, g.kBlocks); kb++) {
      const s = g.status[(head + qb) * g.kBlocks + kb];
      empty &&= s === EMPTY;
      full &&= s === FULL;
    }
  }
  return empty ? EMPTY : full ? FULL : PARTIAL;
}

/** Visits, for the tile row of (b, h, query row i0), every listed key block: [first key, end, full]. */
export function forEachBlock(g: BlockGrid, b: number, h: number, i0: number, visit: (k0: number, k1: number, full: boolean) => void): void {
  const row = ((g.batch === 1 ? 0 : b) * g.heads + (g.heads === 1 ? 0 : h)) * g.qBlocks + Math.min(Math.floor(i0 / g.blockQ), g.qBlocks - 1);
  const base = row * g.kBlocks;
  // partial blocks first, then full ones (the order the GPU table lists them in)
  for (const want of [PARTIAL, FULL]) {
    for (let kb = 0; kb < g.kBlocks; kb++) {
      if (g.status[base + kb] === want) visit(kb * g.blockK, Math.min((kb + 1) * g.blockK, g.seqK), want === FULL);
    }
  }
}
