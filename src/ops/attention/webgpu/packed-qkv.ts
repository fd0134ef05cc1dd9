// Attention straight from packed QKV rows (the output of one [Wq; Wk; Wv] GEMM) on the flash tiers:
// the tensor-core kernel (tiers/flash-sgmatrix-wgsl.ts) on a float16 packed buffer, else the
// portable f32 kernel (portable/flash.wgsl.ts) on a float32 one; both through their "block source"
// option: Q/K/V read from the packed rows by stride, RoPE applied while staging, a KV cache read
// below `start` and appended (FlashAttention's flash_attn_with_kvcache). One dispatch, causal
// (bottom-right). The fused attention block's prefill runs on it (src/block/webgpu/block.ts).
//
//   qkv   [rows, W], row r = b*rowStrideB + s*rowStrideS, columns Q (Nq D) | K (Nkv D) | V (Nkv D)
//   out   [rows, Nq D], same row order
import type { Operand } from '../../../engines/webgpu/operands.js';
import { type GpuRuntime, defineKernel } from '../../../engines/webgpu/runtime.js';
import { SCORE_PARAMS, windowParams } from './score.wgsl.js';
import { FLASH_BINDINGS, FLASH_PARAMS, type FlashOptions, buildFlash } from './portable/flash.wgsl.js';
import { tileForDims } from './portable/flash.js';
import { PORTABLE_BLOCK_BINDINGS } from './portable/flash-block.wgsl.js';
import { FLASH_BLOCK_BINDINGS, FLASH_BLOCK_PARAMS } from './tiers/flash-block-source.js';
import { UNBOUNDED, packParamFields } from './tiers/flash-params.js';
import { type SgMatrixKernelOptions, buildFlashSgMatrix, sgMatrixOptionsProblem, sgMatrixWorkgroupBytes } from './tiers/flash-sgmatrix-wgsl.js';
import { SG_MATRIX_CONFIGS, type SgMatrixConfig, sgMatrixAdapterUnsupported } from './tiers/sgmatrix.js';

/** 'sgmatrix': float16 QKV and output; 'portable': float32. */
export type BlockFlashTier = 'sgmatrix' | 'portable';

/** The heads of the packed rows (the fused block's PackedQkvDims satisfies it). */
export interface PackedQkvDims {
  heads: number;
  kvHeads: number;
  headDim: number;
  /** heads / kvHeads. */
  group: number;
  scale: number;
}

/** Where the rows of a call are (the fused block's BlockGeometry satisfies it). */
export interface PackedQkvGeometry {
  batch: number;
  /** New tokens per sequence. */
  seq: number;
  /** Row index of (b, s) = b * rowStrideB + s * rowStrideS. */
  rowStrideB: number;
  rowStrideS: number;
}

const sgMatrixBlockKernel = defineKernel<SgMatrixKernelOptions>('flash-sgmatrix-block', buildFlashSgMatrix);
const portableBlockKernel = defineKernel<FlashOptions>('flash-portable-block', buildFlash);

export interface BlockFlashCall {
  geometry: PackedQkvGeometry;
  /** Packed rows [rows, W]: float16 for 'sgmatrix', float32 for 'portable'. */
  qkv: GPUBuffer;
  /** [rows, Nq D], same dtype as qkv. */
  out: GPUBuffer;
  rope: { buffer: GPUBuffer; rows: number };
  /** u32 [start, rope_base]. */
  positions: GPUBuffer;
  keys?: Operand;
  values?: Operand;
}

/** Kernel options of the tensor-core kernel for the block, or why it cannot take these dims. */
export function sgMatrixBlockOptions(dims: PackedQkvDims, cache: boolean, config: SgMatrixConfig): SgMatrixKernelOptions | string {
  if (config.rowsPerSubgroup === 32) return 'the 32-row kernel has no block source';
  if (config.qPasses) return 'Q in passes stages Q with the plain copies, not the block source';
  let headsPerTile = Math.min(config.headsPerTile, dims.group, config.subgroups);
  while (dims.group % headsPerTile !== 0 || config.subgroups % headsPerTile !== 0) headsPerTile--;
  const o: SgMatrixKernelOptions = {
    dimQK: dims.headDim, dimRope: 0, dimV: dims.headDim,
    subgroups: config.subgroups, blockKeys: config.blockKeys, headsPerTile, sharedKV: config.sharedKV,
    vectorLoads: true, rescaleThreshold: 8, causalOrWindow: true, softcap: false, alibi: false, returnLse: false,
    rowPad: 8, smemVec4: config.smemVec4, prefetch: config.prefetch, unrolled: false,
    block: { cache },
  };
  if (o.prefetch && sgMatrixOptionsProblem(o) !== undefined) o.prefetch = false;
  return sgMatrixOptionsProblem(o) ?? o;
}

