// The fused causal linear attention (approx/webgpu/fused-causal.wgsl.ts) off the GPU: every
// variant compiles with Tint and keeps its workgroup memory within the H200's 48 KiB; and an
// emulation of its three kernels (the state kernel over shifted chunks, the prefix scan, the
// causal output) whose index arithmetic is the generated WGSL's own (test/fused-emulation.ts):
// the output must match the float64 reference, every matrix access stay inside its array, every
// output element be written once. Odd lengths, Sq < Sk (bottom-right alignment), GQA, chunks that
// do not meet the tiles' diagonals, strided and 16-byte paths. Mutated kernels must fail it.
// The numbers on tensor cores are checked on the GPU (bench/gpu/linear-fused.sh, causal cases).
import { describe, expect, it } from 'vitest';
import type { Tensor } from '../dist/index.js';
import { roundToHalf } from '../dist/core/dtype.js';
import { validateApprox } from '../dist/ops/approx/problem.js';
import { referenceApprox } from '../dist/ops/approx/index.js';
import { CAUSAL_TM, buildFusedCausalOutput, buildFusedScan, causalWorkgroupBytes } from '../dist/ops/approx/webgpu/fused-causal.wgsl.js';
import { CAUSAL_CHUNK_KEYS, fusedGrids, fusedParams, fusedPlan, fusedPlanUnsupported, fusedProblemUnsupported } from '../dist/ops/approx/webgpu/fused.js';
import { type Case, type Env, Source, compileExpr, eight, emulateEpilogue, emulateState, loadMatrix, makeInputs, mma, phi, vec } from './fused-emulation.js';
import { tintErrors } from './tint.js';

const zeros16 = () => Array.from({ length: 16 }, () => new Array<number>(16).fill(0));

function causalProblem(c: Case, seed: number) {
  const { q, k, v, options } = makeInputs(c, seed);
  return { q, k, v, p: validateApprox('linear', q, k, v, { ...(options as object), causal: true }) };
}

