// Score, mask and sink functions as traced expression trees, and their lowering to a flat,
// hash-consed program (each distinct subexpression once, children before parents) that the code
// generators walk. A lowered program is plain data: it is part of a kernel's typed options, so
// the pipeline cache key follows the expression's structure, never the captured data.
//
//   scoreMod   (score, b, h, q, kv, qLen, kvLen) -> float   replaces the score of a visible pair
//   maskMod    (b, h, q, kv, qLen, kvLen) -> bool           false hides the pair
//   sinkMod    (b, h, q, qLen, kvLen) -> float              a sink logit per row (GPT-OSS sinks):
//              one more softmax term with no value, out = Σ e^s v / (e^sink + Σ e^s)
import { ValueError, show } from '../../../core/errors.js';
import { BoolExpr, Expr, FloatExpr, IntExpr, type Kind, type ModTensor, type Node, type Op, type VarName, bool, float, variable } from './expr.js';

export interface ScoreContext {
  /** The scaled score q·k·scale after the built-in options (softcap, bias, ALiBi). */
  score: FloatExpr;
  b: IntExpr;
  h: IntExpr;
  q: IntExpr;
  kv: IntExpr;
  /** Alias of kv. */
  k: IntExpr;
  /** Lengths of sequence b (equal to Sq / Sk for fixed layouts). */
  qLen: IntExpr;
  kvLen: IntExpr;
  /** FlexAttention's names, aliases of b, h, q, kv. */
  batch: IntExpr;
  head: IntExpr;
  qIdx: IntExpr;
  kvIdx: IntExpr;
}
export type MaskContext = Omit<ScoreContext, 'score'>;
export type SinkContext = Pick<ScoreContext, 'b' | 'h' | 'q' | 'qLen' | 'kvLen' | 'batch' | 'head' | 'qIdx'>;

type Role = 'scoreMod' | 'maskMod' | 'sinkMod';
const ALLOWED: Record<Role, readonly VarName[]> = {
  scoreMod: ['score', 'b', 'h', 'q', 'kv', 'qLen', 'kvLen'],
  maskMod: ['b', 'h', 'q', 'kv', 'qLen', 'kvLen'],
  sinkMod: ['b', 'h', 'q', 'qLen', 'kvLen'],
};
const ALIASES: Record<string, VarName> = { b: 'b', h: 'h', q: 'q', kv: 'kv', k: 'kv', qLen: 'qLen', kvLen: 'kvLen', batch: 'b', head: 'h', qIdx: 'q', kvIdx: 'kv', score: 'score' };

/** The symbolic context handed to a user function; reading a variable its role lacks throws. */
function context(role: Role): ScoreContext {
  const ctx = {} as ScoreContext;
  for (const [alias, name] of Object.entries(ALIASES)) {
    Object.defineProperty(ctx, alias, {
      enumerable: ALLOWED[role].includes(name),
      get: () => {
        if (!ALLOWED[role].includes(name)) throw new ValueError(role, `a ${role} cannot read "${alias}" (it sees ${ALLOWED[role].join(', ')})`);
        return variable(name);
      },
    });
  }
  return ctx;
}

function trace(role: Role, fn: unknown, want: Kind): Node {
  if (typeof fn !== 'function') throw new ValueError(role, `${role}() takes a function of its variables, got ${show(fn)}`);
  let out = (fn as (ctx: ScoreContext) => unknown)(context(role));
  if (typeof out === 'number' && want === 'float') out = float(out);
  if (typeof out === 'boolean' && want === 'bool') out = bool(out);
  if (out instanceof IntExpr && want === 'float') out = out.toFloat();
  if (!(out instanceof Expr) || out.node.kind !== want) {
    throw new ValueError(role, `a ${role} must return a ${want} expression, got ${out instanceof Expr ? `a ${out.node.kind} expression` : show(out)}`);
  }
  checkVariables(role, out.node);
  return out.node;
}

function checkVariables(role: Role, root: Node): void {
  const seen = new Set<Node>();
  const walk = (n: Node) => {
    if (seen.has(n)) return;
    seen.add(n);
    if (n.op === 'var' && !ALLOWED[role].includes(n.name!)) throw new ValueError(role, `a ${role} cannot use "${n.name}" (it sees ${ALLOWED[role].join(', ')})`);
    n.args.forEach(walk);
  };
  walk(root);
}

/** A score function: traced once, compiled into every kernel that runs it. */
export class ScoreMod {
  constructor(readonly root: Node, readonly label = 'scoreMod') {}
  /** This mod, then `next` on its result. */
  then(next: ScoreMod): ScoreMod {
    return new ScoreMod(substituteScore(next.root, this.root), `${this.label} -> ${next.label}`);
  }
  toString(): string {
    return formatNode(this.root);
  }
}

export class MaskMod {
  constructor(readonly root: Node, readonly label = 'maskMod') {}
  and(other: MaskMod): MaskMod {
    return new MaskMod(new BoolExpr(this.root).and(new BoolExpr(other.root)).node, `(${this.label} & ${other.label})`);
  }
  or(other: MaskMod): MaskMod {
    return new MaskMod(new BoolExpr(this.root).or(new BoolExpr(other.root)).node, `(${this.label} | ${other.label})`);
  }
  not(): MaskMod {
    return new MaskMod(new BoolExpr(this.root).not().node, `!${this.label}`);
  }
  toString(): string {
    return formatNode(this.root);
  }
}

