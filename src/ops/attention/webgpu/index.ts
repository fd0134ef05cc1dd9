// The WebGPU attention backend: flash tiers chosen best first from the adapter's features
// (tiers/index.ts: subgroup-matrix f16, then the portable f32 tier, which takes any adapter).
// runNaive is the unfused 3-kernel path.
import { UnsupportedError } from '../../../core/errors.js';
import type { AttentionProblem } from '../problem.js';
import type { AttentionBackend, AttentionResult, RunContext } from '../backend.js';
import { flashUnsupported } from './portable/flash.js';
import { runBestTier } from './tiers/index.js';
import { naiveUnsupported, runNaive } from './naive/naive.js';
import { type GpuRuntime, getRuntime, peekRuntime } from '../../../engines/webgpu/runtime.js';

/** The device a call runs on: the inputs' device for GPU tensors, else the caller's, else ours. */
function deviceOf(p: AttentionProblem, context: RunContext): GPUDevice | undefined {
  return p.q.tensor.gpu?.device ?? context.device;
}

async function runtimeFor(p: AttentionProblem, context: RunContext): Promise<GpuRuntime> {
  return getRuntime(deviceOf(p, context));
}

export const webgpuBackend: AttentionBackend = {
  name: 'webgpu',
  /**
   * Checked against the device's limits once a device is known; before the first call acquires
   * one, run() checks again and throws UnsupportedError with the same reason.
   */
  unsupported(p: AttentionProblem): string | undefined {
    const runtime = peekRuntime(p.q.tensor.gpu?.device);
    return runtime ? flashUnsupported(p, runtime.limits) : undefined;
  },
  async run(p: AttentionProblem, context: RunContext): Promise<AttentionResult> {
    const runtime = await runtimeFor(p, context);
    return runBestTier(runtime, p);
  },
  async runNaive(p: AttentionProblem, context: RunContext): Promise<AttentionResult> {
    const runtime = await runtimeFor(p, context);
    const reason = naiveUnsupported(p, runtime.limits);
    if (reason) throw new UnsupportedError('options.backend', `WebGPU naive path: ${reason}`);
    const result = await runNaive(runtime, p);
    return { ...result, stats: { launches: 0, intermediateBytes: 0, ...result.stats, backend: 'webgpu', tier: 'naive', threads: 1 } };
  },
};

export { getRuntime, GpuRuntime } from '../../../engines/webgpu/runtime.js';

// for composites: attention straight from packed QKV rows (the fused block's prefill), the
// tensor-core tier's configurations, autotuning
export {
  type BlockFlashTier, type BlockFlashCall, type PackedQkvDims, type PackedQkvGeometry,
  blockFlashPipeline, portableBlockUnsupported, queueBlockFlash, sgMatrixBlockChoice,
} from './packed-qkv.js';
export type { SgMatrixConfig } from './tiers/sgmatrix.js';
export { tuneAttention, setAutotuneMode, autotuneMode, clearAutotuneCache, type AutotuneMode, type TuneResult, type TuneTrial } from './tiers/tune-api.js';