/** The three causal kernels of `c` in emulation; the output in the output layout and the problems found. */
function emulateCausal(c: Case, seed: number, mutate: { output?: (s: string) => string } = {}) {
  const { q, k, v, p } = causalProblem(c, seed);
  const pad = c.pad ?? 0;
  const bases = { q: pad, k: pad, v: pad };
  const plan = fusedPlan(p, bases, c.chunk);
  const P = fusedParams(p, plan, bases);
  const prm = { ...P, q_str: vec(P.q_str), k_str: vec(P.k_str), v_str: vec(P.v_str), o_str: vec(P.o_str) };
  const grids = fusedGrids(p, plan);
  const padded = (t: Tensor) => { const x = t.toFloat32(); const y = new Float64Array(x.length + pad); y.set(x, pad); return y; };
  const [qd, kd, vd] = [padded(q), padded(k), padded(v)];
  const dtype = p.base.dtype;
  const map = plan.state.map;
  const o = plan.causal!;
  const KC = plan.chunkKeys;

  // ---- kernel 1: the state partials over the shifted chunks
  const { part, zpart } = emulateState(plan, prm, grids.state, kd, vd, dtype);

  // ---- kernel 2: the exclusive scan (its arithmetic is the WGSL's, written out here)
  const fd = plan.fp * plan.dvp;
  const state = new Float64Array(plan.bytes.state / 2);
  const z = new Float64Array(plan.bytes.z / 4);
  for (let pl = 0; pl < plan.planes; pl++) {
    for (let e = 0; e < fd; e++) {
      let acc = 0;
      for (let cc = 0; cc < plan.chunks; cc++) { const at = (pl * plan.chunks + cc) * fd + e; state[at] = roundToHalf(acc / ((cc + 1) * KC)); acc += part[at]; }
    }
    for (let f = 0; f < plan.fp; f++) {
      let acc = 0;
      for (let cc = 0; cc < plan.chunks; cc++) { const at = (pl * plan.chunks + cc) * plan.fp + f; z[at] = acc / ((cc + 1) * KC); acc += zpart[at]; }
    }
  }

  // ---- kernel 3: the causal output
  const S = new Source((mutate.output ?? ((x) => x))(buildFusedCausalOutput(o)));
  const C = S.consts;
  const NT = C.NT;
  const qConds = S.matches(/if \((.+?)\) \{ w = pack8\(phi8\(eight_q\((.+?), (\w+), (p\.\w+), (p\.\w+\.\w)\), (\w+), (p\.\w+)\)\); \}/g);
  const kConds = S.matches(/if \((.+?)\) \{ rk\d+ = pack8\(phi8\(eight_k\((.+?), (\w+), (p\.\w+), (p\.\w+\.\w)\), (\w+), (p\.\w+)\)\); \}/g);
  const vConds = S.matches(/if \((.+?)\) \{ rv\d+ = pack8\(eight_v\((.+?), (\w+), (p\.\w+), (p\.\w+\.\w)\)\); \}/g);
  const maskConds = S.matches(/if \(([^)]+)\) \{ x\[i\] = s_tile\[s_src\] \* alpha; \}/g);
  const cq = qConds.length, ck = kConds.length / 2, cv = vConds.length / 2;
  const loads = S.loads(); // the prefix product's 2 x 6, then P·V's 2 x 6
  const scoreLoads = [...S.main.matchAll(/let (qa\d|kb\d) = subgroupMatrixLoad<subgroup_matrix_\w+<f16, 16, 16>, (row|col)_major>\(&(\w+), ([^;]+), (\w+)\);/g)]
    .map((m) => ({ name: m[1], major: m[2], arr: m[3], off: compileExpr(m[4]), stride: compileExpr(m[5]) }));
  const scoreStores = S.matches(/subgroupMatrixStore<row_major>\(&s_tile, ([^;]+), sacc\d, KT\);/g);
  const scoreMats = scoreStores.length;
  const size = (name: string) => S.arraySize(name) * 8;
  const outLen = p.base.outShape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(outLen).fill(NaN);
  const writes = new Uint8Array(outLen);
  const problems: string[] = [];
  const within = (i: number, n: number, what: string) => { if (!(i >= 0 && i < n)) throw new Error(`${what}: ${i} outside ${n}`); };
  for (let wz = 0; wz < grids.output[2]; wz++) for (let wy = 0; wy < grids.output[1]; wy++) for (let wx = 0; wx < grids.output[0]; wx++) {
    const envs: Env[] = [];
    for (let lid = 0; lid < NT; lid++) {
      const env: Env = { ...C, p: prm, wg: { x: wx, y: wy, z: wz }, lid, sg: Math.floor(lid / 32), lane: lid % 32 };
      for (const name of ['q0', 'bh', 'v0', 'b', 'head', 'kv_head', 'plane', 'q_row0', 'k_row0', 'v_row0', 'seen', 'e', 'key_lo', 'key_hi', 'isteps', 'st_row0', 'sm', 'sn']) S.let(env, name);
      env.alpha = 1 / ((env.e + 1) * prm.chunk_keys); // let alpha = 1.0 / f32((e + 1u) * p.chunk_keys)
      for (let r = 0; r < scoreMats / 2; r++) S.let(env, `srow${r}`);
      env.dsum = new Array(C.TM * C.KT / 8 / NT).fill(0); env.rk = []; env.rv = []; env.rs = [];
      envs.push(env);
    }
    // φ(Q) staged once
    const qTile = new Float64Array(size('q_tile')).fill(NaN);
    const shares = new Float64Array(S.arraySize('s_tile')).fill(NaN);
    for (const env of envs) {
      for (let u = 0; u < cq; u++) {
        S.let(env, 'tq', u); S.let(env, 'row', u); S.let(env, 'fd', u);
        const [cond, base, d, dim, sd, d2, dim2] = qConds[u];
        let x = new Array(8).fill(0);
        if (cond(env)) x = eight(qd, base(env), d(env), dim(env), sd(env), o.vecQ, dtype).map((r, i) => (d2(env) + i < dim2(env) ? roundToHalf(phi(map, r)) : 0));
        const dst = S.let(env, 'q_dst', u);
        within(dst * 8, qTile.length - 7, 'q_tile');
        qTile.set(x, dst * 8);
        // the chunk's share of the prefix den, into s_tile[tq]
        const zi = S.let(env, 'zi', u);
        within(zi * 4 + 7, z.length, 'z');
        within(env.tq, shares.length, 's_tile (den shares)');
        shares[env.tq] = x.reduce((a, y, i) => a + y * z[zi * 4 + i], 0);
      }
    }
    const e0 = envs[0];
    // den of the prefix (its shares in order) and num = φ(Q)·state_e
    const den = new Float64Array(C.TM);
    for (let r = 0; r < C.TM; r++) {
      for (let cc = 0; cc < C.CPR_Q; cc++) {
        const src = S.let({ ...e0, r, c: cc }, 'dq_src');
        if (Number.isNaN(shares[src])) throw new Error(`den share ${src} read before it was written`);
        den[r] += shares[src];
      }
    }
    const acc = Array.from({ length: NT / 32 }, () => new Map<string, number[][]>());
    for (let sg = 0; sg < NT / 32; sg++) for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) acc[sg].set(`acc_${i}_${j}`, zeros16());
    // the state, KT rows a step through v_tile: ts / st_src of the first fetch, the stores, the next fetches
    const fetchState = (phase: 0 | 1, fstep: number) => {
      for (const env of envs) {
        env.fstep = fstep;
        for (let u = 0; u < cv; u++) {
          S.let(env, 'ts', phase === 0 ? u : 2 * cv + u);
          const src = S.let(env, 'st_src', phase * cv + u);
          within(src * 8, state.length - 7, 'state');
          env.rs[u] = Array.from(state.subarray(src * 8, src * 8 + 8));
        }
      }
    };
    fetchState(0, 0);
    for (let fstep = 0; fstep < C.FP / C.KT; fstep++) {
      const vTile = new Float64Array(size('v_tile')).fill(NaN);
      for (const env of envs) {
        env.fstep = fstep;
        for (let u = 0; u < cv; u++) { S.let(env, 'ts', cv + u); const dst = S.let(env, 's_dst', u); within(dst * 8, vTile.length - 7, 'v_tile (state)'); vTile.set(env.rs[u], dst * 8); }
      }
      if (fstep + 1 < C.FP / C.KT) fetchState(1, fstep); // the WGSL's (fstep + 1u)
      for (let sg = 0; sg < NT / 32; sg++) {
        const env = envs[sg * 32];
        env.fstep = fstep;
        for (let s0 = 0; s0 < 12; s0 += 6) {
          const m = new Map<string, number[][]>();
          for (const l of loads.slice(s0, s0 + 6)) m.set(l.name, loadMatrix(l.arr === 'q_tile' ? qTile : vTile, l.off(env), l.stride(env), l.major, `prefix ${l.name}`));
          for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) mma(acc[sg].get(`acc_${i}_${j}`)!, m.get(`a${i}`)!, m.get(`b${j}`)!);
        }
      }
    }
    // the in-chunk keys
    const fetch = (phase: 0 | 1, istep: number) => {
      for (const env of envs) {
        env.istep = istep;
        for (let u = 0; u < ck; u++) {
          S.let(env, 'tk', phase === 0 ? u : 2 * ck + u);
          S.let(env, 'key', phase * ck + u);
          S.let(env, 'fd', cq + phase * ck + u);
          const [cond, base, d, dim, sd, d2, dim2] = kConds[phase * ck + u];
          env.rk[u] = cond(env) ? eight(kd, base(env), d(env), dim(env), sd(env), o.vecKV, dtype).map((r, i) => (d2(env) + i < dim2(env) ? roundToHalf(phi(map, r)) : 0)) : new Array(8).fill(0);
        }
        for (let u = 0; u < cv; u++) {
          S.let(env, 'tv', phase === 0 ? u : 2 * cv + u);
          S.let(env, 'vkey', phase * cv + u);
          S.let(env, 'vd', phase * cv + u);
          const [cond, base, d, dim, sd] = vConds[phase * cv + u];
          env.rv[u] = cond(env) ? eight(vd, base(env), d(env), dim(env), sd(env), o.vecKV, dtype).map(roundToHalf) : new Array(8).fill(0);
        }
      }
    };
    const isteps = e0.isteps;
    if (isteps > 0) fetch(0, 0);
    for (let istep = 0; istep < isteps; istep++) {
      const kTile = new Float64Array(size('k_tile')).fill(NaN), vTile = new Float64Array(size('v_tile')).fill(NaN);
      for (const env of envs) {
        env.istep = istep;
        for (let u = 0; u < ck; u++) { S.let(env, 'tk', ck + u); const dst = S.let(env, 'k_dst', u); within(dst * 8, kTile.length - 7, 'k_tile'); kTile.set(env.rk[u], dst * 8); }
        for (let u = 0; u < cv; u++) { S.let(env, 'tv', cv + u); const dst = S.let(env, 'v_dst', u); within(dst * 8, vTile.length - 7, 'v_tile'); vTile.set(env.rv[u], dst * 8); }
      }
      if (istep + 1 < isteps) fetch(1, istep);
      // S = φ(Q)·φ(K)ᵀ
      const sTile = new Float64Array(S.arraySize('s_tile')).fill(NaN);
      for (let sg = 0; sg < NT / 32; sg++) {
        const env = envs[sg * 32];
        for (let t = 0; t < scoreMats; t++) {
          const s = zeros16();
          for (let kf = 0; kf < C.FP; kf += 16) {
            env.kf = kf;
            // sacc t = qa(t / 2)·kb(t % 2): the loads by name
            const [qa, kb] = [scoreLoads.find((l) => l.name === `qa${t >> 1}`)!, scoreLoads.find((l) => l.name === `kb${t & 1}`)!];
            mma(s, loadMatrix(qTile, qa.off(env), qa.stride(env), qa.major, `scores ${qa.name}`), loadMatrix(kTile, kb.off(env), kb.stride(env), kb.major, `scores ${kb.name}`));
          }
          const off = scoreStores[t][0](env);
          for (let r = 0; r < 16; r++) for (let cc = 0; cc < 16; cc++) {
            const i = off + r * C.KT + cc;
            within(i, sTile.length, 's_tile');
            if (!Number.isNaN(sTile[i])) throw new Error(`s_tile[${i}] written twice`);
            sTile[i] = s[r][cc];
          }
        }
      }
      // P = mask(S)·alpha, f16
      const pTile = new Float64Array(size('p_tile')).fill(NaN);
      for (const env of envs) {
        S.let(env, 'kbase');
        env.dsum.forEach((_: number, u: number) => {
          for (const name of ['mt', 'mrow', 'mc', 'mlast']) S.let(env, name, u);
          const x = new Array(8).fill(0);
          for (let i = 0; i < 8; i++) {
            env.i = i;
            S.let(env, 'kl', u); S.let(env, 'key', 2 * ck + u); const src = S.let(env, 's_src', u);
            if (maskConds[u][0](env)) {
              within(src, sTile.length, 's_src');
              if (Number.isNaN(sTile[src])) throw new Error(`s_tile[${src}] read before it was written`);
              x[i] = roundToHalf(sTile[src] * env.alpha);
            }
          }
          x.forEach((y) => { env.dsum[u] += y; });
          const dst = S.let(env, 'p_dst', u);
          within(dst * 8, pTile.length - 7, 'p_tile');
          pTile.set(x, dst * 8);
        });
      }
      for (let sg = 0; sg < NT / 32; sg++) {
        const env = envs[sg * 32];
        for (let s = 12; s < loads.length; s += 6) {
          const m = new Map<string, number[][]>();
          for (const l of loads.slice(s, s + 6)) m.set(l.name, loadMatrix(l.arr === 'p_tile' ? pTile : vTile, l.off(env), l.stride(env), l.major, `P·V ${l.name}`));
          for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) mma(acc[sg].get(`acc_${i}_${j}`)!, m.get(`a${i}`)!, m.get(`b${j}`)!);
        }
      }
    }
    // den per row: the prefix's plus its chunks' sums, s_tile[lid + u·NT] = dsum_u
    const partials = new Float64Array(C.TM * C.CPR_P);
    envs.forEach((env, lid) => env.dsum.forEach((x: number, u: number) => { partials[lid + u * NT] = x; }));
    for (let r = 0; r < C.TM; r++) for (let cc = 0; cc < C.CPR_P; cc++) den[r] += partials[S.let({ ...C, r, c: cc }, 'dp_src')];
    emulateEpilogue(S, { envs, acc, den, scratch: 's_tile', e: 'e8', rowSkip: cq, vecOut: o.vecOut, dtype, out, writes, problems });
  }
  for (let i = 0; i < outLen; i++) if (writes[i] !== 1) { problems.push(`out[${i}] written ${writes[i]} times`); break; }
  return { out, ref: referenceApprox(p), problems, plan };
}

