// The fused non-causal linear attention (approx/webgpu/fused.wgsl.ts, FUSEDATTN_APPROX_TIER=fused)
// off the GPU: every kernel variant compiles with Tint (Dawn's null backend) and keeps its
// workgroup memory in whole 16-byte arrays within the H200's 48 KiB; and an emulation of the three
// kernels on small problems whose index arithmetic is the generated WGSL's own (every `let` the
// staging, the matrix loads/stores, the partials, the sums and the epilogue use, the load/store
// guards and the matrix offsets and strides are parsed out of the source and evaluated per
// workgroup, subgroup and invocation), with the f16 rounding of the staged tiles: the output must
// match the float64 reference, every matrix access stay inside its array, every output element be
// written once. An off-by-one in the chunking, the col-major offsets or the edges fails it.
// The numbers on tensor cores are checked on the GPU (bench/gpu/linear-fused.sh).
import { describe, expect, it } from 'vitest';
import { Tensor } from '../dist/index.js';
import { roundToHalf } from '../dist/core/dtype.js';
import { validateApprox } from '../dist/ops/approx/problem.js';
import { referenceApprox } from '../dist/ops/approx/index.js';
import { featureMap } from '../dist/ops/approx/features.js';
import { buildFusedOutput, buildFusedReduce, buildFusedState, fusedWorkgroupBytes } from '../dist/ops/approx/webgpu/fused.wgsl.js';
import { fusedGrids, fusedParams, fusedPlan, fusedProblemUnsupported } from '../dist/ops/approx/webgpu/fused.js';
import { approxTier } from '../dist/ops/approx/webgpu/tier.js';
import { type Case, type Env, Source, eight, emulateEpilogue, emulateState, loadMatrix, makeInputs, mma, phi, vec } from './fused-emulation.js';
import { tintErrors } from './tint.js';

/**
 * Runs the three kernels of `c` in emulation (index arithmetic from the WGSL) and returns the
 * output in the output layout, with the problems found (accesses out of range, elements written
 * other than once).
 */
