// Attention dropout on float32 tiles in WASM SIMD: the Philox4x32-10 keep mask of philox.ts, four
// counters (four octets of keys, 32 keys) per vector, then the tiles multiplied by the keep factors
// (0 or scale). The same bits as dropoutTile (cpu.ts): the same 16-bit draws against the same
// threshold, one float32 product per element.
//   dropout_rows(a, b, lds, rows, cols, i0, j0, stream, offset, k0, k1, threshold, scale, scratch)
//     a[r][c] (and b[r][c] when b != 0) *= keep factor of (stream, query i0 + r, key j0 + c);
//     stream = batch · Nq + head; scratch: 512 bytes for one row's factors.
import { type Expr, type FunctionBuilder, type ModuleBuilder, f32x4, i32, i32x4, i64x2, v128 } from '../../../engines/cpu/wasm/encoder.js';
import { storeFirstLanes } from '../../../engines/cpu/wasm/simd.js';

export const DROPOUT_SIGNATURES = {
  dropout_rows: ['a', 'b', 'lds', 'rows', 'cols', 'i0', 'j0', 'stream', 'offset', 'k0', 'k1', 'threshold', 'scale', 'scratch'],
} as const;

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

export function addDropoutKernels(m: ModuleBuilder): void {
  const sig = DROPOUT_SIGNATURES.dropout_rows.map((n) => [n, n === 'scale' ? 'f32' : 'i32'] as const);
  m.func('dropout_rows', sig, undefined, (f) => dropoutRows(f));
}

/** High 32 bits of the lanes' u32 products x·m (two widening multiplies, the odd halves kept). */
function mulhi(x: Expr, m: Expr): Expr {
  return v128.shuffle32(i64x2.extmul_low_i32x4_u(x, m), i64x2.extmul_high_i32x4_u(x, m), [1, 3, 5, 7]);
}

function dropoutRows(f: FunctionBuilder): void {
  const p = (n: string) => f.get(f.param(n));
  const r = f.local('i32', 'r');
  const g = f.local('i32', 'g');
  const c = f.local('i32', 'c');
  const octets = f.local('i32', 'octets');
  const ptr = f.local('i32', 'ptr');
  const x = Array.from({ length: 4 }, (_, k) => f.local('v128', `x${k}`));
  const t = Array.from({ length: 4 }, (_, k) => f.local('v128', `t${k}`));
  const key = [f.local('v128', 'key0'), f.local('v128', 'key1')];
  const fac = f.local('v128', 'fac');
  const e = f.local('v128', 'e');
  // octets (8 keys each) from the one holding key j0 to the one holding key j0 + cols - 1
  f.set(octets, i32.sub(i32.shr_s(i32.add(p('j0'), i32.sub(p('cols'), i32.const(1))), i32.const(3)), i32.shr_s(p('j0'), i32.const(3))));
  f.set(octets, i32.add(f.get(octets), i32.const(1)));
  f.forRange(r, i32.const(0), p('rows'), 1, () => {
    f.forRange(g, i32.const(0), f.get(octets), 4, () => {
      // counters (octet, query, stream, offset) of four octets, key (k0, k1)
      f.set(x[0], i32x4.add(i32x4.splat(i32.add(i32.shr_s(p('j0'), i32.const(3)), f.get(g))), i32x4.const(0, 1, 2, 3)));
      f.set(x[1], i32x4.splat(i32.add(p('i0'), f.get(r))));
      f.set(x[2], i32x4.splat(p('stream')));
      f.set(x[3], i32x4.splat(p('offset')));
      f.set(key[0], i32x4.splat(p('k0')));
      f.set(key[1], i32x4.splat(p('k1')));
      for (let round = 0; round < 10; round++) {
        if (round > 0) {
          f.set(key[0], i32x4.add(f.get(key[0]), i32x4.const(W0, W0, W0, W0)));
          f.set(key[1], i32x4.add(f.get(key[1]), i32x4.const(W1, W1, W1, W1)));
        }
        // t0 = hi(M0·x0), t1 = lo(M0·x0), t2 = hi(M1·x2), t3 = lo(M1·x2)
        f.set(t[0], mulhi(f.get(x[0]), i32x4.const(M0, M0, M0, M0)));
        f.set(t[1], i32x4.mul(f.get(x[0]), i32x4.const(M0, M0, M0, M0)));
        f.set(t[2], mulhi(f.get(x[2]), i32x4.const(M1, M1, M1, M1)));
        f.set(t[3], i32x4.mul(f.get(x[2]), i32x4.const(M1, M1, M1, M1)));
        f.set(x[0], v128.xor(v128.xor(f.get(t[2]), f.get(x[1])), f.get(key[0])));
        f.set(x[1], f.get(t[3]));
        f.set(x[2], v128.xor(v128.xor(f.get(t[0]), f.get(x[3])), f.get(key[1])));
        f.set(x[3], f.get(t[1]));
      }
      // x[k] holds word k of the four octets: transpose to one vector of four words per octet,
      // whose eight 16-bit halves are the draws of its keys 0..7 in order (low half first)
      f.set(t[0], v128.shuffle32(f.get(x[0]), f.get(x[1]), [0, 4, 1, 5]));
      f.set(t[1], v128.shuffle32(f.get(x[0]), f.get(x[1]), [2, 6, 3, 7]));
      f.set(t[2], v128.shuffle32(f.get(x[2]), f.get(x[3]), [0, 4, 1, 5]));
      f.set(t[3], v128.shuffle32(f.get(x[2]), f.get(x[3]), [2, 6, 3, 7]));
      const perOctet = [
        v128.shuffle32(f.get(t[0]), f.get(t[2]), [0, 1, 4, 5]),
        v128.shuffle32(f.get(t[0]), f.get(t[2]), [2, 3, 6, 7]),
        v128.shuffle32(f.get(t[1]), f.get(t[3]), [0, 1, 4, 5]),
        v128.shuffle32(f.get(t[1]), f.get(t[3]), [2, 3, 6, 7]),
      ];
      for (let o = 0; o < 4; o++) {
        f.set(e, perOctet[o]);
        const at = (half: number) => i32.add(p('scratch'), i32.add(i32.shl(f.get(g), i32.const(5)), i32.const(32 * o + 16 * half)));
        for (const half of [0, 1]) {
          const draws = half === 0 ? i32x4.extend_low_i16x8_u(f.get(e)) : i32x4.extend_high_i16x8_u(f.get(e));
          // keep iff draw >= threshold (both below 2^16: a signed compare is right)
          f.statement(v128.store(at(half), v128.and(i32x4.ge_s(draws, i32x4.splat(p('threshold'))), f32x4.splat(p('scale')))));
        }
      }
    });
    // the tiles' row times the factors from key j0 on (j0 & 7 into the first octet)
    const bytes = i32.shl(p('cols'), i32.const(2));
    f.forRange(c, i32.const(0), bytes, 16, () => {
      f.set(fac, v128.load(i32.add(p('scratch'), i32.add(i32.shl(i32.and(p('j0'), i32.const(7)), i32.const(2)), f.get(c)))));
      const scaleRow = (tile: string) => {
        f.set(ptr, i32.add(p(tile), i32.add(i32.mul(f.get(r), p('lds')), f.get(c))));
        f.set(e, f32x4.mul(v128.load(f.get(ptr)), f.get(fac)));
        storeFirstLanes(f, ptr, e, i32.sub(bytes, f.get(c)));
      };
      scaleRow('a');
      f.if(i32.ne(p('b'), i32.const(0)), () => scaleRow('b'));
    });
  });
}
