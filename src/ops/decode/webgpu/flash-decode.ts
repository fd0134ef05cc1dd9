// Host side of the second split-KV decode kernel pair (flash-decode.wgsl.ts): options for a device,
// the split count for a cache length, and queueing partial (+ combine when split) on the runtime.
import { type BindingResource, type GpuRuntime, defineKernel } from '../../../engines/webgpu/runtime.js';
import {
  FLASH_COMBINE_PARAMS, FLASH_DECODE_BINDINGS, FLASH_DECODE_PARAMS, type FlashDecodeOptions,
  buildFlashCombine, buildFlashDecode, flashDecodeOptions, flashDecodeSplits,
} from './flash-decode.wgsl.js';

export const flashDecodeKernel = defineKernel<FlashDecodeOptions>('model-flash-decode', buildFlashDecode);
export const flashCombineKernel = defineKernel<{ headDim: number }>('model-flash-combine', buildFlashCombine);

/** What one decode-attention call runs: the kernel's options and the split count. */
export interface FlashDecodePlan {
  options: FlashDecodeOptions;
  splits: number;
}

const env = (name: string): number | undefined => {
  const v = globalThis.process?.env?.[name];
  return v === undefined || v === '' ? undefined : Number(v);
};

/**
 * The kernel and split count for `keys` visible positions (the longest row): the largest tile
 * (workgroup of 256, 128 or 64 threads, one key each) that still gives half of
 * `targetWorkgroups` tiles over Nkv x rows, then one tile per split up to the target. Long caches
 * so get 256-key tiles, short ones small tiles spread over many workgroups. Splits are rounded up
 * to a power of two, so the plan changes at a few lengths only (a recorded decode step keeps
 * replaying as the cache grows). Chosen from the H200 runs in docs/GPU-NOTES.md ("Decode on
 * WebGPU", run 3). Undefined where the kernel cannot run (head dim not a multiple of 4, of 8
 * when packed).
 * Benchmarks override: FUSEDATTN_DECODE_WORKGROUP (largest workgroup), FUSEDATTN_DECODE_TARGET,
 * FUSEDATTN_DECODE_UNROLL.
 */
export function flashDecodePlan(runtime: GpuRuntime, headDim: number, group: number, packed: boolean, keys: number, kvHeads: number, rows: number, targetWorkgroups?: number): FlashDecodePlan | undefined {
  const target = targetWorkgroups ?? env('FUSEDATTN_DECODE_TARGET') ?? DEFAULT_TARGET;
  const largest = env('FUSEDATTN_DECODE_WORKGROUP') ?? 256;
  const unroll = env('FUSEDATTN_DECODE_UNROLL') ?? DEFAULT_UNROLL;
  const wanted = Math.ceil(target / 2 / (kvHeads * rows));
  let chosen: FlashDecodeOptions | undefined;
  // tiles of 64 keys at least, unless a smaller largest workgroup is asked for (tests)
  for (const size of [256, 128, 64, 32].filter((s) => s <= largest && s >= Math.min(64, largest))) {
    const options = flashDecodeOptions(headDim, group, packed, runtime.limits, size, unroll);
    if (!options) continue;
    chosen = options;
    if (Math.ceil(keys / options.workgroupSize) >= wanted) break;
  }
  if (!chosen) return undefined;
  return { options: chosen, splits: flashDecodeSplitsFor(chosen, keys, kvHeads, rows, target) };
}

/** Workgroups a decode-attention call aims for (about two per SM of a large GPU). */
export const DEFAULT_TARGET = 256;
/** 16-byte loads in flight per thread (flash-decode.wgsl.ts `unroll`): 4 measured as good as 8 or 16. */
export const DEFAULT_UNROLL = 4;

/** Most splits of one (KV head, row). */
const MAX_SPLITS = 256;

/**
 * Split count for a given kernel (see flashDecodePlan): one tile per split until the target is
 * reached, rounded up to a power of two (the splits past the last key are empty and cheap).
 */
export function flashDecodeSplitsFor(options: FlashDecodeOptions, keys: number, kvHeads: number, rows: number, targetWorkgroups = DEFAULT_TARGET): number {
  const splits = flashDecodeSplits(keys, kvHeads, rows, options.workgroupSize, targetWorkgroups, MAX_SPLITS);
  let pow = 1;
  while (pow < splits) pow *= 2;
  return Math.min(pow, MAX_SPLITS);
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