function emulate(c: Case, seed: number, mutate: { state?: (s: string) => string; output?: (s: string) => string } = {}) {
  const { q, k, v, options } = makeInputs(c, seed);
  const p = validateApprox('linear', q, k, v, options);
  const pad = c.pad ?? 0;
  const plan = fusedPlan(p, { q: pad, k: pad, v: pad }, c.chunk);
  const P = fusedParams(p, plan, { q: pad, k: pad, v: pad });
  const prm = { ...P, q_str: vec(P.q_str), k_str: vec(P.k_str), v_str: vec(P.v_str), o_str: vec(P.o_str) };
  const grids = fusedGrids(p, plan);
  const padded = (t: Tensor) => { const x = t.toFloat32(); const y = new Float64Array(x.length + pad); y.set(x, pad); return y; };
  const [qd, kd, vd] = [padded(q), padded(k), padded(v)];
  const dtype = p.base.dtype;
  const map = plan.state.map;

  const { part, zpart } = emulateState(plan, prm, grids.state, kd, vd, dtype, mutate.state);

  // ---- kernel 2: the reduction (its arithmetic is the WGSL's, written out here)
  const stateQuads = (plan.fp * plan.dvp) / 4;
  const state = new Float64Array(plan.bytes.state / 2);
  const zsum = new Float64Array(plan.bytes.z / 4);
  for (let pl = 0; pl < plan.planes; pl++) {
    for (let e = 0; e < stateQuads * 4; e++) {
      let s = 0;
      for (let cc = 0; cc < plan.chunks; cc++) s += part[(pl * plan.chunks + cc) * stateQuads * 4 + e];
      state[pl * stateQuads * 4 + e] = roundToHalf(s * P.alpha);
    }
    for (let f = 0; f < plan.fp; f++) {
      let s = 0;
      for (let cc = 0; cc < plan.chunks; cc++) s += zpart[(pl * plan.chunks + cc) * plan.fp + f];
      zsum[pl * plan.fp + f] = s * P.alpha;
    }
  }

  // ---- kernel 3: output
  const S3 = new Source((mutate.output ?? ((x) => x))(buildFusedOutput(plan.output)));
  const NT3 = S3.consts.NT;
  const aConds = S3.matches(/if \((.+?)\) \{ ra\d+ = pack8\(phi8\(eight_q\((.+?), (\w+), (p\.\w+), (p\.\w+\.\w)\), (\w+), (p\.\w+)\)\); \}/g);
  const ca = aConds.length / 2;
  const cb = [...S3.main.matchAll(/let tb = /g)].length / 3;
  const aTileSize = S3.arraySize('a_tile') * 8, bTileSize = S3.arraySize('b_tile') * 8;
  const loads3 = S3.loads();
  const outLen = p.base.outShape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(outLen).fill(NaN);
  const writes = new Uint8Array(outLen);
  const problems: string[] = [];
  for (let wz = 0; wz < grids.output[2]; wz++) for (let wy = 0; wy < grids.output[1]; wy++) for (let wx = 0; wx < grids.output[0]; wx++) {
    const envs: Env[] = [];
    for (let lid = 0; lid < NT3; lid++) {
      const env: Env = { ...S3.consts, p: prm, wg: { x: wx, y: wy, z: wz }, lid, sg: Math.floor(lid / 32), lane: lid % 32 };
      for (const name of ['q0', 'bh', 'v0', 'b', 'head', 'plane', 'q_row0', 'steps', 'sm', 'sn']) S3.let(env, name);
      env.ra = []; env.rb = []; env.dp = new Array(ca).fill(0);
      envs.push(env);
    }
    const fetch = (phase: 0 | 1, step: number) => {
      for (const env of envs) {
        env.step = step;
        for (let u = 0; u < ca; u++) {
          S3.let(env, 'ta', phase === 0 ? u : 2 * ca + u);
          S3.let(env, 'row', phase * ca + u);
          S3.let(env, 'fd', phase * ca + u);
          const [cond, base, d, dim, sd, d2, dim2] = aConds[phase * ca + u];
          let x = new Array(8).fill(0);
          if (cond(env)) x = eight(qd, base(env), d(env), dim(env), sd(env), plan.output.vec, dtype).map((r, i) => (d2(env) + i < dim2(env) ? roundToHalf(phi(map, r)) : 0));
          env.ra[u] = x;
        }
        for (let u = 0; u < cb; u++) {
          S3.let(env, 'tb', phase === 0 ? u : 2 * cb + u);
          const src = S3.let(env, 'st_src', phase * cb + u);
          if (!(src >= 0 && (src + 1) * 8 <= state.length)) throw new Error(`state[${src}] outside`);
          env.rb[u] = Array.from(state.subarray(src * 8, src * 8 + 8));
        }
      }
    };
    const acc = Array.from({ length: NT3 / 32 }, () => new Map<string, number[][]>());
    for (let sg = 0; sg < NT3 / 32; sg++) for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) acc[sg].set(`acc_${i}_${j}`, Array.from({ length: 16 }, () => new Array<number>(16).fill(0)));
    fetch(0, 0);
    const steps = envs[0].steps;
    for (let step = 0; step < steps; step++) {
      const aTile = new Float64Array(aTileSize).fill(NaN), bTile = new Float64Array(bTileSize).fill(NaN);
      for (const env of envs) {
        env.step = step;
        for (let u = 0; u < ca; u++) {
          S3.let(env, 'ta', ca + u);
          const dst = S3.let(env, 'a_dst', u);
          if (!(dst >= 0 && (dst + 1) * 8 <= aTileSize)) throw new Error(`a_tile[${dst}] outside`);
          aTile.set(env.ra[u], dst * 8);
          const zi = S3.let(env, 'zi', u);
          if (!(zi >= 0 && (zi + 2) * 4 <= zsum.length)) throw new Error(`z[${zi}] outside`);
          for (let i = 0; i < 8; i++) env.dp[u] += env.ra[u][i] * zsum[zi * 4 + i];
        }
        for (let u = 0; u < cb; u++) {
          S3.let(env, 'tb', cb + u);
          const dst = S3.let(env, 'b_dst', u);
          if (!(dst >= 0 && (dst + 1) * 8 <= bTileSize)) throw new Error(`b_tile[${dst}] outside`);
          bTile.set(env.rb[u], dst * 8);
        }
      }
      if (step + 1 < steps) fetch(1, step);
      for (let sg = 0; sg < NT3 / 32; sg++) {
        const env = envs[sg * 32];
        for (let s = 0; s < loads3.length; s += 6) {
          const m = new Map<string, number[][]>();
          for (const l of loads3.slice(s, s + 6)) m.set(l.name, loadMatrix(l.arr === 'a_tile' ? aTile : bTile, l.off(env), l.stride(env), l.major, `output ${l.name}`));
          for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) mma(acc[sg].get(`acc_${i}_${j}`)!, m.get(`a${i}`)!, m.get(`b${j}`)!);
        }
      }
    }
    // den: den_part[lid + u·NT] = dp[u]; den[r] = Σ_c den_part[dp_src]
    const denPart = new Float64Array(NT3 * ca);
    envs.forEach((env, lid) => env.dp.forEach((x: number, u: number) => { denPart[lid + u * NT3] = x; }));
    const den = new Float64Array(S3.consts.TM);
    for (let r = 0; r < S3.consts.TM; r++) {
      const env: Env = { ...S3.consts, r };
      for (let cc = 0; cc < S3.consts.CPR_A; cc++) { env.c = cc; den[r] += denPart[S3.let(env, 'dp_src')]; }
    }
    emulateEpilogue(S3, { envs, acc, den, scratch: 'c_tile', e: 'e', rowSkip: 2 * ca, vecOut: plan.output.vecOut, dtype, out, writes, problems });
  }
  for (let i = 0; i < outLen; i++) if (writes[i] !== 1) { problems.push(`out[${i}] written ${writes[i]} times`); break; }
  return { out, ref: referenceApprox(p), problems, plan };
}


