// The WASM SIMD micro-kernels of the CPU backend, as builder functions of readable WAT-like
// TypeScript (see encoder.ts). Every address and leading dimension is in bytes; every matrix is
// row-major float32 with a row stride. Register blocks are sized for V8 on x64 (15 usable xmm
// registers: 8 accumulators). The fused kernel's tile kernels (packed panels) are in
// tile-kernels.ts; the strided ones here serve the naive path and the internal matmul:
//
//   gemm_nt  C = alpha·(A·Bᵀ + A2·B2ᵀ) [+ C]   "dot form": R rows of A against 4 rows of B at a time,
//            4·R vector accumulators of partial sums, reduced to one 4-key vector per row at the end.
//            S = scale·Q·Kᵀ reading K rows where they are (no transposition); the second pair is
//            the MLA split form's qRope·kRopeᵀ, accumulated in the same registers.
//   gemm_nn  C = [scale_r·C +] A·B               "splat form": R rows × CV vectors of C live in
//            registers while the depth loop splats A[r][p] against B[p][j..j+4·CV].
//   softmax_update   the online-softmax step on one S tile (row max, exp, row sum, alpha);
//                    the naive path runs it once over whole rows.
//   finalize_rows    dst = src / l per row (0 where l = 0: fully masked rows).
//
// exp() is Cephes' expf (range reduction by ln2 split in two constants, degree-5 polynomial):
// about 1 ulp (max relative error 8e-8 measured over [-87, 0]), within the 1e-5 budget.
import { type Expr, type FunctionBuilder, type Local, ModuleBuilder, f32, f32x4, i32, i32x4, v128 } from './encoder.js';
import { type TileOptions, TILE_SIGNATURES, addTileKernels } from './tile-kernels.js';

export interface KernelOptions extends Omit<TileOptions, 'relaxed'> {
  /** Rows of A per register block in gemm_nt (accumulators: 4·R). */
  ntRows: number;
  /** Depth steps (of 4 floats) per loop iteration in gemm_nt. */
  ntUnroll: number;
  /** Rows × vectors of C per register block in gemm_nn. */
  nnRows: number;
  nnVectors: number;
  /** Use f32x4.relaxed_madd (FMA) for the multiply-adds. */
  relaxed: boolean;
  /** Shared memory (threads) or a plain one. */
  shared: boolean;
  maximumPages: number;
}

export const DEFAULT_KERNEL_OPTIONS: Omit<KernelOptions, 'relaxed' | 'shared' | 'maximumPages'> = {
  br: 64,
  bc: 64,
  qkRows: 2,
  qkUnroll: 1,
  pvRows: 4,
  pvVectors: 2,
  ntRows: 2,
  ntUnroll: 1,
  nnRows: 4,
  nnVectors: 2,
};

/** Names and parameter lists of the exported kernels (the JS side binds to these). */
export const KERNEL_SIGNATURES = {
  gemm_nt: ['a', 'lda', 'b', 'ldb', 'k', 'a2', 'lda2', 'b2', 'ldb2', 'k2', 'c', 'ldc', 'm', 'n', 'alpha', 'accumulate'],
  gemm_nn: ['a', 'lda', 'b', 'ldb', 'k', 'c', 'ldc', 'm', 'n', 'mode', 'scales'],
  softmax_update: ['s', 'lds', 'rows', 'cols', 'mx', 'sum', 'alpha', 'beta'],
  finalize_rows: ['src', 'lds', 'dst', 'ldd', 'rows', 'cols', 'sum'],
  ...TILE_SIGNATURES,
} as const;

export function buildKernelModule(o: KernelOptions): ModuleBuilder {
  const m = new ModuleBuilder({ shared: o.shared, maximumPages: o.maximumPages });
  const I = 'i32' as const;
  const sig = (names: readonly string[], floats: readonly string[] = []) => names.map((n) => [n, floats.includes(n) ? 'f32' : I] as const);
  m.func('gemm_nt', sig(KERNEL_SIGNATURES.gemm_nt, ['alpha']), undefined, (f) => gemmNT(f, o));
  m.func('gemm_nn', sig(KERNEL_SIGNATURES.gemm_nn), undefined, (f) => gemmNN(f, o));
  m.func('softmax_update', sig(KERNEL_SIGNATURES.softmax_update, ['beta']), undefined, (f) => softmaxUpdate(f));
  m.func('finalize_rows', sig(KERNEL_SIGNATURES.finalize_rows), undefined, (f) => finalizeRows(f));
  addTileKernels(m, o);
  return m;
}

