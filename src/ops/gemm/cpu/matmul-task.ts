// Tasks of the internal batched matmul (see matmul.ts for the API): one task per
// (batch entry, block of MATMUL_ROWS rows, block of MATMUL_COLS columns) of the output.
import type { GemmKernels } from './kernels.js';

export const MATMUL_ROWS = 64;
export const MATMUL_COLS = 256;

export interface StagedMatrix {
  /** Byte address of [0, 0, 0]. */
  addr: number;
  /** Bytes between rows and between batch entries (0 = broadcast). */
  ld: number;
  batchStride: number;
}

export interface MatmulParams {
  batch: number;
  m: number;
  n: number;
  k: number;
  a: StagedMatrix;
  b: StagedMatrix;
  out: StagedMatrix;
  transposeB: boolean;
  accumulate: boolean;
  blocksM: number;
  blocksN: number;
}

export function matmulTask(kernels: GemmKernels, _buffer: () => ArrayBufferLike, p: MatmulParams, t: number): void {
  const perBatch = p.blocksM * p.blocksN;
  const batch = Math.floor(t / perBatch);
  const bm = Math.floor((t % perBatch) / p.blocksN);
  const bn = t % p.blocksN;
  const i0 = bm * MATMUL_ROWS;
  const j0 = bn * MATMUL_COLS;
  const rows = Math.min(MATMUL_ROWS, p.m - i0);
  const cols = Math.min(MATMUL_COLS, p.n - j0);
  const a = p.a.addr + batch * p.a.batchStride + i0 * p.a.ld;
  const c = p.out.addr + batch * p.out.batchStride + i0 * p.out.ld + 4 * j0;
  if (p.transposeB) {
    const b = p.b.addr + batch * p.b.batchStride + j0 * p.b.ld;
    kernels.gemm_nt(a, p.a.ld, b, p.b.ld, p.k, 0, 0, 0, 0, 0, c, p.out.ld, rows, cols, 1, p.accumulate ? 1 : 0);
  } else {
    const b = p.b.addr + batch * p.b.batchStride + 4 * j0;
    kernels.gemm_nn(a, p.a.ld, b, p.b.ld, p.k, c, p.out.ld, rows, cols, p.accumulate ? 1 : 0, 0);
  }
}
