// The emulation of the fused linear attention kernels (approx/webgpu/fused*.wgsl.ts) off the GPU,
// shared by test/approx-fused-wgsl.test.ts (non-causal) and test/approx-fused-causal-wgsl.test.ts:
// a WGSL index-expression compiler, the `let`s and guards of a generated main(), 16 x 16 matrix
// loads from staged tiles, the inputs of a case, and the state kernel (kernel 1 of both forms)
// replayed with the WGSL's own index arithmetic.
import { Tensor, floatsToHalf } from '../dist/index.js';
import { roundToHalf } from '../dist/core/dtype.js';
import { IDENTITY } from '../dist/ops/approx/features.js';
import { buildFusedState } from '../dist/ops/approx/webgpu/fused.wgsl.js';
import type { FusedPlan } from '../dist/ops/approx/webgpu/fused.js';
import { normal, randomFloats, uniform } from '../dist/testing/index.js';

export type Env = Record<string, any>;

// ---------- a WGSL expression (u32 index arithmetic, comparisons, min/max/select) as a JS function of env

export function compileExpr(src: string): (env: Env) => number {
  const tokens = src.match(/\d+\.\d+|\d+u?|[A-Za-z_]\w*(?:\.\w+)*|&&|\|\||[<>=!]=|[-+*/%<>(),]/g) ?? [];
  let at = 0;
  const PREC: Record<string, number> = { '||': 1, '&&': 2, '==': 3, '!=': 3, '<': 4, '>': 4, '<=': 4, '>=': 4, '+': 5, '-': 5, '*': 6, '/': 6, '%': 6 };
  const primary = (): string => {
    const t = tokens[at++];
    if (t === '(') { const e = expr(0); at++; return `(${e})`; }
    if (/^\d/.test(t)) return t.replace(/u$/, '');
    if (tokens[at] === '(') {
      at++;
      const args: string[] = [];
      while (tokens[at] !== ')') { args.push(expr(0)); if (tokens[at] === ',') at++; }
      at++;
      if (t === 'min' || t === 'max') return `Math.${t}(${args.join(', ')})`;
      if (t === 'select') return `((${args[2]}) ? (${args[1]}) : (${args[0]}))`;
      throw new Error(`compileExpr: unknown function ${t} in ${src}`);
    }
    return `env.${t}`;
  };
  const expr = (min: number): string => {
    let left = primary();
    for (;;) {
      const op = tokens[at];
      const prec = PREC[op];
      if (prec === undefined || prec <= min) return left;
      at++;
      const right = expr(prec);
      left = op === '/' ? `Math.floor((${left}) / (${right}))` : `((${left}) ${op === '==' ? '===' : op === '!=' ? '!==' : op} (${right}))`;
    }
  };
  const js = expr(0);
  if (at !== tokens.length) throw new Error(`compileExpr: could not parse ${src}`);
  const f = new Function('env', `return ${js};`) as (env: Env) => number;
  return (env) => {
    const x = f(env);
    if (typeof x === 'number' && !Number.isFinite(x)) throw new Error(`${src}: ${x} (a name missing from the replay?)`);
    return x;
  };
}

