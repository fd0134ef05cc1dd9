// The GEMM family's CPU micro-kernels as the tasks call them: the WASM SIMD ones (wasm-kernels.ts)
// and their scalar-JavaScript twins over the same memory (the fallback without WASM SIMD, and the
// yardstick the SIMD kernels are tested against). Addresses and leading dimensions are in bytes,
// matrices row-major float32.

export interface GemmKernels {
  /** C[m×n] = alpha·(A[m×k]·B[n×k]ᵀ + A2[m×k2]·B2[n×k2]ᵀ), plus the old C when accumulate != 0. */
  gemm_nt(a: number, lda: number, b: number, ldb: number, k: number, a2: number, lda2: number, b2: number, ldb2: number, k2: number,
    c: number, ldc: number, m: number, n: number, alpha: number, accumulate: number): void;
  /** C[m×n] = A[m×k]·B[k×n] (mode 0), + C (mode 1), + scales[r]·C (mode 2). */
  gemm_nn(a: number, lda: number, b: number, ldb: number, k: number, c: number, ldc: number, m: number, n: number, mode: number, scales: number): void;
  /** dst[c][r] = src[r][c] for r < rows, c < cols (reads rows and columns rounded up to 4; writes dst rows' padding up to a multiple of 4). */
  transpose(src: number, lds: number, rows: number, cols: number, dst: number, ldd: number): void;
}

/** Plain JavaScript GEMMs with the semantics of the WASM ones (sequential sums); `f()` views the memory. */
export function scalarGemmKernels(f: () => Float32Array<ArrayBufferLike>): GemmKernels {
  return {
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
    transpose(src, lds, rows, cols, dst, ldd) {
      const x = f();
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) x[((dst + c * ldd) >>> 2) + r] = x[((src + r * lds) >>> 2) + c];
    },
  };
}
