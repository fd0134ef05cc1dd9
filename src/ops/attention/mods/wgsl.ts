// WGSL of a call's score/mask/sink programs, for every attention kernel that runs them (portable
// and tensor-core flash tiers, the naive path's score epilogue). Emits the mod_data binding, one
// loader per captured tensor and
//   fn score_mod(score: f32, b: u32, h: u32, q: u32, kv: u32, q_len: u32, kv_len: u32) -> f32
//   fn mask_mod(b: u32, h: u32, q: u32, kv: u32, q_len: u32, kv_len: u32) -> bool
//   fn sink_mod(b: u32, h: u32, q: u32, q_len: u32, kv_len: u32) -> f32
//   fn score_mod_grad(score: f32, ...as score_mod) -> f32   d(score_mod)/d(score), backward only
// each a straight line of `let`s, one per program instruction (hash-consed: a subexpression
// used twice is computed once). Run-time `let`s, never `const`, so i32 wrap-around is never a
// constant-evaluation error.
import type { ModsKernelOptions } from './plan.js';
import { HEADER_BASE, HEADER_WORDS } from './plan.js';
import type { Program, ProgramNode, TensorSlot } from './program.js';
import type { VarName } from './expr.js';

const VAR_WGSL: Record<VarName, string> = { score: 'score', b: 'v_b', h: 'v_h', q: 'v_q', kv: 'v_kv', qLen: 'v_q_len', kvLen: 'v_kv_len' };
const FLOAT_MAX = '3.40282347e+38';

function floatLiteral(x: number): string {
  if (x === Infinity) return 'mod_inf()';
  if (x === -Infinity) return '(-mod_inf())';
  const f = Math.fround(x);
  if (Math.abs(f) > 3.4028234e38) return f > 0 ? FLOAT_MAX : `-${FLOAT_MAX}`;
  const text = f.toPrecision(9);
  return /[.e]/.test(text) ? text : `${text}.0`;
}

function intLiteral(x: number): string {
  return x === -2147483648 ? '(-2147483647i - 1i)' : `${x}i`;
}

const BINARY: Record<string, string> = { add: '+', sub: '-', mul: '*', div: '/', mod: '%', lt: '<', le: '<=', gt: '>', ge: '>=', eq: '==', ne: '!=', and: '&&', or: '||' };

function instruction(n: ProgramNode, arg: (i: number) => string): string {
  const [a, b, c] = n.args.map(arg);
  switch (n.op) {
    case 'var': return VAR_WGSL[n.name!];
    case 'const': return n.kind === 'float' ? floatLiteral(n.value!) : n.kind === 'int' ? intLiteral(n.value!) : n.value ? 'true' : 'false';
    case 'neg': return `-(${a})`;
    case 'abs': return `abs(${a})`;
    case 'exp': return `exp(${a})`;
    case 'log': return `log(${a})`;
    // tanh of a large argument is inf/inf = NaN on some drivers; tanh(15) is 1 in f32
    case 'tanh': return `tanh(clamp(${a}, -15.0, 15.0))`;
    case 'sqrt': return `sqrt(${a})`;
    case 'floor': return `floor(${a})`;
    case 'ceil': return `ceil(${a})`;
    case 'toInt': return `select(0i, i32(${a}), ${a} == ${a})`;
    case 'toFloat': return `f32(${a})`;
    case 'not': return `!(${a})`;
    case 'min': return `min(${a}, ${b})`;
    case 'max': return `max(${a}, ${b})`;
    case 'select': return `select(${c}, ${b}, ${a})`;
    case 'load': return `mod_tensor_${n.tensor}(${n.args.map(arg).join(', ')})`;
    default: return `(${a} ${BINARY[n.op]} ${b})`;
  }
}

/** The body lines of a program: one `let` per instruction, then the result. */
function programBody(p: Program, prefix: string): string[] {
  const name = (i: number) => `${prefix}${i}`;
  const lines = p.nodes.map((n, i) => `let ${name(i)} = ${instruction(n, name)};`);
  lines.push(`return ${name(p.root)};`);
  return lines;
}