/** The `let`s and guards of a kernel's main(), by name and occurrence. */
export class Source {
  readonly main: string;
  readonly consts: Env = {};
  private readonly lets = new Map<string, Array<(env: Env) => number>>();
  constructor(readonly wgsl: string) {
    for (const m of wgsl.matchAll(/const (\w+) = (\d+)u;/g)) this.consts[m[1]] = Number(m[2]);
    this.main = wgsl.slice(wgsl.indexOf('fn main('));
    for (const m of this.main.matchAll(/let (\w+) = ([^;]+);/g)) {
      let f: ((env: Env) => number) | undefined;
      try { f = compileExpr(m[2]); } catch { f = undefined; }
      if (!f) continue; // not index arithmetic (vectors, buffer reads)
      if (!this.lets.has(m[1])) this.lets.set(m[1], []);
      this.lets.get(m[1])!.push(f);
    }
  }
  /** Evaluates occurrence `n` of `let name` into env. */
  let(env: Env, name: string, n = 0): number {
    const list = this.lets.get(name);
    if (!list || !list[n]) throw new Error(`no occurrence ${n} of let ${name}`);
    return (env[name] = list[n](env));
  }
  /** Every capture group of `re` (global) over main(), compiled, by occurrence. */
  matches(re: RegExp): Array<Array<(env: Env) => number>> {
    return [...this.main.matchAll(re)].map((m) => m.slice(1).map(compileExpr));
  }
  /** Matrix loads of one product step: per 16-deep slice, the left and right matrices' array, layout, offset and stride. */
  loads(): Array<{ name: string; arr: string; major: string; off: (env: Env) => number; stride: (env: Env) => number }> {
    return [...this.main.matchAll(/let ([ab]\d) = subgroupMatrixLoad<subgroup_matrix_\w+<f16, 16, 16>, (row|col)_major>\(&(\w+), ([^;]+), (\w+)\);/g)]
      .map((m) => ({ name: m[1], major: m[2], arr: m[3], off: compileExpr(m[4]), stride: compileExpr(m[5]) }));
  }
  stores(): Array<{ arr: string; acc: string; off: (env: Env) => number; stride: (env: Env) => number }> {
    return [...this.main.matchAll(/subgroupMatrixStore<row_major>\(&(\w+), ([^;]+), (acc_\d_\d), (\w+(?:\.\w+)?)\);/g)]
      .map((m) => ({ arr: m[1], off: compileExpr(m[2]), acc: m[3], stride: compileExpr(m[4]) }));
  }
  arraySize(name: string): number {
    const m = new RegExp(`var<workgroup> ${name}: array<[^,]+, (\\d+)>`).exec(this.wgsl);
    if (!m) throw new Error(`no workgroup array ${name}`);
    return Number(m[1]);
  }
}

/** A 16 x 16 matrix of the staged tile (8 halves per vec4 element), checked against the array's size. */
export function loadMatrix(tile: Float64Array, off: number, stride: number, major: string, where: string): number[][] {
  const m = Array.from({ length: 16 }, () => new Array<number>(16).fill(0));
  for (let r = 0; r < 16; r++) for (let c = 0; c < 16; c++) {
    const i = major.startsWith('row') ? (off + r * stride) * 8 + c : (off + c * stride) * 8 + r;
    if (!(i >= 0 && i < tile.length)) throw new Error(`${where}: matrix element ${i} outside the tile of ${tile.length} halves`);
    m[r][c] = tile[i];
  }
  return m;
}

export function mma(acc: number[][], a: number[][], b: number[][]): void {
  for (let r = 0; r < 16; r++) for (let c = 0; c < 16; c++) {
    let s = 0;
    for (let k = 0; k < 16; k++) s += a[r][k] * b[k][c];
    acc[r][c] += s;
  }
}

export const phi = (map: string, x: number) => (map === 'elu+1' ? (x > 0 ? x + 1 : Math.exp(x)) : map === 'relu' ? Math.max(x, 0) : x);

/** The 8 elements a staging `eight_NAME(base, d, dim, sd)` call reads (0 past dim), checking the 16-byte path's alignment. */
export function eight(data: Float64Array, base: number, d: number, dim: number, sd: number, vec: boolean, dtype: string): number[] {
  if (vec && d < dim) {
    const align = dtype === 'float16' ? 8 : 4;
    if (sd !== 1 || (base + d) % align !== 0 || d + 8 > dim) throw new Error(`vector load at ${base} + ${d} (stride ${sd}, dim ${dim}) is not a whole aligned chunk`);
  }
  return Array.from({ length: 8 }, (_, i) => {
    if (d + i >= dim) return 0;
    const e = base + (d + i) * sd;
    if (!(e >= 0 && e < data.length)) throw new Error(`input element ${e} outside the tensor (${data.length})`);
    return data[e];
  });
}

export interface Case { rows?: 64 | 128; B: number; H: number; KV: number; S: number; Sk?: number; D: number; Dv?: number; layout?: string; dtype?: 'float16' | 'float32'; map?: 'elu+1' | 'relu' | 'identity'; chunk?: number; pad?: number }

