// WebAssembly SIMD of a call's score/mask programs, through the in-house encoder
// (src/backends/cpu/wasm/encoder.ts). Four consecutive keys per vector: every value of a program is
// one v128 (float: f32x4, int: i32x4, bool: lane masks of all ones / zeros). Instructions are
// hoisted to where their inputs change: tile-invariant ones (b, h, lengths, constants) before the
// row loop, per-row ones (q) before the column loop, and only those that read kv or the score
// inside it. Exports, every address in bytes:
//
//   apply(s, lds, rows, cols, b, h, i0, j0, sq, sk, data, withMask, beta)
//       the S tile rows i0.., keys j0.. (row stride lds; the row may be written up to cols rounded
//       up to 4), scores in units of beta (problem.ts scoreUnits): visible finite scores s become
//       scoreMod(beta·s) / beta (NaN and +inf stay, they poison the row); with withMask != 0, pairs
//       the mask hides become -inf. Full blocks of a block mask call it with withMask = 0.
//   count(rows, cols, b, h, i0, j0, sq, sk, data) -> i32
//       how many pairs of the tile the mask keeps (block masks are built with it).
//
// Lanes without a SIMD instruction (int div/mod, tensor gathers) are done one lane at a time.
import { type Expr, type FunctionBuilder, type Local, ModuleBuilder, f32x4, i32, i32x4, select, v128 } from '../../../../engines/cpu/wasm/encoder.js';
import { HEADER_BASE, HEADER_WORDS, type ModsKernelOptions } from '../plan.js';
import type { Program } from '../program.js';

export const MODS_SIGNATURES = {
  apply: ['s', 'lds', 'rows', 'cols', 'b', 'h', 'i0', 'j0', 'sq', 'sk', 'data', 'withMask', 'beta'],
  count: ['rows', 'cols', 'b', 'h', 'i0', 'j0', 'sq', 'sk', 'data'],
} as const;

export interface ModsModuleOptions {
  mods: ModsKernelOptions;
  shared: boolean;
  maximumPages: number;
}

export function buildModsModule(o: ModsModuleOptions): ModuleBuilder {
  const m = new ModuleBuilder({ shared: o.shared, maximumPages: o.maximumPages });
  const sig = (names: readonly string[]) => names.map((n) => [n, n === 'beta' ? 'f32' : 'i32'] as const);
  m.func('apply', sig(MODS_SIGNATURES.apply), undefined, (f) => emitApply(f, o.mods));
  m.func('count', sig(MODS_SIGNATURES.count), 'i32', (f) => emitCount(f, o.mods));
  return m;
}

/** 0: tile-invariant, 1: varies per row, 2: varies per key (or reads the score). */
function levels(p: Program): number[] {
  const out: number[] = [];
  p.nodes.forEach((n, i) => {
    if (n.op === 'var') out[i] = n.name === 'kv' || n.name === 'score' ? 2 : n.name === 'q' ? 1 : 0;
    else out[i] = n.args.reduce((level, a) => Math.max(level, out[a]), 0);
  });
  return out;
}

/** Per-tensor header values as locals: byte address of the data, dims - 1 and strides as splats. */
interface TensorLocals {
  base: Local;
  last: Local[];
  stride: Local[];
}

class Emitter {
  readonly f: FunctionBuilder;
  private readonly tensors: Array<TensorLocals | undefined>;
  constructor(f: FunctionBuilder, private readonly mods: ModsKernelOptions) {
    this.f = f;
    this.tensors = mods.tensors.map(() => undefined);
    // every header is read at the function's start, never first inside a loop or a branch
    mods.tensors.forEach((_, slot) => this.tensor(slot));
  }

  p(name: string): Expr {
    return this.f.get(this.f.param(name));
  }

