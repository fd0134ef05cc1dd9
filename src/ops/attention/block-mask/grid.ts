// Block-sparse structure: for every (batch, head, query block, key block) tile, whether the mask
// hides all of it (EMPTY: never visited), keeps all of it (FULL: visited without evaluating the
// mask) or some of it (PARTIAL: visited with the mask). Grids broadcast over batch and heads where
// the mask does not depend on them (size 1 there).
//
// Kernels read a grid as a block table (u32 words, appended to the mods data, see mods/plan.ts):
//   T+0 tb  T+1 th  T+2 qBlocks  T+3 kBlocks  T+4 blockQ  T+5 blockK  T+6, T+7 unused
//   T+8 + 2r, T+9 + 2r             partial and full key-block counts of row r
//   T+8 + 2R + r·kBlocks + n       the row's key blocks: partial ones, then full ones
// with row r = (b·th + h)·qBlocks + qb (b, h taken as 0 on a broadcast dimension), R rows.

/** A bool mask broadcast to [B, Nq, Sq, Sk] (the problem's BroadcastView, structurally). */
export interface DenseMaskView {
  readonly tensor: { readonly data?: ArrayLike<number> | ArrayBufferView };
  readonly strides: { readonly b: number; readonly h: number; readonly i: number; readonly j: number };
}

export const EMPTY = 0;
export const PARTIAL = 1;
export const FULL = 2;

export interface BlockGrid {
  /** 1 (broadcast) or B; 1 or Nq. */
  readonly batch: number;
  readonly heads: number;
  readonly seqQ: number;
  readonly seqK: number;
  readonly blockQ: number;
  readonly blockK: number;
  readonly qBlocks: number;
  readonly kBlocks: number;
  /** EMPTY / PARTIAL / FULL per tile, index ((b·heads + h)·qBlocks + qb)·kBlocks + kb. */
  readonly status: Uint8Array;
}

export function emptyGrid(batch: number, heads: number, seqQ: number, seqK: number, blockQ: number, blockK: number): BlockGrid {
  const qBlocks = Math.max(1, Math.ceil(seqQ / blockQ));
  const kBlocks = Math.max(1, Math.ceil(seqK / blockK));
  return { batch, heads, seqQ, seqK, blockQ, blockK, qBlocks, kBlocks, status: new Uint8Array(batch * heads * qBlocks * kBlocks) };
}

/**
 * Two grids of equal block sizes combined tile by tile (batch / heads broadcast where either is 1):
 * `status(a's, b's)` per tile, at the larger of their batch and head sizes.
 */
export function combineGrids(a: BlockGrid, b: BlockGrid, status: (x: number, y: number) => number): BlockGrid {
  const out = emptyGrid(Math.max(a.batch, b.batch), Math.max(a.heads, b.heads), a.seqQ, a.seqK, a.blockQ, a.blockK);
  const tiles = out.qBlocks * out.kBlocks;
  for (let bb = 0; bb < out.batch; bb++) {
    for (let h = 0; h < out.heads; h++) {
      const at = (g: BlockGrid) => ((g.batch === 1 ? 0 : bb) * g.heads + (g.heads === 1 ? 0 : h)) * tiles;
      const o = (bb * out.heads + h) * tiles;
      const [ao, bo] = [at(a), at(b)];
      for (let t = 0; t < tiles; t++) out.status[o + t] = status(a.status[ao + t], b.status[bo + t]);
    }
  }
  return out;
}