export function makeInputs(c: Case, seed: number) {
  const gauss = normal(uniform(seed));
  const Sk = c.Sk ?? c.S;
  const Dv = c.Dv ?? c.D;
  const layout = c.layout ?? 'BNSD';
  const shape = (h: number, s: number, d: number) => (layout === 'BNSD' ? [c.B, h, s, d] : layout === 'BSND' ? [c.B, s, h, d] : layout === 'BSH' ? [c.B, s, h * d] : [s, c.B, h * d]);
  const t = (sh: number[], sigma: number) => {
    const x = randomFloats(sh.reduce((a, b) => a * b, 1), gauss, sigma);
    return c.dtype === 'float32' ? Tensor.fromData(x, sh) : Tensor.fromData(floatsToHalf(x), sh, 'float16');
  };
  // the identity map takes features as inputs: positive ones (fused-features.ts feeds it Performer's)
  const features = (sh: number[]) => {
    const x = randomFloats(sh.reduce((a, b) => a * b, 1), gauss, 0.7).map((y) => Math.abs(y) + 0.05);
    return c.dtype === 'float32' ? Tensor.fromData(x, sh) : Tensor.fromData(floatsToHalf(x), sh, 'float16');
  };
  const qk = c.map === 'identity' ? features : (sh: number[]) => t(sh, 0.7);
  const q = qk(shape(c.H, c.S, c.D)), k = qk(shape(c.KV, Sk, c.D)), v = t(shape(c.KV, Sk, Dv), 1);
  const options = { layout, featureMap: c.map === 'identity' ? IDENTITY : (c.map ?? 'elu+1'), ...(layout === 'BSH' || layout === 'SBH' ? { heads: c.H, kvHeads: c.KV } : {}) };
  return { q, k, v, options: options as never };
}

/**
 * Runs the three kernels of `c` in emulation (index arithmetic from the WGSL) and returns the
 * output in the output layout, with the problems found (accesses out of range, elements written
 * other than once).

/**
 * Kernel 1 (the state partials) of `plan` in emulation: part[P][C][FP][DVP] and zpart[P][C][FP],
 * every element written exactly once (NaN-filled first), every access checked.
 */
