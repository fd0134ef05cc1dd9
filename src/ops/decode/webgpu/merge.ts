// mergeAttention() on WebGPU: N partials merged pairwise (N - 1 passes of the merge kernel), the
// result left on the GPU.
import { BYTES_PER_ELEMENT } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';
import { operandOf, releaseOperands } from '../../../engines/webgpu/operands.js';
import { type GpuRuntime, defineKernel, getRuntime } from '../../../engines/webgpu/runtime.js';
import type { MergeProblem, MergeResult } from '../merge.js';
import { MERGE_PARAMS, MERGE_WORKGROUP, type MergeKernelOptions, buildMerge } from './combine.wgsl.js';

export const mergeKernel = defineKernel<MergeKernelOptions>('decode-merge', buildMerge);

export async function runMergeWebGpu(p: MergeProblem): Promise<MergeResult> {
  const runtime = await getRuntime(p.outs[0].gpu?.device);
  const onGpu = p.outs[0].location === 'webgpu';
  const [B, Nq, Sq, Dv] = p.dims;
  const elements = B * Nq * Sq * Dv;
  const outBytes = Math.max(4, Math.ceil((elements * BYTES_PER_ELEMENT[p.dtype]) / 4) * 4);
  const lseBytes = Math.max(4, B * Nq * Sq * 4);
  const pipeline = await runtime.pipeline(mergeKernel, { io: p.dtype, bsnd: p.layout === 'BSND' });
  const threads = p.dtype === 'float16' ? Math.ceil(elements / 2) : elements;
  const groups = Math.ceil(threads / MERGE_WORKGROUP);
  const operands = [...p.outs, ...p.lses].map((t, n) => operandOf(runtime, t, `partials[${n % p.outs.length}]`));
  const outs = operands.slice(0, p.outs.length);
  const lses = operands.slice(p.outs.length);
  // pass n merges the running result with partial n + 1 into a fresh buffer
  let acc = { out: outs[0].binding as GPUBufferBinding, outOff: outs[0].elementBase, lse: lses[0].binding as GPUBufferBinding, lseOff: lses[0].elementBase };
  const intermediates: GPUBuffer[] = [];
  try {
    if (p.outs.length === 1) {
      const out = runtime.createBuffer(outBytes, 'merge output');
      const lse = runtime.createBuffer(lseBytes, 'merge lse');
      runtime.copy(acc.out.buffer, (acc.out.offset ?? 0) + acc.outOff * BYTES_PER_ELEMENT[p.dtype], out, 0, outBytes, 'merge copy');
      runtime.copy(acc.lse.buffer, (acc.lse.offset ?? 0) + acc.lseOff * 4, lse, 0, lseBytes, 'merge copy');
      return finish(runtime, p, out, lse, onGpu);
    }
    for (let n = 1; n < p.outs.length; n++) {
      const out = runtime.createBuffer(outBytes, 'merge output');
      const lse = runtime.createBuffer(lseBytes, 'merge lse');
      const params = MERGE_PARAMS.pack({ elements, dim: Dv, heads_q: Nq, tokens: Sq, a_off: acc.outOff, b_off: outs[n].elementBase, la_off: acc.lseOff, lb_off: lses[n].elementBase });
      runtime.dispatch({
        label: 'merge attention',
        pipeline,
        bindGroups: [runtime.bindGroup(pipeline, 0, { 0: runtime.uniform(params, 'merge params'), 1: acc.out, 2: outs[n].binding, 3: acc.lse, 4: lses[n].binding, 5: out, 6: lse })],
        workgroups: runtime.foldedGrid(groups),
      });
      if (n < p.outs.length - 1) intermediates.push(out, lse);
      acc = { out: { buffer: out }, outOff: 0, lse: { buffer: lse }, lseOff: 0 };
    }
    return await finish(runtime, p, acc.out.buffer, acc.lse.buffer, onGpu);
  } finally {
    releaseOperands(runtime, operands);
    // the running results of earlier passes (their work is submitted by the flush above)
    for (const b of intermediates) b.destroy();
  }
}

/** GPU tensors over the result buffers, or (CPU partials) the results read back. */
async function finish(runtime: GpuRuntime, p: MergeProblem, out: GPUBuffer, lse: GPUBuffer, onGpu: boolean): Promise<MergeResult> {
  if (onGpu) {
    await runtime.flush();
    return {
      out: Tensor.fromGpuBuffer({ device: runtime.device, buffer: out, byteOffset: 0 }, p.outShape, p.dtype),
      lse: Tensor.fromGpuBuffer({ device: runtime.device, buffer: lse, byteOffset: 0 }, p.lseShape, 'float32'),
    };
  }
  try {
    const n = p.outShape.reduce((a, b) => a * b, 1);
    const o = await runtime.read(out, 0, Math.ceil((n * BYTES_PER_ELEMENT[p.dtype]) / 4) * 4);
    const l = await runtime.read(lse, 0, p.lseShape.reduce((a, b) => a * b, 1) * 4);
    return {
      out: Tensor.fromData(p.dtype === 'float16' ? new Uint16Array(o, 0, n) : new Float32Array(o, 0, n), p.outShape, p.dtype),
      lse: Tensor.fromData(new Float32Array(l), p.lseShape, 'float32'),
    };
  } finally {
    out.destroy();
    lse.destroy();
  }
}