function tensorLoader(slot: TensorSlot, t: number): string {
  const params = Array.from({ length: slot.rank }, (_, d) => `i${d}: i32`).join(', ');
  const h = HEADER_BASE + HEADER_WORDS * t;
  const terms = Array.from({ length: slot.rank }, (_, d) =>
    `  flat += u32(clamp(i${d}, 0, i32(mod_data[${h + 1 + d}u]) - 1)) * mod_data[${h + 5 + d}u];`);
  const read = slot.kind === 'float' ? 'bitcast<f32>(mod_data[mod_data[HDR] + flat])' : 'bitcast<i32>(mod_data[mod_data[HDR] + flat])';
  return `// captured tensor ${t} (${slot.kind}, rank ${slot.rank}); every index clamped into its dimension
fn mod_tensor_${t}(${params}) -> ${slot.kind === 'float' ? 'f32' : 'i32'} {
  var flat = 0u;
${terms.join('\n')}
  return ${read.replace('HDR', `${h}u`)};
}`;
}

type Entry = 'score' | 'scoreGrad' | 'mask' | 'sink';
const ENTRY_NAMES: Record<Entry, string> = { score: 'score_mod', scoreGrad: 'score_mod_grad', mask: 'mask_mod', sink: 'sink_mod' };

const VAR_PARAMS: Record<Entry, string> = {
  score: 'score: f32, b: u32, h: u32, q: u32, kv: u32, q_len: u32, kv_len: u32',
  scoreGrad: 'score: f32, b: u32, h: u32, q: u32, kv: u32, q_len: u32, kv_len: u32',
  mask: 'b: u32, h: u32, q: u32, kv: u32, q_len: u32, kv_len: u32',
  sink: 'b: u32, h: u32, q: u32, q_len: u32, kv_len: u32',
};

function entry(kind: Entry, p: Program): string {
  const ret = kind === 'mask' ? 'bool' : 'f32';
  const vars = kind === 'sink' ? ['b', 'h', 'q', 'q_len', 'kv_len'] : ['b', 'h', 'q', 'kv', 'q_len', 'kv_len'];
  const lines = [...vars.map((v) => `let v_${v} = i32(${v});`), ...programBody(p, `${kind[0]}`)];
  return `fn ${ENTRY_NAMES[kind]}(${VAR_PARAMS[kind]}) -> ${ret} {\n${lines.map((l) => `  ${l}`).join('\n')}\n}`;
}

/** A program written out inline (the tensor-core tier's score hook): its `let`s split by what they read. */
export interface InlineProgram {
  /** Lets that read none of the `varying` variables: once per row, ahead of the key loop. */
  invariant: string[];
  /** The other lets, per score. */
  varying: string[];
  /** The WGSL name of the result. */
  result: string;
}

/**
 * `p` as `let`s named prefix + instruction index, its variables read from the WGSL expressions
 * `vars` gives (each of type i32, `score` f32), split into the lets that depend on a variable of
 * `varying` (or on a let that does) and those that do not, so a kernel can hoist the latter out
 * of its key loop: loads of a per-head tensor, arithmetic on the row index.
 */
export interface InlineOverrides {
  /** WGSL of a load of captured tensor `tensor` at `args` (default: its mod_tensor loader). */
  load?: (tensor: number, args: string[]) => string;
  /** WGSL of tanh(x) (default: tanh of x clamped to ±15). */
  tanh?: (x: string) => string;
}

export function inlineProgram(p: Program, prefix: string, vars: Partial<Record<VarName, string>>, varying: readonly VarName[], overrides: InlineOverrides = {}): InlineProgram {
  const name = (i: number) => `${prefix}${i}`;
  const moves: boolean[] = [];
  const out: InlineProgram = { invariant: [], varying: [], result: name(p.root) };
  // only what the result reads (a rewritten program, mods/log2-units.ts, leaves nodes unused)
  const used = new Set<number>([p.root]);
  for (let i = p.root; i >= 0; i--) if (used.has(i)) for (const a of p.nodes[i].args) used.add(a);
  p.nodes.forEach((n, i) => {
    if (!used.has(i)) return;
    moves[i] = n.op === 'var' ? varying.includes(n.name!) : n.args.some((a) => moves[a]);
    const text = n.op === 'var' ? vars[n.name!]
      : n.op === 'load' && overrides.load ? overrides.load(n.tensor!, n.args.map(name))
      : n.op === 'tanh' && overrides.tanh ? overrides.tanh(name(n.args[0]))
      : instruction(n, name);
    if (text === undefined) throw new Error(`inlineProgram: no WGSL given for variable ${n.name}`);
    (moves[i] ? out.varying : out.invariant).push(`let ${name(i)} = ${text};`);
  });
  return out;
}

