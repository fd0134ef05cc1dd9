// Score modifiers applied to an S tile between QKᵀ and softmax, in the order the contract gives:
//   s = scale·(q·k + qRope·kRope)  (gemm_nt)  -> softcap -> + bias -> - ALiBi -> mask / window -> softmax
// Plain JavaScript over the shared memory: they run only when the option is set (the window
// clip only on tiles that cross a window edge), and cost O(rows·cols) next to QKᵀ's O(rows·cols·D).
// The same functions serve the fused tiles and the naive path's whole rows.

/** Where a mask or bias lives in the staged memory, with [b, h, i, j] element strides. */
export interface BroadcastOperand {
  /** Byte address of element (0, 0, 0, 0). */
  addr: number;
  sb: number;
  sh: number;
  si: number;
  sj: number;
}

/** The options part of a staged problem, shared by the fused and naive plans. */
export interface ScoreOptions {
  softcap: number;
  bias: BroadcastOperand | undefined;
  mask: BroadcastOperand | undefined;
  /** ALiBi slopes, index b * alibiStrideB + h. */
  alibi: Float32Array | undefined;
  alibiStrideB: number;
  window: { left: number; right: number; bottomRight: boolean };
}

/** A tile of scores: rows i0.. of head (b, h), keys j0..j0+cols, at byte address s with row stride lds. */
export interface ScoreTile {
  s: number;
  lds: number;
  rows: number;
  cols: number;
  b: number;
  h: number;
  i0: number;
  j0: number;
  /** Query and key lengths of sequence b. */
  sq: number;
  sk: number;
}

/** Key window of query i: [lo, hi] unclipped (may run past 0 and sk - 1). */
export function windowBounds(o: ScoreOptions, sq: number, sk: number, i: number): [number, number] {
  const diag = (o.window.bottomRight ? sk - sq : 0) + i;
  return [o.window.left === Infinity ? -Infinity : diag - o.window.left, o.window.right === Infinity ? Infinity : diag + o.window.right];
}

export function hasValueModifiers(o: ScoreOptions): boolean {
  return o.softcap > 0 || o.bias !== undefined || o.alibi !== undefined || o.mask !== undefined;
}

/**
 * Applies softcap, bias, ALiBi and mask to the tile; `clip` also applies the window. Scores are in
 * units of `beta` (scoreUnits in ops/attention/problem.ts): the bias and the slopes are divided by
 * it, the softcap works on beta·s. With beta = 1 (|scale| <= 1) this is the plain arithmetic.
 */
export function modifyScores(buffer: ArrayBufferLike, o: ScoreOptions, t: ScoreTile, clip: boolean, beta = 1): void {
  const f = new Float32Array(buffer);
  const base = t.s >>> 2;
  const ld = t.lds >>> 2;
  if (o.softcap > 0) {
    const c = o.softcap;
    const cu = c / beta;
    for (let r = 0; r < t.rows; r++) {
      const row = base + r * ld;
      for (let j = 0; j < t.cols; j++) f[row + j] = cu * Math.tanh((f[row + j] * beta) / c);
    }
  }
  if (o.bias) {
    const bo = o.bias;
    for (let r = 0; r < t.rows; r++) {
      const row = base + r * ld;
      const bias = (bo.addr + t.b * bo.sb + t.h * bo.sh + (t.i0 + r) * bo.si + t.j0 * bo.sj) >>> 2;
      const step = bo.sj >>> 2;
      for (let j = 0; j < t.cols; j++) f[row + j] += f[bias + j * step] / beta;
    }
  }
  if (o.alibi) {
    const slope = o.alibi[t.b * o.alibiStrideB + t.h] / beta;
    const offset = t.sk - t.sq;
    for (let r = 0; r < t.rows; r++) {
      const row = base + r * ld;
      const i = t.i0 + r + offset - t.j0;
      for (let j = 0; j < t.cols; j++) f[row + j] -= slope * Math.abs(i - j);
    }
  }
  if (o.mask) {
    const u8 = new Uint8Array(buffer);
    const mo = o.mask;
    for (let r = 0; r < t.rows; r++) {
      const row = base + r * ld;
      const mask = mo.addr + t.b * mo.sb + t.h * mo.sh + (t.i0 + r) * mo.si + t.j0 * mo.sj;
      for (let j = 0; j < t.cols; j++) if (u8[mask + j * mo.sj] === 0) f[row + j] = -Infinity;
    }
  }
  if (clip) {
    for (let r = 0; r < t.rows; r++) {
      const row = base + r * ld;
      const [lo, hi] = windowBounds(o, t.sq, t.sk, t.i0 + r);
      const first = Math.max(0, Math.min(t.cols, lo - t.j0));
      const last = Math.max(0, Math.min(t.cols, hi - t.j0 + 1));
      if (first > 0) f.fill(-Infinity, row, row + first);
      if (last < t.cols) f.fill(-Infinity, row + Math.max(last, first), row + t.cols);
      if (last <= first) f.fill(-Infinity, row, row + t.cols);
    }
  }
}