  /** Loads a tensor's header into locals (once per function). */
  tensor(slot: number): TensorLocals {
    const known = this.tensors[slot];
    if (known) return known;
    const f = this.f;
    const h = 4 * (HEADER_BASE + HEADER_WORDS * slot);
    const word = (at: number) => i32.load(this.p('data'), h + 4 * at);
    const base = f.local('i32', `t${slot}_base`);
    f.set(base, i32.add(this.p('data'), i32.shl(word(0), i32.const(2))));
    const rank = this.mods.tensors[slot].rank;
    const last: Local[] = [];
    const stride: Local[] = [];
    for (let d = 0; d < rank; d++) {
      last.push(f.local('v128', `t${slot}_last${d}`));
      stride.push(f.local('v128', `t${slot}_stride${d}`));
      f.set(last[d], i32x4.splat(i32.sub(word(1 + d), i32.const(1))));
      f.set(stride[d], i32x4.splat(word(5 + d)));
    }
    const t = { base, last, stride };
    this.tensors[slot] = t;
    return t;
  }

  /** The instructions of `program` at hoisting level `level`, each into its local. */
  emitLevel(program: Program, regs: Local[], lv: number[], level: number, vars: Record<string, Expr>): void {
    program.nodes.forEach((n, i) => {
      if (lv[i] !== level) return;
      this.f.set(regs[i], this.instruction(program, i, regs, vars));
    });
  }

  private instruction(program: Program, i: number, regs: Local[], vars: Record<string, Expr>): Expr {
    const f = this.f;
    const n = program.nodes[i];
    const [a, b, c] = n.args.map((x) => f.get(regs[x]));
    const argKind = n.args.length ? program.nodes[n.args[0]].kind : n.kind;
    const float = argKind === 'float';
    switch (n.op) {
      case 'var': return vars[n.name!];
      case 'const':
        if (n.kind === 'float') return f32x4.const(n.value!);
        if (n.kind === 'int') return i32x4.splat(i32.const(n.value!));
        return n.value ? i32x4.splat(i32.const(-1)) : i32x4.splat(i32.const(0));
      case 'add': return float ? f32x4.add(a, b) : i32x4.add(a, b);
      case 'sub': return float ? f32x4.sub(a, b) : i32x4.sub(a, b);
      case 'mul': return float ? f32x4.mul(a, b) : i32x4.mul(a, b);
      case 'div': return float ? f32x4.div(a, b) : this.laneWise(a, b, 'div');
      case 'mod': return this.laneWise(a, b, 'mod');
      case 'min': return float ? f32x4.min(a, b) : i32x4.min_s(a, b);
      case 'max': return float ? f32x4.max(a, b) : i32x4.max_s(a, b);
      case 'neg': return float ? f32x4.neg(a) : i32x4.neg(a);
      case 'abs': return float ? f32x4.abs(a) : i32x4.abs(a);
      case 'sqrt': return f32x4.sqrt(a);
      case 'floor': return f32x4.floor(a);
      case 'ceil': return f32x4.ceil(a);
      case 'exp': return this.exp(a);
      case 'log': return this.log(a);
      case 'tanh': return this.tanh(a);
      case 'toInt': return i32x4.trunc_sat_f32x4_s(a);
      case 'toFloat': return f32x4.convert_i32x4_s(a);
      case 'not': return v128.not(a);
      case 'and': return v128.and(a, b);
      case 'or': return v128.or(a, b);
      case 'lt': return float ? f32x4.lt(a, b) : i32x4.lt_s(a, b);
      case 'le': return float ? f32x4.le(a, b) : i32x4.le_s(a, b);
      case 'gt': return float ? f32x4.gt(a, b) : i32x4.gt_s(a, b);
      case 'ge': return float ? f32x4.ge(a, b) : i32x4.ge_s(a, b);
      case 'eq': return float ? f32x4.eq(a, b) : i32x4.eq(a, b);
      case 'ne': return float ? f32x4.ne(a, b) : i32x4.ne(a, b);
      case 'select': return v128.bitselect(b, c, a);
      case 'load': return this.gather(n.tensor!, n.args.map((x) => regs[x]));
    }
    throw new Error(`mods wasm: no code for ${n.op}`);
  }

