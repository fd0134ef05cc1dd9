// Element types and the float16 <-> float32 conversions the CPU side needs.
// Node 20 has no Float16Array, so float16 data travels as raw IEEE half bits in a Uint16Array;
// where the runtime has Float16Array we accept it too and view its bits.

/**
 * Element types a Tensor can hold. Attention inputs are float32 or float16; masks bool/uint8;
 * cu_seqlens and block tables int32; KV caches (attentionDecode) also bfloat16 (raw bits in a
 * Uint16Array, so it must be named: a Uint16Array alone means float16) and int8.
 */
export type DType = 'float32' | 'float16' | 'bfloat16' | 'bool' | 'uint8' | 'int8' | 'int32';

/** The typed array that stores each dtype (float16 as raw bits). */
export interface StorageOf {
  float32: Float32Array;
  float16: Uint16Array;
  bfloat16: Uint16Array;
  bool: Uint8Array;
  uint8: Uint8Array;
  int8: Int8Array;
  int32: Int32Array;
}

export type TypedStorage = StorageOf[DType];

export const BYTES_PER_ELEMENT: Record<DType, number> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  bool: 1,
  uint8: 1,
  int8: 1,
  int32: 4,
};

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> float16 bits, round to nearest even, with subnormals, infinities and NaN. */
export function toHalfBits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / NaN
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    if (e < -10) return sign; // underflows to zero
    mant |= 0x800000; // implicit leading one
    const shift = 14 - e;
    const half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rest > mid || (rest === mid && (half & 1)) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // round to nearest even; a carry into the exponent is the correct result (up to inf)
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && (half & 1)) ? 1 : 0));
}

const HALF_TO_FLOAT = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) table[h] = sign * mant * 2 ** -24;
    else if (exp === 0x1f) table[h] = mant ? NaN : sign * Infinity;
    else table[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return table;
})();

/** float16 bits -> number. */
export function fromHalfBits(h: number): number {
  return HALF_TO_FLOAT[h & 0xffff];
}

/** Rounds a number to the nearest float16 value (as a number). */
export function roundToHalf(x: number): number {
  return HALF_TO_FLOAT[toHalfBits(x)];
}

/** Converts a whole float32 array to float16 bits. */
export function floatsToHalf(src: ArrayLike<number>, dst = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) dst[i] = toHalfBits(src[i]);
  return dst;
}

/** Converts float16 bits to float32 values. */
export function halfToFloats(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  for (let i = 0; i < src.length; i++) dst[i] = HALF_TO_FLOAT[src[i]];
  return dst;
}

/** float32 -> bfloat16 bits (the top half of the float32), round to nearest even; NaN stays NaN. */
export function toBfloat16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return (bits >>> 16) | 0x40;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bfloat16 bits -> number (exact). */
export function fromBfloat16Bits(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}

/** Converts bfloat16 bits to float32 values. */
export function bfloat16ToFloats(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return dst;
}

/** Converts a float32 array to bfloat16 bits (round to nearest even). */
export function floatsToBfloat16(src: ArrayLike<number>, dst = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) dst[i] = toBfloat16Bits(src[i]);
  return dst;
}
