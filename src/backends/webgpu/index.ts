// The WebGPU attention backend: flash attention through the tier chooser (tiers.ts; the portable
// f32 tier runs on any adapter), and runNaive, the unfused 3-kernel baseline.
import { UnsupportedError } from '../../core/errors.js';
import type { AttentionProblem } from '../../attention/problem.js';
import type { AttentionBackend, AttentionResult, RunContext } from '../backend.js';
import { naiveUnsupported, runNaive } from './naive/naive.js';
import { type GpuRuntime, getRuntime, peekRuntime } from './runtime.js';
import { chooseTier, tiersUnsupported } from './tiers.js';

/** The device a call runs on: the inputs' device for GPU tensors, else the caller's, else ours. */
function runtimeFor(p: AttentionProblem, context: RunContext): Promise<GpuRuntime> {
  return getRuntime(p.q.tensor.gpu?.device ?? context.device);
}

export const webgpuBackend: AttentionBackend = {
  name: 'webgpu',
  /**
   * Checked against the device's limits once a device is known; before the first call acquires
   * one, run() checks again and throws UnsupportedError with the same reason.
   */
  unsupported(p: AttentionProblem): string | undefined {
    const runtime = peekRuntime(p.q.tensor.gpu?.device);
    return runtime ? tiersUnsupported(p, runtime) : undefined;
  },
  async run(p: AttentionProblem, context: RunContext): Promise<AttentionResult> {
    const runtime = await runtimeFor(p, context);
    return chooseTier(p, runtime).run(runtime, p);
  },
  async runNaive(p: AttentionProblem, context: RunContext): Promise<AttentionResult> {
    const runtime = await runtimeFor(p, context);
    const reason = naiveUnsupported(p, runtime.limits);
    if (reason) throw new UnsupportedError('options.backend', `WebGPU naive path: ${reason}`);
    return runNaive(runtime, p);
  },
};
