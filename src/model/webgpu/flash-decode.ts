// Host side of the second split-KV decode kernel pair (flash-decode.wgsl.ts): options for a device,
// the split count for a cache length, and queueing partial (+ combine when split) on the runtime.
import { type BindingResource, type GpuRuntime, defineKernel } from '../../backends/webgpu/runtime.js';
import {
  FLASH_COMBINE_PARAMS, FLASH_DECODE_BINDINGS, FLASH_DECODE_PARAMS, type FlashDecodeOptions,
  buildFlashCombine, buildFlashDecode, flashDecodeOptions, flashDecodeSplits,
} from './flash-decode.wgsl.js';

export const flashDecodeKernel = defineKernel<FlashDecodeOptions>('model-flash-decode', buildFlashDecode);
export const flashCombineKernel = defineKernel<{ headDim: number }>('model-flash-combine', buildFlashCombine);

/**
 * Options for this device, or undefined where the kernel cannot run (head dim not a multiple of 4,
 * or of 8 when packed). FUSEDATTN_DECODE_WORKGROUP caps the workgroup size (benchmarks).
 */
export function flashDecodeOptionsFor(runtime: GpuRuntime, headDim: number, group: number, packed: boolean): FlashDecodeOptions | undefined {
  const cap = Number(globalThis.process?.env?.FUSEDATTN_DECODE_WORKGROUP ?? 256) || 256;
  return flashDecodeOptions(headDim, group, packed, runtime.limits, cap);
}

/**
 * Splits for `keys` visible positions, rounded down to a power of two: the count only changes at a
 * few lengths, so a recorded decode step keeps replaying as the cache grows.
 */
export function flashDecodeSplitsFor(options: FlashDecodeOptions, keys: number, kvHeads: number, rows: number, targetWorkgroups?: number): number {
  const splits = flashDecodeSplits(keys, kvHeads, rows, options.workgroupSize, targetWorkgroups);
  let pow = 1;
  while (pow * 2 <= splits) pow *= 2;
  return pow;
}

export interface FlashDecodeCall {
  /** Query rows [rows, qStride] (rotated), or the packed qkv rows (options.packed). */
  q: BindingResource;
  keys: BindingResource;
  values: BindingResource;
  /** u32 [start, rope_base]. */
  positions: GPUBuffer;
  /** Packed: cos [rows, D/2] then sin, the rows of positions rope_base... */
  rope?: { buffer: GPUBuffer; rows: number };
  /** [rows, Nq * D]. */
  out: GPUBuffer;
  batch: number;
  tokens: number;
  headsQ: number;
  headsKv: number;
  qStride: number;
  kCol?: number;
  vCol?: number;
  /** Element offsets of the cache bindings (multiples of 4). */
  kcOff?: number;
  vcOff?: number;
  scale: number;
  splits: number;
  label?: string;
}

export async function queueFlashDecode(runtime: GpuRuntime, options: FlashDecodeOptions, call: FlashDecodeCall): Promise<void> {
  const D = options.headDim;
  const rows = call.batch * call.tokens;
  const label = call.label ?? 'decode attention';
  const partial = await runtime.pipeline(flashDecodeKernel, options);
  const split = call.splits > 1;
  const partials = split ? runtime.acquire(rows * call.headsQ * call.splits * (D + 4) * 4, 'intermediate', 'decode partials') : undefined;
  const B = FLASH_DECODE_BINDINGS;
  const entries: Record<number, BindingResource> = {
    [B.params]: runtime.uniform(FLASH_DECODE_PARAMS.pack({
      batch: call.batch, tokens: call.tokens, heads_q: call.headsQ, heads_kv: call.headsKv, q_stride: call.qStride,
      k_col: call.kCol ?? 0, v_col: call.vCol ?? 0, kc_off: call.kcOff ?? 0, vc_off: call.vcOff ?? 0, rope_rows: call.rope?.rows ?? 0, scale: call.scale,
    }), `${label} params`),
    [B.q]: call.q,
    [B.keys]: call.keys,
    [B.values]: call.values,
    [B.partials]: partials ?? call.out,
    [B.step]: call.positions,
  };
  if (options.packed) entries[B.rope] = call.rope!.buffer;
  runtime.dispatch({ label: `${label} (split-KV)`, pipeline: partial, bindGroups: [runtime.bindGroup(partial, 0, entries)], workgroups: [call.headsKv, rows, call.splits] });
  if (!partials) return;
  const combine = await runtime.pipeline(flashCombineKernel, { headDim: D });
  const rowHeads = rows * call.headsQ;
  const max = runtime.limits.maxComputeWorkgroupsPerDimension;
  const y = Math.ceil(rowHeads / max);
  runtime.dispatch({
    label: `${label} (combine)`,
    pipeline: combine,
    bindGroups: [runtime.bindGroup(combine, 0, { 0: runtime.uniform(FLASH_COMBINE_PARAMS.pack({ row_heads: rowHeads, splits: call.splits }), `${label} combine params`), 1: partials, 2: call.out })],
    workgroups: [Math.ceil(rowHeads / y), y],
  });
  runtime.release(partials);
}
