// WGSL twins of philox.ts, shared by every WebGPU kernel that applies dropout (portable, subgroup
// and tensor-core forwards, the backward kernels). WGSL has no 32x32 -> 64-bit multiply, so mulhi
// goes through 16-bit pieces, as in philox.ts. Nothing here needs a feature beyond core WGSL.
//
// Usage in a kernel: words = dropout_words(seed, offset, b * Nq + h, i, j >> 3u) once per 8 keys,
// then dropout_factor(words, j & 7u, threshold, scale) is 0 (dropped) or scale (kept).
import { UniformLayout } from '../../../engines/webgpu/uniforms.js';
import type { DropoutSpec } from './philox.js';

export const PHILOX_WGSL = `// Philox4x32-10 (Random123), the keep mask of attention dropout (see ops/attention/dropout/philox.ts)
fn philox_mulhi(a: u32, b: u32) -> u32 {
  let al = a & 0xffffu;
  let ah = a >> 16u;
  let bl = b & 0xffffu;
  let bh = b >> 16u;
  let lh = al * bh;
  let hl = ah * bl;
  let mid = ((al * bl) >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return ah * bh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
  var x = counter;
  var k = key;
  for (var round = 0u; round < 10u; round++) {
    if (round > 0u) { k += vec2<u32>(0x9e3779b9u, 0xbb67ae85u); }
    let hi0 = philox_mulhi(0xd2511f53u, x.x);
    let lo0 = 0xd2511f53u * x.x;
    let hi1 = philox_mulhi(0xcd9e8d57u, x.z);
    let lo1 = 0xcd9e8d57u * x.z;
    x = vec4<u32>(hi1 ^ x.y ^ k.x, lo1, hi0 ^ x.w ^ k.y, lo0);
  }
  return x;
}

// 128 random bits for keys 8 * octet .. 8 * octet + 7 of query row i of stream b * Nq + h
fn dropout_words(seed: vec2<u32>, offset: u32, stream: u32, i: u32, octet: u32) -> vec4<u32> {
  return philox4x32_10(vec4<u32>(octet, i, stream, offset), seed);
}

// 0 when key e (0..7) of the octet is dropped, else scale (= 1 / keepProb)
fn dropout_factor(words: vec4<u32>, e: u32, threshold: u32, scale: f32) -> f32 {
  let r = (words[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu;
  return select(0.0, scale, r >= threshold);
}`;

/** Uniforms of a kernel's dropout (struct DropoutParams), bound apart so no kernel's own block changes. */
export const DROPOUT_PARAMS = new UniformLayout('DropoutParams', {
  seed: 'vec2u',
  offset: 'u32',
  threshold: 'u32',
  scale: 'f32',
  /** Query heads (stream = b * heads + h). */
  heads: 'u32',
});

/** Packed DROPOUT_PARAMS of a spec (all zero, never read, when there is none). */
export function dropoutParams(spec: DropoutSpec | undefined, headsQ: number): ArrayBuffer {
  return DROPOUT_PARAMS.pack({
    seed: [spec?.seedLo ?? 0, spec?.seedHi ?? 0],
    offset: spec?.offset ?? 0,
    threshold: spec?.threshold ?? 0,
    scale: spec?.scale ?? 1,
    heads: headsQ,
  });
}

/** Declarations of the dropout uniforms at (group, binding), named `dp`, plus the Philox functions. */
export function dropoutDeclarations(group: number, binding: number): string {
  return `${DROPOUT_PARAMS.wgsl()}
@group(${group}) @binding(${binding}) var<uniform> dp: DropoutParams;
${PHILOX_WGSL}`;
}