export function emulateState(plan: FusedPlan, prm: Env, grid: [number, number, number], kd: Float64Array, vd: Float64Array, dtype: string, mutate: (s: string) => string = (x) => x) {
  const grids = { state: grid };
  const map = plan.state.map;
  // ---- kernel 1: state partials
  const S1 = new Source(mutate(buildFusedState(plan.state)));
  const part = new Float64Array(plan.bytes.part / 4).fill(NaN);
  const zpart = new Float64Array(plan.bytes.zpart / 4).fill(NaN);
  const kConds = S1.matches(/if \((.+?)\) \{ rk\d+ = pack8\(phi8\(eight_k\((.+?), (\w+), (p\.\w+), (p\.\w+\.\w)\), (\w+), (p\.\w+)\)\); \}/g);
  const vConds = S1.matches(/if \((.+?)\) \{ rv\d+ = pack8\(eight_v\((.+?), (\w+), (p\.\w+), (p\.\w+\.\w)\)\); \}/g);
  const ck = kConds.length / 2, cv = vConds.length / 2; // chunks per thread (each fetch is emitted twice: before the loop and inside it)
  const NT = S1.consts.NT;
  const kTileSize = S1.arraySize('k_tile') * 8, vTileSize = S1.arraySize('v_tile') * 8;
  const loads1 = S1.loads();
  const stores1 = S1.stores();
  const [zCond] = S1.matches(/if \((v0 == 0u && lid < [^)]+)\) \{/g);
  for (let wz = 0; wz < grids.state[2]; wz++) for (let wy = 0; wy < grids.state[1]; wy++) for (let wx = 0; wx < grids.state[0]; wx++) {
    const envs: Env[] = [];
    for (let lid = 0; lid < NT; lid++) {
      const env: Env = { ...S1.consts, p: prm, wg: { x: wx, y: wy, z: wz }, lid, sg: Math.floor(lid / 32) };
      for (const name of ['chunk', 'plane', 'v_tiles', 'f0', 'v0', 'b', 'head', 'k_row0', 'v_row0', 'key0', 'key_end', 'steps', 'sm', 'sn']) S1.let(env, name);
      env.rk = []; env.rv = []; env.z = new Array(8).fill(0);
      envs.push(env);
    }
    const steps = envs[0].steps;
    const fetch = (phase: 0 | 1, step: number) => {
      for (const env of envs) {
        env.step = step;
        for (let u = 0; u < ck; u++) {
          S1.let(env, 'tk', phase === 0 ? u : 2 * ck + u); // (the staging blocks' tk come between)
          S1.let(env, 'key', phase * ck + u);
          S1.let(env, 'fd', phase * ck + u);
          const [cond, base, d, dim, sd, d2, dim2] = kConds[phase * ck + u];
          let x = new Array(8).fill(0);
          if (cond(env)) {
            const raw = eight(kd, base(env), d(env), dim(env), sd(env), plan.state.vec, dtype);
            x = raw.map((r, i) => (d2(env) + i < dim2(env) ? roundToHalf(phi(map, r)) : 0));
          }
          env.rk[u] = x;
        }
        for (let u = 0; u < cv; u++) {
          S1.let(env, 'tv', phase === 0 ? u : 2 * cv + u);
          S1.let(env, 'vkey', phase * cv + u);
          S1.let(env, 'vd', phase * cv + u);
          const [cond, base, d, dim, sd] = vConds[phase * cv + u];
          env.rv[u] = cond(env) ? eight(vd, base(env), d(env), dim(env), sd(env), plan.state.vec, dtype).map(roundToHalf) : new Array(8).fill(0);
        }
      }
    };
    const acc = Array.from({ length: NT / 32 }, () => new Map<string, number[][]>());
    for (let sg = 0; sg < NT / 32; sg++) for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) acc[sg].set(`acc_${i}_${j}`, Array.from({ length: 16 }, () => new Array<number>(16).fill(0)));
    if (steps > 0) fetch(0, 0);
    for (let step = 0; step < steps; step++) {
      const kTile = new Float64Array(kTileSize).fill(NaN), vTile = new Float64Array(vTileSize).fill(NaN);
      for (const env of envs) {
        env.step = step;
        for (let u = 0; u < ck; u++) {
          S1.let(env, 'tk', ck + u);
          const dst = S1.let(env, 'k_dst', u);
          if (!(dst >= 0 && (dst + 1) * 8 <= kTileSize)) throw new Error(`k_tile[${dst}] outside`);
          kTile.set(env.rk[u], dst * 8);
          env.rk[u].forEach((x: number, i: number) => { env.z[i] += x; });
        }
        for (let u = 0; u < cv; u++) {
          S1.let(env, 'tv', cv + u);
          const dst = S1.let(env, 'v_dst', u);
          if (!(dst >= 0 && (dst + 1) * 8 <= vTileSize)) throw new Error(`v_tile[${dst}] outside`);
          vTile.set(env.rv[u], dst * 8);
        }
      }
      if (step + 1 < steps) fetch(1, step);
      for (let sg = 0; sg < NT / 32; sg++) {
        const env = envs[sg * 32];
        for (let s = 0; s < loads1.length; s += 6) {
          const m = new Map<string, number[][]>();
          for (const l of loads1.slice(s, s + 6)) m.set(l.name, loadMatrix(l.arr === 'k_tile' ? kTile : vTile, l.off(env), l.stride(env), l.major, `state ${l.name}`));
          for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) mma(acc[sg].get(`acc_${i}_${j}`)!, m.get(`a${i}`)!, m.get(`b${j}`)!);
        }
      }
    }
    for (let sg = 0; sg < NT / 32; sg++) {
      const env = envs[sg * 32];
      S1.let(env, 'part_base');
      for (const st of stores1) {
        const off = st.off(env), stride = st.stride(env);
        const a = acc[sg].get(st.acc)!;
        for (let r = 0; r < 16; r++) for (let cc = 0; cc < 16; cc++) {
          const i = off + r * stride + cc;
          if (!(i >= 0 && i < part.length)) throw new Error(`part[${i}] outside ${part.length}`);
          if (!Number.isNaN(part[i])) throw new Error(`part[${i}] written twice`);
          part[i] = a[r][cc];
        }
      }
    }
    const zRed = envs.flatMap((env) => [env.z.slice(0, 4), env.z.slice(4, 8)]);
    for (const env of envs) {
      if (!zCond[0](env)) continue;
      const z = [0, 0, 0, 0];
      for (let r = 0; r < S1.consts.ZROWS; r++) {
        env.r = r;
        const src = S1.let(env, 'z_src');
        zRed[src].forEach((x: number, i: number) => { z[i] += x; });
      }
      const dst = S1.let(env, 'z_dst');
      for (let i = 0; i < 4; i++) {
        if (!Number.isNaN(zpart[dst + i])) throw new Error(`zpart[${dst + i}] written twice`);
        zpart[dst + i] = z[i];
      }
    }
  }
  if (part.some(Number.isNaN)) throw new Error('partial states left unwritten');
  if (zpart.some(Number.isNaN)) throw new Error('partial sums left unwritten');
  return { part, zpart };
}