/**
 * Captured tensor t's header (data offset, last index and stride per dimension) as lets named
 * `${prefix}${t}_…`, for a kernel that reads it once instead of per element, and the matching
 * load: the same clamped index as the mod_tensor_t loader.
 */
export function tensorHeaderLets(slot: TensorSlot, t: number, prefix: string): string[] {
  const h = HEADER_BASE + HEADER_WORDS * t;
  const dims = Array.from({ length: slot.rank }, (_, d) => `let ${prefix}${t}_n${d} = i32(mod_data[${h + 1 + d}u]) - 1; let ${prefix}${t}_s${d} = mod_data[${h + 5 + d}u];`);
  return [`let ${prefix}${t}_at = mod_data[${h}u];`, ...dims];
}

export function tensorLoadFromHeader(slot: TensorSlot, t: number, prefix: string, args: string[]): string {
  const flat = args.map((a, d) => `u32(clamp(${a}, 0, ${prefix}${t}_n${d})) * ${prefix}${t}_s${d}`);
  const word = `mod_data[${[`${prefix}${t}_at`, ...flat].join(' + ')}]`;
  return slot.kind === 'float' ? `bitcast<f32>(${word})` : `bitcast<i32>(${word})`;
}

export interface ModsBinding {
  group: number;
  binding: number;
}

/** Whether the kernel needs the mod_data binding at all. */
export function needsModData(o: ModsKernelOptions | undefined, blockTable: boolean): boolean {
  return blockTable || (o !== undefined && o.tensors.length > 0);
}

/**
 * Declarations and functions for `o`; '' when there are no mods and no block table. `inlined`:
 * the kernel writes the score and mask programs out itself (inlineProgram), so their functions
 * are left out (the loaders, the sink function and the block table reader stay).
 */
export function buildModsWgsl(o: ModsKernelOptions | undefined, at: ModsBinding, blockTable = false, inlined = false): string {
  if (!o && !blockTable) return '';
  const parts: string[] = [];
  if (needsModData(o, blockTable)) {
    parts.push(`// captured tensors and block table of the score/mask functions (layout: ops/attention/mods/plan.ts)
@group(${at.group}) @binding(${at.binding}) var<storage, read> mod_data: array<u32>;`);
  }
  if (o) {
    const programs = [o.score, o.scoreGrad, o.mask, o.sink].filter((p): p is Program => p !== undefined);
    if (programs.some((p) => p.nodes.some((n) => n.op === 'const' && n.kind === 'float' && !Number.isFinite(n.value!)))) {
      parts.push('fn mod_inf() -> f32 {\n  var bits = 0x7f800000u;   // through a var: WGSL rejects an infinite constant\n  return bitcast<f32>(bits);\n}');
    }
    o.tensors.forEach((slot, t) => parts.push(tensorLoader(slot, t)));
    if (o.score && !inlined) parts.push(entry('score', o.score));
    if (o.scoreGrad) parts.push(entry('scoreGrad', o.scoreGrad));
    if (o.mask && !inlined) parts.push(entry('mask', o.mask));
    if (o.sink) parts.push(entry('sink', o.sink));
  }
  if (blockTable) parts.push(BLOCK_TABLE_WGSL);
  return parts.join('\n\n');
}

/**
 * Reading the block table (block-mask/table.ts): the row of query block `q0 / QB` of (b, h), its
 * partial and full key-block counts, and the n-th listed key block (partial ones first).
 */
const BLOCK_TABLE_WGSL = `struct BlockRow {
  base: u32,      // word of the row's first key-block index
  partial: u32,   // key blocks where the mask is evaluated
  full: u32,      // key blocks every pair of which is visible (no mask evaluation)
  keys: u32,      // keys per block
}

fn block_row(b: u32, h: u32, q0: u32) -> BlockRow {
  let t = mod_data[0];
  let tb = mod_data[t];
  let th = mod_data[t + 1u];
  let qt = mod_data[t + 2u];
  let kt = mod_data[t + 3u];
  let row = (select(b, 0u, tb == 1u) * th + select(h, 0u, th == 1u)) * qt + min(q0 / mod_data[t + 4u], qt - 1u);
  let rows = tb * th * qt;
  return BlockRow(t + 8u + 2u * rows + row * kt, mod_data[t + 8u + 2u * row], mod_data[t + 9u + 2u * row], mod_data[t + 5u]);
}

fn block_index(r: BlockRow, n: u32) -> u32 {
  return mod_data[r.base + n];
}`;
