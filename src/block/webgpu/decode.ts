// The fused block's decode path (S = 1 new token per sequence, with a KV cache): the same three
// steps as the fused path, each shaped for one row per sequence instead of a tile of rows:
//   qkv-gemv         x [B, H] · [Wq; Wk; Wv]ᵀ + b   (the runner's decode GEMV, src/ops/gemm/webgpu/gemv.ts)
//   decode-attention the decode op (src/ops/decode, queueAttentionDecode): Q and the new K/V read
//                    from the packed row with RoPE applied in the kernel, the new K/V stored into
//                    the cache by the kernel, the G query heads of a KV head sharing each K/V read;
//                    plus a combine pass when the keys are split
//   o-gemv           attn · Woᵀ (+ bo)
// The cache is the block's own [capacity, B, Nkv*D] float32 one (positions from the `positions`
// buffer u32 [start, rope_base]), or the runner's paged cache (lengths and block table from its
// buffer, any storage dtype). Either way a recorded step replays at the next position. Where the
// path cannot run (head dim not a multiple of 8, more than GEMV_MAX_ROWS sequences, cache
// bindings at offsets the kernel cannot take, x at an offset), queueBlockDecode returns false and
// the block's own kernel runs.
import type { GpuRuntime } from '../../engines/webgpu/runtime.js';
import { GEMV_MAX_ROWS, queueGemv } from '../../ops/gemm/webgpu/index.js';
import { type DecodePlan, type GpuCacheTensor, type GpuDecodeCall, decodePlanDevice, planDecode, prepareDecode, queueAttentionDecode } from '../../ops/decode/webgpu/index.js';
import type { CacheDType } from '../../ops/decode/index.js';
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
 * A cache other than the block's SBH one, as the decode op reads it (the runner's paged cache):
 * pools, page geometry and the u32 table with lengths (before this step), block table and the
 * RoPE table's first position.
 */
export interface BlockDecodeCache {
  dtype: CacheDType;
  keys: GpuCacheTensor;
  values: GpuCacheTensor;
  kScales?: GpuCacheTensor;
  vScales?: GpuCacheTensor;
  paged: boolean;
  pageSize: number;
  maxPages: number;
  numPages: number;
  meta: GpuDecodeCall['meta'];
  /** Most visible keys of any sequence after this step (for the split count). */
  maxKeys: number;
}

/**
 * The decode path's plan for this call, or undefined where it does not run. With
 * minWorkgroups <= 0 (the block's "never split") it does not split either.
 */
export function blockDecodePlan(runtime: GpuRuntime, dims: BlockDims, call: BlockGeometry, cache: boolean | BlockDecodeCache, minWorkgroups: number): DecodePlan | undefined {
  if (!cache || call.seq !== 1 || call.batch > GEMV_MAX_ROWS) return undefined;
  const c = typeof cache === 'object' ? cache : undefined;
  const plan = planDecode({
    dimQK: dims.headDim, dimV: dims.headDim, group: dims.group, headsKv: dims.kvHeads, batch: call.batch, tokens: 1,
    maxKeys: c?.maxKeys ?? call.start + 1, cache: c?.dtype ?? 'float32', io: 'float32', paged: c?.paged ?? false, sharedKV: false,
    append: true, rope: true, softcap: false, alibi: false, lse: false,
  }, runtime.limits, minWorkgroups <= 0 ? 1 : undefined, decodePlanDevice(runtime));
  return typeof plan === 'string' ? undefined : plan;
}

/** Key splits of the decode path (see blockDecodePlan). */
export function blockDecodeSplits(runtime: GpuRuntime, dims: BlockDims, call: BlockGeometry, cache: boolean, minWorkgroups: number): number | undefined {
  return blockDecodePlan(runtime, dims, call, cache, minWorkgroups)?.splits;
}

/** Queues the decode path; false (nothing queued) where it does not apply. */
export async function queueBlockDecode(
  runtime: GpuRuntime, dims: BlockDims, qkvLinear: GpuLinear, oLinear: GpuLinear,
  call: BlockGeometry, bound: BoundCall, tables: BlockDecodeTables, minWorkgroups: number, fusion: BlockDecodeFusion = {},
  paged?: BlockDecodeCache,
): Promise<boolean> {
  const { heads: Nq, kvHeads: Nkv, headDim: D, hidden: H } = dims;
  const qd = Nq * D;
  const kvd = Nkv * D;
  const W = qd + 2 * kvd;
  const rows = call.batch;
  let cache = paged;
  if (!cache) {
    // the block's own cache: [capacity, B, Nkv * D], one length (positions[0]) for every sequence
    const keys = bound.keys;
    const values = bound.values;
    if (!keys || !values || keys.elementBase % 4 !== 0 || values.elementBase % 4 !== 0) return false;
    const sbh = (o: typeof keys): GpuCacheTensor => ({ binding: o.binding, off: o.elementBase, sp: kvd, sh: D, spos: rows * kvd });
    const positions = tables.positions ?? runtime.uploadTransient(new Uint32Array([call.start, 0]), 'block positions');
    cache = {
      dtype: 'float32', keys: sbh(keys), values: sbh(values), paged: false, pageSize: 0, maxPages: 1, numPages: rows, // unpaged: positions index the cache directly
      meta: { binding: positions, lengthsAt: 0, lengthsStride: 0, ropeBaseAt: 1 }, maxKeys: call.start + 1,
    };
  }
  const plan = blockDecodePlan(runtime, dims, call, cache, minWorkgroups);
  if (!plan) return false;
  if (bound.x.elementBase !== 0 || (bound.x.binding.offset ?? 0) !== 0) return false;
  await prepareDecode(runtime, plan, false);
  const qkv = runtime.acquire(rows * W * 4, 'intermediate', 'packed qkv');
  const attn = runtime.acquire(rows * qd * 4, 'intermediate', 'attention output');
  const bias = (l: GpuLinear) => (l.bias ? { buffer: l.bias, dtype: l.biasDType ?? 'float32' } : undefined);
  try {
    await queueGemv(runtime, {
      x: bound.x.binding.buffer, rows, weight: { buffer: qkvLinear.weight, dtype: qkvLinear.dtype, rows: W, k: H }, out: qkv, bias: bias(qkvLinear),
      norm: fusion.norm, label: fusion.norm ? 'rmsnorm + qkv-gemv' : 'qkv-gemv',
    });
    // packed rows: row b holds Q | K | V; one new token per sequence
    const packed = (col: number) => ({ off: col, sb: W, sh: D, si: rows * W });
    await queueAttentionDecode(runtime, plan, {
      batch: rows, tokens: 1, headsQ: Nq, headsKv: Nkv,
      q: { binding: qkv, ...packed(0) },
      keys: cache.keys, values: cache.values, kScales: cache.kScales, vScales: cache.vScales,
      pageSize: cache.pageSize, maxPages: cache.maxPages, numPages: cache.numPages, meta: cache.meta,
      append: { binding: qkv, k: packed(qd), v: packed(qd + kvd) },
      rope: tables.rope,
      out: { binding: attn, off: 0, sb: qd, sh: D, si: rows * qd },
      scale: dims.scale, softcap: 0, window: { left: Infinity, right: Infinity, align: 'bottom-right' },
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
