// Philox4x32-10 (Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3", SC11; the generator
// of FlashAttention's and PyTorch's dropout) and the keep mask of attention dropout built on it.
//
// The keep bit of element (b, h, i, j) of a call is a pure function of (seed, offset, b, h, i, j):
//   key     = (seed low 32 bits, seed high 32 bits)
//   counter = (j >> 3, i, b * Nq + h, offset)
//   words   = philox4x32_10(counter, key)             4 × 32 random bits for the 8 keys 8m .. 8m+7
//   r       = 16-bit half (j & 1) of words[(j & 7) >> 1] (low half first)
//   keep    = r >= threshold,  threshold = round(p · 65536)  (p quantized to 1/65536; FlashAttention
//             quantizes it to 1/256)
// i and j count from the start of the sequence (TND: within sequence b), h is the query head. So the
// mask is the same whatever the tiling, on the CPU and on every WebGPU tier, forward and backward;
// WGSL twins are in philox.wgsl.ts. Kept probabilities are scaled by 1 / (1 - p).

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/**
 * High 32 bits of the 64-bit product of two u32, in 32-bit integer arithmetic (no float division:
 * this is the inner loop of dropout on the CPU): both split in 16-bit halves, each partial product
 * exact as a u32 (Math.imul), the middle terms' carries summed below 2^18.
 */
function mulhi(a: number, b: number): number {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const lh = Math.imul(al, bh) >>> 0;
  const hl = Math.imul(ah, bl) >>> 0;
  const carry = ((Math.imul(al, bl) >>> 16) + (lh & 0xffff) + (hl & 0xffff)) >>> 16;
  return (Math.imul(ah, bh) + (lh >>> 16) + (hl >>> 16) + carry) >>> 0;
}

/**
 * Philox4x32 with 10 rounds: four random u32 from a 128-bit counter and a 64-bit key, written to
 * `out` (Random123's philox4x32_R(10, ctr, key)).
 */
export function philox4x32_10(c0: number, c1: number, c2: number, c3: number, k0: number, k1: number, out: Uint32Array = new Uint32Array(4)): Uint32Array {
  let x0 = c0 >>> 0;
  let x1 = c1 >>> 0;
  let x2 = c2 >>> 0;
  let x3 = c3 >>> 0;
  let key0 = k0 >>> 0;
  let key1 = k1 >>> 0;
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      key0 = (key0 + W0) >>> 0;
      key1 = (key1 + W1) >>> 0;
    }
    const hi0 = mulhi(M0, x0);
    const lo0 = Math.imul(M0, x0) >>> 0;
    const hi1 = mulhi(M1, x2);
    const lo1 = Math.imul(M1, x2) >>> 0;
    x0 = (hi1 ^ x1 ^ key0) >>> 0;
    x1 = lo1;
    x2 = (hi0 ^ x3 ^ key1) >>> 0;
    x3 = lo0;
  }
  out[0] = x0;
  out[1] = x1;
  out[2] = x2;
  out[3] = x3;
  return out;
}

/** A resolved dropout of one call (p > 0); see dropout/options.ts for how options become one. */
export interface DropoutSpec {
  /** Probability of dropping an attention weight, 0 < p < 1. */
  readonly p: number;
  /** 1 - p (CANN's keepProb). */
  readonly keepProb: number;
  /** The 64-bit seed as two u32 (the Philox key). */
  readonly seedLo: number;
  readonly seedHi: number;
  /** Counter word 3: lets one seed serve many calls (layers, steps) with independent masks. */
  readonly offset: number;
  /** Keep iff the element's 16 random bits are >= threshold (round(p · 65536), at most 65535). */
  readonly threshold: number;
  /** 1 / keepProb: the factor of kept weights. */
  readonly scale: number;
}

/**
 * Keep multipliers (0 or spec.scale) of keys j0 .. j0 + count - 1 of row i of (b, h), written to
 * dst[at .. at + count). One Philox call covers 8 keys.
 */
export function dropoutRow(spec: DropoutSpec, headsQ: number, b: number, h: number, i: number, j0: number, count: number, dst: Float32Array | Float64Array, at = 0, words: Uint32Array = new Uint32Array(4)): void {
  const stream = b * headsQ + h;
  let octet = -1;
  for (let n = 0; n < count; n++) {
    const j = j0 + n;
    if (j >>> 3 !== octet) {
      octet = j >>> 3;
      philox4x32_10(octet, i, stream, spec.offset, spec.seedLo, spec.seedHi, words);
    }
    const e = j & 7;
    const r = (words[e >>> 1] >>> ((e & 1) * 16)) & 0xffff;
    dst[at + n] = r >= spec.threshold ? spec.scale : 0;
  }
}

/** Whether element (b, h, i, j) is kept (the same bit dropoutRow gives). */
export function dropoutKeeps(spec: DropoutSpec, headsQ: number, b: number, h: number, i: number, j: number): boolean {
  const words = philox4x32_10(j >>> 3, i, b * headsQ + h, spec.offset, spec.seedLo, spec.seedHi);
  const e = j & 7;
  return ((words[e >>> 1] >>> ((e & 1) * 16)) & 0xffff) >= spec.threshold;
}
