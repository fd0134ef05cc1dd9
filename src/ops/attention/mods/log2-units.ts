// A score program restated in log2 units, for kernels whose softmax works in them (the tensor-core
// tier: scores s2 = s·log2(e), weights exp2(s2 - m)). The user's function f maps a natural-unit
// score to one; the kernel needs g(s2) = log2(e)·f(s2·ln 2). Written out literally that is two
// multiplies per score around f; here the conversions are folded into f's own constants where the
// algebra is exact: score·c and score/c become s2·(c·ln 2) and s2·(ln 2/c), and a result x·c or
// x/c becomes x·(c·log2 e) or x·(log2 e/c) (constants folded in float64, rounded once to f32, so
// the result differs from the literal form by rounding only). A softcap c·tanh(score/c) thus costs
// what the built-in option does: one multiply, the tanh, one multiply. Nodes left unused by the
// folding stay in the program (dead `let`s, which every compiler drops).
import type { Program, ProgramNode } from './program.js';

/** `p` with its `score` variable and its result in log2 units (see above). */
export function scoreProgramInLog2(p: Program): Program {
  const out: ProgramNode[] = [];
  const emit = (n: ProgramNode) => out.push(n) - 1;
  const constant = (value: number) => emit({ op: 'const', kind: 'float', args: [], value });
  const times = (x: number, c: number) => emit({ op: 'mul', kind: 'float', args: [x, constant(c)] });
  const score = p.nodes.findIndex((n) => n.op === 'var' && n.name === 'score');
  const map: number[] = [];
  let natural = -1;
  p.nodes.forEach((n, i) => {
    if (i === score) {
      map[i] = emit({ ...n, args: [] });
      natural = times(map[i], Math.LN2);
      return;
    }
    const c = scoreTimes(p, i, score);
    map[i] = c !== undefined ? times(map[score], c * Math.LN2) : emit({ ...n, args: n.args.map((a) => (a === score ? natural : map[a])) });
  });
  const arg = (a: number) => (a === score ? natural : map[a]);
  const root = p.nodes[p.root];
  let result: number;
  if (p.root === score) result = map[score];
  else if (scoreTimes(p, p.root, score) !== undefined) result = times(map[score], scoreTimes(p, p.root, score)!); // linear: any units
  else if (root.op === 'mul' && finiteConst(p, root.args[1]) !== undefined) result = times(arg(root.args[0]), finiteConst(p, root.args[1])! * Math.LOG2E);
  else if (root.op === 'mul' && finiteConst(p, root.args[0]) !== undefined) result = times(arg(root.args[1]), finiteConst(p, root.args[0])! * Math.LOG2E);
  else if (root.op === 'div' && finiteConst(p, root.args[1]) !== undefined) result = times(arg(root.args[0]), Math.LOG2E / finiteConst(p, root.args[1])!);
  else result = times(map[p.root], Math.LOG2E);
  return { nodes: out, root: result };
}

/** A finite, nonzero float constant's value, else undefined. */
function finiteConst(p: Program, i: number): number | undefined {
  const n = p.nodes[i];
  return n.op === 'const' && n.kind === 'float' && Number.isFinite(n.value!) && n.value !== 0 ? n.value : undefined;
}

/** c when node i is score·c, c·score or score/c (c = 1/divisor), else undefined. */
function scoreTimes(p: Program, i: number, score: number): number | undefined {
  const n = p.nodes[i];
  if (score < 0 || (n.op !== 'mul' && n.op !== 'div')) return undefined;
  const [a, b] = n.args;
  if (a === score && finiteConst(p, b) !== undefined) return n.op === 'mul' ? finiteConst(p, b)! : 1 / finiteConst(p, b)!;
  if (n.op === 'mul' && b === score && finiteConst(p, a) !== undefined) return finiteConst(p, a)!;
  return undefined;
}
