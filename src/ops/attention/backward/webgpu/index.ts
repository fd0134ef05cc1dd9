// The WebGPU attention backward: tiers best first, each saying why it cannot take a problem (the
// next one then runs, never a silently wrong result). Today: the portable f32 tier (any adapter);
// tiers.ts holds the chooser and the tensor-core tier's slot. runNaive: the unfused baseline (naive.ts).
import { getRuntime, peekRuntime } from '../../../../engines/webgpu/runtime.js';
import type { BackwardBackend } from '../backend.js';
import type { BackwardProblem } from '../problem.js';
import { backwardFallback, chooseBackwardTier } from './tiers.js';
import { portableBackwardUnsupported } from './portable.js';
import { runNaiveBackward } from './naive.js';

function unsupported(bp: BackwardProblem): string | undefined {
  const runtime = peekRuntime(bp.forward.q.tensor.gpu?.device);
  return runtime ? portableBackwardUnsupported(bp, runtime.limits) : undefined;
}

export const webgpuBackward: BackwardBackend = {
  name: 'webgpu',
  unsupported,
  async run(bp, context) {
    const runtime = await getRuntime(bp.forward.q.tensor.gpu?.device ?? context.device);
    const choice = chooseBackwardTier(bp, runtime);
    const grads = await choice.tier.run(runtime, bp);
    // which tier ran, and why not a better one the adapter has (e.g. a score function on tensor cores)
    const fallback = backwardFallback(choice, runtime);
    return { ...grads, stats: { launches: 0, intermediateBytes: 0, ...grads.stats, backend: 'webgpu', tier: choice.tier.name, ...(fallback ? { fallback } : {}) } };
  },
  async runNaive(bp, context) {
    return runNaiveBackward(await getRuntime(bp.forward.q.tensor.gpu?.device ?? context.device), bp);
  },
};
