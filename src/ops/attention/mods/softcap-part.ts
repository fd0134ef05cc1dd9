// A score function that reads the score only through softcap(c) (the built-in, alone or first of a
// composition): that cap is the softcap option, which every tier runs in its plain score lines
// (cap·tanh(s/c) with the per-row factors hoisted), while a score function also pays the checks
// that any expression needs (a visible, finite score before and after it). The option and the
// function are the same computation where nothing comes between them: the option applies first,
// then bias and ALiBi, then the function, so the split is taken only for calls with neither (and
// no softcap option of their own).
import type { AttentionProblem } from '../problem.js';
import type { Node } from './expr.js';
import { planMods } from './plan.js';
import { ScoreMod } from './program.js';
import { splitsEnabled } from './validate.js';

export interface SoftcapPart {
  cap: number;
  /** The function of the capped score, or undefined when it is the cap alone. */
  rest: ScoreMod | undefined;
}

/** c when `n` is cap·tanh(score / c) as softcap(c) builds it, else undefined. */
function capOf(n: Node): number | undefined {
  if (n.op !== 'mul') return undefined;
  const [t, c] = n.args;
  if (t.op !== 'tanh' || c.op !== 'const' || c.kind !== 'float') return undefined;
  const d = t.args[0];
  if (d.op !== 'div' || d.args[0].op !== 'var' || d.args[0].name !== 'score') return undefined;
  const c2 = d.args[1];
  if (c2.op !== 'const' || c2.kind !== 'float' || c2.value !== c.value || !(c.value! > 0) || !Number.isFinite(c.value)) return undefined;
  return c.value;
}

export function softcapPart(mod: ScoreMod): SoftcapPart | undefined {
  let cap: number | undefined;
  let bare = false;
  const score: Node = { op: 'var', kind: 'float', args: [], name: 'score' };
  const memo = new Map<Node, Node>();
  const walk = (n: Node): Node => {
    const hit = memo.get(n);
    if (hit) return hit;
    const c = capOf(n);
    let out: Node;
    if (c !== undefined && (cap === undefined || cap === c)) {
      cap = c;
      out = score;
    } else {
      if (n.op === 'var' && n.name === 'score') bare = true;
      out = n.args.length ? { ...n, args: n.args.map(walk) } : n;
    }
    memo.set(n, out);
    return out;
  };
  const root = walk(mod.root);
  if (cap === undefined || bare) return undefined;
  return { cap, rest: root === score ? undefined : new ScoreMod(root, `${mod.label} after softcap(${cap})`) };
}

/**
 * `p` with its score function's softcap part as the softcap (rule 'function'), for a tier whose
 * option lines are cheaper than its score functions (the tensor-core tier: softcap() 1.219x the
 * causal time as a function, 1.135x as the option; H200, session 9 of 2026-12-03). `p` itself
 * where there is none, or where a bias, ALiBi or a softcap option comes between.
 */
export function softcapAsOption(p: AttentionProblem): AttentionProblem {
  const mods = p.mods;
  if (!mods?.scoreMod || p.softcap > 0 || p.bias || p.alibi || !splitsEnabled()) return p;
  const part = softcapPart(mods.scoreMod);
  if (!part) return p;
  const rest = part.rest || mods.maskMod || mods.sinkMod ? planMods({ scoreMod: part.rest, maskMod: mods.maskMod, sinkMod: mods.sinkMod }) : undefined;
  return { ...p, softcap: part.cap, softcapRule: 'function', mods: rest };
}
