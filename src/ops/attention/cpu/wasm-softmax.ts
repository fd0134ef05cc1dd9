// Attention's softmax micro-kernels in WASM SIMD (builders over engines/cpu/wasm/encoder.ts):
//   softmax_update   the online-softmax step on one S tile (row max, exp, row sum, alpha);
//                    the naive path runs it once over whole rows.
//   finalize_rows    dst = src / l per row (0 where l = 0: fully masked rows).
// exp() is the shared vector expf (engines/cpu/wasm/simd.ts, about 1 ulp), within the 1e-5 budget.
import { type Expr, type FunctionBuilder, type ModuleBuilder, f32, f32x4, i32, i32x4, v128 } from '../../../engines/cpu/wasm/encoder.js';
import { emitExp, horizontal, storeFirstLanes } from '../../../engines/cpu/wasm/simd.js';

export const SOFTMAX_SIGNATURES = {
  softmax_update: ['s', 'lds', 'rows', 'cols', 'mx', 'sum', 'alpha', 'beta'],
  finalize_rows: ['src', 'lds', 'dst', 'ldd', 'rows', 'cols', 'sum'],
} as const;

export function addSoftmaxKernels(m: ModuleBuilder): void {
  const sig = (names: readonly string[]) => names.map((n) => [n, n === 'beta' ? 'f32' : 'i32'] as const);
  m.func('softmax_update', sig(SOFTMAX_SIGNATURES.softmax_update), undefined, (f) => softmaxUpdate(f));
  m.func('finalize_rows', sig(SOFTMAX_SIGNATURES.finalize_rows), undefined, (f) => finalizeRows(f));
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