  /** Integer div / mod lane by lane, guarded: x / 0 = x, MIN / -1 = MIN, x % 0 = 0 (no traps). */
  private laneWise(a: Expr, b: Expr, op: 'div' | 'mod'): Expr {
    const f = this.f;
    const va = f.local('v128', 'da');
    const vb = f.local('v128', 'db');
    const out = f.local('v128', 'dq');
    const x = f.local('i32', 'dx');
    const y = f.local('i32', 'dy');
    const bad = f.local('i32', 'dbad');
    f.set(va, a);
    f.set(vb, b);
    f.set(out, i32x4.splat(i32.const(0)));
    for (let lane = 0; lane < 4; lane++) {
      f.set(x, i32x4.extract_lane(f.get(va), lane));
      f.set(y, i32x4.extract_lane(f.get(vb), lane));
      const zero = i32.eqz(f.get(y));
      f.set(bad, op === 'div' ? i32.or(zero, i32.and(i32.eq(f.get(x), i32.const(-2147483648)), i32.eq(f.get(y), i32.const(-1)))) : zero);
      // bad lanes divide by 1 (never trapping) and take the defined result instead
      const divisor = select(i32.const(1), f.get(y), f.get(bad));
      const result = op === 'div'
        ? select(f.get(x), i32.div_s(f.get(x), divisor), f.get(bad))
        : select(i32.const(0), i32.rem_s(f.get(x), divisor), f.get(bad));
      f.set(out, i32x4.replace_lane(f.get(out), result, lane));
    }
    return f.get(out);
  }

  /** Four clamped tensor reads. */
  private gather(slot: number, index: Local[]): Expr {
    const f = this.f;
    const t = this.tensor(slot);
    const flat = f.local('v128', `g${slot}_flat`);
    const out = f.local('v128', `g${slot}`);
    const zero = i32x4.splat(i32.const(0));
    f.set(flat, zero);
    index.forEach((ix, d) => {
      const clamped = i32x4.min_s(i32x4.max_s(f.get(ix), zero), f.get(t.last[d]));
      f.set(flat, i32x4.add(f.get(flat), i32x4.mul(clamped, f.get(t.stride[d]))));
    });
    f.set(flat, i32x4.add(i32x4.splat(f.get(t.base)), i32x4.shl(f.get(flat), i32.const(2))));
    f.set(out, v128.load32_zero(i32x4.extract_lane(f.get(flat), 0)));
    for (let lane = 1; lane < 4; lane++) f.set(out, v128.load32_lane(i32x4.extract_lane(f.get(flat), lane), f.get(out), lane));
    return f.get(out);
  }

