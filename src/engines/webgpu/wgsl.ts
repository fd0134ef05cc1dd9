// Small WGSL pieces shared by the kernel builders: how a tensor of each dtype is bound and read.
// float16 data is bound as array<u32> and read with unpack2x16float, so no kernel of the portable
// tier needs the shader-f16 feature; bool/uint8 masks are bound as array<u32>, four bytes a word.

export type FloatDType = 'float32' | 'float16';

/** Element type of the WGSL array a tensor of `dtype` is bound as. */
export function arrayElement(dtype: FloatDType): 'f32' | 'u32' {
  return dtype === 'float32' ? 'f32' : 'u32';
}

/** A read-only storage binding declaration. */
export function readBinding(binding: number, name: string, element: string, group = 0): string {
  return `@group(${group}) @binding(${binding}) var<storage, read> ${name}: array<${element}>;`;
}

/** `fn fn_name(i: u32) -> f32` returning element i (in elements of `dtype`) of `buffer`. */
export function loadFloat(fnName: string, buffer: string, dtype: FloatDType): string {
  if (dtype === 'float32') return `fn ${fnName}(i: u32) -> f32 { return ${buffer}[i]; }`;
  return `fn ${fnName}(i: u32) -> f32 { return unpack2x16float(${buffer}[i >> 1u])[i & 1u]; }`;
}

/** Element type of the WGSL array a tensor is bound as when read 4 elements at a time. */
export function quadElement(dtype: FloatDType): 'vec4<f32>' | 'vec2<u32>' {
  return dtype === 'float32' ? 'vec4<f32>' : 'vec2<u32>';
}

/** `fn fn_name(i: u32) -> vec4<f32>` returning elements 4i .. 4i+3 of a buffer bound with quadElement(). */
export function loadQuad(fnName: string, buffer: string, dtype: FloatDType): string {
  if (dtype === 'float32') return `fn ${fnName}(i: u32) -> vec4<f32> { return ${buffer}[i]; }`;
  return `fn ${fnName}(i: u32) -> vec4<f32> {
  let w = ${buffer}[i];
  return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}`;
}

/** `fn fn_name(i: u32) -> u32` returning byte i of a byte tensor bound as array<u32>. */
export function loadByte(fnName: string, buffer: string): string {
  return `fn ${fnName}(i: u32) -> u32 { return (${buffer}[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu; }`;
}

/**
 * Scores at or below this are "no key" (masked, or -inf from a bias). Kernels keep masked scores
 * at this finite sentinel instead of -inf so no arithmetic ever meets an infinity.
 */
export const NO_SCORE = '-3.0e38';

/**
 * Scores at or above this mark a row poisoned by a NaN or +inf score (README "Failure
 * behaviour": that row's output and LSE are NaN). Kept finite, like NO_SCORE, so max() and the
 * online-softmax arithmetic stay well defined; the row is turned into NaN at the end.
 */
export const POISON_SCORE = '3.0e38';

/**
 * `fn nan_or_pos_inf(x) -> bool` (bit test: holds even where a compiler assumes no NaN) and
 * `fn nan_f32() -> f32`, a quiet NaN through a `var` (WGSL rejects a NaN constant expression).
 */
export const NON_FINITE_FNS = `fn nan_or_pos_inf(x: f32) -> bool {
  let bits = bitcast<u32>(x);
  return (bits & 0x7fffffffu) > 0x7f800000u || bits == 0x7f800000u;
}
fn is_nan(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}
fn nan_f32() -> f32 {
  var bits = 0x7fc00000u;
  return bitcast<f32>(bits);
}
// exp(x) for x <= 0, the online softmax's weight: the argument is clamped at -200 (exp gives 0
// there in f32 anyway) because some exp implementations (Mesa llvmpipe) return NaN for a huge
// negative finite argument, which a huge finite scale produces.
fn weight(x: f32) -> f32 {
  return exp(max(x, -200.0));
}`;

/**
 * `fn neg_inf() -> f32`. WGSL rejects an infinite constant expression, so the bits go through a
 * `var`, which is never constant-evaluated.
 */
export const NEG_INF_FN = `fn neg_inf() -> f32 {
  var bits = 0xff800000u;
  return bitcast<f32>(bits);
}`;

/** Indents every line of `text` by `spaces`. */
export function indent(text: string, spaces: number): string {
  const pad = ' '.repeat(spaces);
  return text.split('\n').map((line) => (line ? pad + line : line)).join('\n');
}
