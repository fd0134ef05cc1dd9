// The fused block's decode path (S = 1 new token per sequence, with a KV cache): the same three
// steps as the fused path, each shaped for one row per sequence instead of a tile of rows:
//   qkv-gemv        x [B, H] · [Wq; Wk; Wv]ᵀ + b   (the runner's decode GEMV, src/ops/gemm/webgpu/gemv.ts)
//   decode-attention the split-KV kernel in packed mode (src/ops/decode/webgpu/flash-decode.wgsl.ts):
//                   Q and the new K/V read from the packed row with RoPE applied in the kernel, the
//                   new K/V appended to the cache, the G query heads of a KV head sharing each
//                   K/V read; plus a combine pass when the keys are split
//   o-gemv          attn · Woᵀ (+ bo)
// Positions come from the `positions` buffer (u32 [start, rope_base]), so a recorded step replays
// at the next position. Where the path cannot run (head dim not a multiple of 8, more than
// GEMV_MAX_ROWS sequences, cache bindings at offsets not a multiple of 4 floats, x at an offset),
// queueBlockDecode returns false and the block's own kernel runs.
import type { GpuRuntime } from '../../engines/webgpu/runtime.js';
import { GEMV_MAX_ROWS, queueGemv } from '../../ops/gemm/webgpu/index.js';
import { type FlashDecodePlan, flashDecodePlan, queueFlashDecode } from '../../ops/decode/webgpu/index.js';
import type { BlockDims } from '../config.js';
import type { BlockGeometry } from '../shape.js';
import type { GpuLinear } from '../../ops/gemm/webgpu/index.js';
import type { BoundCall } from './io.js';

export interface BlockDecodeTables {
  rope: { buffer: GPUBuffer; rows: number };
  /** u32 [start, rope_base]; default: uploaded from call.start with rope_base 0. */
  positions: GPUBuffer | undefined;
}

/** Fusions at the edges of the block (the model runner's): the input norm, the residual add. */
export interface BlockDecodeFusion {
  /** x is the raw hidden state: RMSNorm(x) * weight is computed inside the qkv GEMV. */
  norm?: { buffer: GPUBuffer; dtype: 'float32' | 'float16'; eps: number };
  /** out += the O projection (out is the residual stream) instead of out = it. */
  accumulate?: boolean;
}

/**
 * The decode path's kernel and split count for this call, or undefined where it does not run.
 * With minWorkgroups <= 0 (the block's "never split") it does not split either.
 */
export function blockDecodePlan(runtime: GpuRuntime, dims: BlockDims, call: BlockGeometry, cache: boolean, minWorkgroups: number): FlashDecodePlan | undefined {
  if (!cache || call.seq !== 1 || call.batch > GEMV_MAX_ROWS) return undefined;
  const plan = flashDecodePlan(runtime, dims.headDim, dims.group, true, call.start + 1, dims.kvHeads, call.batch);
  return plan && minWorkgroups <= 0 ? { ...plan, splits: 1 } : plan;
}

/** Key splits of the decode path (see blockDecodePlan). */
export function blockDecodeSplits(runtime: GpuRuntime, dims: BlockDims, call: BlockGeometry, cache: boolean, minWorkgroups: number): number | undefined {
  return blockDecodePlan(runtime, dims, call, cache, minWorkgroups)?.splits;
}

/** Queues the decode path; false (nothing queued) where it does not apply. */
export async function queueBlockDecode(
  runtime: GpuRuntime, dims: BlockDims, qkvLinear: GpuLinear, oLinear: GpuLinear,
  call: BlockGeometry, bound: BoundCall, tables: BlockDecodeTables, minWorkgroups: number, fusion: BlockDecodeFusion = {},
): Promise<boolean> {
  const plan = blockDecodePlan(runtime, dims, call, bound.keys !== undefined, minWorkgroups);
  const keys = bound.keys;
  const values = bound.values;
  if (!plan || !keys || !values || keys.elementBase % 4 !== 0 || values.elementBase % 4 !== 0) return false;
  if (bound.x.elementBase !== 0 || (bound.x.binding.offset ?? 0) !== 0) return false;
  const { heads: Nq, kvHeads: Nkv, headDim: D, hidden: H } = dims;
  const qd = Nq * D;
  const kvd = Nkv * D;
  const W = qd + 2 * kvd;
  const rows = call.batch;
  const qkv = runtime.acquire(rows * W * 4, 'intermediate', 'packed qkv');
  const attn = runtime.acquire(rows * qd * 4, 'intermediate', 'attention output');
  const bias = (l: GpuLinear) => (l.bias ? { buffer: l.bias, dtype: l.biasDType ?? 'float32' } : undefined);
  try {
    await queueGemv(runtime, {
      x: bound.x.binding.buffer, rows, weight: { buffer: qkvLinear.weight, dtype: qkvLinear.dtype, rows: W, k: H }, out: qkv, bias: bias(qkvLinear),
      norm: fusion.norm, label: fusion.norm ? 'rmsnorm + qkv-gemv' : 'qkv-gemv',
    });
    await queueFlashDecode(runtime, plan.options, {
      q: qkv, keys: keys.binding, values: values.binding, rope: tables.rope, out: attn,
      positions: tables.positions ?? runtime.uploadTransient(new Uint32Array([call.start, 0]), 'block positions'),
      batch: rows, tokens: 1, headsQ: Nq, headsKv: Nkv, qStride: W, kCol: qd, vCol: qd + kvd,
      kcOff: keys.elementBase, vcOff: values.elementBase, scale: dims.scale,
      splits: plan.splits,
      label: 'block decode attention',
    });
    await queueGemv(runtime, {
      x: attn, rows, weight: { buffer: oLinear.weight, dtype: oLinear.dtype, rows: H, k: qd }, out: bound.out, bias: bias(oLinear),
      accumulate: fusion.accumulate, label: fusion.accumulate ? 'o-gemv + residual' : 'o-gemv',
    });
  } finally {
    runtime.release(qkv);
    runtime.release(attn);
  }
  return true;
}