const EMULATED: Case[] = [
  // one chunk, 64-wide tiles, Dv < D
  { B: 1, H: 2, KV: 2, S: 37, D: 64, Dv: 40 },
  // several chunks with a short last one, GQA, batch 2, BSND, 128-wide tiles, Dv 72 padded to one value tile of 128
  { B: 2, H: 4, KV: 2, S: 70, Sk: 97, D: 128, Dv: 72, layout: 'BSND', chunk: 32 },
  // odd D and Dv (strided loads and stores), float32, BSH, relu
  { B: 2, H: 2, KV: 1, S: 19, D: 59, Dv: 33, layout: 'BSH', dtype: 'float32', map: 'relu', chunk: 32 },
  // an input base that is not 8-aligned (strided loads), Dv > 128 (two value tiles), SBH
  { B: 1, H: 2, KV: 2, S: 130, Sk: 45, D: 64, Dv: 136, layout: 'SBH', pad: 2, chunk: 32 },
  // F over one feature tile (two state tiles along F, the output's K steps over 256 features)
  { B: 1, H: 1, KV: 1, S: 21, D: 160, Dv: 24 },
  // 64 query rows per output workgroup with 128 value columns (FUSEDATTN_APPROX_FUSED_ROWS=64)
  { B: 1, H: 2, KV: 2, S: 150, D: 128, Dv: 128, rows: 64, chunk: 64 },
  // the identity map (features computed before, fused-features.ts): 256 Performer-like features, GQA
  { B: 1, H: 4, KV: 2, S: 75, Sk: 130, D: 256, Dv: 64, map: 'identity', chunk: 64 },
  { B: 1, H: 2, KV: 2, S: 33, D: 40, Dv: 24, map: 'identity', dtype: 'float32' },
];