// ---------- helpers

/** acc + a·b, fused when relaxed SIMD is on. */
function madd(o: KernelOptions, a: Expr, b: Expr, acc: Expr): Expr {
  return o.relaxed ? f32x4.relaxed_madd(a, b, acc) : f32x4.add(acc, f32x4.mul(a, b));
}

/** Loads `rem` (1..3) floats at ptr into the low lanes, zeros elsewhere (exact: no garbage lanes). */
function partialLoad(ptr: Expr, rem: number): Expr {
  if (rem === 1) return v128.load32_zero(ptr);
  if (rem === 2) return v128.load64_zero(ptr);
  return v128.load32_lane(ptr, v128.load64_zero(ptr), 2, 8);
}

/** Stores the first lanes of vec at ptr: all four when `bytes` (a runtime i32 > 0) is >= 16. */
function storeFirstLanes(f: FunctionBuilder, ptr: Local, vec: Local, bytes: Expr): void {
  f.if(i32.ge_s(bytes, i32.const(16)), () => f.statement(v128.store(f.get(ptr), f.get(vec))), () => {
    f.if(i32.ge_s(bytes, i32.const(8)), () => {
      f.statement(v128.store64_lane(f.get(ptr), f.get(vec), 0));
      f.if(i32.eq(bytes, i32.const(12)), () => f.statement(v128.store32_lane(f.get(ptr), f.get(vec), 2, 8)));
    }, () => f.statement(v128.store32_lane(f.get(ptr), f.get(vec), 0)));
  });
}

/** Horizontal sum / max of the 4 lanes of a vector, as an f32. */
function horizontal(vec: Expr, combine: (a: Expr, b: Expr) => Expr, f: FunctionBuilder, tmp: Local): Expr {
  f.set(tmp, combine(vec, v128.shuffle32(vec, vec, [2, 3, 0, 1])));
  f.set(tmp, combine(f.get(tmp), v128.shuffle32(f.get(tmp), f.get(tmp), [1, 0, 3, 2])));
  return f32x4.extract_lane(f.get(tmp), 0);
}

/**
 * out = exp(x) for x <= 0 (Cephes expf). x = -inf (masked scores) gives exactly 0; x below
 * -87.3 (beyond the smallest normal) gives 0 as well, which is below float32 softmax resolution.
 * n = round(x·log2e) comes from the "shifter" trick (adding 1.5·2^23 rounds to an integer held in
 * the low mantissa bits), which also yields 2^n's exponent bits without a float->int conversion.
 */
function emitExp(f: FunctionBuilder, x: Local, out: Local, t: { n: Local; r: Local }): void {
  const LOW = -87.33654;
  const SHIFTER = 12582912; // 1.5 * 2^23
  f.set(t.r, f32x4.pmax(f.get(x), f32x4.const(LOW)));
  f.set(t.n, f32x4.add(f32x4.mul(f.get(t.r), f32x4.const(Math.LOG2E)), f32x4.const(SHIFTER))); // bits: 0x4B400000 + n
  f.set(out, f32x4.sub(f.get(t.n), f32x4.const(SHIFTER))); // n as a float
  // r = x - n·ln2, with ln2 split so n·C1 is exact
  f.set(t.r, f32x4.sub(f.get(t.r), f32x4.mul(f.get(out), f32x4.const(0.693359375))));
  f.set(t.r, f32x4.sub(f.get(t.r), f32x4.mul(f.get(out), f32x4.const(-2.12194440e-4))));
  // 2^n: (0x4B400000 + n + 127) << 23 drops the shifter's bits (its lowest set bit is 22)
  f.set(t.n, i32x4.shl(i32x4.add(f.get(t.n), i32x4.splat(i32.const(127))), i32.const(23)));
  const coefficients = [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1];
  f.set(out, f32x4.const(coefficients[0]));
  for (const c of coefficients.slice(1)) f.set(out, f32x4.add(f32x4.mul(f.get(out), f.get(t.r)), f32x4.const(c)));
  // y = p(r)·r² + r + 1
  f.set(out, f32x4.add(f32x4.add(f32x4.mul(f.get(out), f32x4.mul(f.get(t.r), f.get(t.r))), f.get(t.r)), f32x4.const(1)));
  f.set(out, f32x4.mul(f.get(out), f.get(t.n)));
  // 0 below LOW; NaN stays NaN (exp of a NaN score must not read as a weight of 0)
  f.set(out, v128.and(f.get(out), v128.or(f32x4.ge(f.get(x), f32x4.const(LOW)), f32x4.ne(f.get(x), f.get(x)))));
}

