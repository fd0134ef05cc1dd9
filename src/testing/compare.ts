// Pass rules against the float64 reference (see README "Correctness"):
// - float32 inputs: max |out - ref| <= 1e-5 * max |ref| (and the same for LSE, scaled by max(1, |lse|)).
// - float16 inputs: max |out - ref| <= 2 * max |naive16 - ref| + 1e-6, where naive16 is attention
//   computed in three rounded float16 steps (FlashAttention's test rule).
// - never NaN; -Infinity LSE exactly where the reference has it (fully masked rows).

export interface Comparison {
  maxAbsError: number;
  maxAbsRef: number;
  /** maxAbsError / max(maxAbsRef, tiny). */
  relError: number;
  /** First index holding NaN (or a finite/infinite mismatch), -1 if none. */
  badIndex: number;
}

export function compare(got: ArrayLike<number>, ref: ArrayLike<number>): Comparison {
  let maxAbsError = 0;
  let maxAbsRef = 0;
  let badIndex = -1;
  if (got.length !== ref.length) throw new Error(`compare: length ${got.length} vs reference ${ref.length}`);
  for (let i = 0; i < got.length; i++) {
    const g = got[i];
    const r = ref[i];
    if (Number.isNaN(g) || Number.isFinite(g) !== Number.isFinite(r) || (!Number.isFinite(r) && g !== r)) {
      if (badIndex < 0) badIndex = i;
      continue;
    }
    if (!Number.isFinite(r)) continue;
    const e = Math.abs(g - r);
    if (e > maxAbsError) maxAbsError = e;
    if (Math.abs(r) > maxAbsRef) maxAbsRef = Math.abs(r);
  }
  return { maxAbsError, maxAbsRef, relError: maxAbsError / Math.max(maxAbsRef, 1e-30), badIndex };
}

/** Relative tolerance for float32 results. */
export const F32_RTOL = 1e-5;

/** Whether `got` passes for float32 inputs; returns a failure message or undefined. */
export function checkF32(what: string, got: ArrayLike<number>, ref: ArrayLike<number>, rtol = F32_RTOL): string | undefined {
  const c = compare(got, ref);
  if (c.badIndex >= 0) return `${what}: bad value ${got[c.badIndex]} at ${c.badIndex} (reference ${ref[c.badIndex]})`;
  const limit = rtol * Math.max(c.maxAbsRef, 1);
  if (c.maxAbsError > limit) return `${what}: max abs error ${c.maxAbsError.toExponential(3)} > ${limit.toExponential(3)} (rel ${c.relError.toExponential(3)})`;
  return undefined;
}

/** FlashAttention's rule for low-precision inputs. */
export function checkLowPrecision(what: string, got: ArrayLike<number>, naive: ArrayLike<number>, ref: ArrayLike<number>, atol = 1e-6): string | undefined {
  const c = compare(got, ref);
  if (c.badIndex >= 0) return `${what}: bad value ${got[c.badIndex]} at ${c.badIndex} (reference ${ref[c.badIndex]})`;
  const n = compare(naive, ref);
  const limit = 2 * n.maxAbsError + atol;
  if (c.maxAbsError > limit) {
    return `${what}: max abs error ${c.maxAbsError.toExponential(3)} > 2 x naive ${n.maxAbsError.toExponential(3)} + ${atol}`;
  }
  return undefined;
}
