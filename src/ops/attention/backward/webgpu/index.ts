// The WebGPU attention backward: tiers best first, each saying why it cannot take a problem (the
// next one then runs, never a silently wrong result). Today: the portable f32 tier (any adapter);
// tiers.ts holds the chooser and the tensor-core tier's slot. runNaive: the unfused baseline (naive.ts).
import { Tensor } from '../../../../core/tensor.js';
import { sinkGradTensor } from '../sink.js';
import { getRuntime, peekRuntime } from '../../../../engines/webgpu/runtime.js';
import type { BackwardBackend } from '../backend.js';
import type { BackwardProblem } from '../problem.js';
import { chooseBackwardTier } from './tiers.js';
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
    const grads = await chooseBackwardTier(bp, runtime).tier.run(runtime, bp);
    if (!bp.sinkGrad) return grads;
    // dSink is a small host reduction over out, dO and the LSE (sink.ts), read back when on the GPU
    const values = async (t: Tensor) => {
      if (!t.gpu) return t.toFloat32();
      // copies run in whole 4-byte words: a float16 tensor may start or end mid-word
      const width = t.dtype === 'float16' ? 2 : 4;
      const start = Math.floor(t.gpu.byteOffset / 4) * 4;
      const end = Math.ceil((t.gpu.byteOffset + t.size * width) / 4) * 4;
      const bytes = await runtime.read(t.gpu.buffer, start, end - start);
      const skip = (t.gpu.byteOffset - start) / width;
      const data = width === 2 ? new Uint16Array(bytes, 2 * skip, t.size) : new Float32Array(bytes, 0, t.size);
      return Tensor.fromData(data, t.shape, t.dtype).toFloat32();
    };
    return { ...grads, dSink: await sinkGradTensor(bp, values) };
  },
  async runNaive(bp, context) {
    return runNaiveBackward(await getRuntime(bp.forward.q.tensor.gpu?.device ?? context.device), bp);
  },
};
