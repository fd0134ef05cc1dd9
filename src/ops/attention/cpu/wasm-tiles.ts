// The fused kernel's tile micro-kernels, on packed panels so the inner loops touch one pointer per
// operand and use constant offsets (measured: the strided gemm kernels spend as many µops on
// pointer arithmetic as on multiply-adds, and V8 does no strength reduction for us).
//
// Panels (all zero-padded, so the inner loops have no tails):
//   Q panel   [rows/QR][chunks][QR][4]    a block of QR query rows, 4 dims at a time
//   K panel   [keys/4][chunks][4][4]      4 keys, 4 dims at a time (K rows copied, not transposed)
//   V panel   [dimV/(4·PV)][keys][4·PV]   per column block, one key's PV vectors after the other
// K and V are packed once per (batch, kv head) by a pack job before the flash job, Q per task.
// chunks = ceil(D/4) (+ ceil(Dr/4) for the MLA split form: the rope part is packed behind the NoPE
// part, so its scores accumulate in the same registers).
//
//   qk_tile   S[BR×BC] = alpha·Qpanel·Kpanelᵀ      4·QR accumulators, reduced to 4 keys per row
//   pv_tile   O = alpha_r·O + P[rows×keys]·Vpanel   PR rows × PV vectors of O in registers
// BR and BC are module constants (the S tile's row stride is 4·BC bytes).
import { type Expr, type FunctionBuilder, type ModuleBuilder, f32x4, i32, v128 } from '../../../engines/cpu/wasm/encoder.js';
import { madd } from '../../../engines/cpu/wasm/simd.js';

export interface TileOptions {
  /** Query rows per task (S tile rows) and keys per tile (S tile columns); multiples of 4. */
  br: number;
  bc: number;
  /** Query rows per register block of qk_tile (accumulators: 4·qkRows). */
  qkRows: number;
  /** Depth chunks per loop iteration of qk_tile. */
  qkUnroll: number;
  /** Rows × vectors of O per register block of pv_tile. */
  pvRows: number;
  pvVectors: number;
  relaxed: boolean;
}

export const TILE_SIGNATURES = {
  pack_panel: ['src', 'ld', 'rows', 'dim', 'dst', 'group', 'chunks', 'chunk0'],
  pack_v: ['src', 'ld', 'keys', 'dim', 'dst', 'vld'],
  qk_tile: ['q', 'k', 'chunks', 'rows', 'cols', 's', 'alpha'],
  pv_tile: ['p', 'v', 'vld', 'keys', 'o', 'ldo', 'rows', 'dim', 'scales'],
} as const;

export function addTileKernels(m: ModuleBuilder, o: TileOptions): void {
  const sig = (names: readonly string[], floats: readonly string[] = []) => names.map((n) => [n, floats.includes(n) ? 'f32' : 'i32'] as const);
  m.func('pack_panel', sig(TILE_SIGNATURES.pack_panel), undefined, (f) => packPanel(f));
  m.func('pack_v', sig(TILE_SIGNATURES.pack_v), undefined, (f) => packV(f, o));
  m.func('qk_tile', sig(TILE_SIGNATURES.qk_tile, ['alpha']), undefined, (f) => qkTile(f, o));
  m.func('pv_tile', sig(TILE_SIGNATURES.pv_tile), undefined, (f) => pvTile(f, o));
}

/**
 * pack_panel: rows [0, rows) of a row-major matrix (row stride ld bytes, `dim` floats per row) into
 * [ceil(rows/group)][chunks][group][4] starting at chunk chunk0 of each group; rows past `rows`
 * (up to a whole group) and dims past `dim` are zero.
 */
