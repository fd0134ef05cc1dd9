// How cache elements are stored and read back on the host: float32 as is, float16 / bfloat16 as
// raw bits (round to nearest even), int8 as symmetric per-row quantization with one float32 scale
// per (position, head):
//   scale = max|x| * (1/127),  q = clamp(round_half_even(x * (1 / scale)), -127, 127),  x' = q * scale
// The WebGPU kernels quantize the same way in float32 (their division may differ in the last bit,
// so a value exactly between two steps can land on the other one), the CPU path and the reference
// use these functions.
import { fromHalfBits, toBfloat16Bits, fromBfloat16Bits, toHalfBits } from '../../core/dtype.js';
import type { TypedStorage } from '../../core/dtype.js';
import type { CacheDType } from './options.js';

/** float32 value of 1/127 (what WGSL's `1.0 / 127.0` becomes). */
export const INV_127 = Math.fround(1 / 127);

/** Rounds half to even, as WGSL round(). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The float32 scale of an int8 row (0 for an all-zero row). */
export function int8Scale(row: ArrayLike<number>, start = 0, count = row.length): number {
  let max = 0;
  for (let i = start; i < start + count; i++) max = Math.max(max, Math.abs(row[i]));
  return Math.fround(Math.fround(max) * INV_127);
}

/** Quantizes x with a row scale (see the file comment). */
export function quantizeInt8(x: number, scale: number): number {
  const inv = scale > 0 ? Math.fround(1 / scale) : 0;
  return Math.max(-127, Math.min(127, roundHalfEven(Math.fround(Math.fround(x) * inv))));
}

/** Element i of cache storage `data` of `dtype` as a number (int8 without its scale). */
export function storedValue(dtype: CacheDType, data: TypedStorage, i: number): number {
  switch (dtype) {
    case 'float32':
    case 'int8': return (data as Float32Array | Int8Array)[i];
    case 'float16': return fromHalfBits((data as Uint16Array)[i]);
    case 'bfloat16': return fromBfloat16Bits((data as Uint16Array)[i]);
  }
}

/** What a value becomes once stored as `dtype` and read back (int8: with the row's scale). */
export function roundToStorage(dtype: CacheDType, x: number, scale = 0): number {
  switch (dtype) {
    case 'float32': return Math.fround(x);
    case 'float16': return fromHalfBits(toHalfBits(x));
    case 'bfloat16': return fromBfloat16Bits(toBfloat16Bits(x));
    case 'int8': return Math.fround(quantizeInt8(x, scale) * scale);
  }
}

/**
 * Writes `count` values of `src` (from `srcAt`, step `srcStep`) as one cache row at `dstAt` of
 * `dst`; int8 rows also get their scale written to `scales[scaleAt]`.
 */
export function storeRow(dtype: CacheDType, dst: TypedStorage, dstAt: number, src: ArrayLike<number>, srcAt: number, count: number, scales?: Float32Array, scaleAt = 0): void {
  switch (dtype) {
    case 'float32':
      for (let d = 0; d < count; d++) (dst as Float32Array)[dstAt + d] = src[srcAt + d];
      return;
    case 'float16':
      for (let d = 0; d < count; d++) (dst as Uint16Array)[dstAt + d] = toHalfBits(src[srcAt + d]);
      return;
    case 'bfloat16':
      for (let d = 0; d < count; d++) (dst as Uint16Array)[dstAt + d] = toBfloat16Bits(src[srcAt + d]);
      return;
    case 'int8': {
      const scale = int8Scale(src, srcAt, count);
      for (let d = 0; d < count; d++) (dst as Int8Array)[dstAt + d] = quantizeInt8(src[srcAt + d], scale);
      scales![scaleAt] = scale;
    }
  }
}
