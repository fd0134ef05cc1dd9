// The attention backward's element-wise micro-kernels on the CPU, in WASM SIMD (builders over
// engines/cpu/wasm/encoder.ts) and their scalar-JavaScript twins over the same memory. The
// matmuls and transposes of the backward are the GEMM family's (gemm_nt, gemm_nn, transpose); these
// are what lies between:
//   bwd_probs     P = exp(beta·S - lse) per row, in place (S in units of beta = max(1, |scale|), as the
//                 forward keeps scores; lse = +inf for fully masked rows: P = 0)
//   bwd_dscores   dS = P ∘ (dP - D) per row, into dP (D = rowsum(dO ∘ O))
//   bwd_add_rows  dst = (dst + src) · factor per row (bwd-dq-sum: a key slice's dQ partial added in)
//   copy_rows     dst rows = src rows, each with its own row stride (staging head-major: run.ts)
// Addresses and leading dimensions are in bytes; tiles are row-major float32 whose row strides
// hold whole vectors (rows and columns rounded up to 4 stay inside the tile).
import { type FunctionBuilder, type ModuleBuilder, f32, f32x4, i32, v128 } from '../../../../engines/cpu/wasm/encoder.js';
import { emitExp, expConstants, partialLoad, storeFirstLanes } from '../../../../engines/cpu/wasm/simd.js';
import { type DropoutSpec, dropoutRow } from '../../dropout/philox.js';

export const BACKWARD_SIGNATURES = {
  bwd_probs: ['s', 'lds', 'rows', 'cols', 'lse', 'beta'],
  bwd_dscores: ['p', 'dp', 'lds', 'rows', 'cols', 'delta'],
  bwd_add_rows: ['dst', 'src', 'ld', 'rows', 'cols', 'factor'],
  copy_rows: ['src', 'lds', 'dst', 'ldd', 'rows', 'cols'],
} as const;

export interface BackwardKernels {
  /** s[r][c] = exp(beta·s[r][c] - lse[r]) for c < cols. */
  bwd_probs(s: number, lds: number, rows: number, cols: number, lse: number, beta: number): void;
  /** dp[r][c] = p[r][c] · (dp[r][c] - delta[r]) for c < cols (p and dp share the row stride). */
  bwd_dscores(p: number, dp: number, lds: number, rows: number, cols: number, delta: number): void;
  /** dst[r][c] = (dst[r][c] + src[r][c]) · factor for c < cols (dst and src share the row stride; f32 rounding after each step). */
  bwd_add_rows(dst: number, src: number, ld: number, rows: number, cols: number, factor: number): void;
  /** dst[r][c] = src[r][c] for r < rows, c < cols (exact: nothing past a row's cols is read or written). */
  copy_rows(src: number, lds: number, dst: number, ldd: number, rows: number, cols: number): void;
  /** Dropout on one or two tiles (b = 0: one), WASM SIMD Philox (dropout/wasm.ts); the twin is dropoutRow. */
  dropout_rows(a: number, b: number, lds: number, rows: number, cols: number, i0: number, j0: number, stream: number,
    offset: number, k0: number, k1: number, threshold: number, scale: number, scratch: number): void;
}

export function addBackwardKernels(m: ModuleBuilder): void {
  const sig = (names: readonly string[]) => names.map((n) => [n, n === 'beta' || n === 'factor' ? 'f32' : 'i32'] as const);
  m.func('bwd_probs', sig(BACKWARD_SIGNATURES.bwd_probs), undefined, (f) => probs(f));
  m.func('bwd_dscores', sig(BACKWARD_SIGNATURES.bwd_dscores), undefined, (f) => dscores(f));
  m.func('bwd_add_rows', sig(BACKWARD_SIGNATURES.bwd_add_rows), undefined, (f) => addRows(f));
  m.func('copy_rows', sig(BACKWARD_SIGNATURES.copy_rows), undefined, (f) => copyRows(f));
}

