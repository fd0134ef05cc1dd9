// WGSL pieces of the decode kernels that depend on how a buffer stores its elements. Everything
// is read 4 elements ("a quad", one vec4<f32>) at a time, from bindings whose element type packs
// whole quads, so no kernel needs the shader-f16 feature:
//   float32   vec4<f32>                      (16 bytes: 4 elements)
//   float16   vec2<u32> / vec4<u32>           (8 / 16 bytes: 4 / 8 elements), unpack2x16float
//   bfloat16  vec2<u32> / vec4<u32>           (the high halves of float32 bits)
//   int8      u32 / vec2<u32> / vec4<u32>     (4 / 8 / 16 elements), sign-extended bytes
// A cache "chunk" is E elements (4, 8 or 16) loaded at once: E / 4 quads.
import type { CacheDType } from '../options.js';

export type StoredDType = CacheDType;

/** Elements of one binding element (the WGSL array's element type) for a chunk of E elements. */
export function elementsPerWord(dtype: StoredDType, chunk: number): number {
  switch (dtype) {
    case 'float32': return 4;
    case 'float16':
    case 'bfloat16': return chunk >= 8 ? 8 : 4;
    case 'int8': return Math.min(chunk, 16);
  }
}

/** WGSL type of one binding element. */
export function wordType(dtype: StoredDType, chunk: number): string {
  const n = elementsPerWord(dtype, chunk);
  if (dtype === 'float32') return 'vec4<f32>';
  const bytes = n * (dtype === 'int8' ? 1 : 2);
  return bytes === 4 ? 'u32' : bytes === 8 ? 'vec2<u32>' : 'vec4<u32>';
}

/** Bytes per element. */
export function elementBytes(dtype: StoredDType): number {
  return dtype === 'float32' ? 4 : dtype === 'int8' ? 1 : 2;
}

/** Shared helper functions (unpacking bytes, bfloat16 rounding), declared once per kernel. */
export const ACCESS_HELPERS = `fn unpack_i8x4(u: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(u << 24u, u << 16u, u << 8u, u)) >> vec4<u32>(24u));
}
fn pack_i8x4(q: vec4<f32>) -> u32 {
  let b = vec4<u32>(bitcast<vec4<u32>>(vec4<i32>(q)) & vec4<u32>(0xffu));
  return b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u);
}
fn unpack_bf16x2(u: u32) -> vec2<f32> {
  return vec2<f32>(bitcast<f32>(u << 16u), bitcast<f32>(u & 0xffff0000u));
}
fn bf16_bits(x: f32) -> u32 {
  let b = bitcast<u32>(x);
  return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}
fn pack_bf16x2(v: vec2<f32>) -> u32 {
  return bf16_bits(v.x) | (bf16_bits(v.y) << 16u);
}
// float32 -> float16 bits rounded to nearest even, as the host's toHalfBits (core/dtype.ts) rounds:
// WGSL leaves pack2x16float's rounding to the implementation, and the H200 rounded appended cache
// rows differently from the host (1 ulp: a paged float16 append test failed there, not on llvmpipe)
fn f16_bits(x: f32) -> u32 {
  let bits = bitcast<u32>(x);
  let sign = (bits >> 16u) & 0x8000u;
  let exp = i32((bits >> 23u) & 0xffu);
  var mant = bits & 0x7fffffu;
  if (exp == 255) { return sign | 0x7c00u | select(0u, 0x200u, mant != 0u); }
  let e = exp - 112;
  if (e >= 31) { return sign | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return sign; }
    mant = mant | 0x800000u;
    let shift = u32(14 - e);
    let half = mant >> shift;
    let rest = mant & ((1u << shift) - 1u);
    let mid = 1u << (shift - 1u);
    return sign | (half + select(0u, 1u, rest > mid || (rest == mid && (half & 1u) == 1u)));
  }
  let half = (u32(e) << 10u) | (mant >> 13u);
  let rest = mant & 0x1fffu;
  return sign | (half + select(0u, 1u, rest > 0x1000u || (rest == 0x1000u && (half & 1u) == 1u)));
}
fn pack_f16x2(v: vec2<f32>) -> u32 {
  return f16_bits(v.x) | (f16_bits(v.y) << 16u);
}`;

/** Expressions of the quads in one word `w` (a WGSL expression of wordType()). */
export function unpackWord(dtype: StoredDType, chunk: number, w: string): string[] {
  const n = elementsPerWord(dtype, chunk);
  const comps = ['x', 'y', 'z', 'w'];
  switch (dtype) {
    case 'float32': return [w];
    case 'float16':
      return n === 4 ? [`vec4<f32>(unpack2x16float(${w}.x), unpack2x16float(${w}.y))`]
        : [`vec4<f32>(unpack2x16float(${w}.x), unpack2x16float(${w}.y))`, `vec4<f32>(unpack2x16float(${w}.z), unpack2x16float(${w}.w))`];
    case 'bfloat16':
      return n === 4 ? [`vec4<f32>(unpack_bf16x2(${w}.x), unpack_bf16x2(${w}.y))`]
        : [`vec4<f32>(unpack_bf16x2(${w}.x), unpack_bf16x2(${w}.y))`, `vec4<f32>(unpack_bf16x2(${w}.z), unpack_bf16x2(${w}.w))`];
    case 'int8':
      return n === 4 ? [`unpack_i8x4(${w})`] : Array.from({ length: n / 4 }, (_, i) => `unpack_i8x4(${w}.${comps[i]})`);
  }
}

