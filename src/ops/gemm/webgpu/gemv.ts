// Host side of the decode GEMV (gemv.wgsl.ts): picks the kernel's options for a call and queues it
// on the GpuRuntime (recorded, not submitted, like every op).
import type { FloatDType } from '../../../engines/webgpu/wgsl.js';
import { type GpuRuntime, defineKernel } from '../../../engines/webgpu/runtime.js';
import { GEMV_BINDINGS, GEMV_MAX_ROWS, GEMV_PARAMS, type GemvOptions, buildGemv, gemvThreadsPerColumn } from './gemv.wgsl.js';

export { GEMV_MAX_ROWS };

export const gemvKernel = defineKernel<GemvOptions>('model-gemv', buildGemv);

/** A weight (or one part of one) as the GEMV reads it: `rows` rows of `k` elements. */
export interface GemvWeight {
  buffer: GPUBuffer;
  dtype: FloatDType;
  rows: number;
  k: number;
}

export interface GemvCall {
  x: GPUBuffer;
  /** Floats per row of x (default k). */
  xStride?: number;
  /** Rows of x, 1 .. GEMV_MAX_ROWS. */
  rows: number;
  weight: GemvWeight;
  out: GPUBuffer;
  /** Floats per row of out (default weight.rows). */
  outStride?: number;
  /** Column of out that weight row 0 writes (a weight part's first row). */
  outCol?: number;
  /** Indexed by output column (outCol + n). */
  bias?: { buffer: GPUBuffer; dtype: FloatDType };
  /** out += result instead of out = result. */
  accumulate?: boolean;
  /** SwiGLU: out = silu(x Wᵀ + b) * (x W2ᵀ + b2), W2 the same shape and dtype as W. */
  pair?: { weight: GPUBuffer; bias?: GPUBuffer };
  /** RMSNorm of each row of x (weight [k], eps) before the projection. */
  norm?: { buffer: GPUBuffer; dtype: FloatDType; eps: number };
  label: string;
}

/** The largest power-of-two workgroup up to 256 this device runs. */
export function gemvWorkgroupSize(runtime: GpuRuntime): number {
  const max = Math.min(256, runtime.limits.maxComputeInvocationsPerWorkgroup, runtime.limits.maxComputeWorkgroupSizeX);
  let wg = 32;
  while (wg * 2 <= max) wg *= 2;
  return wg;
}

export function gemvOptions(runtime: GpuRuntime, call: Pick<GemvCall, 'rows' | 'weight' | 'xStride' | 'bias' | 'accumulate' | 'pair' | 'norm'>): GemvOptions {
  const { dtype, k } = call.weight;
  const vec = k % (dtype === 'float16' ? 8 : 4) === 0 && (call.xStride ?? k) % 4 === 0;
  const workgroupSize = gemvWorkgroupSize(runtime);
  return {
    weight: dtype,
    rows: call.rows,
    threadsPerColumn: gemvThreadsPerColumn(k, dtype, vec, workgroupSize),
    workgroupSize,
    bias: call.bias?.dtype ?? 'none',
    accumulate: call.accumulate ?? false,
    pair: call.pair !== undefined,
    vec,
    ...(call.norm ? { norm: call.norm.dtype } : {}),
  };
}

export async function queueGemv(runtime: GpuRuntime, call: GemvCall): Promise<void> {
  if (call.rows < 1 || call.rows > GEMV_MAX_ROWS) throw new Error(`queueGemv: ${call.rows} rows (1..${GEMV_MAX_ROWS})`);
  const options = gemvOptions(runtime, call);
  const pipeline = await runtime.pipeline(gemvKernel, options);
  const B = GEMV_BINDINGS;
  const { weight } = call;
  const entries: Record<number, GPUBuffer> = {
    [B.params]: runtime.uniform(GEMV_PARAMS.pack({
      n: weight.rows, k: weight.k, x_stride: call.xStride ?? weight.k, out_stride: call.outStride ?? weight.rows, out_col: call.outCol ?? 0,
      eps: call.norm?.eps ?? 0,
    }), `${call.label} params`),
    [B.x]: call.x,
    [B.w]: weight.buffer,
    [B.out]: call.out,
  };
  if (call.bias) entries[B.bias] = call.bias.buffer;
  if (call.norm) entries[B.norm] = call.norm.buffer;
  if (call.pair) {
    entries[B.w2] = call.pair.weight;
    if (call.pair.bias) entries[B.bias2] = call.pair.bias;
  }
  const groups = Math.ceil(weight.rows / (options.workgroupSize / options.threadsPerColumn));
  runtime.dispatch({ label: call.label, pipeline, bindGroups: [runtime.bindGroup(pipeline, 0, entries)], workgroups: runtime.foldedGrid(groups) });
}