// ---------- gemm_nt: C[m×n] = alpha·(A[m×k]·B[n×k]ᵀ + A2[m×k2]·B2[n×k2]ᵀ) (+ C when accumulate)

function gemmNT(f: FunctionBuilder, o: KernelOptions): void {
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

/** Runs `block(R)` over full blocks of R rows from i = 0, then `block(r)` once for the r < R left. */
function rowBlocks(f: FunctionBuilder, i: Local, m: Expr, R: number, block: (rows: number) => void): void {
  f.set(i, i32.const(0));
  f.block('rows_done', (done) => {
    f.loop('rows', (again) => {
      f.brIf(done, i32.gt_s(i32.add(f.get(i), i32.const(R)), m));
      block(R);
      f.set(i, i32.add(f.get(i), i32.const(R)));
      f.br(again);
    });
  });
  for (let r = R - 1; r >= 1; r--) f.if(i32.eq(i32.sub(m, f.get(i)), i32.const(r)), () => block(r));
}

// ---------- gemm_nn: C[m×n] = init(C) + A[m×k]·B[k×n]; init: 0 (mode 0), C (mode 1), scales[r]·C (mode 2)

function gemmNN(f: FunctionBuilder, o: KernelOptions): void {
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

// ---------- softmax_update: one online-softmax step on an S tile, in place (S becomes P)
//   m' = max(m, rowmax(S)); alpha = exp(m - m'); P = exp(S - m'); l = l·alpha + rowsum(P)
// A row with m' = -inf (nothing visible yet) gets P = 0 and alpha = 1, never NaN.
// Three passes so the per-row scalar work (m', alpha, l·alpha) runs 4 rows per vector:
// row maxima (into the alpha array), then m'/alpha/l for 4 rows at a time, then exp and row sums.
// The statistics arrays must hold rows rounded up to 4 (the extra lanes are scratch).

function softmaxUpdate(f: FunctionBuilder): void {
  const p = (n: string) => f.get(f.param(n));
  const r = f.local('i32', 'r');
  const row = f.local('i32', 'row');
  const c = f.local('i32', 'c');
  const full = f.local('i32', 'full');
  const x = f.local('v128', 'x');
  const e = f.local('v128', 'e');
  const mx = f.local('v128', 'mx');
  const sum = f.local('v128', 'sum');
  const tmp = f.local('v128', 'tmp');
  const t = { n: f.local('v128', 'n'), r: f.local('v128', 'rr') };
  const mOld = f.local('v128', 'm_old');
  const mNew = f.local('f32', 'm_new');
  const tailMask = f.local('v128', 'tail_mask');
  const rem = f.local('i32', 'rem');
  const NEG_INF = f32x4.const(-Infinity);
  const betaV = f.local('v128', 'beta_v');
  f.set(betaV, f32x4.splat(p('beta')));
  // full vectors, then one masked vector for cols % 4
  f.set(full, i32.shl(i32.and(p('cols'), i32.const(~3)), i32.const(2)));
  f.set(rem, i32.and(p('cols'), i32.const(3)));
  f.set(tailMask, i32x4.lt_s(i32x4.const(0, 1, 2, 3), i32x4.splat(f.get(rem))));
  const tailX = () => v128.bitselect(v128.load(i32.add(f.get(row), f.get(full))), NEG_INF, f.get(tailMask));
  const rowAddr = (base: string) => i32.add(p(base), i32.shl(f.get(r), i32.const(2)));

  // pass 1: row maxima of this tile, parked in alpha[r]
  f.forRange(r, i32.const(0), p('rows'), 1, () => {
    f.set(row, i32.add(p('s'), i32.mul(f.get(r), p('lds'))));
    f.set(mx, NEG_INF);
    // max, not pmax: a NaN score must make the row max NaN (then the row's output and LSE)
    f.forRange(c, i32.const(0), f.get(full), 16, () => f.set(mx, f32x4.max(f.get(mx), v128.load(i32.add(f.get(row), f.get(c))))));
    f.if(f.get(rem), () => f.set(mx, f32x4.max(f.get(mx), tailX())));
    f.statement(f32.store(rowAddr('alpha'), horizontal(f.get(mx), f32x4.max, f, tmp)));
  });
  // pass 2, four rows at a time: m' = max(m, rowmax); alpha = exp(m - m') (1 where m' = -inf); l *= alpha
  f.forRange(r, i32.const(0), p('rows'), 4, () => {
    f.set(mOld, v128.load(rowAddr('mx')));
    f.set(mx, f32x4.max(f.get(mOld), v128.load(rowAddr('alpha'))));
    // scores are in units of beta (scoreUnits): weights are exp(beta·(s - m))
    f.set(x, f32x4.mul(f32x4.sub(f.get(mOld), f.get(mx)), f.get(betaV))); // NaN where both are -inf: replaced below
    emitExp(f, x, e, t);
    f.set(e, v128.bitselect(f32x4.const(1), f.get(e), f32x4.eq(f.get(mx), NEG_INF)));
    f.statement(v128.store(rowAddr('alpha'), f.get(e)));
    f.statement(v128.store(rowAddr('mx'), f.get(mx)));
    f.statement(v128.store(rowAddr('sum'), f32x4.mul(v128.load(rowAddr('sum')), f.get(e))));
  });
  // pass 3: P = exp(S - m') and l += rowsum(P)
  f.forRange(r, i32.const(0), p('rows'), 1, () => {
    f.set(row, i32.add(p('s'), i32.mul(f.get(r), p('lds'))));
    f.set(mNew, f32.load(rowAddr('mx')));
    f.if(f32.eq(f.get(mNew), f32.const(-Infinity)), () => {
      f.forRange(c, i32.const(0), f.get(full), 16, () => f.statement(v128.store(i32.add(f.get(row), f.get(c)), f32x4.const(0))));
      f.if(f.get(rem), () => f.statement(v128.store(i32.add(f.get(row), f.get(full)), f32x4.const(0))));
    }, () => {
      f.set(mx, f32x4.splat(f.get(mNew)));
      f.set(sum, f32x4.const(0));
      const expAt = (addr: Expr, value: Expr) => {
        f.set(x, f32x4.mul(f32x4.sub(value, f.get(mx)), f.get(betaV)));
        emitExp(f, x, e, t);
        f.set(sum, f32x4.add(f.get(sum), f.get(e)));
        f.statement(v128.store(addr, f.get(e)));
      };
      f.forRange(c, i32.const(0), f.get(full), 16, () => expAt(i32.add(f.get(row), f.get(c)), v128.load(i32.add(f.get(row), f.get(c)))));
      f.if(f.get(rem), () => expAt(i32.add(f.get(row), f.get(full)), tailX()));
      f.statement(f32.store(rowAddr('sum'), f32.add(f32.load(rowAddr('sum')), horizontal(f.get(sum), f32x4.add, f, tmp))));
    });
  });
}

// ---------- finalize_rows: dst[r][:cols] = src[r][:cols] / l[r], or 0 where l[r] = 0

function finalizeRows(f: FunctionBuilder): void {
  const p = (n: string) => f.get(f.param(n));
  const r = f.local('i32', 'r');
  const c = f.local('i32', 'c');
  const inv = f.local('v128', 'inv');
  const v = f.local('v128', 'v');
  const dst = f.local('i32', 'dst');
  const l = f.local('f32', 'l');
  const bytes = i32.shl(p('cols'), i32.const(2));
  f.forRange(r, i32.const(0), p('rows'), 1, () => {
    f.set(l, f32.load(i32.add(p('sum'), i32.shl(f.get(r), i32.const(2)))));
    f.if(f32.eq(f.get(l), f32.const(0)), () => f.set(inv, f32x4.const(0)), () => f.set(inv, f32x4.splat(f32.div(f32.const(1), f.get(l)))));
    f.forRange(c, i32.const(0), bytes, 16, () => {
      f.set(v, f32x4.mul(v128.load(i32.add(i32.add(p('src'), i32.mul(f.get(r), p('lds'))), f.get(c))), f.get(inv)));
      f.set(dst, i32.add(i32.add(p('dst'), i32.mul(f.get(r), p('ldd'))), f.get(c)));
      storeFirstLanes(f, dst, v, i32.sub(bytes, f.get(c)));
    });
  });
}
