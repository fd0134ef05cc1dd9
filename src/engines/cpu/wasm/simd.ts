// Code-generation helpers shared by every op's WASM SIMD kernels (built with encoder.ts): the
// multiply-add (FMA under relaxed SIMD), partial vector loads and stores at row tails, horizontal
// reductions, a vector exp, and the row-block loop. They know no op.
//
// exp() is Cephes' expf (range reduction by ln2 split in two constants, degree-5 polynomial):
// about 1 ulp (max relative error 8e-8 measured over [-87, 0]).
import { type Expr, type FunctionBuilder, type Local, f32x4, i32, i32x4, v128 } from './encoder.js';

/** acc + a·b, fused (f32x4.relaxed_madd) when the module is built for relaxed SIMD. */
export function madd(o: { relaxed: boolean }, a: Expr, b: Expr, acc: Expr): Expr {
  return o.relaxed ? f32x4.relaxed_madd(a, b, acc) : f32x4.add(acc, f32x4.mul(a, b));
}

/** Loads `rem` (1..3) floats at ptr into the low lanes, zeros elsewhere (exact: no garbage lanes). */
export function partialLoad(ptr: Expr, rem: number): Expr {
  if (rem === 1) return v128.load32_zero(ptr);
  if (rem === 2) return v128.load64_zero(ptr);
  return v128.load32_lane(ptr, v128.load64_zero(ptr), 2, 8);
}

/** Stores the first lanes of vec at ptr: all four when `bytes` (a runtime i32 > 0) is >= 16. */
export function storeFirstLanes(f: FunctionBuilder, ptr: Local, vec: Local, bytes: Expr): void {
  f.if(i32.ge_s(bytes, i32.const(16)), () => f.statement(v128.store(f.get(ptr), f.get(vec))), () => {
    f.if(i32.ge_s(bytes, i32.const(8)), () => {
      f.statement(v128.store64_lane(f.get(ptr), f.get(vec), 0));
      f.if(i32.eq(bytes, i32.const(12)), () => f.statement(v128.store32_lane(f.get(ptr), f.get(vec), 2, 8)));
    }, () => f.statement(v128.store32_lane(f.get(ptr), f.get(vec), 0)));
  });
}

/** Horizontal sum / max of the 4 lanes of a vector, as an f32. */
export function horizontal(vec: Expr, combine: (a: Expr, b: Expr) => Expr, f: FunctionBuilder, tmp: Local): Expr {
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
export function emitExp(f: FunctionBuilder, x: Local, out: Local, t: { n: Local; r: Local }, k?: ExpConstants): void {
  const c = (name: keyof typeof EXP_CONSTANTS) => (k ? f.get(k[name]) : expConstant(name));
  f.set(t.r, f32x4.pmax(f.get(x), c('low')));
  f.set(t.n, f32x4.add(f32x4.mul(f.get(t.r), c('log2e')), c('shifter'))); // bits: 0x4B400000 + n
  f.set(out, f32x4.sub(f.get(t.n), c('shifter'))); // n as a float
  // r = x - n·ln2, with ln2 split so n·C1 is exact
  f.set(t.r, f32x4.sub(f.get(t.r), f32x4.mul(f.get(out), c('ln2hi'))));
  f.set(t.r, f32x4.sub(f.get(t.r), f32x4.mul(f.get(out), c('ln2lo'))));
  // 2^n: (0x4B400000 + n + 127) << 23 drops the shifter's bits (its lowest set bit is 22)
  f.set(t.n, i32x4.shl(i32x4.add(f.get(t.n), c('bias')), i32.const(23)));
  f.set(out, c('p0'));
  for (const name of ['p1', 'p2', 'p3', 'p4', 'p5'] as const) f.set(out, f32x4.add(f32x4.mul(f.get(out), f.get(t.r)), c(name)));
  // y = p(r)·r² + r + 1
  f.set(out, f32x4.add(f32x4.add(f32x4.mul(f.get(out), f32x4.mul(f.get(t.r), f.get(t.r))), f.get(t.r)), c('one')));
  f.set(out, f32x4.mul(f.get(out), f.get(t.n)));
  // 0 below LOW; NaN stays NaN (exp of a NaN score must not read as a weight of 0)
  f.set(out, v128.and(f.get(out), v128.or(f32x4.ge(f.get(x), c('low')), f32x4.ne(f.get(x), f.get(x)))));
}

/** exp()'s constants (Cephes expf; see emitExp). */
const EXP_CONSTANTS = {
  low: -87.33654,
  log2e: Math.LOG2E,
  shifter: 12582912, // 1.5 * 2^23
  ln2hi: 0.693359375,
  ln2lo: -2.12194440e-4,
  bias: 127, // an i32x4 splat
  p0: 1.9875691500e-4,
  p1: 1.3981999507e-3,
  p2: 8.3334519073e-3,
  p3: 4.1665795894e-2,
  p4: 1.6666665459e-1,
  p5: 5.0000001201e-1,
  one: 1,
} as const;

function expConstant(name: keyof typeof EXP_CONSTANTS): Expr {
  return name === 'bias' ? i32x4.splat(i32.const(EXP_CONSTANTS.bias)) : f32x4.const(EXP_CONSTANTS[name]);
}

/** exp()'s constants held in locals, set where this is called (before the loops that use them). */
export type ExpConstants = Record<keyof typeof EXP_CONSTANTS, Local>;

export function expConstants(f: FunctionBuilder): ExpConstants {
  const k = {} as ExpConstants;
  for (const name of Object.keys(EXP_CONSTANTS) as Array<keyof typeof EXP_CONSTANTS>) {
    k[name] = f.local('v128', `exp_${name}`);
    f.set(k[name], expConstant(name));
  }
  return k;
}

/** Runs `block(R)` over full blocks of R rows from i = 0, then `block(r)` once for the r < R left. */
export function rowBlocks(f: FunctionBuilder, i: Local, m: Expr, R: number, block: (rows: number) => void): void {
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
