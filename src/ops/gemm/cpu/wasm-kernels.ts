// The GEMM family's WASM SIMD micro-kernels, as builder functions of readable WAT-like TypeScript
// (see engines/cpu/wasm/encoder.ts). Every address and leading dimension is in bytes; every matrix
// is row-major float32 with a row stride. Register blocks are sized for V8 on x64 (15 usable xmm
// registers: 8 accumulators). They serve the internal matmul (matmul.ts) and attention's naive path:
//
//   gemm_nt  C = alpha·(A·Bᵀ + A2·B2ᵀ) [+ C]   "dot form": R rows of A against 4 rows of B at a time,
//            4·R vector accumulators of partial sums, reduced to one 4-key vector per row at the end.
//            S = scale·Q·Kᵀ reading K rows where they are (no transposition); the second pair is
//            the MLA split form's qRope·kRopeᵀ, accumulated in the same registers.
//   gemm_nn  C = [scale_r·C +] A·B               "splat form": R rows × CV vectors of C live in
//            registers while the depth loop splats A[r][p] against B[p][j..j+4·CV].
//   transpose dst[c][r] = src[r][c], 4×4 blocks through shuffles (the backward's Pᵀ and dSᵀ,
//            linear attention's [V|1]ᵀ).
import { type Expr, type FunctionBuilder, type Local, type ModuleBuilder, f32x4, i32, v128 } from '../../../engines/cpu/wasm/encoder.js';
import { madd, partialLoad, rowBlocks, storeFirstLanes } from '../../../engines/cpu/wasm/simd.js';

export interface GemmKernelOptions {
  /** Rows of A per register block in gemm_nt (accumulators: 4·R). */
  ntRows: number;
  /** Depth steps (of 4 floats) per loop iteration in gemm_nt. */
  ntUnroll: number;
  /** Rows × vectors of C per register block in gemm_nn. */
  nnRows: number;
  nnVectors: number;
  /** Use f32x4.relaxed_madd (FMA) for the multiply-adds. */
  relaxed: boolean;
}

export const DEFAULT_GEMM_KERNEL_OPTIONS: Omit<GemmKernelOptions, 'relaxed'> = { ntRows: 2, ntUnroll: 1, nnRows: 4, nnVectors: 2 };

/** Names and parameter lists of the exported kernels (the JS side binds to these). */
export const GEMM_SIGNATURES = {
  gemm_nt: ['a', 'lda', 'b', 'ldb', 'k', 'a2', 'lda2', 'b2', 'ldb2', 'k2', 'c', 'ldc', 'm', 'n', 'alpha', 'accumulate'],
  gemm_nn: ['a', 'lda', 'b', 'ldb', 'k', 'c', 'ldc', 'm', 'n', 'mode', 'scales'],
  transpose: ['src', 'lds', 'rows', 'cols', 'dst', 'ldd'],
} as const;

export function addGemmKernels(m: ModuleBuilder, o: GemmKernelOptions): void {
  const sig = (names: readonly string[], floats: readonly string[] = []) => names.map((n) => [n, floats.includes(n) ? 'f32' : 'i32'] as const);
  m.func('gemm_nt', sig(GEMM_SIGNATURES.gemm_nt, ['alpha']), undefined, (f) => gemmNT(f, o));
  m.func('gemm_nn', sig(GEMM_SIGNATURES.gemm_nn), undefined, (f) => gemmNN(f, o));
  m.func('transpose', sig(GEMM_SIGNATURES.transpose), undefined, (f) => transpose(f));
}

// ---------- gemm_nt: C[m×n] = alpha·(A[m×k]·B[n×k]ᵀ + A2[m×k2]·B2[n×k2]ᵀ) (+ C when accumulate)