function packPanel(f: FunctionBuilder): void {
  const p = (n: string) => f.get(f.param(n));
  const r = f.local('i32', 'r');
  const d = f.local('i32', 'd');
  const src = f.local('i32', 'src_row');
  const dst = f.local('i32', 'dst_row');
  const full = f.local('i32', 'full');
  const rem = f.local('i32', 'rem');
  const padded = f.local('i32', 'padded');
  const groupBytes = i32.shl(p('group'), i32.const(4)); // one chunk of a group: group·16 bytes
  const dimBytes = i32.shl(p('dim'), i32.const(2));
  f.set(full, i32.shl(i32.and(p('dim'), i32.const(~3)), i32.const(2)));
  f.set(rem, i32.and(p('dim'), i32.const(3)));
  // rows rounded up to whole groups; missing rows are zero
  f.set(padded, i32.mul(i32.div_s(i32.add(p('rows'), i32.sub(p('group'), i32.const(1))), p('group')), p('group')));
  f.forRange(r, i32.const(0), f.get(padded), 1, () => {
    // dst of (row r, chunk 0): group g = r / group, lane row r % group
    const g = i32.div_s(f.get(r), p('group'));
    const inGroup = i32.sub(f.get(r), i32.mul(g, p('group')));
    f.set(dst, i32.add(p('dst'), i32.add(i32.mul(i32.add(i32.mul(g, p('chunks')), p('chunk0')), groupBytes), i32.shl(inGroup, i32.const(4)))));
    f.if(i32.lt_s(f.get(r), p('rows')), () => {
      f.set(src, i32.add(p('src'), i32.mul(f.get(r), p('ld'))));
      f.forRange(d, i32.const(0), f.get(full), 16, () => {
        f.statement(v128.store(f.get(dst), v128.load(i32.add(f.get(src), f.get(d)))));
        f.set(dst, i32.add(f.get(dst), groupBytes));
      });
      const at = i32.add(f.get(src), f.get(full));
      f.if(i32.eq(f.get(rem), i32.const(1)), () => f.statement(v128.store(f.get(dst), v128.load32_zero(at))));
      f.if(i32.eq(f.get(rem), i32.const(2)), () => f.statement(v128.store(f.get(dst), v128.load64_zero(at))));
      f.if(i32.eq(f.get(rem), i32.const(3)), () => f.statement(v128.store(f.get(dst), v128.load32_lane(at, v128.load64_zero(at), 2, 8))));
    }, () => {
      f.forRange(d, i32.const(0), dimBytes, 16, () => {
        f.statement(v128.store(f.get(dst), f32x4.const(0)));
        f.set(dst, i32.add(f.get(dst), groupBytes));
      });
    });
  });
}

/**
 * pack_v: keys [0, keys) of V (row stride ld bytes, `dim` floats) into column blocks of 4·PV
 * floats per key, blocks `vld` bytes apart; dims past `dim` are zero (keys past `keys` are never
 * read: pv_tile runs over `keys`).
 */
function packV(f: FunctionBuilder, o: TileOptions): void {
  const p = (n: string) => f.get(f.param(n));
  const CV = o.pvVectors;
  const width = 16 * CV; // bytes per key per column block
  const cb = f.local('i32', 'cb');
  const j = f.local('i32', 'j');
  const src = f.local('i32', 'src');
  const dst = f.local('i32', 'dst');
  const left = f.local('i32', 'left');
  const dimBytes = i32.shl(p('dim'), i32.const(2));
  f.forRange(cb, i32.const(0), dimBytes, width, () => {
    f.set(left, i32.sub(dimBytes, f.get(cb)));
    f.set(src, i32.add(p('src'), f.get(cb)));
    f.set(dst, i32.add(p('dst'), i32.mul(i32.div_s(f.get(cb), i32.const(width)), p('vld'))));
    f.if(i32.ge_s(f.get(left), i32.const(width)), () => {
      // whole block: CV plain vector copies per key
      f.forRange(j, i32.const(0), p('keys'), 1, () => {
        for (let c = 0; c < CV; c++) f.statement(v128.store(f.get(dst), v128.load(f.get(src), 16 * c), 16 * c));
        f.set(src, i32.add(f.get(src), p('ld')));
        f.set(dst, i32.add(f.get(dst), i32.const(width)));
      });
    }, () => {
      // last, partial block: exact partial loads, zeros past the row
      f.forRange(j, i32.const(0), p('keys'), 1, () => {
        for (let c = 0; c < CV; c++) {
          const at = i32.add(f.get(src), i32.const(16 * c));
          const bytes = i32.sub(f.get(left), i32.const(16 * c));
          const store = (value: Expr) => f.statement(v128.store(f.get(dst), value, 16 * c));
          f.if(i32.ge_s(bytes, i32.const(16)), () => store(v128.load(at)), () => {
            f.if(i32.le_s(bytes, i32.const(0)), () => store(f32x4.const(0)));
            f.if(i32.eq(bytes, i32.const(4)), () => store(v128.load32_zero(at)));
            f.if(i32.eq(bytes, i32.const(8)), () => store(v128.load64_zero(at)));
            f.if(i32.eq(bytes, i32.const(12)), () => store(v128.load32_lane(at, v128.load64_zero(at), 2, 8)));
          });
        }
        f.set(src, i32.add(f.get(src), p('ld')));
        f.set(dst, i32.add(f.get(dst), i32.const(width)));
      });
    });
  });
}