/** Status of a tile from how many of its `size` pairs are visible. */
export function statusOf(visible: number, size: number): number {
  return visible === 0 ? EMPTY : visible === size ? FULL : PARTIAL;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

export function lcm(a: number, b: number): number {
  return (a / gcd(a, b)) * b;
}

/** The grid at blocks of blockQ × blockK, multiples of the grid's: FULL if all parts are, EMPTY if all are. */
export function coarsenGrid(g: BlockGrid, blockQ: number, blockK: number): BlockGrid {
  if (blockQ === g.blockQ && blockK === g.blockK) return g;
  if (blockQ % g.blockQ !== 0 || blockK % g.blockK !== 0) throw new Error(`coarsenGrid: ${blockQ}x${blockK} is not a multiple of ${g.blockQ}x${g.blockK}`);
  const out = emptyGrid(g.batch, g.heads, g.seqQ, g.seqK, blockQ, blockK);
  const fq = blockQ / g.blockQ;
  const fk = blockK / g.blockK;
  for (let bh = 0; bh < g.batch * g.heads; bh++) {
    for (let qb = 0; qb < out.qBlocks; qb++) {
      for (let kb = 0; kb < out.kBlocks; kb++) {
        let full = true;
        let any = false;
        for (let q = qb * fq; q < Math.min((qb + 1) * fq, g.qBlocks); q++) {
          for (let k = kb * fk; k < Math.min((kb + 1) * fk, g.kBlocks); k++) {
            const s = g.status[(bh * g.qBlocks + q) * g.kBlocks + k];
            if (s !== FULL) full = false;
            if (s !== EMPTY) any = true;
          }
        }
        out.status[(bh * out.qBlocks + qb) * out.kBlocks + kb] = full ? FULL : any ? PARTIAL : EMPTY;
      }
    }
  }
  return out;
}

/** The block table words of a grid (format above). */
export function gridTable(g: BlockGrid): Uint32Array {
  const rows = g.batch * g.heads * g.qBlocks;
  const words = new Uint32Array(8 + 2 * rows + rows * g.kBlocks);
  words.set([g.batch, g.heads, g.qBlocks, g.kBlocks, g.blockQ, g.blockK], 0);
  for (let r = 0; r < rows; r++) {
    let n = 0;
    const base = 8 + 2 * rows + r * g.kBlocks;
    for (const want of [PARTIAL, FULL]) {
      let count = 0;
      for (let kb = 0; kb < g.kBlocks; kb++) {
        if (g.status[r * g.kBlocks + kb] === want) {
          words[base + n++] = kb;
          count++;
        }
      }
      words[8 + 2 * r + (want === FULL ? 1 : 0)] = count;
    }
  }
  return words;
}

/**
 * The grid as a status table, for kernels that look a tile up rather than walk a row's list (the
 * backward's kv kernel walks query blocks per key block): words T+0..5 as gridTable's header,
 * then the status of tile n (EMPTY / PARTIAL / FULL) in byte n % 4 of word T + 8 + n / 4.
 */
export function statusTable(g: BlockGrid): Uint32Array {
  const words = new Uint32Array(8 + Math.ceil(g.status.length / 4));
  words.set([g.batch, g.heads, g.qBlocks, g.kBlocks, g.blockQ, g.blockK], 0);
  g.status.forEach((s, n) => { words[8 + (n >> 2)] |= s << (8 * (n & 3)); });
  return words;
}

/** Fraction of tiles a kernel visits (partial + full) over all tiles of the grid. */
export function gridDensity(g: BlockGrid): number {
  let visited = 0;
  for (const s of g.status) if (s !== EMPTY) visited++;
  return g.status.length ? visited / g.status.length : 0;
}

/** Bytes of mask a dense-mask grid may scan per call (beyond it, the kernels read the mask as is). */
export const DENSE_SCAN_BUDGET = 64 * 2 ** 20;

/**
 * The grid of a dense bool mask (CPU data), or undefined when scanning it would cost more than
 * `budget` bytes. Broadcast dimensions of the mask stay broadcast (size 1) in the grid.
 */
export function denseMaskGrid(view: DenseMaskView, batch: number, heads: number, seqQ: number, seqK: number, blockQ: number, blockK: number, budget = DENSE_SCAN_BUDGET): BlockGrid | undefined {
  const bytes = view.tensor.data as Uint8Array | undefined;
  if (!bytes) return undefined;
  const st = view.strides;
  const tb = st.b ? batch : 1;
  const th = st.h ? heads : 1;
  const rowsScanned = st.i ? seqQ : 1;
  const colsScanned = st.j ? seqK : 1;
  if (tb * th * rowsScanned * colsScanned > budget) return undefined;
  const g = emptyGrid(tb, th, seqQ, seqK, blockQ, blockK);
  const visible = new Int32Array(g.qBlocks * g.kBlocks);
  for (let b = 0; b < tb; b++) {
    for (let h = 0; h < th; h++) {
      visible.fill(0);
      for (let i = 0; i < rowsScanned; i++) {
        const row = b * st.b + h * st.h + i * st.i;
        const qb = Math.floor(i / blockQ);
        for (let j = 0; j < colsScanned; j++) if (bytes[row + j * st.j] !== 0) visible[qb * g.kBlocks + Math.floor(j / blockK)]++;
      }
      for (let qb = 0; qb < g.qBlocks; qb++) {
        const rows = st.i ? Math.min(blockQ, seqQ - qb * blockQ) : 1;
        for (let kb = 0; kb < g.kBlocks; kb++) {
          const cols = st.j ? Math.min(blockK, seqK - kb * blockK) : 1;
          // a mask broadcast over queries (or keys) has the same status in every block of that axis
          g.status[((b * th + h) * g.qBlocks + qb) * g.kBlocks + kb] = statusOf(visible[(st.i ? qb : 0) * g.kBlocks + (st.j ? kb : 0)], rows * cols);
        }
      }
    }
  }
  return g;
}