describe('fused linear attention kernels', () => {
  const variants = () => {
    const list: Array<{ name: string; code: string; kind: 'state' | 'output' | 'reduce'; o?: { tm: number; tn: number } }> = [{ name: 'reduce', code: buildFusedReduce(), kind: 'reduce' }];
    for (const dtype of ['float16', 'float32'] as const) for (const vec of [true, false]) for (const tm of [64, 128] as const) for (const tn of [64, 128] as const) {
      const map = vec ? 'elu+1' : 'relu';
      list.push({ name: `state ${dtype} ${map} vec ${vec} ${tm}x${tn}`, code: buildFusedState({ dtype, map, vec, tm, tn }), kind: 'state', o: { tm, tn } });
      for (const vecOut of [true, false]) list.push({ name: `output ${dtype} vec ${vec} out ${vecOut} ${tm}x${tn}`, code: buildFusedOutput({ dtype, map, vec, tm, tn, vecOut }), kind: 'output', o: { tm, tn } });
    }
    // the identity map (fused-features.ts): only φ's body differs
    list.push({ name: 'state float16 identity vec 128x64', code: buildFusedState({ dtype: 'float16', map: 'identity', vec: true, tm: 128, tn: 64 }), kind: 'state', o: { tm: 128, tn: 64 } });
    list.push({ name: 'output float16 identity vec 128x64', code: buildFusedOutput({ dtype: 'float16', map: 'identity', vec: true, tm: 128, tn: 64, vecOut: true }), kind: 'output', o: { tm: 128, tn: 64 } });
    return list;
  };

  it('compile with Tint for every dtype, load and store path and tile', () => {
    const sources = Object.fromEntries(variants().map((v) => [v.name, v.code]));
    const errors = tintErrors(sources, 'the fused linear attention kernels');
    if (!errors) return;
    for (const [name, list] of Object.entries(errors)) expect(list, name).toEqual([]);
  });

  it('keep workgroup memory in whole 16-byte arrays, as the host counts it, within 48 KiB', () => {
    for (const v of variants()) {
      if (v.kind === 'reduce') continue;
      const sizes = [...v.code.matchAll(/var<workgroup>\s+\w+\s*:\s*array<([^,]+),\s*(\d+)>/g)].map((m) => (m[1] === 'f16' ? 2 : m[1].startsWith('vec4') ? 16 : 4) * Number(m[2]));
      for (const s of sizes) expect(s % 16, v.name).toBe(0);
      const total = sizes.reduce((a, b) => a + b, 0);
      expect(total, v.name).toBe(fusedWorkgroupBytes(v.kind, v.o!));
      expect(total, v.name).toBeLessThanOrEqual(49152);
    }
  });

  for (const [n, c] of EMULATED.entries()) {
    it(`emulated with the WGSL's index arithmetic: ${JSON.stringify(c)}`, () => {
      if (c.rows) process.env.FUSEDATTN_APPROX_FUSED_ROWS = String(c.rows);
      let r: ReturnType<typeof emulate>;
      try { r = emulate(c, 900 + n); } finally { delete process.env.FUSEDATTN_APPROX_FUSED_ROWS; }
      const { out, ref, problems } = r;
      expect(problems).toEqual([]);
      let err = 0, scale = 1e-30;
      for (let i = 0; i < ref.length; i++) { err = Math.max(err, Math.abs(out[i] - ref[i])); scale = Math.max(scale, Math.abs(ref[i])); }
      expect(err / scale).toBeLessThan(c.dtype === 'float32' ? 1e-2 : 2e-2);
    });
  }

  /** Whether the emulation of `c` with a kernel source changed by `mutate` goes wrong (it must). */
  const fails = (c: Case, mutate: Parameters<typeof emulate>[2], what: string) => {
    const plan = fusedPlan(validateApprox('linear', ...Object.values(makeInputs(c, 900)).slice(0, 3) as [Tensor, Tensor, Tensor], makeInputs(c, 900).options), { q: c.pad ?? 0, k: c.pad ?? 0, v: c.pad ?? 0 }, c.chunk);
    const [s0, o0] = [buildFusedState(plan.state), buildFusedOutput(plan.output)];
    expect(mutate!.state ? mutate!.state(s0) : mutate!.output!(o0), `${what}: the mutation must change the source`).not.toBe(mutate!.state ? s0 : o0);
    try {
      const { out, ref, problems } = emulate(c, 900, mutate);
      if (problems.length) return true;
      let err = 0, scale = 1e-30;
      for (let i = 0; i < ref.length; i++) { err = Math.max(err, Math.abs(out[i] - ref[i])); scale = Math.max(scale, Math.abs(ref[i])); }
      return !(err / scale < 2e-2);
    } catch {
      return true;
    }
  };

  it('fails on an off-by-one in the chunking, the col-major offsets or the edges (mutated kernels)', () => {
    const multi = EMULATED[1];
    const cases: Array<[string, Case, Parameters<typeof emulate>[2]]> = [
      ['last key of a chunk dropped', multi, { state: (s) => s.replace('min((chunk + 1u) * p.chunk_keys - p.key_shift, p.seq_k)', 'min((chunk + 1u) * p.chunk_keys - p.key_shift - 1u, p.seq_k)') }],
      ['chunk start one key late', multi, { state: (s) => s.replace('let key0 = max(chunk * p.chunk_keys, p.key_shift) - p.key_shift;', 'let key0 = max(chunk * p.chunk_keys, p.key_shift) - p.key_shift + 1u;') }],
      ['col-major K column one vec4 off', multi, { state: (s) => s.replace('col_major>(&k_tile, 16u * K_LD + (sm + 0u) / 8u, K_LD)', 'col_major>(&k_tile, 16u * K_LD + (sm + 0u) / 8u + 1u, K_LD)') }],
      ['K operand read row-major', multi, { state: (s) => s.replace(/col_major>\(&k_tile/g, 'row_major>(&k_tile') }],
      ['staged K row stride unpadded', multi, { state: (s) => s.replace('let k_dst = (tk / CPR_K) * K_LD', 'let k_dst = (tk / CPR_K) * CPR_K') }],
      ['query edge one row long', EMULATED[0], { output: (s) => s.replace(/if \(row < p\.seq_q && col < p\.dim_v\)/g, 'if (row <= p.seq_q && col < p.dim_v)') }],
      ['value edge one column long (strided stores)', EMULATED[2], { output: (s) => s.replaceAll('if (col + e < p.dim_v)', 'if (col + e <= p.dim_v)') }],
      ['feature edge: phi(0) kept past D', EMULATED[2], { state: (s) => s.replace(/pack8\(phi8\(eight_k\((.+?)\), fd, p\.dim\)\)/g, 'pack8(phi8(eight_k($1), fd, 4096u))') }],
    ];
    for (const [what, c, mutate] of cases) expect(fails(c, mutate, what), what).toBe(true);
  });

  it('plans the bench shape as 256 state workgroups of 2048 keys, 16-byte loads and stores; fewer chunks when the partials would outgrow a binding', () => {
    const shape = [4, 32, 4096, 128];
    const t = Tensor.fromData(new Uint16Array(shape.reduce((a, b) => a * b, 1)), shape, 'float16');
    const p = validateApprox('linear', t, t, t, {});
    const plan = fusedPlan(p, { q: 0, k: 0, v: 0 }, undefined);
    expect([plan.chunks, plan.chunkKeys, plan.fp, plan.dvp, plan.state.vec, plan.output.vec, plan.output.vecOut]).toEqual([2, 2048, 128, 128, true, true, true]);
    expect(fusedGrids(p, plan).state).toEqual([2, 128, 1]);
    expect(fusedGrids(p, plan).output).toEqual([32, 128, 1]);
    const small = fusedPlan(p, { q: 0, k: 0, v: 0 }, undefined, 128 * 128 * 128 * 4);
    expect([small.chunks, small.bytes.part]).toEqual([1, 128 * 128 * 128 * 4]);
    // an element base that is not 8-aligned (a sub-view of a buffer) takes the strided loads
    expect(fusedPlan(p, { q: 2, k: 0, v: 0 }, undefined).output.vec).toBe(false);
    expect(() => fusedPlan(p, { q: 0, k: 0, v: 0 }, 48)).toThrow(/multiple of 32/);
  });

  it('the fused tier: auto for float16 on subgroup matrices, forced by FUSEDATTN_APPROX_TIER=fused, refused with the reason without subgroup matrices; Performer and expression maps take their own route', () => {
    const good = {
      features: new Set(['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix']),
      limits: {} as never,
      adapter: { subgroupMinSize: 32, subgroupMaxSize: 32, subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 }] },
    };
    const bare = { ...good, features: new Set<string>() };
    const saved = process.env.FUSEDATTN_APPROX_TIER;
    try {
      process.env.FUSEDATTN_APPROX_TIER = 'fused';
      expect(approxTier('float16', good)).toBe('fused');
      expect(() => approxTier('float16', bare)).toThrow(/FUSEDATTN_APPROX_TIER=fused.*lacks the "shader-f16"/);
      delete process.env.FUSEDATTN_APPROX_TIER;
      // auto: float16 on subgroup matrices takes the fused kernels (measured on the H200), float32
      // and adapters without them the portable path
      expect(approxTier('float16', good)).toBe('fused');
      expect(approxTier('float32', good)).toBe('portable');
      expect(approxTier('float16', bare)).toBe('portable');
    } finally {
      if (saved === undefined) delete process.env.FUSEDATTN_APPROX_TIER;
      else process.env.FUSEDATTN_APPROX_TIER = saved;
    }
    const { q, k, v } = makeInputs({ B: 1, H: 2, KV: 2, S: 8, D: 16 }, 1);
    expect(fusedProblemUnsupported(validateApprox('linear', q, k, v, {}))).toBeUndefined();
    expect(fusedProblemUnsupported(validateApprox('linear', q, k, v, { featureMap: 'relu' }))).toBeUndefined();
    expect(fusedProblemUnsupported(validateApprox('linear', q, k, v, { causal: true }))).toBeUndefined();
    expect(fusedProblemUnsupported(validateApprox('linear', q, k, v, { featureMap: featureMap(({ x }) => x.mul(x)) }))).toMatch(/expression/);
    expect(fusedProblemUnsupported(validateApprox('performer', q, k, v, {}))).toMatch(/Performer/);
  });
});