/** Expression of one word packed from quads `q` (expressions; int8: already-quantized values). */
export function packWord(dtype: StoredDType, chunk: number, q: string[]): string {
  const n = elementsPerWord(dtype, chunk);
  switch (dtype) {
    case 'float32': return q[0];
    case 'float16':
      return n === 4 ? `vec2<u32>(pack_f16x2(${q[0]}.xy), pack_f16x2(${q[0]}.zw))`
        : `vec4<u32>(pack_f16x2(${q[0]}.xy), pack_f16x2(${q[0]}.zw), pack_f16x2(${q[1]}.xy), pack_f16x2(${q[1]}.zw))`;
    case 'bfloat16':
      return n === 4 ? `vec2<u32>(pack_bf16x2(${q[0]}.xy), pack_bf16x2(${q[0]}.zw))`
        : `vec4<u32>(pack_bf16x2(${q[0]}.xy), pack_bf16x2(${q[0]}.zw), pack_bf16x2(${q[1]}.xy), pack_bf16x2(${q[1]}.zw))`;
    case 'int8':
      if (n === 4) return `pack_i8x4(${q[0]})`;
      return `vec${n / 4}<u32>(${q.map((x) => `pack_i8x4(${x})`).join(', ')})`;
  }
}

/**
 * `fn name(e: u32) -> array<vec4<f32>, E/4>`: the E elements from element index e (a multiple of E)
 * of `buffer`, as quads (int8 without its scale).
 */
export function chunkLoader(name: string, buffer: string, dtype: StoredDType, chunk: number): string {
  const per = elementsPerWord(dtype, chunk);
  const words = chunk / per;
  const quads: string[] = [];
  for (let w = 0; w < words; w++) quads.push(...unpackWord(dtype, chunk, `${buffer}[e / ${per}u + ${w}u]`));
  return `fn ${name}(e: u32) -> array<vec4<f32>, ${chunk / 4}> {
  return array<vec4<f32>, ${chunk / 4}>(${quads.join(', ')});
}`;
}

/** `fn name(e: u32, x: array<vec4<f32>, E/4>)`: stores the E elements at element index e of `buffer`. */
export function chunkStorer(name: string, buffer: string, dtype: StoredDType, chunk: number): string {
  const per = elementsPerWord(dtype, chunk);
  const words = chunk / per;
  const qpw = per / 4;
  const lines = Array.from({ length: words }, (_, w) => `  ${buffer}[e / ${per}u + ${w}u] = ${packWord(dtype, chunk, Array.from({ length: qpw }, (_, i) => `x[${w * qpw + i}]`))};`);
  return `fn ${name}(e: u32, x: array<vec4<f32>, ${chunk / 4}>) {
${lines.join('\n')}
}`;
}

/**
 * `fn name(x: vec4<f32>, s: f32, inv: f32) -> vec4<f32>`: a quad as it reads back once stored
 * (int8: quantized with scale s, inv = 1 / s, then dequantized).
 */
export function storageRounding(name: string, dtype: StoredDType): string {
  switch (dtype) {
    case 'float32': return `fn ${name}(x: vec4<f32>, s: f32, inv: f32) -> vec4<f32> { return x; }`;
    case 'float16': return `fn ${name}(x: vec4<f32>, s: f32, inv: f32) -> vec4<f32> {
  return vec4<f32>(unpack2x16float(pack_f16x2(x.xy)), unpack2x16float(pack_f16x2(x.zw)));
}`;
    case 'bfloat16': return `fn ${name}(x: vec4<f32>, s: f32, inv: f32) -> vec4<f32> {
  return vec4<f32>(unpack_bf16x2(pack_bf16x2(x.xy)), unpack_bf16x2(pack_bf16x2(x.zw)));
}`;
    case 'int8': return `fn ${name}(x: vec4<f32>, s: f32, inv: f32) -> vec4<f32> {
  return clamp(round(x * inv), vec4<f32>(-127.0), vec4<f32>(127.0)) * s;
}`;
  }
}

/**
 * WGSL of a chunk of V quads quantized for an int8 cache: quad(v) times inv (1 / the row's scale),
 * rounded and clamped to ±127, as chunkStorer's int8 words take it (the append kernels and the page
 * writer; storageRounding's int8 case is the same per quad, dequantized).
 */
export function int8QuantizedChunk(quad: (v: number) => string, V: number, inv: string): string {
  const quads = Array.from({ length: V }, (_, v) => `clamp(round(${quad(v)} * ${inv}), vec4<f32>(-127.0), vec4<f32>(127.0))`);
  return `array<vec4<f32>, ${V}>(${quads.join(', ')})`;
}

/** Binding element type and loader of an input/output of dtype io (float32 / float16), one quad at a time. */
export function quadType(io: 'float32' | 'float16'): string {
  return io === 'float32' ? 'vec4<f32>' : 'vec2<u32>';
}

export function quadLoad(io: 'float32' | 'float16', expr: string): string {
  return io === 'float32' ? expr : `vec4<f32>(unpack2x16float(${expr}.x), unpack2x16float(${expr}.y))`;
}

export function quadStore(io: 'float32' | 'float16', value: string): string {
  return io === 'float32' ? value : `vec2<u32>(pack2x16float((${value}).xy), pack2x16float((${value}).zw))`;
}
