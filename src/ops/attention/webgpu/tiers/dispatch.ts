// The fast tiers' (subgroup-matrix and subgroup) common binding layout and dispatch: one place, so
// the two kernels and their hosts cannot disagree on a binding number.
import type { AttentionProblem } from '../../problem.js';
import type { AttentionOperands } from '../attention-io.js';
import type { GpuRuntime, Pipeline } from '../../../../engines/webgpu/runtime.js';

/**
 * Binds params (0), the sequence table (1), q, k, v (2-4), out (5), then LSE and the RoPE parts
 * when present (6...), and dispatches `grid`; with nothing to attend to it writes the defined
 * result instead (output 0, LSE -inf).
 */
export function dispatchFastTier(runtime: GpuRuntime, p: AttentionProblem, io: AttentionOperands, kernel: { label: string; pipeline: Pipeline; params: ArrayBuffer; grid: [number, number, number]; extra?: Record<number, GPUBuffer | GPUBufferBinding> }): void {
  const entries: Record<number, GPUBuffer | GPUBufferBinding> = {
    0: runtime.uniform(kernel.params, `${kernel.label} params`),
    1: io.meta,
    2: io.q.binding,
    3: io.k.binding,
    4: io.v.binding,
    5: io.out,
  };
  // the tensor-core tier's score hook binds from 10 on (sgmatrix-score-hook.ts)
  Object.assign(entries, kernel.extra);
  let binding = 6;
  if (io.lse) entries[binding++] = io.lse;
  if (io.qRope) {
    entries[binding++] = io.qRope.binding;
    entries[binding++] = io.kRope!.binding;
  }
  if (p.seqQ > 0 && p.seqK > 0) {
    runtime.dispatch({ label: kernel.label, pipeline: kernel.pipeline, bindGroups: [runtime.bindGroup(kernel.pipeline, 0, entries)], workgroups: kernel.grid });
  } else {
    runtime.clear(io.out);
    if (io.lse) runtime.write(io.lse, 0, new Float32Array(Math.ceil(io.lse.size / 4)).fill(-Infinity));
  }
}
