// The CPU attention backward: fused (bwd-pre, bwd-head + bwd-dq-sum or bwd-kv + bwd-q) and unfused
// (bwd-naive) on the process-wide CPU engine (ops/cpu-engine.ts), whose program carries the
// backward's kernels and tasks.
import { cpuEngine } from '../../../cpu-engine.js';
import { cpuUnsupported } from '../../cpu/attention.js';
import type { BackwardBackend } from '../backend.js';
import type { BackwardProblem } from '../problem.js';
import { runBackward, runNaiveBackward } from './run.js';

function unsupported(bp: BackwardProblem): string | undefined {
  const forward = cpuUnsupported(bp.forward);
  if (forward) return forward;
  for (const [name, t] of [['out', bp.out], ['dOut', bp.dOut], ['lse', bp.lse]] as const) {
    if (!t.data) return `${name} lives on the GPU`;
  }
  return undefined;
}

export const cpuBackward: BackwardBackend = {
  name: 'cpu',
  unsupported,
  run: async (bp) => runBackward(await cpuEngine(), bp),
  runNaive: async (bp) => runNaiveBackward(await cpuEngine(), bp),
};
