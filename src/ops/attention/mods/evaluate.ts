// Evaluation of a lowered program on one element, in float64 (the reference every kernel is
// tested against) or float32 (each float result rounded, the scalar CPU fallback where WebAssembly
// SIMD is missing). It walks the program's instructions over a register array: data, not code.
import type { VarName } from './expr.js';

/** What evaluation reads of a captured tensor (a ModTensor, or its copy in the CPU arena). */
export interface TensorData {
  readonly data: ArrayLike<number>;
  readonly shape: readonly number[];
  readonly rank: number;
}
import type { Program } from './program.js';

/** Values of the variables, by VAR_INDEX. */
export type Env = Float64Array;

export const VAR_INDEX: Record<VarName, number> = { score: 0, b: 1, h: 2, q: 3, kv: 4, qLen: 5, kvLen: 6 };

export function makeEnv(): Env {
  return new Float64Array(7);
}

const I32_MIN = -2147483648;
const I32_MAX = 2147483647;

/** The int semantics every backend shares (see expr.ts). */
export const intOps = {
  div: (a: number, b: number) => (b === 0 || (a === I32_MIN && b === -1) ? a : Math.trunc(a / b) | 0),
  mod: (a: number, b: number) => (b === 0 ? 0 : (a % b) | 0),
  toInt: (x: number) => (Number.isNaN(x) ? 0 : x >= I32_MAX ? I32_MAX : x <= I32_MIN ? I32_MIN : Math.trunc(x)),
};

/** Flat element index of a load: every index clamped into its dimension, row-major. */
export function clampedOffset(t: TensorData, index: ArrayLike<number>): number {
  let flat = 0;
  for (let d = 0; d < t.rank; d++) {
    const size = t.shape[d];
    const i = Math.min(Math.max(index[d], 0), size - 1);
    flat = flat * size + i;
  }
  return flat;
}

/**
 * A function evaluating `program` for the variables in `env`. Bools come back as 0/1; float32
 * precision rounds every float result (so it follows a kernel's f32 arithmetic closely).
 */
export function programEvaluator(program: Program, tensors: readonly TensorData[], precision: 'float64' | 'float32' = 'float64'): (env: Env) => number {
  const n = program.nodes.length;
  const reg = new Float64Array(n);
  const r32 = precision === 'float32' ? Math.fround : (x: number) => x;
  const index = new Float64Array(4);
  const steps = program.nodes.map((node, at): (env: Env) => void => {
    const [a, b, c] = node.args;
    const isFloat = node.kind === 'float';
    const arith = (f: (x: number, y: number) => number, g: (x: number, y: number) => number) => (isFloat ? () => { reg[at] = r32(f(reg[a], reg[b])); } : () => { reg[at] = g(reg[a], reg[b]); });
    switch (node.op) {
      case 'var': { const v = VAR_INDEX[node.name!]; return (env) => { reg[at] = isFloat ? r32(env[v]) : env[v]; }; }
      case 'const': { const value = isFloat ? r32(node.value!) : node.value!; return () => { reg[at] = value; }; }
      case 'add': return arith((x, y) => x + y, (x, y) => (x + y) | 0);
      case 'sub': return arith((x, y) => x - y, (x, y) => (x - y) | 0);
      case 'mul': return arith((x, y) => x * y, Math.imul);
      case 'div': return arith((x, y) => x / y, intOps.div);
      case 'mod': return () => { reg[at] = intOps.mod(reg[a], reg[b]); };
      case 'min': return arith(Math.min, Math.min);
      case 'max': return arith(Math.max, Math.max);
      case 'neg': return isFloat ? () => { reg[at] = -reg[a]; } : () => { reg[at] = -reg[a] | 0; };
      case 'abs': return isFloat ? () => { reg[at] = Math.abs(reg[a]); } : () => { reg[at] = Math.abs(reg[a]) | 0; };
      case 'exp': return () => { reg[at] = r32(Math.exp(reg[a])); };
      case 'log': return () => { reg[at] = r32(Math.log(reg[a])); };
      case 'tanh': return () => { reg[at] = r32(Math.tanh(reg[a])); };
      case 'sqrt': return () => { reg[at] = r32(Math.sqrt(reg[a])); };
      case 'floor': return () => { reg[at] = Math.floor(reg[a]); };
      case 'ceil': return () => { reg[at] = Math.ceil(reg[a]); };
      case 'toInt': return () => { reg[at] = intOps.toInt(reg[a]); };
      case 'toFloat': return () => { reg[at] = r32(reg[a]); };
      case 'not': return () => { reg[at] = reg[a] ? 0 : 1; };
      case 'and': return () => { reg[at] = reg[a] && reg[b] ? 1 : 0; };
      case 'or': return () => { reg[at] = reg[a] || reg[b] ? 1 : 0; };
      case 'lt': return () => { reg[at] = reg[a] < reg[b] ? 1 : 0; };
      case 'le': return () => { reg[at] = reg[a] <= reg[b] ? 1 : 0; };
      case 'gt': return () => { reg[at] = reg[a] > reg[b] ? 1 : 0; };
      case 'ge': return () => { reg[at] = reg[a] >= reg[b] ? 1 : 0; };
      case 'eq': return () => { reg[at] = reg[a] === reg[b] ? 1 : 0; };
      case 'ne': return () => { reg[at] = reg[a] !== reg[b] ? 1 : 0; };
      case 'select': return () => { reg[at] = reg[a] ? reg[b] : reg[c]; };
      case 'load': {
        const t = tensors[node.tensor!];
        const args = node.args;
        return () => {
          for (let d = 0; d < args.length; d++) index[d] = reg[args[d]];
          reg[at] = t.data[clampedOffset(t, index)];
        };
      }
    }
  });
  const root = program.root;
  return (env) => {
    for (let i = 0; i < n; i++) steps[i](env);
    return reg[root];
  };
}