const CAUSAL: Case[] = [
  // Sq = Sk, chunks on the diagonals (64-key chunks), 64-wide value tiles, Dv < D
  { B: 1, H: 2, KV: 2, S: 150, D: 64, Dv: 40, chunk: 64 },
  // Sq < Sk (off 27: the chunk boundaries shifted), GQA, BSND, 128 features, 128 columns, the default 128-key chunks
  { B: 2, H: 4, KV: 2, S: 70, Sk: 97, D: 128, Dv: 72, layout: 'BSND' },
  // odd D and Dv (strided loads and stores), float32, BSH, relu, 96-key chunks (boundaries off the tile grid)
  { B: 2, H: 2, KV: 1, S: 83, Sk: 130, D: 59, Dv: 33, layout: 'BSH', dtype: 'float32', map: 'relu', chunk: 96 },
  // an input base that is not 8-aligned, Dv > 128 (two value tiles), SBH, 32-key chunks
  { B: 1, H: 2, KV: 2, S: 45, Sk: 130, D: 64, Dv: 136, layout: 'SBH', pad: 2, chunk: 32 },
  // the identity map (features given), one query row against 200 keys
  { B: 1, H: 2, KV: 1, S: 1, Sk: 200, D: 96, Dv: 64, map: 'identity' },
];