/**
 * Why the tensor-core tier cannot run the block's attention on this runtime (undefined: it can),
 * with the configuration it would use.
 */
export function sgMatrixBlockChoice(runtime: GpuRuntime, dims: PackedQkvDims, cache: boolean, cacheOffsets: readonly number[], preferred?: SgMatrixConfig): { config: SgMatrixConfig; options: SgMatrixKernelOptions } | string {
  const adapter = sgMatrixAdapterUnsupported(runtime);
  if (adapter) return adapter;
  if (dims.headDim % 16 !== 0 || dims.headDim > 256) return `the block source needs a head dim that is a multiple of 16 up to 256, got ${dims.headDim}`;
  if (cacheOffsets.some((o) => o % 4 !== 0)) return 'the KV cache must start on a 16-byte boundary of its binding';
  let why = 'no configuration fits the workgroup memory';
  for (const config of preferred ? [preferred, ...SG_MATRIX_CONFIGS] : SG_MATRIX_CONFIGS) {
    const options = sgMatrixBlockOptions(dims, cache, config);
    if (typeof options === 'string') why = options;
    else if (sgMatrixWorkgroupBytes(options) <= runtime.limits.maxComputeWorkgroupStorageSize) return { config, options };
  }
  return why;
}

function portableBlockOptions(runtime: GpuRuntime, dims: PackedQkvDims, cache: boolean, cacheOffsets: readonly number[]): FlashOptions | undefined {
  const D = dims.headDim;
  const tile = tileForDims({ dimQK: D, dimRope: 0, dimV: D }, runtime.limits);
  if (!tile) return undefined;
  return {
    mask: false, bias: 'none', alibi: false, softcap: false, windowed: true,
    dtype: 'float32', dimQK: D, dimRope: 0, dimV: D, tile, returnLse: false,
    // quads: RoPE partners are whole quads (D % 8) and the caches start on quads
    quadLoads: D % 8 === 0 && cacheOffsets.every((o) => o % 4 === 0),
    block: { cache },
  };
}

/** Why the portable tier cannot run the block's attention (undefined: it can). */
export function portableBlockUnsupported(runtime: GpuRuntime, dims: PackedQkvDims): string | undefined {
  if (!portableBlockOptions(runtime, dims, false, [])) return `head dim ${dims.headDim} does not fit the portable flash kernel's smallest tile in ${runtime.limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory`;
  if (runtime.limits.maxStorageBuffersPerShaderStage < 6) return 'the portable flash kernel binds 6 storage buffers with a cache';
  return undefined;
}

/** Compiles the pipeline `tier` would use (so a first call inside a scope does not compile). */
export async function blockFlashPipeline(runtime: GpuRuntime, dims: PackedQkvDims, tier: BlockFlashTier, cache: boolean, config?: SgMatrixConfig): Promise<void> {
  if (tier === 'sgmatrix') {
    const choice = sgMatrixBlockChoice(runtime, dims, cache, [0, 0], config);
    if (typeof choice !== 'string') await runtime.pipeline(sgMatrixBlockKernel, choice.options);
    return;
  }
  const options = portableBlockOptions(runtime, dims, cache, [0, 0]);
  if (options) await runtime.pipeline(portableBlockKernel, options);
}

