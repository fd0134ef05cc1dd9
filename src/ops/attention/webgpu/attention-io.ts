// What every WebGPU attention path (flash tiers, naive) does around its kernels: bind the problem's
// tensors, build the per-sequence table, allocate the output and LSE, and hand results back
// either as CPU tensors (read back) or as GPU tensors (left on the device, no readback).
import { BYTES_PER_ELEMENT } from '../../../core/dtype.js';
import { Tensor, numel } from '../../../core/tensor.js';
import type { AttentionProblem } from '../problem.js';
import type { AttentionResult } from '../backend.js';
import { type Operand, bindingBytes, operandOf, releaseOperands } from '../../../engines/webgpu/operands.js';
import { type GpuRuntime } from '../../../engines/webgpu/runtime.js';
import { SCORE_PARAMS, windowParams } from './score.wgsl.js';
import type { ScoreOptions } from './score.wgsl.js';

export interface AttentionOperands {
  q: Operand;
  k: Operand;
  v: Operand;
  qRope: Operand | undefined;
  kRope: Operand | undefined;
  mask: Operand | undefined;
  bias: Operand | undefined;
  /** Per sequence: starts q | starts k | lengths q | lengths k | ALiBi slopes (f32 bits). */
  meta: GPUBuffer;
  out: GPUBuffer;
  lse: GPUBuffer | undefined;
  /** True when inputs are GPU tensors: results stay on the GPU. */
  onGpu: boolean;
}

/** The compile-time score options of a problem. */
export function scoreOptionsOf(p: AttentionProblem): ScoreOptions {
  return {
    mask: p.mask !== undefined,
    bias: p.bias ? (p.bias.tensor.dtype as 'float32' | 'float16') : 'none',
    alibi: p.alibi !== undefined,
    softcap: p.softcap > 0,
    windowed: p.window.left !== Infinity || p.window.right !== Infinity,
    mods: p.mods?.kernel,
  };
}

/** Packed SCORE_PARAMS of a problem, given the bound mask/bias operands. */
export function scoreParamsOf(p: AttentionProblem, mask: Operand | undefined, bias: Operand | undefined): ArrayBuffer {
  const m = p.mask?.strides ?? { b: 0, h: 0, i: 0, j: 0 };
  const s = p.bias?.strides ?? { b: 0, h: 0, i: 0, j: 0 };
  return SCORE_PARAMS.pack({
    mask_strides: [m.b, m.h, m.i, m.j],
    bias_strides: [s.b, s.h, s.i, s.j],
    mask_off: mask?.elementBase ?? 0,
    bias_off: bias?.elementBase ?? 0,
    scale: p.scale,
    softcap: p.softcap,
    ...windowParams(p.window.left, p.window.right),
    bottom_right: p.window.align === 'bottom-right' ? 1 : 0,
    batch: p.batch,
    alibi_stride_b: p.alibi?.strideB ?? 0,
  });
}

export function outputBytes(p: AttentionProblem): number {
  return numel(p.outShape) * BYTES_PER_ELEMENT[p.dtype];
}

export function lseBytes(p: AttentionProblem): number {
  return numel(p.lseShape) * 4;
}

/** Storage bindings each input/output spans, for checking maxStorageBufferBindingSize. */
export function bindingSizes(p: AttentionProblem, offsetAlignment: number): Array<[string, number]> {
  const sizes: Array<[string, number]> = [
    ['query', bindingBytes(p.q.tensor, offsetAlignment)],
    ['key', bindingBytes(p.k.tensor, offsetAlignment)],
    ['value', bindingBytes(p.v.tensor, offsetAlignment)],
    ['output', outputBytes(p)],
  ];
  if (p.qRope) sizes.push(['qRope', bindingBytes(p.qRope.tensor, offsetAlignment)], ['kRope', bindingBytes(p.kRope!.tensor, offsetAlignment)]);
  if (p.mask) sizes.push(['mask', bindingBytes(p.mask.tensor, offsetAlignment)]);
  if (p.bias) sizes.push(['bias', bindingBytes(p.bias.tensor, offsetAlignment)]);
  if (p.returnLse) sizes.push(['lse', lseBytes(p)]);
  return sizes;
}

