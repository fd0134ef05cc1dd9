// The float64 reference itself: checked against hand-computed softmax values and against the
// identities the backends rely on (MLA split = concatenation, layouts are permutations).
import { describe, expect, it } from 'vitest';
import { Tensor, floatsToHalf, fromHalfBits, halfToFloats, referenceAttention, toHalfBits, validateAttention } from '../dist/index.js';
import { makeCase } from '../dist/testing/index.js';

describe('float64 reference', () => {
  it('matches a hand-computed softmax', () => {
    // one query [1, 0], keys [1, 0] and [0, 1], values 10 and 20, scale 1
    const q = Tensor.fromData(Float32Array.of(1, 0), [1, 1, 1, 2]);
    const k = Tensor.fromData(Float32Array.of(1, 0, 0, 1), [1, 1, 2, 2]);
    const v = Tensor.fromData(Float32Array.of(10, 20), [1, 1, 2, 1]);
    const { out, lse } = referenceAttention(validateAttention(q, k, v, { scale: 1 }));
    const w = Math.E / (Math.E + 1);
    expect(out[0]).toBeCloseTo(10 * w + 20 * (1 - w), 12);
    expect(lse[0]).toBeCloseTo(Math.log(Math.E + 1), 12);
  });

  it('gives 0 and -inf LSE for fully masked rows (bottom-right causal with Sq > Sk)', () => {
    const { q, k, v, options } = makeCase({ batch: 1, headsQ: 1, seqQ: 5, seqK: 2, dimQK: 4, causal: true }, 1);
    const { out, lse } = referenceAttention(validateAttention(q, k, v, options));
    // rows 0..2 see no key (j <= i + 2 - 5 < 0); row 3 sees key 0
    expect(Array.from(lse.subarray(0, 3))).toEqual([-Infinity, -Infinity, -Infinity]);
    expect(Array.from(out.subarray(0, 12))).toEqual(new Array(12).fill(0));
    expect(Number.isFinite(lse[3])).toBe(true);
  });

  it('MLA split form equals attention on the concatenated heads', () => {
    const { q, k, v, options } = makeCase({ batch: 1, headsQ: 2, seqQ: 7, seqK: 9, dimQK: 6, dimRope: 3, dimV: 5, causal: true }, 7);
    const split = referenceAttention(validateAttention(q, k, v, options));
    const concat = (a: Tensor, b: Tensor) => {
      const [B, N, S, Da] = a.shape;
      const Db = b.shape[3];
      const x = a.toFloat32();
      const y = b.toFloat32();
      const data = new Float32Array(B * N * S * (Da + Db));
      for (let r = 0; r < B * N * S; r++) {
        data.set(x.subarray(r * Da, (r + 1) * Da), r * (Da + Db));
        data.set(y.subarray(r * Db, (r + 1) * Db), r * (Da + Db) + Da);
      }
      return Tensor.fromData(data, [B, N, S, Da + Db]);
    };
    const full = referenceAttention(validateAttention(concat(q, options.qRope as Tensor), concat(k, options.kRope as Tensor), v, { causal: true }));
    for (let i = 0; i < full.out.length; i++) expect(split.out[i]).toBeCloseTo(full.out[i], 12);
  });

  it('BSND is a permutation of BNSD', () => {
    const a = makeCase({ batch: 2, headsQ: 2, seqQ: 3, seqK: 4, dimQK: 5, causal: true }, 3);
    const permute = (t: Tensor) => {
      const [B, N, S, D] = t.shape;
      const x = t.toFloat32();
      const y = new Float32Array(x.length);
      for (let b = 0; b < B; b++) for (let n = 0; n < N; n++) for (let s = 0; s < S; s++) for (let d = 0; d < D; d++) {
        y[((b * S + s) * N + n) * D + d] = x[((b * N + n) * S + s) * D + d];
      }
      return Tensor.fromData(y, [B, S, N, D]);
    };
    const bnsd = referenceAttention(validateAttention(a.q, a.k, a.v, { causal: true }));
    const bsnd = referenceAttention(validateAttention(permute(a.q), permute(a.k), permute(a.v), { causal: true, layout: 'BSND' }));
    const back = permute(Tensor.fromData(Float32Array.from(bnsd.out), [2, 2, 3, 5])).toFloat32();
    for (let i = 0; i < back.length; i++) expect(bsnd.out[i]).toBeCloseTo(back[i], 6);
  });
});

describe('float16 conversion', () => {
  it('round-trips every half value', () => {
    for (let h = 0; h < 65536; h++) {
      const x = fromHalfBits(h);
      if (Number.isNaN(x)) continue;
      expect(toHalfBits(x)).toBe(h);
    }
  });
  it('rounds to nearest even, overflows to infinity, keeps subnormals', () => {
    expect(fromHalfBits(toHalfBits(1 + 2 ** -11))).toBe(1); // tie -> even
    expect(fromHalfBits(toHalfBits(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9);
    expect(fromHalfBits(toHalfBits(70000))).toBe(Infinity);
    expect(fromHalfBits(toHalfBits(2 ** -24))).toBe(2 ** -24);
    expect(Array.from(halfToFloats(floatsToHalf([0.5, -2, 65504])))).toEqual([0.5, -2, 65504]);
  });
});
