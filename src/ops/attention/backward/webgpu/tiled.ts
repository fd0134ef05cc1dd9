// Host side of the portable backward's register-tiled kernels (tiled.wgsl.ts): the configurations
// best first, which one fits a device's workgroup memory for the head dims, and the plan the
// shared backward host (portable.ts runBackwardPlan) runs. dBias stays on the classic kernels.
import { elementBaseOf } from '../../../../engines/webgpu/operands.js';
import { type GpuRuntime, defineKernel } from '../../../../engines/webgpu/runtime.js';
import { quadLoadsFit } from '../../webgpu/portable/flash.js';
import type { BackwardProblem } from '../problem.js';
import { type BackwardKernelPlan, type BackwardLimits, backwardKernelOptions, blockGridOf } from './portable.js';
import { type TiledBackwardConfig, type TiledKernelOptions, buildTiledBackwardKv, buildTiledBackwardQ, checkTiledConfig, tiledWorkgroupBytes } from './tiled.wgsl.js';

export const tiledBackwardKvKernel = defineKernel<TiledKernelOptions>('attention-backward-kv-tiled', buildTiledBackwardKv);
export const tiledBackwardQKernel = defineKernel<TiledKernelOptions>('attention-backward-q-tiled', buildTiledBackwardQ);

/**
 * Candidates best first (the first that fits is used). Measured on the H200 (bench/gpu/
 * backward-portable.sh, session 10 of 2026-12-03, calls 1 and 2; B4 H32 S4096 D128 f32 causal,
 * every configuration checked against float64 on ten odd shapes in f32 and f16 first):
 * - call 1: 256 threads with 64 owned entries 123.7 ms (kv 77.0 + q 46.5); the same at 128 threads
 *   and 32 owned 156.8; 256 threads at 32 owned 132.8; head dims staged 8 vec4s a step (more
 *   memory, fewer workgroups per SM) 208.8; the classic kernels 683.6;
 * - call 2, around that one: kv pairs laid 2 owned × 4 other 119.5 (kv 73.0, the default now);
 *   4 × 4 pairs over 64 × 64 (fits only with 2 vec4s a step) 119.8; 8 accumulator rows, twice the
 *   rows per accumulation step: within 1%; 512 threads 138.2; 128 owned entries 139.9 (MLA 155.8:
 *   its registers spill); 2 vec4s a step alone 165.9.
 * The last entry fits 32 KiB (llvmpipe) up to D 256.
 */
export const TILED_KV_CONFIGS: readonly TiledBackwardConfig[] = [
  { threads: 256, owned: 64, other: 32, pairOwned: 2, pairOther: 4, accOwned: 4, dimChunk: 4, otherChunk: 8 },
  { threads: 128, owned: 32, other: 64, pairOwned: 4, pairOther: 4, accOwned: 4, dimChunk: 4, otherChunk: 16 },
  { threads: 128, owned: 32, other: 32, pairOwned: 4, pairOther: 2, accOwned: 4, dimChunk: 4, otherChunk: 8 },
];
export const TILED_Q_CONFIGS: readonly TiledBackwardConfig[] = [
  { threads: 256, owned: 64, other: 64, pairOwned: 4, pairOther: 4, accOwned: 4, dimChunk: 4, otherChunk: 16 },
  { threads: 128, owned: 32, other: 64, pairOwned: 4, pairOther: 4, accOwned: 4, dimChunk: 4, otherChunk: 16 },
  { threads: 128, owned: 32, other: 32, pairOwned: 4, pairOther: 2, accOwned: 4, dimChunk: 4, otherChunk: 8 },
];

export interface TiledConfigs {
  kv: TiledBackwardConfig;
  q: TiledBackwardConfig;
}

function fits(kind: 'kv' | 'q', c: TiledBackwardConfig, bp: BackwardProblem, limits: BackwardLimits): boolean {
  return checkTiledConfig(c) === undefined && c.threads <= limits.maxComputeInvocationsPerWorkgroup && c.threads <= limits.maxComputeWorkgroupSizeX &&
    tiledWorkgroupBytes(kind, { ...bp.forward, config: c }) <= limits.maxComputeWorkgroupStorageSize;
}

/**
 * The tiled configurations for `bp` (`wanted`: these, when they fit), or undefined where the
 * classic kernels run: dBias asked, or no candidate fits the device.
 */
export function tiledConfigs(bp: BackwardProblem, limits: BackwardLimits, wanted?: Partial<TiledConfigs>): TiledConfigs | undefined {
  if (bp.biasGrad) return undefined;
  const kv = [...(wanted?.kv ? [wanted.kv] : []), ...TILED_KV_CONFIGS].find((c) => fits('kv', c, bp, limits));
  const q = [...(wanted?.q ? [wanted.q] : []), ...TILED_Q_CONFIGS].find((c) => fits('q', c, bp, limits));
  return kv && q ? { kv, q } : undefined;
}

/** Whether every input the kernels stage (q, k, v, the RoPE parts, dO) can be read 4 elements at a time. */
export function tiledQuadsFit(bp: BackwardProblem, offsetAlignment: number): boolean {
  const p = bp.forward;
  const o = p.outStrides;
  return quadLoadsFit(p, offsetAlignment) && o.d === 1 && o.b % 4 === 0 && o.h % 4 === 0 && o.s % 4 === 0 && elementBaseOf(bp.dOut, offsetAlignment) % 4 === 0;
}

/** The plan of the tiled kernels with `configs` (portable.ts has checked that the problem runs). */
export async function tiledPlan(runtime: GpuRuntime, bp: BackwardProblem, configs: TiledConfigs): Promise<BackwardKernelPlan> {
  const p = bp.forward;
  const tiles = {
    kv: { threads: configs.kv.threads, keys: configs.kv.owned, rows: configs.kv.other },
    q: { threads: configs.q.threads, rows: configs.q.owned, keys: configs.q.other },
  };
  const blockGrid = blockGridOf(p, tiles);
  const quads = tiledQuadsFit(bp, runtime.limits.minStorageBufferOffsetAlignment);
  // the classic kernels' options without their tile: the configurations take its place
  const { tile: _tile, ...shared } = backwardKernelOptions(p, tiles.kv, blockGrid !== undefined);
  const [kv, q] = await Promise.all([
    runtime.pipeline(tiledBackwardKvKernel, { ...shared, config: configs.kv, quads }),
    runtime.pipeline(tiledBackwardQKernel, { ...shared, config: configs.q, quads }),
  ]);
  return {
    kv: { pipeline: kv, grid: [Math.ceil(p.seqK / configs.kv.owned), p.headsKv, p.batch] },
    q: { pipeline: q, grid: [Math.ceil(p.seqQ / configs.q.owned), p.headsQ, p.batch] },
    keyBlocks: Math.ceil(p.seqK / configs.kv.owned),
    label: 'tiled',
    blockGrid,
  };
}