export class SinkMod {
  constructor(readonly root: Node, readonly label = 'sinkMod') {}
  toString(): string {
    return formatNode(this.root);
  }
}

/** `scoreMod(({ score, h, q, kv }) => score.add(bias.at(h, q.sub(kv))))`. */
export function scoreMod(fn: (ctx: ScoreContext) => FloatExpr | IntExpr | number, label?: string): ScoreMod {
  return new ScoreMod(trace('scoreMod', fn, 'float'), label);
}

/** `maskMod(({ q, kv }) => kv.le(q))`. */
export function maskMod(fn: (ctx: MaskContext) => BoolExpr | boolean, label?: string): MaskMod {
  return new MaskMod(trace('maskMod', fn, 'bool'), label);
}

/** `sinkMod(({ h }) => sinks.at(h))`. */
export function sinkMod(fn: (ctx: SinkContext) => FloatExpr | IntExpr | number, label?: string): SinkMod {
  return new SinkMod(trace('sinkMod', fn, 'float'), label);
}

/** Every mask must hold (an empty list keeps everything). */
export function andMasks(...masks: MaskMod[]): MaskMod {
  if (masks.length === 0) return maskMod(() => true, 'all');
  return masks.reduce((a, b) => a.and(b));
}

/** At least one mask must hold. */
export function orMasks(...masks: MaskMod[]): MaskMod {
  if (masks.length === 0) return maskMod(() => false, 'none');
  return masks.reduce((a, b) => a.or(b));
}

/** Score mods applied in order (each sees the previous one's result as `score`). */
export function composeScoreMods(...mods: ScoreMod[]): ScoreMod {
  if (mods.length === 0) return scoreMod(({ score }) => score, 'identity');
  return mods.reduce((a, b) => a.then(b));
}

function substituteScore(tree: Node, replacement: Node): Node {
  const memo = new Map<Node, Node>();
  const walk = (n: Node): Node => {
    const hit = memo.get(n);
    if (hit) return hit;
    const out = n.op === 'var' && n.name === 'score' ? replacement : n.args.length ? { ...n, args: n.args.map(walk) } : n;
    memo.set(n, out);
    return out;
  };
  return walk(tree);
}

// ---------- lowering

/** One instruction of a lowered program; `args` index earlier instructions. */
export interface ProgramNode {
  op: Op;
  kind: Kind;
  args: number[];
  value?: number;
  name?: VarName;
  /** 'load': slot of the tensor in the mod set's tensor list. */
  tensor?: number;
}

export interface Program {
  nodes: ProgramNode[];
  root: number;
}

/** Compile-time description of a captured tensor (its data and sizes are run-time inputs). */
export interface TensorSlot {
  kind: 'float' | 'int';
  rank: number;
}

/** Lowers trees into programs sharing one tensor list (a tensor used twice gets one slot). */
export class Lowering {
  readonly tensors: ModTensor[] = [];

  lower(root: Node): Program {
    const nodes: ProgramNode[] = [];
    const byKey = new Map<string, number>();
    const byNode = new Map<Node, number>();
    const visit = (n: Node): number => {
      const known = byNode.get(n);
      if (known !== undefined) return known;
      const args = n.args.map(visit);
      const lowered: ProgramNode = { op: n.op, kind: n.kind, args };
      if (n.value !== undefined) lowered.value = n.value;
      if (n.name !== undefined) lowered.name = n.name;
      if (n.tensor) lowered.tensor = this.slot(n.tensor);
      const key = JSON.stringify([lowered.op, lowered.kind, args, lowered.value === undefined ? null : String(lowered.value), lowered.name ?? null, lowered.tensor ?? null]);
      let index = byKey.get(key);
      if (index === undefined) {
        index = nodes.length;
        nodes.push(lowered);
        byKey.set(key, index);
      }
      byNode.set(n, index);
      return index;
    };
    const rootIndex = visit(root);
    return { nodes, root: rootIndex };
  }

  slots(): TensorSlot[] {
    return this.tensors.map((t) => ({ kind: t.kind, rank: t.rank }));
  }

  private slot(t: ModTensor): number {
    const i = this.tensors.indexOf(t);
    if (i >= 0) return i;
    this.tensors.push(t);
    return this.tensors.length - 1;
  }
}

/** Which variables a program reads. */
export function programVariables(p: Program): Set<VarName> {
  return new Set(p.nodes.filter((n) => n.op === 'var').map((n) => n.name!));
}

// ---------- printing (error messages, debugging)

const INFIX: Partial<Record<Op, string>> = {
  add: '+', sub: '-', mul: '*', div: '/', mod: '%', lt: '<', le: '<=', gt: '>', ge: '>=', eq: '==', ne: '!=', and: '&&', or: '||',
};

export function formatNode(n: Node): string {
  switch (n.op) {
    case 'var': return n.name!;
    case 'const': return n.kind === 'bool' ? String(n.value === 1) : String(n.value);
    case 'load': return `${n.tensor!.name}[${n.args.map(formatNode).join(', ')}]`;
    case 'select': return `(${formatNode(n.args[0])} ? ${formatNode(n.args[1])} : ${formatNode(n.args[2])})`;
    default: {
      const infix = INFIX[n.op];
      if (infix) return `(${formatNode(n.args[0])} ${infix} ${formatNode(n.args[1])})`;
      return `${n.op}(${n.args.map(formatNode).join(', ')})`;
    }
  }
}
