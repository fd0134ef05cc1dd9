// Attention's CPU micro-kernels as the tasks call them, in two interchangeable implementations over
// the same memory: WASM SIMD (wasm-tiles.ts, wasm-softmax.ts; assembled with the other ops' kernels
// into one module by ops/cpu-program.ts) and plain scalar JavaScript (the fallback where WASM SIMD
// is missing, and the yardstick the SIMD kernels are measured and tested against). Addresses and
// leading dimensions are in bytes, matrices row-major float32.
import type { TileOptions } from './wasm-tiles.js';

/** The tile geometry the fused kernels were built for (module constants). */
export interface TileGeometry {
  /** Query rows per task and keys per tile. */
  br: number;
  bc: number;
  /** Row group of the Q panel (qk_tile's register block). */
  qkRows: number;
  /** Vectors per V panel column block (pv_tile's register block). */
  pvVectors: number;
}

export const DEFAULT_TILE_OPTIONS: Omit<TileOptions, 'relaxed'> = { br: 64, bc: 64, qkRows: 2, qkUnroll: 1, pvRows: 4, pvVectors: 2 };

export function tileGeometry(tuning: Partial<TileOptions> = {}): TileGeometry {
  const o = { ...DEFAULT_TILE_OPTIONS, ...tuning };
  return { br: o.br, bc: o.bc, qkRows: o.qkRows, pvVectors: o.pvVectors };
}

export interface AttentionKernels {
  readonly tiles: TileGeometry;
  /** Packs rows into [ceil(rows/group)][chunks][group][4] from chunk chunk0 on, zero-padded (see wasm-tiles.ts). */
  pack_panel(src: number, ld: number, rows: number, dim: number, dst: number, group: number, chunks: number, chunk0: number): void;
  /** Packs V rows into column blocks of 4·pvVectors floats per key, blocks vld bytes apart, zero-padded. */
  pack_v(src: number, ld: number, keys: number, dim: number, dst: number, vld: number): void;
  /** S[BR×BC tile] = alpha·Qpanel·Kpanelᵀ for ceil(rows/qkRows) row groups and ceil(cols/4) key groups. */
  qk_tile(q: number, k: number, chunks: number, rows: number, cols: number, s: number, alpha: number): void;
  /** O = scales_r·O + P·Vpanel over `keys` keys (P row stride 4·bc). */
  pv_tile(p: number, v: number, vld: number, keys: number, o: number, ldo: number, rows: number, dim: number, scales: number): void;
  /** One online-softmax step on an S tile in place, weights exp(beta·(s - m)); see wasm-softmax.ts. */
  softmax_update(s: number, lds: number, rows: number, cols: number, mx: number, sum: number, alpha: number, beta: number): void;
  /** dst[r][:cols] = src[r][:cols] / sum[r] (0 where sum is 0). */
  finalize_rows(src: number, lds: number, dst: number, ldd: number, rows: number, cols: number, sum: number): void;
}

/** Plain JavaScript kernels with the semantics of the WASM ones (Math.exp, sequential sums); `f()` views the memory. */
export function scalarAttentionKernels(f: () => Float32Array<ArrayBufferLike>, tiles: TileGeometry): AttentionKernels {
  const { bc, qkRows, pvVectors } = tiles;
  return {
    tiles,
    pack_panel(src, ld, rows, dim, dst, group, chunks, chunk0) {
      const x = f();
      const padded = Math.ceil(rows / group) * group;
      for (let r = 0; r < padded; r++) {
        const g = Math.floor(r / group);
        for (let c = 0; c < Math.ceil(dim / 4); c++) {
          const at = (dst >>> 2) + ((g * chunks + chunk0 + c) * group + (r % group)) * 4;
          for (let l = 0; l < 4; l++) x[at + l] = r < rows && 4 * c + l < dim ? x[((src + r * ld) >>> 2) + 4 * c + l] : 0;
        }
      }
    },
    pack_v(src, ld, keys, dim, dst, vld) {
      const x = f();
      const width = 4 * pvVectors;
      const blocks = Math.ceil(dim / width);
      for (let j = 0; j < keys; j++) {
        for (let c = 0; c < blocks * width; c++) {
          const at = ((dst + Math.floor(c / width) * vld) >>> 2) + j * width + (c % width);
          x[at] = c < dim ? x[((src + j * ld) >>> 2) + c] : 0;
        }
      }
    },
    qk_tile(q, k, chunks, rows, cols, s, alpha) {
      const x = f();
      const qStep = qkRows * 4;
      for (let i = 0; i < rows; i++) {
        const qg = (q >>> 2) + Math.floor(i / qkRows) * chunks * qStep + (i % qkRows) * 4;
        const srow = (s >>> 2) + i * bc;
        for (let j = 0; j < cols; j++) {
          let qi = qg;
          let ki = (k >>> 2) + (j >>> 2) * chunks * 16 + (j & 3) * 4;
          let sum = 0;
          for (let c = 0; c < chunks; c++, qi += qStep, ki += 16) {
            sum += x[qi] * x[ki] + x[qi + 1] * x[ki + 1] + x[qi + 2] * x[ki + 2] + x[qi + 3] * x[ki + 3];
          }
          x[srow + j] = alpha * sum;
        }
      }
    },
    pv_tile(p, v, vld, keys, o, ldo, rows, dim, scales) {
      const x = f();
      const width = 4 * pvVectors;
      for (let i = 0; i < rows; i++) {
        const orow = (o + i * ldo) >>> 2;
        const scale = x[(scales >>> 2) + i];
        const prow = (p >>> 2) + i * bc;
        for (let d = 0; d < dim; d++) {
          // one output element in a register; V's column d is strided by `width` in the panel
          let acc = x[orow + d] * scale;
          let vi = ((v + Math.floor(d / width) * vld) >>> 2) + (d % width);
          for (let j = 0; j < keys; j++, vi += width) acc += x[prow + j] * x[vi];
          x[orow + d] = acc;
        }
      }
    },
    softmax_update(s, lds, rows, cols, mx, sum, alpha, beta) {
      const x = f();
      for (let r = 0; r < rows; r++) {
        const row = (s + r * lds) >>> 2;
        let rowMax = -Infinity;
        for (let j = 0; j < cols; j++) rowMax = Math.max(rowMax, x[row + j]); // NaN-propagating, as the WASM max
        const mOld = x[(mx >>> 2) + r];
        const mNew = Math.max(mOld, rowMax);
        if (mNew === -Infinity) {
          x.fill(0, row, row + cols);
          x[(alpha >>> 2) + r] = 1;
          continue;
        }
        let l = 0;
        for (let j = 0; j < cols; j++) {
          const e = Math.exp(beta * (x[row + j] - mNew));
          x[row + j] = e;
          l += e;
        }
        const a = Math.exp(beta * (mOld - mNew));
        x[(alpha >>> 2) + r] = a;
        x[(sum >>> 2) + r] = x[(sum >>> 2) + r] * a + l;
        x[(mx >>> 2) + r] = mNew;
      }
    },
    finalize_rows(src, lds, dst, ldd, rows, cols, sum) {
      const x = f();
      for (let r = 0; r < rows; r++) {
        const l = x[(sum >>> 2) + r];
        const inv = l === 0 ? 0 : 1 / l;
        const si = (src + r * lds) >>> 2;
        const di = (dst + r * ldd) >>> 2;
        for (let j = 0; j < cols; j++) x[di + j] = x[si + j] * inv;
      }
    },
  };
}
