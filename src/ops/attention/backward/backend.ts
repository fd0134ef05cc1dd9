// What a backend implements for attentionBackward() (registry.ts finds one).
import type { RunContext } from '../backend.js';
import type { BackendName } from '../options.js';
import type { AttentionGrads } from './options.js';
import type { BackwardProblem } from './problem.js';

export interface BackwardBackend {
  readonly name: BackendName;
  /** Why this backend cannot run `problem`, or undefined when it can. */
  unsupported(problem: BackwardProblem): string | undefined;
  /** The fused backward (O(N) memory: no Sq×Sk buffer). */
  run(problem: BackwardProblem, context: RunContext): Promise<AttentionGrads>;
  /** The unfused backward (P, dP and dS materialised), the baseline benchmarks compare against. */
  runNaive(problem: BackwardProblem, context: RunContext): Promise<AttentionGrads>;
}
