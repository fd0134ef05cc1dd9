// The micro-kernel set the CPU tasks call, in two interchangeable implementations over the same
// memory: WASM SIMD (built at runtime by wasm/kernels.ts) and plain scalar JavaScript (the
// fallback where WASM SIMD is missing, and the yardstick the SIMD kernels are measured and tested
// against). Addresses and leading dimensions are in bytes, matrices row-major float32.
import { KERNEL_SIGNATURES, buildKernelModule, DEFAULT_KERNEL_OPTIONS, type KernelOptions } from './wasm/kernels.js';

export type KernelKind = 'wasm-relaxed-simd' | 'wasm-simd' | 'scalar';

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

export interface Kernels {
  readonly kind: KernelKind;
  readonly tiles: TileGeometry;
  /** The memory the kernels run on (score/mask kernels generated per call instantiate on it too). */
  readonly memory: WebAssembly.Memory | { readonly buffer: ArrayBufferLike };
  /** Packs rows into [ceil(rows/group)][chunks][group][4] from chunk chunk0 on, zero-padded (see wasm/tile-kernels.ts). */
  pack_panel(src: number, ld: number, rows: number, dim: number, dst: number, group: number, chunks: number, chunk0: number): void;
  /** Packs V rows into column blocks of 4·pvVectors floats per key, blocks vld bytes apart, zero-padded. */
  pack_v(src: number, ld: number, keys: number, dim: number, dst: number, vld: number): void;
  /** S[BR×BC tile] = alpha·Qpanel·Kpanelᵀ for ceil(rows/qkRows) row groups and ceil(cols/4) key groups. */
  qk_tile(q: number, k: number, chunks: number, rows: number, cols: number, s: number, alpha: number): void;
  /** O = scales_r·O + P·Vpanel over `keys` keys (P row stride 4·bc). */
  pv_tile(p: number, v: number, vld: number, keys: number, o: number, ldo: number, rows: number, dim: number, scales: number): void;
  /** C[m×n] = alpha·(A[m×k]·B[n×k]ᵀ + A2[m×k2]·B2[n×k2]ᵀ), plus the old C when accumulate != 0. */
  gemm_nt(a: number, lda: number, b: number, ldb: number, k: number, a2: number, lda2: number, b2: number, ldb2: number, k2: number,
    c: number, ldc: number, m: number, n: number, alpha: number, accumulate: number): void;
  /** C[m×n] = A[m×k]·B[k×n] (mode 0), + C (mode 1), + scales[r]·C (mode 2). */
  gemm_nn(a: number, lda: number, b: number, ldb: number, k: number, c: number, ldc: number, m: number, n: number, mode: number, scales: number): void;
  /** One online-softmax step on an S tile in place; see wasm/kernels.ts. */
  softmax_update(s: number, lds: number, rows: number, cols: number, mx: number, sum: number, alpha: number): void;
  /** dst[r][:cols] = src[r][:cols] / sum[r] (0 where sum is 0). */
  finalize_rows(src: number, lds: number, dst: number, ldd: number, rows: number, cols: number, sum: number): void;
}

/** What the module is compiled for; the worker compiles nothing and instantiates the same Module. */
export interface CompiledKernels {
  module: WebAssembly.Module;
  kind: KernelKind;
  tiles: TileGeometry;
}

export function tileGeometry(tuning: Partial<typeof DEFAULT_KERNEL_OPTIONS> = {}): TileGeometry {
  const o = { ...DEFAULT_KERNEL_OPTIONS, ...tuning };
  return { br: o.br, bc: o.bc, qkRows: o.qkRows, pvVectors: o.pvVectors };
}

export async function compileKernels(shared: boolean, maximumPages: number, relaxed: boolean, tuning: Partial<typeof DEFAULT_KERNEL_OPTIONS> = {}): Promise<CompiledKernels> {
  const options: KernelOptions = { ...DEFAULT_KERNEL_OPTIONS, ...tuning, relaxed, shared, maximumPages };
  const builder = buildKernelModule(options);
  const g = globalThis as { process?: { env?: Record<string, string | undefined> } };
  if (g.process?.env?.FUSEDATTN_DEBUG_WASM) console.log(builder.wat());
  const module = await WebAssembly.compile(builder.bytes());
  return { module, kind: relaxed ? 'wasm-relaxed-simd' : 'wasm-simd', tiles: tileGeometry(tuning) };
}