/** copy_rows: whole vectors, then the row's last 1-3 floats with exact partial loads and stores. */
function copyRows(f: FunctionBuilder): void {
  const p = (n: string) => f.get(f.param(n));
  const r = f.local('i32', 'r');
  const c = f.local('i32', 'c');
  const srcAt = f.local('i32', 'src_at');
  const dstAt = f.local('i32', 'dst_at');
  const e = f.local('v128', 'e');
  const full = f.local('i32', 'full');
  const rem = f.local('i32', 'rem');
  f.set(full, i32.shl(i32.and(p('cols'), i32.const(~3)), i32.const(2)));
  f.set(rem, i32.and(p('cols'), i32.const(3)));
  f.forRange(r, i32.const(0), p('rows'), 1, () => {
    f.set(srcAt, i32.add(p('src'), i32.mul(f.get(r), p('lds'))));
    f.set(dstAt, i32.add(p('dst'), i32.mul(f.get(r), p('ldd'))));
    f.forRange(c, i32.const(0), f.get(full), 16, () => {
      f.statement(v128.store(i32.add(f.get(dstAt), f.get(c)), v128.load(i32.add(f.get(srcAt), f.get(c)))));
    });
    f.if(f.get(rem), () => {
      f.set(srcAt, i32.add(f.get(srcAt), f.get(full)));
      f.set(dstAt, i32.add(f.get(dstAt), f.get(full)));
      for (const n of [1, 2, 3]) f.if(i32.eq(f.get(rem), i32.const(n)), () => f.set(e, partialLoad(f.get(srcAt), n)));
      storeFirstLanes(f, dstAt, e, i32.shl(f.get(rem), i32.const(2)));
    });
  });
}

/** bwd_add_rows: whole vectors (a row's last one read whole, stored partially). */
function addRows(f: FunctionBuilder): void {
  const p = (n: string) => f.get(f.param(n));
  const r = f.local('i32', 'r');
  const c = f.local('i32', 'c');
  const ptr = f.local('i32', 'ptr');
  const offset = f.local('i32', 'offset');
  const e = f.local('v128', 'e');
  const bytes = i32.shl(p('cols'), i32.const(2));
  f.forRange(r, i32.const(0), p('rows'), 1, () => {
    f.forRange(c, i32.const(0), bytes, 16, () => {
      f.set(offset, i32.add(i32.mul(f.get(r), p('ld')), f.get(c)));
      f.set(ptr, i32.add(p('dst'), f.get(offset)));
      f.set(e, f32x4.mul(f32x4.add(v128.load(f.get(ptr)), v128.load(i32.add(p('src'), f.get(offset)))), f32x4.splat(p('factor'))));
      storeFirstLanes(f, ptr, e, i32.sub(bytes, f.get(c)));
    });
  });
}

/**
 * bwd_probs: two vectors per step (two independent exp chains in flight), one pointer per row, the
 * constants in locals, the row's last partial vector apart: 5.3 -> 4.1 µs per 64 × 64 tile (one core here).
 */
function probs(f: FunctionBuilder): void {
  const p = (n: string) => f.get(f.param(n));
  const r = f.local('i32', 'r');
  const ptr = f.local('i32', 'ptr');
  const end = f.local('i32', 'end');
  const rem = f.local('i32', 'rem');
  const stat = f.local('v128', 'stat');
  const beta = f.local('v128', 'beta_v');
  const x = [f.local('v128', 'x0'), f.local('v128', 'x1')];
  const e = [f.local('v128', 'e0'), f.local('v128', 'e1')];
  const t = [{ n: f.local('v128', 'n0'), r: f.local('v128', 'r0') }, { n: f.local('v128', 'n1'), r: f.local('v128', 'r1') }];
  const k = expConstants(f);
  f.set(beta, f32x4.splat(p('beta')));
  f.set(rem, i32.and(p('cols'), i32.const(3)));
  // beta·S - lse <= 0 (up to rounding); -inf (hidden) and rows with lse = +inf give exactly 0
  const exp = (v: number, offset: number) => {
    f.set(x[v], f32x4.sub(f32x4.mul(v128.load(f.get(ptr), offset), f.get(beta)), f.get(stat)));
    emitExp(f, x[v], e[v], t[v], k);
  };
  f.forRange(r, i32.const(0), p('rows'), 1, () => {
    f.set(stat, f32x4.splat(f32.load(i32.add(p('lse'), i32.shl(f.get(r), i32.const(2))))));
    f.set(ptr, i32.add(p('s'), i32.mul(f.get(r), p('lds'))));
    f.set(end, i32.add(f.get(ptr), i32.shl(i32.and(p('cols'), i32.const(~7)), i32.const(2))));
    f.block('pairs_done', (done) => {
      f.loop('pairs', (again) => {
        f.brIf(done, i32.ge_s(f.get(ptr), f.get(end)));
        exp(0, 0);
        exp(1, 16);
        f.statement(v128.store(f.get(ptr), f.get(e[0])));
        f.statement(v128.store(f.get(ptr), f.get(e[1]), 16));
        f.set(ptr, i32.add(f.get(ptr), i32.const(32)));
        f.br(again);
      });
    });
    f.if(i32.and(p('cols'), i32.const(4)), () => {
      exp(0, 0);
      f.statement(v128.store(f.get(ptr), f.get(e[0])));
      f.set(ptr, i32.add(f.get(ptr), i32.const(16)));
    });
    // the last 1-3 floats: the whole vector is read (inside the tile's row), only they are stored
    f.if(f.get(rem), () => {
      exp(0, 0);
      storeFirstLanes(f, ptr, e[0], i32.shl(f.get(rem), i32.const(2)));
    });
  });
}

