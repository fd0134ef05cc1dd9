// Checking one attention result against the float64 reference, with the suite's pass rules
// (compare.ts): what the test suite and `fusedattn verify` run for each case, and the demo's spot checks.
import type { AttentionProblem } from '../ops/attention/index.js';
import { referenceAttention } from '../ops/attention/index.js';
import type { AttentionResult } from '../ops/attention/index.js';
import { show } from '../core/errors.js';
import { checkF32, checkLowPrecision, compare } from './compare.js';

export interface CheckOutcome {
  /** Why the result fails, empty when it passes. */
  failures: string[];
  /** max |out - ref| / max |ref| of the output. */
  relError: number;
}

export function checkAgainstReference(problem: AttentionProblem, result: AttentionResult): CheckOutcome {
  const failures: string[] = [];
  const shapeOk = (what: string, got: readonly number[] | undefined, want: readonly number[]) => {
    if (show(got) !== show(want)) failures.push(`${what} shape ${show(got)}, expected ${show(want)}`);
    return show(got) === show(want);
  };
  if (!shapeOk('out', result.out.shape, problem.outShape)) return { failures, relError: NaN };
  if (result.out.dtype !== problem.dtype) failures.push(`out dtype ${result.out.dtype}, expected ${problem.dtype}`);
  const ref = referenceAttention(problem);
  const out = result.out.toFloat32();
  const outFailure = problem.dtype === 'float32'
    ? checkF32('out', out, ref.out)
    : checkLowPrecision('out', out, referenceAttention(problem, 'float16').out, ref.out);
  if (outFailure) failures.push(outFailure);
  if (problem.returnLse) {
    if (!result.lse) failures.push('lse missing');
    else if (shapeOk('lse', result.lse.shape, problem.lseShape)) {
      // LSE is float32 on every path, so float16 inputs get a float32-sized bound too
      const lseFailure = checkF32('lse', result.lse.toFloat32(), ref.lse, problem.dtype === 'float16' ? 1e-3 : 1e-5);
      if (lseFailure) failures.push(lseFailure);
    }
  }
  return { failures, relError: compare(out, ref.out).relError };
}