/** A call's mods as float64 functions of the pair, for the reference attention. */
export interface ReferenceMods {
  score?: (b: number, h: number, i: number, j: number, sq: number, sk: number, score: number) => number;
  /** d(score)/d(score variable), when the programs carry scoreGrad (the backward's). */
  scoreGrad?: (b: number, h: number, i: number, j: number, sq: number, sk: number, score: number) => number;
  mask?: (b: number, h: number, i: number, j: number, sq: number, sk: number) => boolean;
  sink?: (b: number, h: number, i: number, sq: number, sk: number) => number;
}

export function referenceMods(programs: { score?: Program; scoreGrad?: Program; mask?: Program; sink?: Program }, tensors: readonly TensorData[]): ReferenceMods {
  const env = makeEnv();
  const set = (b: number, h: number, i: number, j: number, sq: number, sk: number) => {
    env[VAR_INDEX.b] = b;
    env[VAR_INDEX.h] = h;
    env[VAR_INDEX.q] = i;
    env[VAR_INDEX.kv] = j;
    env[VAR_INDEX.qLen] = sq;
    env[VAR_INDEX.kvLen] = sk;
  };
  const out: ReferenceMods = {};
  const scoreFunction = (program: Program) => {
    const f = programEvaluator(program, tensors);
    return (b: number, h: number, i: number, j: number, sq: number, sk: number, score: number) => {
      set(b, h, i, j, sq, sk);
      env[VAR_INDEX.score] = score;
      return f(env);
    };
  };
  if (programs.score) out.score = scoreFunction(programs.score);
  if (programs.scoreGrad) out.scoreGrad = scoreFunction(programs.scoreGrad);
  if (programs.mask) {
    const f = programEvaluator(programs.mask, tensors);
    out.mask = (b, h, i, j, sq, sk) => {
      set(b, h, i, j, sq, sk);
      return f(env) !== 0;
    };
  }
  if (programs.sink) {
    const f = programEvaluator(programs.sink, tensors);
    out.sink = (b, h, i, sq, sk) => {
      set(b, h, i, 0, sq, sk);
      return f(env);
    };
  }
  return out;
}