/** Binds (uploading CPU tensors) every input and allocates the outputs. */
export function bindAttention(runtime: GpuRuntime, p: AttentionProblem): AttentionOperands {
  const onGpu = p.q.tensor.gpu !== undefined;
  const bind = (t: Tensor | undefined, name: string) => (t ? operandOf(runtime, t, name) : undefined);
  const outBytes = outputBytes(p);
  const alloc = (bytes: number, label: string) => (onGpu ? runtime.createBuffer(bytes, label) : runtime.acquire(bytes, 'output', label));
  return {
    q: operandOf(runtime, p.q.tensor, 'query'),
    k: operandOf(runtime, p.k.tensor, 'key'),
    v: operandOf(runtime, p.v.tensor, 'value'),
    qRope: bind(p.qRope?.tensor, 'qRope'),
    kRope: bind(p.kRope?.tensor, 'kRope'),
    mask: bind(p.mask?.tensor, 'mask'),
    bias: bind(p.bias?.tensor, 'bias'),
    meta: runtime.uploadTransient(sequenceTable(p), 'sequences'),
    out: alloc(Math.max(4, outBytes), 'attention output'),
    lse: p.returnLse ? alloc(Math.max(4, lseBytes(p)), 'attention lse') : undefined,
    onGpu,
  };
}

/** Reads results back (CPU inputs) or wraps the output buffers as GPU tensors; frees the rest. */
export async function finishAttention(runtime: GpuRuntime, p: AttentionProblem, io: AttentionOperands): Promise<Pick<AttentionResult, 'out' | 'lse'>> {
  releaseOperands(runtime, [io.q, io.k, io.v, io.qRope, io.kRope, io.mask, io.bias]);
  if (io.onGpu) {
    await runtime.flush();
    const device = runtime.device;
    const out = Tensor.fromGpuBuffer({ device, buffer: io.out, byteOffset: 0 }, p.outShape, p.dtype);
    const lse = io.lse ? Tensor.fromGpuBuffer({ device, buffer: io.lse, byteOffset: 0 }, p.lseShape, 'float32') : undefined;
    return { out, lse };
  }
  try {
    const outData = await runtime.read(io.out, 0, outputBytes(p));
    const out = Tensor.fromData(p.dtype === 'float16' ? new Uint16Array(outData) : new Float32Array(outData), p.outShape, p.dtype);
    let lse: Tensor | undefined;
    if (io.lse) lse = Tensor.fromData(new Float32Array(await runtime.read(io.lse, 0, lseBytes(p))), p.lseShape, 'float32');
    return { out, lse };
  } finally {
    runtime.release(io.out);
    runtime.release(io.lse);
  }
}

/**
 * Binds the problem's tensors, lets `queue` record its kernels on them, and releases everything
 * bound if it fails; returns what finishAttention needs.
 */
export async function bindAndQueue(runtime: GpuRuntime, p: AttentionProblem, queue: (io: AttentionOperands) => Promise<void> | void): Promise<AttentionOperands> {
  const io = bindAttention(runtime, p);
  try {
    await queue(io);
  } catch (e) {
    abandonAttention(runtime, io);
    throw e;
  }
  return io;
}

/**
 * bindAndQueue, then finishAttention, reporting the dispatches made and the peak of intermediate
 * bytes meanwhile: the RunStats of every WebGPU attention path.
 */
export async function measuredAttention(runtime: GpuRuntime, p: AttentionProblem, queue: (io: AttentionOperands) => Promise<void> | void): Promise<AttentionResult> {
  const dispatchesBefore = runtime.counters.dispatches;
  const meter = runtime.meter();
  try {
    const io = await bindAndQueue(runtime, p, queue);
    const result = await finishAttention(runtime, p, io);
    return { ...result, stats: { launches: runtime.counters.dispatches - dispatchesBefore, intermediateBytes: meter.peakIntermediateBytes } };
  } finally {
    meter.stop();
  }
}

/** Releases everything bound, after a failure. */
export function abandonAttention(runtime: GpuRuntime, io: AttentionOperands): void {
  releaseOperands(runtime, [io.q, io.k, io.v, io.qRope, io.kRope, io.mask, io.bias]);
  if (io.onGpu) {
    io.out.destroy();
    io.lse?.destroy();
  } else {
    runtime.release(io.out);
    runtime.release(io.lse);
  }
}

/** starts q | starts k | lengths q | lengths k | ALiBi slopes, as u32 (slopes as f32 bits). */
function sequenceTable(p: AttentionProblem): Uint32Array {
  const nb = p.batch;
  const slopes = p.alibi ? p.alibi.tensor.toFloat32() : new Float32Array(0);
  const table = new Uint32Array(4 * nb + slopes.length);
  table.set(p.seqStartsQ, 0);
  table.set(p.seqStartsK, nb);
  table.set(p.seqLensQ, 2 * nb);
  table.set(p.seqLensK, 3 * nb);
  new Float32Array(table.buffer, 4 * 4 * nb, slopes.length).set(slopes);
  return table;
}
