// Dropout on a float32 tile of attention weights in the CPU engine's memory (plain JavaScript: one
// Philox call per 8 keys, O(rows·cols) next to the tile's O(rows·cols·D) matmuls). Used by the
// fused and naive forwards after softmax and by the unfused CPU backward on P and dP. The fused
// backward runs its WASM SIMD twin, dropout_rows (wasm.ts: the same bits at a small part of the cost).
import { type DropoutSpec, dropoutRow } from './philox.js';

/** Per-worker row of keep factors (grown on demand) and the Philox output words. */
let factors = new Float32Array(256);
const words = new Uint32Array(4);

/**
 * Multiplies tile[r][c] (rows of query i0 + r, keys j0 + c, row stride `lds` bytes, at byte
 * address `tile`; `tiles` may list several, all alike) by the keep factor of (b, h, i0 + r, j0 + c):
 * 0 or spec.scale. The factors are drawn once per row for every tile.
 */
export function dropoutTile(buffer: ArrayBufferLike, spec: DropoutSpec, headsQ: number, b: number, h: number,
  i0: number, rows: number, j0: number, cols: number, tiles: number | readonly number[], lds: number): void {
  if (cols <= 0) return;
  if (factors.length < cols) factors = new Float32Array(Math.max(cols, 2 * factors.length));
  const f = new Float32Array(buffer);
  const list = typeof tiles === 'number' ? [tiles] : tiles;
  for (let r = 0; r < rows; r++) {
    dropoutRow(spec, headsQ, b, h, i0 + r, j0, cols, factors, 0, words);
    for (const tile of list) {
      const row = (tile + r * lds) >>> 2;
      for (let c = 0; c < cols; c++) f[row + c] *= factors[c];
    }
  }
}
