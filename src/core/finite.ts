// Scans for NaN / ±Infinity in float data (float32, or float16 bits): checkFinite's check, and the
// probe that tells a backend whether v holds values that must not reach rows through a weight of 0
// (0·NaN is NaN; see README "Failure behaviour").
import type { DType } from './dtype.js';

/** Index of the first NaN or ±Inf (with allowNegInf: NaN or +Inf) in `data`, or -1. */
export function firstNonFinite(data: ArrayLike<number>, dtype: DType, allowNegInf = false): number {
  if (dtype === 'float16') {
    const h = data as Uint16Array;
    for (let i = 0; i < h.length; i++) {
      const bits = h[i];
      if ((bits & 0x7c00) === 0x7c00 && !(allowNegInf && bits === 0xfc00)) return i;
    }
    return -1;
  }
  if (dtype !== 'float32') return -1;
  const f = data as Float32Array;
  for (let i = 0; i < f.length; i++) {
    const x = f[i];
    // x - x is 0 for every finite x and NaN for NaN and ±Inf: one subtraction, no call
    if (x - x !== 0 && !(allowNegInf && x === -Infinity)) return i;
  }
  return -1;
}