export function vec(a: readonly number[]) { return { x: a[0], y: a[1], z: a[2], w: a[3] }; }

/**
 * The output kernels' epilogue (fused.wgsl.ts emitNormalizedStores) of one workgroup in emulation:
 * each subgroup's result matrices through its scratch, lane pairs writing num / den into `out`
 * (counted in `writes`), with the WGSL's lets. `rowSkip`: occurrences of `let row` and of the
 * `if (row < p.seq_q…)` guard before the epilogue's; `e`: the scalar path's loop variable.
 */
export function emulateEpilogue(S: Source, w: {
  envs: Env[]; acc: Array<Map<string, number[][]>>; den: Float64Array; scratch: string; e: string; rowSkip: number;
  vecOut: boolean; dtype: string; out: Float64Array; writes: Uint8Array; problems: string[];
}): void {
  const outStores = S.matches(/if \((row < p\.seq_q[^)]*)\) \{/g);
  const scalarOut = S.matches(new RegExp(`if \\((col \\+ ${w.e} < p\\.dim_v)\\) \\{ out\\[(o_at \\+ ${w.e} \\* p\\.o_str\\.w)\\]`, 'g'));
  const vecStores = S.matches(/out\[(o_at \/ [48]u)\] = /g);
  const CS = S.consts.CS;
  const put = (at: number, x: number) => {
    if (!(at >= 0 && at < w.out.length)) { w.problems.push(`out[${at}] outside ${w.out.length}`); return; }
    w.writes[at]++;
    w.out[at] = x;
  };
  S.stores().forEach((st, n) => {
    for (let sg = 0; sg < w.acc.length; sg++) {
      const env0 = w.envs[sg * 32];
      S.let(env0, 'sbase');
      const scratch = new Float64Array(S.arraySize(w.scratch)).fill(NaN);
      const off = st.off(env0), stride = st.stride(env0);
      const a = w.acc[sg].get(st.acc)!;
      for (let r = 0; r < 16; r++) for (let cc = 0; cc < 16; cc++) {
        const i = off + r * stride + cc;
        if (!(i >= sg * 16 * CS && i < (sg + 1) * 16 * CS)) throw new Error(`${w.scratch}[${i}] outside subgroup ${sg}'s scratch`);
        scratch[i] = a[r][cc];
      }
      for (let lane = 0; lane < 32; lane++) {
        const env = w.envs[sg * 32 + lane];
        for (const name of ['sbase', 'rr', 'side']) S.let(env, name);
        for (const name of ['lrow', 'row', 'col', 'src', 'o_at']) S.let(env, name, name === 'row' ? w.rowSkip + n : n);
        env.d = w.den[env.lrow];
        if (!outStores[w.rowSkip + n][0](env)) continue;
        const inv = env.d !== 0 ? 1 / env.d : 0;
        for (let e = 0; e < 8; e++) {
          const x = scratch[env.src + e] * inv;
          if (w.vecOut) {
            const unit = w.dtype === 'float16' ? 8 : 4;
            if (env.o_at % unit !== 0) w.problems.push(`vector store at ${env.o_at} not aligned`);
            put(vecStores[n][0](env) * unit + e, x); // f32: out[o_at / 4] = lo, out[o_at / 4 + 1] = hi
          } else {
            env[w.e] = e;
            if (scalarOut[n][0](env)) put(scalarOut[n][1](env), x);
          }
        }
      }
    }
  });
}
