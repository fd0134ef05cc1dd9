// Around every GPU block call: bind the hidden states and the cache (uploading CPU tensors),
// allocate the output, count what the call queued, and hand the result back on the input's device.
import { Tensor } from '../../core/tensor.js';
import { type Operand, operandOf, releaseOperands } from '../../engines/webgpu/operands.js';
import type { GpuCommand, GpuRuntime } from '../../engines/webgpu/runtime.js';
import { withSpan } from '../../profiler/spans.js';
import type { BlockCall } from '../shape.js';
import type { BlockPath, BlockResult } from '../stats.js';

export interface BoundCall {
  x: Operand;
  keys: Operand | undefined;
  values: Operand | undefined;
  /** [rows, H] float32. */
  out: GPUBuffer;
}

/**
 * Runs `queue` (which queues the call's commands) with bindings ready, then returns the output as a
 * GPU tensor (GPU input) or reads it back (CPU input; a CPU cache is updated with the new rows).
 */
export async function runBlockCall(
  runtime: GpuRuntime, path: BlockPath, call: BlockCall, hidden: number,
  queue: (bound: BoundCall) => Promise<void>,
): Promise<BlockResult> {
  return withSpan(runtime, `${path}-block`, async () => {
    const kernels: string[] = [];
    const detach = runtime.observe({ queued: (c: GpuCommand) => { if (c.kind === 'dispatch') kernels.push(c.label); } });
    const before = { dispatches: runtime.counters.dispatches, submits: runtime.counters.submits };
    const meter = runtime.meter();
    const onGpu = call.x.location === 'webgpu';
    const outBytes = call.rows * hidden * 4;
    const bound: BoundCall = {
      x: operandOf(runtime, call.x, 'hidden'),
      keys: call.cacheKeys ? operandOf(runtime, call.cacheKeys, 'cache keys') : undefined,
      values: call.cacheValues ? operandOf(runtime, call.cacheValues, 'cache values') : undefined,
      out: onGpu ? runtime.createBuffer(outBytes, 'block output') : runtime.acquire(outBytes, 'output', 'block output'),
    };
    try {
      await queue(bound);
      let out: Tensor;
      if (onGpu) {
        await runtime.flush();
        out = Tensor.fromGpuBuffer({ device: runtime.device, buffer: bound.out, byteOffset: 0 }, call.x.shape, 'float32');
      } else {
        out = Tensor.fromData(new Float32Array(await runtime.read(bound.out, 0, outBytes)), call.x.shape, 'float32');
        await readBackCache(runtime, call, bound);
      }
      return {
        out,
        stats: {
          path,
          backend: 'webgpu',
          dispatches: runtime.counters.dispatches - before.dispatches,
          submits: runtime.counters.submits - before.submits,
          intermediateBytes: meter.peakIntermediateBytes,
          kernels,
        },
      };
    } catch (e) {
      if (onGpu) bound.out.destroy();
      throw e;
    } finally {
      if (!onGpu) runtime.release(bound.out);
      releaseOperands(runtime, [bound.x, bound.keys, bound.values]);
      meter.stop();
      detach();
    }
  });
}

/** A CPU cache given to the GPU path was uploaded: copy the rows the call wrote back into it. */
async function readBackCache(runtime: GpuRuntime, call: BlockCall, bound: BoundCall): Promise<void> {
  if (!call.cacheKeys || !bound.keys?.uploaded || !bound.values?.uploaded) return;
  const rowFloats = call.cacheKeys.shape[1] * call.cacheKeys.shape[2];
  const first = call.start * rowFloats;
  const count = call.seq * rowFloats;
  for (const [tensor, operand] of [[call.cacheKeys, bound.keys], [call.cacheValues!, bound.values]] as const) {
    const rows = new Float32Array(await runtime.read(operand.uploaded!, 4 * first, 4 * count));
    (tensor.data as Float32Array).set(rows, first);
  }
}
