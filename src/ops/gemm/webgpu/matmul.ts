// Host side of the strided batched matmul (see matmul.wgsl.ts for the exact semantics).
import { UnsupportedError } from '../../../core/errors.js';
import { type BindingResource, type GpuRuntime, type Pipeline, defineKernel } from '../../../engines/webgpu/runtime.js';
import { MATMUL_BINDINGS, MATMUL_PARAMS, MATMUL_TILE, type MatmulOptions, buildMatmul } from './matmul.wgsl.js';

export const matmulKernel = defineKernel<MatmulOptions>('matmul', (o) => buildMatmul(o));

/** A matrix operand: where it is bound, its element offset and (outer, inner, row, col) strides. */
export interface MatrixOperand {
  binding: BindingResource;
  offset: number;
  strides: readonly [number, number, number, number];
}

export interface MatmulCall {
  options: MatmulOptions;
  a: MatrixOperand;
  b: MatrixOperand;
  c: MatrixOperand;
  /** Second operand pair along K (options.splitK). */
  a2?: MatrixOperand;
  b2?: MatrixOperand;
  /** Largest M, N, K over the batch (ragged tables may shorten them per outer batch). */
  m: number;
  n: number;
  k: number;
  k2?: number;
  outer: number;
  inner: number;
  /** Inner index divisor for B (GQA); default 1. */
  bGroup?: number;
  /** Multiplies the product before the epilogue; default 1. */
  alpha?: number;
  /** options.ragged: u32 table row starts A | row starts B | row starts C | M | rows of B, each `outer` long. */
  ragged?: GPUBuffer;
  label?: string;
  /** Output tile of the pipeline's kernel (matmul-sgmat.wgsl.ts); default MATMUL_TILE. */
  tile?: { m: number; n: number };
}

export function matmulGrid(call: MatmulCall): [number, number, number] {
  const tile = call.tile ?? MATMUL_TILE;
  return [Math.ceil(call.n / tile.n), Math.ceil(call.m / tile.m), call.outer * call.inner];
}

/** Why this matmul cannot be dispatched on a device with `limits`, or undefined. */
export function matmulUnsupported(call: Pick<MatmulCall, 'm' | 'n' | 'outer' | 'inner' | 'tile'>, limits: Pick<GPUSupportedLimits, 'maxComputeWorkgroupsPerDimension'>): string | undefined {
  const grid = matmulGrid(call as MatmulCall);
  const names = ['column tiles', 'row tiles', 'batch x heads'];
  const over = grid.findIndex((n) => n > limits.maxComputeWorkgroupsPerDimension);
  return over >= 0 ? `a matmul needs ${grid[over]} workgroups along ${names[over]} but maxComputeWorkgroupsPerDimension is ${limits.maxComputeWorkgroupsPerDimension}` : undefined;
}

/**
 * Queues one matmul with `pipeline` (the plain matmulKernel or a kernel that composes
 * buildMatmul with an epilogue, whose @group(1) entries are `epilogueEntries`).
 */
export function dispatchMatmul(runtime: GpuRuntime, pipeline: Pipeline, call: MatmulCall, epilogueEntries?: Readonly<Record<number, BindingResource>>): void {
  const o = call.options;
  if (o.splitK !== (call.a2 !== undefined && call.b2 !== undefined)) throw new Error('dispatchMatmul: options.splitK needs a2 and b2 (and only then)');
  if (o.ragged !== (call.ragged !== undefined)) throw new Error('dispatchMatmul: options.ragged needs the ragged table (and only then)');
  const reason = matmulUnsupported(call, runtime.limits);
  if (reason) throw new UnsupportedError('matmul', reason);
  const zero = [0, 0, 0, 0] as const;
  const params = MATMUL_PARAMS.pack({
    a_strides: call.a.strides,
    b_strides: call.b.strides,
    c_strides: call.c.strides,
    a2_strides: call.a2?.strides ?? zero,
    b2_strides: call.b2?.strides ?? zero,
    a_off: call.a.offset,
    b_off: call.b.offset,
    c_off: call.c.offset,
    a2_off: call.a2?.offset ?? 0,
    b2_off: call.b2?.offset ?? 0,
    m: call.m,
    n: call.n,
    k: call.k,
    k2: call.k2 ?? 0,
    inner: call.inner,
    outer: call.outer,
    b_group: call.bGroup ?? 1,
    alpha: call.alpha ?? 1,
  });
  const B = MATMUL_BINDINGS;
  const entries: Record<number, BindingResource> = {
    [B.params]: runtime.uniform(params, 'matmul params'),
    [B.a]: call.a.binding,
    [B.b]: call.b.binding,
    [B.c]: call.c.binding,
  };
  if (call.ragged) entries[B.ragged] = call.ragged;
  if (call.a2 && call.b2) {
    entries[B.a2] = call.a2.binding;
    entries[B.b2] = call.b2.binding;
  }
  const groups = [runtime.bindGroup(pipeline, 0, entries)];
  if (epilogueEntries) groups.push(runtime.bindGroup(pipeline, 1, epilogueEntries));
  if (o.out === 'float16') {
    // halves are OR-ed in: start from zero
    const c = call.c.binding;
    if ('buffer' in c && (c as GPUBufferBinding).buffer) {
      const bb = c as GPUBufferBinding;
      runtime.clear(bb.buffer, bb.offset ?? 0, bb.size ?? bb.buffer.size - (bb.offset ?? 0));
    } else runtime.clear(c as GPUBuffer);
  }
  runtime.dispatch({ label: call.label ?? 'matmul', pipeline, bindGroups: groups, workgroups: matmulGrid(call) });
}

/** The plain matmul (no epilogue): compiles or reuses the pipeline, then queues it. */
export async function runMatmul(runtime: GpuRuntime, call: MatmulCall): Promise<void> {
  const pipeline = await runtime.pipeline(matmulKernel, call.options);
  dispatchMatmul(runtime, pipeline, call);
}