/** bwd_dscores: one pass over `cols` floats of each row, whole vectors, the last one stored partially. */
function dscores(f: FunctionBuilder): void {
  const p = (n: string) => f.get(f.param(n));
  const r = f.local('i32', 'r');
  const c = f.local('i32', 'c');
  const ptr = f.local('i32', 'ptr');
  const stat = f.local('v128', 'stat');
  const e = f.local('v128', 'e');
  const bytes = i32.shl(p('cols'), i32.const(2));
  f.forRange(r, i32.const(0), p('rows'), 1, () => {
    f.set(stat, f32x4.splat(f32.load(i32.add(p('delta'), i32.shl(f.get(r), i32.const(2))))));
    f.forRange(c, i32.const(0), bytes, 16, () => {
      const offset = i32.add(i32.mul(f.get(r), p('lds')), f.get(c));
      f.set(ptr, i32.add(p('dp'), offset));
      f.set(e, f32x4.mul(v128.load(i32.add(p('p'), offset)), f32x4.sub(v128.load(f.get(ptr)), f.get(stat))));
      storeFirstLanes(f, ptr, e, i32.sub(bytes, f.get(c)));
    });
  });
}

/** Plain JavaScript twins (Math.exp): the fallback without WASM SIMD and the yardstick in tests. */
export function scalarBackwardKernels(f: () => Float32Array<ArrayBufferLike>): BackwardKernels {
  return {
    bwd_probs(s, lds, rows, cols, lse, beta) {
      const x = f();
      for (let r = 0; r < rows; r++) {
        const row = (s + r * lds) >>> 2;
        const l = x[(lse >>> 2) + r];
        for (let c = 0; c < cols; c++) x[row + c] = Math.exp(Math.fround(x[row + c] * beta) - l);
      }
    },
    bwd_dscores(p, dp, lds, rows, cols, delta) {
      const x = f();
      for (let r = 0; r < rows; r++) {
        const pr = (p + r * lds) >>> 2;
        const dr = (dp + r * lds) >>> 2;
        const d = x[(delta >>> 2) + r];
        for (let c = 0; c < cols; c++) x[dr + c] = x[pr + c] * (x[dr + c] - d);
      }
    },
    dropout_rows(a, b, lds, rows, cols, i0, j0, stream, offset, k0, k1, threshold, scale) {
      const x = f();
      const spec = { offset, seedLo: k0 >>> 0, seedHi: k1 >>> 0, threshold, scale: Math.fround(scale) } as DropoutSpec;
      const factors = new Float32Array(cols);
      for (let r = 0; r < rows; r++) {
        dropoutRow(spec, 1, 0, stream, i0 + r, j0, cols, factors);
        for (const tile of b ? [a, b] : [a]) {
          const row = (tile + r * lds) >>> 2;
          for (let c = 0; c < cols; c++) x[row + c] *= factors[c];
        }
      }
    },
    copy_rows(src, lds, dst, ldd, rows, cols) {
      const x = f();
      for (let r = 0; r < rows; r++) x.copyWithin((dst + r * ldd) >>> 2, (src + r * lds) >>> 2, ((src + r * lds) >>> 2) + cols);
    },
    bwd_add_rows(dst, src, ld, rows, cols, factor) {
      const x = f();
      const k = Math.fround(factor);
      for (let r = 0; r < rows; r++) {
        const d = (dst + r * ld) >>> 2;
        const s = (src + r * ld) >>> 2;
        for (let c = 0; c < cols; c++) x[d + c] = Math.fround(x[d + c] + x[s + c]) * k;
      }
    },
  };
}