  /**
   * exp(x) for every f32 (Cephes expf; overflow -> inf, NaN -> NaN). Results below the smallest
   * normal come out as subnormals: x < -80 is shifted up by 64·ln2 and the result scaled by 2^-64.
   */
  exp(x: Expr): Expr {
    const f = this.f;
    const LOW = -87.33654;
    const HIGH = 88.37626;
    const SHIFT = 64 * Math.LN2;
    const SHIFTER = 12582912; // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits
    const xv = f.local('v128', 'ex');
    const tiny = f.local('v128', 'etiny');
    const xs = f.local('v128', 'exs');
    const r = f.local('v128', 'er');
    const n = f.local('v128', 'en');
    const y = f.local('v128', 'ey');
    f.set(xv, x);
    f.set(tiny, f32x4.lt(f.get(xv), f32x4.const(-80)));
    f.set(xs, f32x4.add(f.get(xv), v128.and(f32x4.const(SHIFT), f.get(tiny))));
    f.set(r, f32x4.min(f32x4.max(f.get(xs), f32x4.const(LOW)), f32x4.const(HIGH)));
    f.set(n, f32x4.add(f32x4.mul(f.get(r), f32x4.const(Math.LOG2E)), f32x4.const(SHIFTER)));
    f.set(y, f32x4.sub(f.get(n), f32x4.const(SHIFTER)));
    f.set(r, f32x4.sub(f.get(r), f32x4.mul(f.get(y), f32x4.const(0.693359375))));
    f.set(r, f32x4.sub(f.get(r), f32x4.mul(f.get(y), f32x4.const(-2.12194440e-4))));
    f.set(n, i32x4.shl(i32x4.add(f.get(n), i32x4.splat(i32.const(127))), i32.const(23)));
    const coefficients = [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1];
    f.set(y, f32x4.const(coefficients[0]));
    for (const c of coefficients.slice(1)) f.set(y, f32x4.add(f32x4.mul(f.get(y), f.get(r)), f32x4.const(c)));
    f.set(y, f32x4.add(f32x4.add(f32x4.mul(f.get(y), f32x4.mul(f.get(r), f.get(r))), f.get(r)), f32x4.const(1)));
    f.set(y, f32x4.mul(f.get(y), f.get(n)));
    f.set(y, v128.and(f.get(y), f32x4.ge(f.get(xs), f32x4.const(LOW))));
    f.set(y, v128.bitselect(f32x4.mul(f.get(y), f32x4.const(2 ** -64)), f.get(y), f.get(tiny)));
    f.set(y, v128.bitselect(f32x4.const(Infinity), f.get(y), f32x4.gt(f.get(xv), f32x4.const(HIGH))));
    f.set(y, v128.bitselect(f.get(xv), f.get(y), f32x4.ne(f.get(xv), f.get(xv))));
    return f.get(y);
  }

  /** Natural log (Cephes logf; subnormals rescaled; 0 -> -inf, < 0 and NaN -> NaN, inf -> inf). */
  private log(x: Expr): Expr {
    const f = this.f;
    const xv = f.local('v128', 'lx');
    const m = f.local('v128', 'lm');
    const e = f.local('v128', 'le');
    const z = f.local('v128', 'lz');
    const y = f.local('v128', 'ly');
    const tiny = f.local('v128', 'ltiny');
    f.set(xv, x);
    // subnormals: scale by 2^23 first, take 23 off the exponent after
    f.set(tiny, f32x4.lt(f.get(xv), f32x4.const(1.17549435e-38)));
    f.set(m, v128.bitselect(f32x4.mul(f.get(xv), f32x4.const(8388608)), f.get(xv), f.get(tiny)));
    f.set(e, i32x4.sub(i32x4.shr_u(f.get(m), i32.const(23)), i32x4.splat(i32.const(126))));
    f.set(e, f32x4.sub(f32x4.convert_i32x4_s(f.get(e)), v128.and(f32x4.const(23), f.get(tiny))));
    // mantissa in [0.5, 1)
    f.set(m, v128.or(v128.and(f.get(m), i32x4.splat(i32.const(0x007fffff))), i32x4.splat(i32.const(0x3f000000))));
    // below sqrt(1/2): one more halving, so m - 1 stays in [-0.29, 0.41]
    f.set(z, f32x4.lt(f.get(m), f32x4.const(0.707106781186547524)));
    f.set(e, f32x4.sub(f.get(e), v128.and(f32x4.const(1), f.get(z))));
    f.set(m, f32x4.sub(f32x4.add(f.get(m), v128.and(f.get(m), f.get(z))), f32x4.const(1)));
    f.set(z, f32x4.mul(f.get(m), f.get(m)));
    const coefficients = [7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1];
    f.set(y, f32x4.const(coefficients[0]));
    for (const c of coefficients.slice(1)) f.set(y, f32x4.add(f32x4.mul(f.get(y), f.get(m)), f32x4.const(c)));
    f.set(y, f32x4.mul(f32x4.mul(f.get(y), f.get(m)), f.get(z)));
    f.set(y, f32x4.add(f.get(y), f32x4.mul(f.get(e), f32x4.const(-2.12194440e-4))));
    f.set(y, f32x4.sub(f.get(y), f32x4.mul(f.get(z), f32x4.const(0.5))));
    f.set(y, f32x4.add(f32x4.add(f.get(m), f.get(y)), f32x4.mul(f.get(e), f32x4.const(0.693359375))));
    f.set(y, v128.bitselect(f32x4.const(-Infinity), f.get(y), f32x4.eq(f.get(xv), f32x4.const(0))));
    f.set(y, v128.bitselect(f32x4.const(Infinity), f.get(y), f32x4.eq(f.get(xv), f32x4.const(Infinity))));
    f.set(y, v128.bitselect(f32x4.const(NaN), f.get(y), v128.not(f32x4.ge(f.get(xv), f32x4.const(0)))));
    return f.get(y);
  }