function gemmNT(f: FunctionBuilder, o: GemmKernelOptions): void {
  const p = (n: string) => f.get(f.param(n));
  const R = o.ntRows;
  const i = f.local('i32', 'i');
  const j = f.local('i32', 'j');
  const ap = Array.from({ length: R }, (_, r) => f.local('i32', `ap${r}`));
  const bp = Array.from({ length: 4 }, (_, c) => f.local('i32', `bp${c}`));
  const end = f.local('i32', 'end');
  const rem = f.local('i32', 'rem');
  const av = Array.from({ length: R }, (_, r) => f.local('v128', `av${r}`));
  const bv = f.local('v128', 'bv');
  const acc = Array.from({ length: R }, (_, r) => Array.from({ length: 4 }, (_, c) => f.local('v128', `acc${r}${c}`)));
  const s01 = f.local('v128', 's01');
  const s23 = f.local('v128', 's23');
  const outPtr = f.local('i32', 'out');

  /** Accumulates one A·Bᵀ pair into acc for `rows` rows and the 4 key pointers bp. */
  const accumulatePair = (rows: number, a: string, lda: string, b: string, ldb: string, k: string) => {
    for (let r = 0; r < rows; r++) f.set(ap[r], i32.add(p(a), i32.mul(i32.add(f.get(i), i32.const(r)), p(lda))));
    for (let c = 0; c < 4; c++) {
      // keys past n repeat the last key (their lanes are never stored)
      const key = i32.add(f.get(j), i32.const(c));
      const last = i32.sub(p('n'), i32.const(1));
      f.set(bp[c], i32.add(p(b), i32.mul(i32.min_s(key, last), p(ldb))));
    }
    f.set(end, i32.add(f.get(ap[0]), i32.shl(i32.and(p(k), i32.const(~3)), i32.const(2))));
    const step = (load: (ptr: Expr, offset: number) => Expr, offset = 0) => {
      for (let r = 0; r < rows; r++) f.set(av[r], load(f.get(ap[r]), offset));
      for (let c = 0; c < 4; c++) {
        f.set(bv, load(f.get(bp[c]), offset));
        for (let r = 0; r < rows; r++) f.set(acc[r][c], madd(o, f.get(av[r]), f.get(bv), f.get(acc[r][c])));
      }
    };
    const advance = (bytes: number) => {
      for (const x of [...ap.slice(0, rows), ...bp]) f.set(x, i32.add(f.get(x), i32.const(bytes)));
    };
    const U = o.ntUnroll;
    if (U > 1) {
      f.block('unrolled_done', (done) => {
        f.loop('unrolled', (again) => {
          f.brIf(done, i32.gt_s(i32.add(f.get(ap[0]), i32.const(16 * U)), f.get(end)));
          for (let u = 0; u < U; u++) step((ptr, offset) => v128.load(ptr, offset), 16 * u);
          advance(16 * U);
          f.br(again);
        });
      });
    }
    f.block('depth_done', (done) => {
      f.loop('depth', (again) => {
        f.brIf(done, i32.ge_s(f.get(ap[0]), f.get(end)));
        step((ptr) => v128.load(ptr));
        advance(16);
        f.br(again);
      });
    });
    f.set(rem, i32.and(p(k), i32.const(3)));
    for (const r of [1, 2, 3]) f.if(i32.eq(f.get(rem), i32.const(r)), () => step((ptr) => partialLoad(ptr, r)));
  };

  const rowBlock = (rows: number) => {
    f.forRange(j, i32.const(0), p('n'), 4, () => {
      for (let r = 0; r < rows; r++) for (let c = 0; c < 4; c++) f.set(acc[r][c], f32x4.const(0));
      accumulatePair(rows, 'a', 'lda', 'b', 'ldb', 'k');
      f.if(i32.gt_s(p('k2'), i32.const(0)), () => accumulatePair(rows, 'a2', 'lda2', 'b2', 'ldb2', 'k2'));
      for (let r = 0; r < rows; r++) {
        // transpose-and-add: lane c of the result is the sum of acc[r][c]'s lanes
        const a = acc[r];
        const pairSum = (x: Local, y: Local) =>
          f32x4.add(v128.shuffle32(f.get(x), f.get(y), [0, 4, 1, 5]), v128.shuffle32(f.get(x), f.get(y), [2, 6, 3, 7]));
        f.set(s01, pairSum(a[0], a[1]));
        f.set(s23, pairSum(a[2], a[3]));
        f.set(s01, f32x4.add(v128.shuffle32(f.get(s01), f.get(s23), [0, 1, 4, 5]), v128.shuffle32(f.get(s01), f.get(s23), [2, 3, 6, 7])));
        f.set(s01, f32x4.mul(f.get(s01), f32x4.splat(p('alpha'))));
        f.set(outPtr, i32.add(p('c'), i32.add(i32.mul(i32.add(f.get(i), i32.const(r)), p('ldc')), i32.shl(f.get(j), i32.const(2)))));
        f.if(p('accumulate'), () => f.set(s01, f32x4.add(f.get(s01), v128.load(f.get(outPtr)))));
        storeFirstLanes(f, outPtr, s01, i32.shl(i32.sub(p('n'), f.get(j)), i32.const(2)));
      }
    });
  };

  rowBlocks(f, i, p('m'), R, rowBlock);
}