/** Queues the block's attention (one dispatch) on `tier`. */
export async function queueBlockFlash(runtime: GpuRuntime, dims: PackedQkvDims, tier: BlockFlashTier, call: BlockFlashCall, config?: SgMatrixConfig): Promise<void> {
  const g = call.geometry;
  const { heads: Nq, kvHeads: Nkv, headDim: D, group } = dims;
  const qd = Nq * D;
  const kvd = Nkv * D;
  const W = qd + 2 * kvd;
  const cache = call.keys !== undefined && call.values !== undefined;
  const offsets = [call.keys?.elementBase ?? 0, call.values?.elementBase ?? 0];
  const blockParams = FLASH_BLOCK_PARAMS.pack({ seq: g.seq, kv_width: kvd, kc_off: offsets[0], vc_off: offsets[1], rope_rows: call.rope.rows });
  if (tier === 'sgmatrix') {
    const choice = sgMatrixBlockChoice(runtime, dims, cache, offsets, config);
    if (typeof choice === 'string') throw new Error(`queueBlockFlash: ${choice}`);
    const o = choice.options;
    const pipeline = await runtime.pipeline(sgMatrixBlockKernel, o);
    const rowsPerHead = (16 * o.subgroups) / o.headsPerTile;
    const tilesQ = Math.ceil(g.seq / rowsPerHead);
    const view = { Sb: g.rowStrideB * W, Ss: g.rowStrideS * W, Sh: D };
    const params = packParamFields({
      batch: g.batch, headsQ: Nq, headsKv: Nkv, group,
      qOff: 0, qSb: view.Sb, qSs: view.Ss, qSh: view.Sh,
      kOff: qd, kSb: view.Sb, kSs: view.Ss, kSh: view.Sh,
      vOff: qd + kvd, vSb: view.Sb, vSs: view.Ss, vSh: view.Sh,
      oSb: g.rowStrideB * qd, oSs: g.rowStrideS * qd, oSh: D, tilesQ,
      scaleLog2: dims.scale * Math.LOG2E, scale: dims.scale, softcap: 0, alignBottomRight: 1,
      windowLeft: UNBOUNDED, windowRight: 0,
    });
    const B = FLASH_BLOCK_BINDINGS;
    const entries: Record<number, GPUBuffer | GPUBufferBinding> = {
      [B.params]: runtime.uniform(params, 'block flash params'),
      [B.step]: call.positions,
      [B.qkv]: call.qkv,
      [B.rope]: call.rope.buffer,
      [B.blockParams]: runtime.uniform(blockParams, 'block flash source'),
      [B.out]: call.out,
    };
    if (cache) {
      entries[B.kCache] = call.keys!.binding;
      entries[B.vCache] = call.values!.binding;
    }
    runtime.dispatch({ label: 'block-attention', pipeline, bindGroups: [runtime.bindGroup(pipeline, 0, entries)], workgroups: [tilesQ, Nq / o.headsPerTile, g.batch] });
    return;
  }
  const o = portableBlockOptions(runtime, dims, cache, offsets);
  if (!o) throw new Error(`queueBlockFlash: ${portableBlockUnsupported(runtime, dims)}`);
  const pipeline = await runtime.pipeline(portableBlockKernel, o);
  const strides = [g.rowStrideB * W, D, g.rowStrideS * W, 1];
  const zero = [0, 0, 0, 0];
  const params = FLASH_PARAMS.pack({
    q_strides: strides, k_strides: strides, v_strides: strides, qr_strides: zero, kr_strides: zero,
    out_strides: [g.rowStrideB * qd, D, g.rowStrideS * qd, 1], lse_strides: zero,
    q_off: 0, k_off: qd, v_off: qd + kvd, qr_off: 0, kr_off: 0, group,
  });
  const scoreParams = SCORE_PARAMS.pack({
    mask_strides: zero, bias_strides: zero, mask_off: 0, bias_off: 0, scale: dims.scale, softcap: 0,
    ...windowParams(Infinity, 0), bottom_right: 1, batch: g.batch, alibi_stride_b: 0,
  });
  const F = FLASH_BINDINGS;
  const P = PORTABLE_BLOCK_BINDINGS;
  const entries: Record<number, GPUBuffer | GPUBufferBinding> = {
    [F.params]: runtime.uniform(params, 'block flash params'),
    [F.scoreParams]: runtime.uniform(scoreParams, 'block flash score params'),
    [P.step]: call.positions,
    [P.qkv]: call.qkv,
    [P.rope]: call.rope.buffer,
    [P.blockParams]: runtime.uniform(blockParams, 'block flash source'),
    [F.out]: call.out,
  };
  if (cache) {
    entries[P.kCache] = call.keys!.binding;
    entries[P.vCache] = call.values!.binding;
  }
  runtime.dispatch({ label: 'block-attention', pipeline, bindGroups: [runtime.bindGroup(pipeline, 0, entries)], workgroups: [Math.ceil(g.seq / o.tile.rows), Nq, g.batch] });
}