/** qk_tile: S[row][key] = alpha·Σ Q·K over `chunks` chunks, for ceil(rows/QR) row groups × ceil(cols/4) key groups. */
function qkTile(f: FunctionBuilder, o: TileOptions): void {
  const p = (n: string) => f.get(f.param(n));
  const R = o.qkRows;
  const U = o.qkUnroll;
  const g = f.local('i32', 'g');
  const kg = f.local('i32', 'kg');
  const qp = f.local('i32', 'qp');
  const kp = f.local('i32', 'kp');
  const qEnd = f.local('i32', 'q_end');
  const qBase = f.local('i32', 'q_base');
  const av = Array.from({ length: R }, (_, r) => f.local('v128', `av${r}`));
  const bv = f.local('v128', 'bv');
  const acc = Array.from({ length: R }, (_, r) => Array.from({ length: 4 }, (_, c) => f.local('v128', `acc${r}${c}`)));
  const s01 = f.local('v128', 's01');
  const s23 = f.local('v128', 's23');
  const out = f.local('i32', 'out');
  const groupBytes = i32.mul(p('chunks'), i32.const(16 * R)); // one Q group
  const keyGroupBytes = i32.shl(p('chunks'), i32.const(6)); // one K group: chunks·64

  f.forRange(g, i32.const(0), p('rows'), R, () => {
    f.set(qBase, i32.add(p('q'), i32.mul(i32.div_s(f.get(g), i32.const(R)), groupBytes)));
    f.forRange(kg, i32.const(0), p('cols'), 4, () => {
      for (const row of acc) for (const a of row) f.set(a, f32x4.const(0));
      f.set(qp, f.get(qBase));
      f.set(qEnd, i32.add(f.get(qBase), groupBytes));
      f.set(kp, i32.add(p('k'), i32.mul(i32.shr_s(f.get(kg), i32.const(2)), keyGroupBytes)));
      const step = (u: number) => {
        for (let r = 0; r < R; r++) f.set(av[r], v128.load(f.get(qp), 16 * (u * R + r)));
        for (let c = 0; c < 4; c++) {
          f.set(bv, v128.load(f.get(kp), 16 * (4 * u + c)));
          for (let r = 0; r < R; r++) f.set(acc[r][c], madd(o, f.get(av[r]), f.get(bv), f.get(acc[r][c])));
        }
      };
      const loop = (unroll: number, name: string) => {
        f.block(`${name}_done`, (done) => {
          f.loop(name, (again) => {
            // (unroll 1: a plain compare, no address arithmetic in the loop test)
            f.brIf(done, unroll === 1 ? i32.ge_s(f.get(qp), f.get(qEnd)) : i32.gt_s(i32.add(f.get(qp), i32.const(16 * R * unroll)), f.get(qEnd)));
            for (let u = 0; u < unroll; u++) step(u);
            f.set(qp, i32.add(f.get(qp), i32.const(16 * R * unroll)));
            f.set(kp, i32.add(f.get(kp), i32.const(64 * unroll)));
            f.br(again);
          });
        });
      };
      if (U > 1) loop(U, 'unrolled');
      loop(1, 'depth');
      for (let r = 0; r < R; r++) {
        const a = acc[r];
        const pairSum = (x: (typeof a)[number], y: (typeof a)[number]) =>
          f32x4.add(v128.shuffle32(f.get(x), f.get(y), [0, 4, 1, 5]), v128.shuffle32(f.get(x), f.get(y), [2, 6, 3, 7]));
        f.set(s01, pairSum(a[0], a[1]));
        f.set(s23, pairSum(a[2], a[3]));
        f.set(s01, f32x4.add(v128.shuffle32(f.get(s01), f.get(s23), [0, 1, 4, 5]), v128.shuffle32(f.get(s01), f.get(s23), [2, 3, 6, 7])));
        f.set(out, i32.add(p('s'), i32.add(i32.mul(i32.add(f.get(g), i32.const(r)), i32.const(4 * o.bc)), i32.shl(f.get(kg), i32.const(2)))));
        f.statement(v128.store(f.get(out), f32x4.mul(f.get(s01), f32x4.splat(p('alpha')))));
      }
    });
  });
}

