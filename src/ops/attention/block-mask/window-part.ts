// The key-window part of a mask function. A mask written as `X ∧ kv <= q` (documentMask with
// causal, causal(), slidingWindow(), prefix masks ANDed with causal) hides pairs for two reasons:
// X, and a band around the diagonal that every kernel already applies natively (options.causal /
// window: the per-row key range, no per-score test beyond a compare). Split off, the band becomes
// the call's key window, and X alone decides which blocks are FULL: a diagonal block of a causal
// document mask is then a FULL tile under the causal window (the plain score lines) instead of a
// PARTIAL one that evaluates the whole function, loads of the document ids included, per score.
// The split is exact: a conjunct is taken only when it is an integer comparison equivalent to
// a bound on kv − q (top-left) or kv − q − (kvLen − qLen) (bottom-right).
import type { KeyWindow } from '../key-window.js';
import type { Node } from '../mods/expr.js';
import { MaskMod } from '../mods/program.js';

export interface WindowPart {
  window: KeyWindow;
  /** The conjuncts left over, or undefined when the window is the whole mask. */
  rest: MaskMod | undefined;
}

type Linear = { kv: number; q: number; kvLen: number; qLen: number; c: number };
const ZERO: Linear = { kv: 0, q: 0, kvLen: 0, qLen: 0, c: 0 };

function combine(a: Linear, b: Linear, sign: number): Linear {
  return { kv: a.kv + sign * b.kv, q: a.q + sign * b.q, kvLen: a.kvLen + sign * b.kvLen, qLen: a.qLen + sign * b.qLen, c: a.c + sign * b.c };
}

function times(a: Linear, k: number): Linear {
  return { kv: k * a.kv, q: k * a.q, kvLen: k * a.kvLen, qLen: k * a.qLen, c: k * a.c };
}

/** An integer expression as a linear form over q, kv and the lengths, or undefined. */
function linear(n: Node): Linear | undefined {
  if (n.kind !== 'int') return undefined;
  switch (n.op) {
    case 'const': return Number.isSafeInteger(n.value) ? { ...ZERO, c: n.value! } : undefined;
    case 'var': return n.name === 'q' || n.name === 'kv' || n.name === 'qLen' || n.name === 'kvLen' ? { ...ZERO, [n.name]: 1 } : undefined;
    case 'neg': { const a = linear(n.args[0]); return a && times(a, -1); }
    case 'add': case 'sub': {
      const a = linear(n.args[0]);
      const b = linear(n.args[1]);
      return a && b ? combine(a, b, n.op === 'add' ? 1 : -1) : undefined;
    }
    case 'mul': {
      const a = linear(n.args[0]);
      const b = linear(n.args[1]);
      if (!a || !b) return undefined;
      const constant = (x: Linear) => x.kv === 0 && x.q === 0 && x.kvLen === 0 && x.qLen === 0;
      return constant(a) ? times(b, a.c) : constant(b) ? times(a, b.c) : undefined;
    }
    default: return undefined;
  }
}

/** One conjunct as a bound on the diagonal offset, or undefined. */
function bound(n: Node): { align: KeyWindow['align']; side: 'left' | 'right'; value: number } | undefined {
  if (n.op !== 'le' && n.op !== 'lt' && n.op !== 'ge' && n.op !== 'gt') return undefined;
  const l = linear(n.args[0]);
  const r = linear(n.args[1]);
  if (!l || !r) return undefined;
  // as D <= 0 over the integers
  let d = combine(l, r, -1);
  if (n.op === 'lt') d = { ...d, c: d.c + 1 };
  if (n.op === 'ge') d = times(d, -1);
  if (n.op === 'gt') d = { ...times(d, -1), c: -d.c + 1 };
  const s = d.kv;
  if ((s !== 1 && s !== -1) || d.q !== -s) return undefined;
  let align: KeyWindow['align'];
  if (d.kvLen === 0 && d.qLen === 0) align = 'top-left';
  else if (d.kvLen === -s && d.qLen === s) align = 'bottom-right';
  else return undefined;
  // s·rel + c <= 0: s = 1 gives rel <= -c (keys after the diagonal), s = -1 rel >= c (before it)
  return { align, side: s === 1 ? 'right' : 'left', value: 0 - d.c };
}

function conjuncts(n: Node, out: Node[]): Node[] {
  if (n.op === 'and') {
    conjuncts(n.args[0], out);
    conjuncts(n.args[1], out);
  } else out.push(n);
  return out;
}

/**
 * The mask's window part: its conjuncts that bound the diagonal offset (those of the first
 * alignment found), and the rest. Undefined when there is none, or when the band is one the call
 * options could not state (a negative side: the diagonal itself hidden).
 */
export function windowPart(mask: MaskMod): WindowPart | undefined {
  const terms = conjuncts(mask.root, []);
  let align: KeyWindow['align'] | undefined;
  let left = Infinity;
  let right = Infinity;
  const rest: Node[] = [];
  for (const t of terms) {
    const b = bound(t);
    if (!b || (align !== undefined && b.align !== align)) {
      rest.push(t);
      continue;
    }
    align = b.align;
    if (b.side === 'left') left = Math.min(left, b.value);
    else right = Math.min(right, b.value);
  }
  if (align === undefined || left < 0 || right < 0) return undefined;
  const restRoot = rest.length === 0 ? undefined : rest.reduce((x, y) => ({ op: 'and', kind: 'bool', args: [x, y] }));
  return { window: { left, right, align }, rest: restRoot && new MaskMod(restRoot, `${mask.label} without its window`) };
}