describe('fused causal linear attention kernels', () => {
  const variants = () => {
    const list: Array<{ name: string; code: string; fp?: 64 | 128; tn?: 64 | 128 }> = [{ name: 'scan', code: buildFusedScan() }];
    for (const dtype of ['float16', 'float32'] as const) for (const fp of [64, 128] as const) for (const tn of [64, 128] as const) {
      for (const [vecQ, vecKV, vecOut] of [[true, true, true], [false, false, false], [true, false, true]]) {
        const map = dtype === 'float16' ? 'elu+1' : 'relu';
        list.push({ name: `causal ${dtype} ${map} fp ${fp} tn ${tn} vec ${vecQ}/${vecKV}/${vecOut}`, code: buildFusedCausalOutput({ dtype, map, fp, tn, vecQ, vecKV, vecOut }), fp, tn });
      }
    }
    list.push({ name: 'causal float16 identity', code: buildFusedCausalOutput({ dtype: 'float16', map: 'identity', fp: 128, tn: 128, vecQ: true, vecKV: true, vecOut: true }), fp: 128, tn: 128 });
    return list;
  };

  it('compile with Tint for every dtype, load and store path and tile', () => {
    const errors = tintErrors(Object.fromEntries(variants().map((v) => [v.name, v.code])), 'the fused causal linear attention kernels');
    if (!errors) return;
    for (const [name, list] of Object.entries(errors)) expect(list, name).toEqual([]);
  });

  it('keep workgroup memory in whole 16-byte arrays, as the host counts it, within 48 KiB', () => {
    for (const v of variants()) {
      if (!v.fp) continue;
      const sizes = [...v.code.matchAll(/var<workgroup>\s+\w+\s*:\s*array<([^,]+),\s*(\d+)>/g)].map((m) => (m[1].startsWith('vec4') ? 16 : 4) * Number(m[2]));
      for (const s of sizes) expect(s % 16, v.name).toBe(0);
      const total = sizes.reduce((a, b) => a + b, 0);
      expect(total, v.name).toBe(causalWorkgroupBytes({ fp: v.fp, tn: v.tn! }));
      expect(total, v.name).toBeLessThanOrEqual(49152);
    }
  });

  for (const [n, c] of CAUSAL.entries()) {
    it(`emulated with the WGSL's index arithmetic: ${JSON.stringify(c)}`, () => {
      const r = emulateCausal(c, 700 + n);
      expect(r.problems).toEqual([]);
      let err = 0, scale = 1e-30;
      for (let i = 0; i < r.ref.length; i++) { err = Math.max(err, Math.abs(r.out[i] - r.ref[i])); scale = Math.max(scale, Math.abs(r.ref[i])); }
      // f16 staging of φ, V, the states and P: a few 1e-3 of the largest output
      expect(err / scale).toBeLessThan(c.dtype === 'float32' ? 1e-2 : 2e-2);
    });
  }

  it('fails on an off-by-one in the diagonal, the prefix boundary or the scores\' operands (mutated kernels)', () => {
    const fails = (c: Case, output: (s: string) => string, what: string) => {
      const { p } = causalProblem(c, 700);
      const src = buildFusedCausalOutput(fusedPlan(p, { q: c.pad ?? 0, k: c.pad ?? 0, v: c.pad ?? 0 }, c.chunk).causal!);
      expect(output(src), `${what}: the mutation must change the source`).not.toBe(src);
      try {
        const { out, ref, problems } = emulateCausal(c, 700, { output });
        if (problems.length) return true;
        let err = 0, scale = 1e-30;
        for (let i = 0; i < ref.length; i++) { err = Math.max(err, Math.abs(out[i] - ref[i])); scale = Math.max(scale, Math.abs(ref[i])); }
        return !(err / scale < 2e-2);
      } catch {
        return true;
      }
    };
    const mutations: Array<[string, (s: string) => string]> = [
      ['the diagonal key masked', (s) => s.replace('key <= mlast && key < key_hi', 'key < mlast && key < key_hi')],
      ['one key past the diagonal', (s) => s.replace('let mlast = q0 + mrow + p.off;', 'let mlast = q0 + mrow + p.off + 1u;')],
      ['the next chunk\'s prefix state', (s) => s.replace('let st_row0 = (plane * p.chunks + e) * p.fp;', 'let st_row0 = (plane * p.chunks + min(e + 1u, p.chunks - 1u)) * p.fp;')],
      ['the keys after the prefix start late', (s) => s.replace('let key_lo = max(e * p.chunk_keys, p.key_shift) - p.key_shift;', 'let key_lo = max(e * p.chunk_keys, p.key_shift) - p.key_shift + 1u;')],
      ['the score operand read row-major', (s) => s.replace(/col_major>\(&k_tile/g, 'row_major>(&k_tile')],
      ['the state\'s columns one chunk off', (s) => s.replace('* p.dvp + v0 + (ts % CPR_V) * 8u) / 8u', '* p.dvp + v0 + ((ts + 1u) % CPR_V) * 8u) / 8u')],
      ['the prefix den from the previous chunk\'s key sums', (s) => s.replace('let zi = (st_row0 + fd) / 4u;', 'let zi = (st_row0 - min(st_row0 % (p.chunks * p.fp), p.fp) + fd) / 4u;')],
      ['the state\'s next rows one step late', (s) => s.replace('((st_row0 + (fstep + 1u) * KT + ts / CPR_V)', '((st_row0 + fstep * KT + ts / CPR_V)')],
    ];
    // each must show on one of two cases: chunks on the diagonals (three prefix states), or shifted (GQA, Sq < Sk)
    for (const [what, m] of mutations) expect(fails(CAUSAL[0], m, what) || fails(CAUSAL[1], m, what), what).toBe(true);
  });

  it('plans the chunks: 128 keys by default, shifted onto the diagonals, doubling when the partials outgrow a binding; more than 128 features stay portable', () => {
    const { p } = causalProblem({ B: 1, H: 2, KV: 2, S: 300, Sk: 1000, D: 64 }, 1);
    const plan = fusedPlan(p, { q: 0, k: 0, v: 0 }, undefined);
    expect(plan.chunkKeys).toBe(CAUSAL_CHUNK_KEYS);
    expect(plan.off).toBe(700);
    // 700 + 68 = 768 = 6 chunks: every 64-row tile's first row sees a multiple of 128 keys minus the shift
    expect(plan.keyShift).toBe(68);
    expect(plan.chunks).toBe(Math.ceil((1000 + 68) / 128));
    expect(fusedGrids(p, plan).output).toEqual([Math.ceil(300 / CAUSAL_TM), 2, 1]);
    const small = fusedPlan(p, { q: 0, k: 0, v: 0 }, undefined, 2 * 3 * 64 * 64 * 4);
    expect(small.chunkKeys).toBeGreaterThan(CAUSAL_CHUNK_KEYS);
    expect(small.bytes.part).toBeLessThanOrEqual(2 * 3 * 64 * 64 * 4);
    // the grid check counts the causal kernel's 64-row query tiles (300 rows: 5 of them)
    const square = causalProblem({ B: 1, H: 2, KV: 2, S: 300, D: 128 }, 1).p;
    const limits = { maxComputeWorkgroupsPerDimension: 4, maxStorageBufferBindingSize: 1 << 30 };
    expect(fusedPlanUnsupported(fusedPlan(square, { q: 0, k: 0, v: 0 }, undefined), square, limits)).toMatch(/5 query tiles\) exceeds maxComputeWorkgroupsPerDimension 4/);
    // (and every other dispatch: the scan's 17 workgroups of 256 quads per plane are the widest here)
    expect(fusedPlanUnsupported(fusedPlan(square, { q: 0, k: 0, v: 0 }, undefined), square, { ...limits, maxComputeWorkgroupsPerDimension: 16 })).toMatch(/exceeds/);
    expect(fusedPlanUnsupported(fusedPlan(square, { q: 0, k: 0, v: 0 }, undefined), square, { ...limits, maxComputeWorkgroupsPerDimension: 17 })).toBeUndefined();
    const wide = causalProblem({ B: 1, H: 1, KV: 1, S: 8, D: 160 }, 1).p;
    expect(fusedProblemUnsupported(wide)).toMatch(/at most 128 features/);
  });
});