export function instantiateKernels(compiled: CompiledKernels, memory: WebAssembly.Memory): Kernels {
  const instance = new WebAssembly.Instance(compiled.module, { env: { memory } });
  const exports = instance.exports as unknown as Omit<Kernels, 'kind' | 'tiles'>;
  for (const name of Object.keys(KERNEL_SIGNATURES)) {
    if (typeof (exports as unknown as Record<string, unknown>)[name] !== 'function') throw new Error(`CPU kernels: export ${name} missing`);
  }
  return {
    kind: compiled.kind,
    tiles: compiled.tiles,
    memory,
    pack_panel: exports.pack_panel,
    pack_v: exports.pack_v,
    qk_tile: exports.qk_tile,
    pv_tile: exports.pv_tile,
    gemm_nt: exports.gemm_nt,
    gemm_nn: exports.gemm_nn,
    softmax_update: exports.softmax_update,
    finalize_rows: exports.finalize_rows,
  };
}

/** Plain JavaScript kernels with the semantics of the WASM ones (Math.exp, sequential sums). */
export function scalarKernels(memory: { readonly buffer: ArrayBufferLike }, tiles: TileGeometry = tileGeometry()): Kernels {
  let buffer: ArrayBufferLike | undefined;
  let mem: Float32Array<ArrayBufferLike> = new Float32Array(0);
  const f = () => {
    if (memory.buffer !== buffer || mem.byteLength !== memory.buffer.byteLength) {
      buffer = memory.buffer;
      mem = new Float32Array(buffer);
    }
    return mem;
  };
  const { bc, qkRows, pvVectors } = tiles;
  return {
    kind: 'scalar',
    tiles,
    memory,
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
    gemm_nt(a, lda, b, ldb, k, a2, lda2, b2, ldb2, k2, c, ldc, m, n, alpha, accumulate) {
      const x = f();
      for (let i = 0; i < m; i++) {
        const ai = (a + i * lda) >>> 2;
        const ai2 = (a2 + i * lda2) >>> 2;
        const ci = (c + i * ldc) >>> 2;
        for (let j = 0; j < n; j++) {
          const bj = (b + j * ldb) >>> 2;
          let s = 0;
          for (let d = 0; d < k; d++) s += x[ai + d] * x[bj + d];
          const bj2 = (b2 + j * ldb2) >>> 2;
          for (let d = 0; d < k2; d++) s += x[ai2 + d] * x[bj2 + d];
          x[ci + j] = alpha * s + (accumulate ? x[ci + j] : 0);
        }
      }
    },
    gemm_nn(a, lda, b, ldb, k, c, ldc, m, n, mode, scales) {
      const x = f();
      const acc = new Float32Array(n);
      for (let i = 0; i < m; i++) {
        const ci = (c + i * ldc) >>> 2;
        const init = mode === 0 ? 0 : mode === 1 ? 1 : x[(scales >>> 2) + i];
        for (let j = 0; j < n; j++) acc[j] = init === 0 ? 0 : x[ci + j] * init;
        const ai = (a + i * lda) >>> 2;
        for (let p = 0; p < k; p++) {
          const w = x[ai + p];
          const bp = (b + p * ldb) >>> 2;
          for (let j = 0; j < n; j++) acc[j] += w * x[bp + j];
        }
        x.set(acc, ci);
      }
    },
    softmax_update(s, lds, rows, cols, mx, sum, alpha) {
      const x = f();
      for (let r = 0; r < rows; r++) {
        const row = (s + r * lds) >>> 2;
        let rowMax = -Infinity;
        for (let j = 0; j < cols; j++) if (x[row + j] > rowMax) rowMax = x[row + j];
        const mOld = x[(mx >>> 2) + r];
        const mNew = Math.max(mOld, rowMax);
        if (mNew === -Infinity) {
          x.fill(0, row, row + cols);
          x[(alpha >>> 2) + r] = 1;
          continue;
        }
        let l = 0;
        for (let j = 0; j < cols; j++) {
          const e = Math.exp(x[row + j] - mNew);
          x[row + j] = e;
          l += e;
        }
        const a = Math.exp(mOld - mNew);
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