  /** tanh (Cephes tanhf: a polynomial below 0.625, (1 - e^-2|x|) / (1 + e^-2|x|) above). */
  private tanh(x: Expr): Expr {
    const f = this.f;
    const xv = f.local('v128', 'tx');
    const ax = f.local('v128', 'tax');
    const z = f.local('v128', 'tz');
    const small = f.local('v128', 'ts');
    const large = f.local('v128', 'tl');
    f.set(xv, x);
    f.set(ax, f32x4.abs(f.get(xv)));
    f.set(z, f32x4.mul(f.get(xv), f.get(xv)));
    const coefficients = [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1];
    f.set(small, f32x4.const(coefficients[0]));
    for (const c of coefficients.slice(1)) f.set(small, f32x4.add(f32x4.mul(f.get(small), f.get(z)), f32x4.const(c)));
    f.set(small, f32x4.add(f32x4.mul(f32x4.mul(f.get(small), f.get(z)), f.get(xv)), f.get(xv)));
    f.set(large, this.exp(f32x4.mul(f.get(ax), f32x4.const(-2))));
    f.set(large, f32x4.div(f32x4.sub(f32x4.const(1), f.get(large)), f32x4.add(f32x4.const(1), f.get(large))));
    f.set(large, v128.or(f.get(large), v128.and(f.get(xv), i32x4.splat(i32.const(-2147483648)))));
    return v128.bitselect(f.get(small), f.get(large), f32x4.lt(f.get(ax), f32x4.const(0.625)));
  }
}

/** Locals for every instruction of a program. */
function registers(f: FunctionBuilder, p: Program, tag: string): Local[] {
  return p.nodes.map((_, i) => f.local('v128', `${tag}${i}`));
}

/** Locals and hoisting levels of each program, and its tile-invariant part emitted. */
function prepare(e: Emitter, programs: Program[], vars: Record<string, Expr>): { regs: Local[][]; lv: number[][] } {
  const regs = programs.map((p, n) => registers(e.f, p, `r${n}_`));
  const lv = programs.map(levels);
  programs.forEach((p, n) => e.emitLevel(p, regs[n], lv[n], 0, vars));
  return { regs, lv };
}

/**
 * The loop over rows and 4-key vectors shared by apply and count: per row, q and the per-row
 * instructions; per vector, kv; `body(c)` emits the rest (c = first key of the vector - j0).
 */
function tileLoops(e: Emitter, programs: Program[], vars: Record<string, Expr>, q: Local, kv: Local, regs: Local[][], lv: number[][], rowStart: (row: Local) => void, body: (c: Local) => void): void {
  const f = e.f;
  const r = f.local('i32', 'row');
  const c = f.local('i32', 'col');
  f.forRange(r, i32.const(0), e.p('rows'), 1, () => {
    rowStart(r);
    f.set(q, i32x4.splat(i32.add(e.p('i0'), f.get(r))));
    programs.forEach((p, n) => e.emitLevel(p, regs[n], lv[n], 1, vars));
    f.forRange(c, i32.const(0), e.p('cols'), 4, () => {
      f.set(kv, i32x4.add(i32x4.splat(i32.add(e.p('j0'), f.get(c))), i32x4.const(0, 1, 2, 3)));
      body(c);
    });
  });
}

