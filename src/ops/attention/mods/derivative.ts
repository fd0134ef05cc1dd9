// The symbolic derivative of a score function with respect to its `score` variable, for the
// attention backward's chain rule: the forward computes s' = mod(s), so dL/ds = dL/ds' · mod'(s).
// The derivative is another expression tree over the same variables and captured tensors, so
// every existing code generator (WGSL, WebAssembly, the float64 evaluator) compiles it unchanged.
//
// Rules: loads of captured tensors, constants and the other variables are constants (their
// derivative is 0); every int and bool subexpression is piecewise constant in the score, so
// floor/ceil/toInt of the score have derivative 0, as autograd gives them. At a kink the
// derivative is one side's: min/max take the side the forward picked (ties: the first operand),
// abs(x)' is -1 for x < 0 and 1 otherwise, select differentiates the branch the condition picks.
import { BoolExpr, FloatExpr, type Node, float, wrap } from './expr.js';

/** d(root)/d(score) as a float tree; the constant 0 when root does not depend on the score. */
export function scoreDerivative(root: Node): Node {
  return (derivativeOf(root, new Map()) ?? float(0)).node;
}

// undefined stands for an exact 0, so the derivative of a term that does not read the score
// costs nothing in the generated kernels
type D = FloatExpr | undefined;

const f = (n: Node) => wrap(n) as FloatExpr;
const plus = (a: D, b: D): D => (a && b ? a.add(b) : a ?? b);
const minus = (a: D, b: D): D => (a && b ? a.sub(b) : a ?? b?.neg());
// d(score)/d(score) = 1 is the common leaf: 1 · x is written x, so softcap's derivative reads as one
const isOne = (a: D) => a !== undefined && a.node.op === 'const' && a.node.value === 1;
const times = (a: D, x: FloatExpr): D => (isOne(a) ? x : a?.mul(x));
const pick = (c: BoolExpr, a: D, b: D): D => (a || b ? c.select(a ?? 0, b ?? 0) : undefined);

function derivativeOf(n: Node, memo: Map<Node, D>): D {
  if (memo.has(n)) return memo.get(n);
  const d = rule(n, memo);
  memo.set(n, d);
  return d;
}

function rule(n: Node, memo: Map<Node, D>): D {
  if (n.kind !== 'float') return undefined;
  const [a, b, c] = n.args;
  const da = () => derivativeOf(a, memo);
  const db = () => derivativeOf(b, memo);
  switch (n.op) {
    case 'var': return n.name === 'score' ? float(1) : undefined;
    case 'const':
    case 'load':
    case 'toFloat':
    case 'floor':
    case 'ceil':
      return undefined;
    case 'neg': return da()?.neg();
    case 'abs': return times(da(), f(a).lt(0).select(-1, 1));
    case 'add': return plus(da(), db());
    case 'sub': return minus(da(), db());
    case 'mul': return plus(times(da(), f(b)), times(db(), f(a)));
    // (a / b)' = (a' - (a / b)·b') / b
    case 'div': {
      const num = minus(da(), times(db(), f(n)));
      return num?.div(f(b));
    }
    case 'min': return pick(f(a).le(f(b)), da(), db());
    case 'max': return pick(f(a).ge(f(b)), da(), db());
    case 'exp': return times(da(), f(n));
    case 'log': return da()?.div(f(a));
    case 'tanh': return times(da(), float(1).sub(f(n).mul(f(n))));
    case 'sqrt': return da()?.div(f(n).mul(2));
    case 'select': return pick(wrap(a) as BoolExpr, derivativeOf(b, memo), derivativeOf(c, memo));
    default:
      throw new Error(`scoreDerivative: no rule for float op ${n.op}`);
  }
}