// ---------- gemm_nn: C[m×n] = init(C) + A[m×k]·B[k×n]; init: 0 (mode 0), C (mode 1), scales[r]·C (mode 2)

function gemmNN(f: FunctionBuilder, o: GemmKernelOptions): void {
  const p = (n: string) => f.get(f.param(n));
  const R = o.nnRows;
  const CV = o.nnVectors;
  const i = f.local('i32', 'i');
  const j = f.local('i32', 'j'); // column byte offset
  const ap = Array.from({ length: R }, (_, r) => f.local('i32', `ap${r}`));
  const bp = f.local('i32', 'bp');
  const end = f.local('i32', 'end');
  const cp = f.local('i32', 'cp');
  const av = f.local('v128', 'av');
  const bv = Array.from({ length: CV }, (_, c) => f.local('v128', `bv${c}`));
  const acc = Array.from({ length: R }, (_, r) => Array.from({ length: CV }, (_, c) => f.local('v128', `acc${r}${c}`)));
  const rowBytes = i32.shl(p('n'), i32.const(2));

  const block = (rows: number, vectors: number) => {
    const rowPtr = (r: number) => i32.add(p('c'), i32.add(i32.mul(i32.add(f.get(i), i32.const(r)), p('ldc')), f.get(j)));
    for (let r = 0; r < rows; r++) {
      f.set(cp, rowPtr(r));
      for (let c = 0; c < vectors; c++) {
        const current = v128.load(f.get(cp), 16 * c);
        const scale = v128.load32_splat(i32.add(p('scales'), i32.shl(i32.add(f.get(i), i32.const(r)), i32.const(2))));
        f.if(i32.eqz(p('mode')), () => f.set(acc[r][c], f32x4.const(0)), () => {
          f.if(i32.eq(p('mode'), i32.const(1)), () => f.set(acc[r][c], current), () => f.set(acc[r][c], f32x4.mul(current, scale)));
        });
      }
      f.set(ap[r], i32.add(p('a'), i32.mul(i32.add(f.get(i), i32.const(r)), p('lda'))));
    }
    f.set(bp, i32.add(p('b'), f.get(j)));
    f.set(end, i32.add(f.get(ap[0]), i32.shl(p('k'), i32.const(2))));
    f.block('depth_done', (done) => {
      f.loop('depth', (again) => {
        f.brIf(done, i32.ge_s(f.get(ap[0]), f.get(end)));
        for (let c = 0; c < vectors; c++) f.set(bv[c], v128.load(f.get(bp), 16 * c));
        for (let r = 0; r < rows; r++) {
          f.set(av, v128.load32_splat(f.get(ap[r])));
          for (let c = 0; c < vectors; c++) f.set(acc[r][c], madd(o, f.get(av), f.get(bv[c]), f.get(acc[r][c])));
          f.set(ap[r], i32.add(f.get(ap[r]), i32.const(4)));
        }
        f.set(bp, i32.add(f.get(bp), p('ldb')));
        f.br(again);
      });
    });
    for (let r = 0; r < rows; r++) {
      f.set(cp, rowPtr(r));
      if (vectors > 1) {
        for (let c = 0; c < vectors; c++) f.statement(v128.store(f.get(cp), f.get(acc[r][c]), 16 * c));
      } else {
        storeFirstLanes(f, cp, acc[r][0], i32.sub(rowBytes, f.get(j)));
      }
    }
  };

  const rowBlock = (rows: number) => {
    f.set(j, i32.const(0));
    f.block('wide_done', (done) => {
      f.loop('wide', (again) => {
        f.brIf(done, i32.gt_s(i32.add(f.get(j), i32.const(16 * CV)), rowBytes));
        block(rows, CV);
        f.set(j, i32.add(f.get(j), i32.const(16 * CV)));
        f.br(again);
      });
    });
    f.block('narrow_done', (done) => {
      f.loop('narrow', (again) => {
        f.brIf(done, i32.ge_s(f.get(j), rowBytes));
        block(rows, 1);
        f.set(j, i32.add(f.get(j), i32.const(16)));
        f.br(again);
      });
    });
  };
  rowBlocks(f, i, p('m'), R, rowBlock);
}