/** pv_tile: O[r][:] = scales[r]·O[r][:] + Σ_j P[r][j]·V[j][:], over ceil(rows/PR) groups and the V panel's column blocks. */
function pvTile(f: FunctionBuilder, o: TileOptions): void {
  const p = (n: string) => f.get(f.param(n));
  const R = o.pvRows;
  const CV = o.pvVectors;
  const width = 16 * CV;
  const g = f.local('i32', 'g');
  const cb = f.local('i32', 'cb');
  const pp = f.local('i32', 'pp');
  const vp = f.local('i32', 'vp');
  const pEnd = f.local('i32', 'p_end');
  const orow = f.local('i32', 'orow');
  const av = f.local('v128', 'av');
  const bv = Array.from({ length: CV }, (_, c) => f.local('v128', `bv${c}`));
  const acc = Array.from({ length: R }, (_, r) => Array.from({ length: CV }, (_, c) => f.local('v128', `acc${r}${c}`)));
  const lds = 4 * o.bc;
  const dimBytes = i32.shl(p('dim'), i32.const(2));

  f.forRange(g, i32.const(0), p('rows'), R, () => {
    f.forRange(cb, i32.const(0), dimBytes, width, () => {
      for (let r = 0; r < R; r++) {
        f.set(orow, i32.add(p('o'), i32.add(i32.mul(i32.add(f.get(g), i32.const(r)), p('ldo')), f.get(cb))));
        const scale = v128.load32_splat(i32.add(p('scales'), i32.shl(i32.add(f.get(g), i32.const(r)), i32.const(2))));
        for (let c = 0; c < CV; c++) f.set(acc[r][c], f32x4.mul(v128.load(f.get(orow), 16 * c), scale));
      }
      f.set(pp, i32.add(p('p'), i32.mul(f.get(g), i32.const(lds))));
      f.set(pEnd, i32.add(f.get(pp), i32.shl(p('keys'), i32.const(2))));
      f.set(vp, i32.add(p('v'), i32.mul(i32.div_s(f.get(cb), i32.const(width)), p('vld'))));
      f.block('keys_done', (done) => {
        f.loop('keys', (again) => {
          f.brIf(done, i32.ge_s(f.get(pp), f.get(pEnd)));
          for (let c = 0; c < CV; c++) f.set(bv[c], v128.load(f.get(vp), 16 * c));
          for (let r = 0; r < R; r++) {
            f.set(av, v128.load32_splat(f.get(pp), r * lds));
            for (let c = 0; c < CV; c++) f.set(acc[r][c], madd(o, f.get(av), f.get(bv[c]), f.get(acc[r][c])));
          }
          f.set(pp, i32.add(f.get(pp), i32.const(4)));
          f.set(vp, i32.add(f.get(vp), i32.const(width)));
          f.br(again);
        });
      });
      for (let r = 0; r < R; r++) {
        f.set(orow, i32.add(p('o'), i32.add(i32.mul(i32.add(f.get(g), i32.const(r)), p('ldo')), f.get(cb))));
        for (let c = 0; c < CV; c++) f.statement(v128.store(f.get(orow), f.get(acc[r][c]), 16 * c));
      }
    });
  });
}