/** The variables as vectors: score is the tile's value, kv four consecutive keys. */
function variables(e: Emitter): { vars: Record<string, Expr>; s: Local; q: Local; kv: Local } {
  const f = e.f;
  const s = f.local('v128', 's');
  const q = f.local('v128', 'qv');
  const kv = f.local('v128', 'kvv');
  const vars: Record<string, Expr> = {
    score: f.get(s), b: i32x4.splat(e.p('b')), h: i32x4.splat(e.p('h')), q: f.get(q), kv: f.get(kv),
    qLen: i32x4.splat(e.p('sq')), kvLen: i32x4.splat(e.p('sk')),
  };
  return { vars, s, q, kv };
}

function emitApply(f: FunctionBuilder, mods: ModsKernelOptions): void {
  const programs = [mods.score, mods.mask].filter((p): p is Program => p !== undefined);
  if (programs.length === 0) return;
  const e = new Emitter(f, mods);
  const { vars, s, q, kv } = variables(e);
  const { regs, lv } = prepare(e, programs, vars);
  const rowPtr = f.local('i32', 'rowptr');
  const ptr = f.local('i32', 'ptr');
  const raw = f.local('v128', 'raw');
  const beta = f.local('v128', 'beta');
  const invBeta = f.local('v128', 'inv_beta');
  f.set(beta, f32x4.splat(e.p('beta')));
  f.set(invBeta, f32x4.div(f32x4.const(1), f.get(beta)));
  tileLoops(e, programs, vars, q, kv, regs, lv, (row) => f.set(rowPtr, i32.add(e.p('s'), i32.mul(f.get(row), e.p('lds')))), (c) => {
    f.set(ptr, i32.add(f.get(rowPtr), i32.shl(f.get(c), i32.const(2))));
    f.set(raw, v128.load(f.get(ptr)));
    f.set(s, f32x4.mul(f.get(raw), f.get(beta)));
    if (mods.score) {
      const n = programs.indexOf(mods.score);
      e.emitLevel(mods.score, regs[n], lv[n], 2, vars);
      // only finite scores: hidden pairs (-inf) stay hidden (softcap must not bring them back),
      // NaN and +inf stay to poison their row
      const finite = v128.and(f32x4.gt(f.get(raw), f32x4.const(-Infinity)), f32x4.lt(f.get(raw), f32x4.const(Infinity)));
      f.set(raw, v128.bitselect(f32x4.mul(f.get(regs[n][mods.score.root]), f.get(invBeta)), f.get(raw), finite));
    }
    if (mods.mask) {
      const mask = mods.mask;
      const n = programs.indexOf(mask);
      f.if(e.p('withMask'), () => {
        e.emitLevel(mask, regs[n], lv[n], 2, vars);
        f.set(raw, v128.bitselect(f.get(raw), f32x4.const(-Infinity), f.get(regs[n][mask.root])));
      });
    }
    f.statement(v128.store(f.get(ptr), f.get(raw)));
  });
}

function emitCount(f: FunctionBuilder, mods: ModsKernelOptions): void {
  const e = new Emitter(f, mods);
  const total = f.local('v128', 'total');
  f.set(total, i32x4.splat(i32.const(0)));
  if (mods.mask) {
    const mask = mods.mask;
    const { vars, q, kv } = variables(e);
    const { regs, lv } = prepare(e, [mask], vars);
    tileLoops(e, [mask], vars, q, kv, regs, lv, () => undefined, (c) => {
      e.emitLevel(mask, regs[0], lv[0], 2, vars);
      const inside = i32x4.lt_s(i32x4.const(0, 1, 2, 3), i32x4.splat(i32.sub(e.p('cols'), f.get(c))));
      f.set(total, i32x4.sub(f.get(total), v128.and(f.get(regs[0][mask.root]), inside)));
    });
  }
  const lane = (i: number) => i32x4.extract_lane(f.get(total), i);
  f.returnValue(i32.add(i32.add(lane(0), lane(1)), i32.add(lane(2), lane(3))));
}