/** transpose: 4×4 blocks (rows and columns rounded up to 4 are read; only columns < cols are written). */
function transpose(f: FunctionBuilder): void {
  const p = (n: string) => f.get(f.param(n));
  const r = f.local('i32', 'r');
  const c = f.local('i32', 'c');
  const src = f.local('i32', 'src');
  const a = Array.from({ length: 4 }, (_, k) => f.local('v128', `a${k}`));
  const t = Array.from({ length: 4 }, (_, k) => f.local('v128', `t${k}`));
  f.forRange(r, i32.const(0), p('rows'), 4, () => {
    f.forRange(c, i32.const(0), p('cols'), 4, () => {
      f.set(src, i32.add(p('src'), i32.add(i32.mul(f.get(r), p('lds')), i32.shl(f.get(c), i32.const(2)))));
      for (let k = 0; k < 4; k++) f.set(a[k], v128.load(i32.add(f.get(src), i32.mul(i32.const(k), p('lds')))));
      f.set(t[0], v128.shuffle32(f.get(a[0]), f.get(a[1]), [0, 4, 1, 5]));
      f.set(t[1], v128.shuffle32(f.get(a[0]), f.get(a[1]), [2, 6, 3, 7]));
      f.set(t[2], v128.shuffle32(f.get(a[2]), f.get(a[3]), [0, 4, 1, 5]));
      f.set(t[3], v128.shuffle32(f.get(a[2]), f.get(a[3]), [2, 6, 3, 7]));
      const columns = [
        v128.shuffle32(f.get(t[0]), f.get(t[2]), [0, 1, 4, 5]),
        v128.shuffle32(f.get(t[0]), f.get(t[2]), [2, 3, 6, 7]),
        v128.shuffle32(f.get(t[1]), f.get(t[3]), [0, 1, 4, 5]),
        v128.shuffle32(f.get(t[1]), f.get(t[3]), [2, 3, 6, 7]),
      ];
      for (let k = 0; k < 4; k++) {
        const column = i32.add(f.get(c), i32.const(k));
        const at = i32.add(p('dst'), i32.add(i32.mul(column, p('ldd')), i32.shl(f.get(r), i32.const(2))));
        f.if(i32.lt_s(column, p('cols')), () => f.statement(v128.store(at, columns[k])));
      }
    });
  });
}
