// Host side of the portable flash tier: choose a tile that fits the device's limits, say which
// limit a problem exceeds (unsupported), and run it (one dispatch).
import { UnsupportedError } from '../../../../core/errors.js';
import type { AttentionProblem } from '../../problem.js';
import type { AttentionResult } from '../../backend.js';
import { elementBaseOf } from '../../../../engines/webgpu/operands.js';
import { bindingSizes, measuredAttention, scoreOptionsOf, scoreParamsOf } from '../attention-io.js';
import { type GpuRuntime, defineKernel } from '../../../../engines/webgpu/runtime.js';
import { gpuMods, gpuModsPipelines, hasBlockTable, modDataBinding } from '../../mods/webgpu.js';
import { FLASH_BINDINGS, FLASH_PARAMS, type FlashOptions, type FlashTile, buildFlash, checkTile, flashWorkgroupBytes } from './flash.wgsl.js';

export const flashKernel = defineKernel<FlashOptions>('flash-portable', buildFlash);

/**
 * Tiles from the preferred to the smallest; the first that fits the device is used. Order from
 * the H200 runs of 2026-11-22 (docs/GPU-NOTES.md): big workgroups win because staging K/V tiles
 * is the cost and a workgroup's rows share it; 256 threads x 32 rows x 32 keys was best or within
 * 9% of the best on every benchmark shape; 256 x 32 x 16 is what fits Dq 192 / Dv 128 in 48 KiB.
 */
export const FLASH_TILES: readonly FlashTile[] = [
  { threads: 256, rows: 32, keys: 32 },
  { threads: 512, rows: 32, keys: 32 },
  { threads: 256, rows: 64, keys: 16 },
  { threads: 256, rows: 32, keys: 16 },
  { threads: 128, rows: 32, keys: 32 },
  { threads: 128, rows: 32, keys: 16 },
  { threads: 64, rows: 16, keys: 32 },
  { threads: 64, rows: 16, keys: 16 },
  { threads: 64, rows: 8, keys: 16 },
  { threads: 32, rows: 8, keys: 8 },
  { threads: 16, rows: 4, keys: 4 },
];

/** The limits the portable tier reads (a subset of GPUSupportedLimits, so tests can fake them). */
export type FlashLimits = Pick<GPUSupportedLimits,
  'maxComputeWorkgroupStorageSize' | 'maxComputeInvocationsPerWorkgroup' | 'maxComputeWorkgroupSizeX' |
  'maxComputeWorkgroupsPerDimension' | 'maxStorageBuffersPerShaderStage' | 'maxStorageBufferBindingSize' |
  'maxBufferSize' | 'minStorageBufferOffsetAlignment'>;

/** The first tile of `tiles` that fits `limits` for these head dims, or undefined. */
export function chooseTile(p: AttentionProblem, limits: FlashLimits, tiles: readonly FlashTile[] = FLASH_TILES): FlashTile | undefined {
  return tiles.find((t) => fits(t, p, limits));
}

function fits(t: FlashTile, p: Pick<AttentionProblem, 'dimQK' | 'dimRope' | 'dimV'>, limits: Pick<FlashLimits, 'maxComputeInvocationsPerWorkgroup' | 'maxComputeWorkgroupSizeX' | 'maxComputeWorkgroupStorageSize'>): boolean {
  return checkTile(t) === undefined &&
    t.threads <= limits.maxComputeInvocationsPerWorkgroup &&
    t.threads <= limits.maxComputeWorkgroupSizeX &&
    flashWorkgroupBytes(t, p.dimQK + p.dimRope, p.dimV) <= limits.maxComputeWorkgroupStorageSize;
}

/** The first tile of FLASH_TILES that fits `limits` for head dims alone (the block's attention), or undefined. */
export function tileForDims(dims: Pick<AttentionProblem, 'dimQK' | 'dimRope' | 'dimV'>, limits: Pick<FlashLimits, 'maxComputeInvocationsPerWorkgroup' | 'maxComputeWorkgroupSizeX' | 'maxComputeWorkgroupStorageSize'>): FlashTile | undefined {
  return FLASH_TILES.find((t) => fits(t, dims, limits));
}

/** Storage buffers the kernel binds for this problem. */
export function flashStorageBuffers(p: AttentionProblem): number {
  return 5 + (p.qRope ? 2 : 0) + (p.mask ? 1 : 0) + (p.bias ? 1 : 0) + (p.returnLse ? 1 : 0) + (p.mods || p.blockMask ? 1 : 0);
}

/** Why the portable tier cannot run `p` on a device with `limits`, naming the limit and the sizes. */
export function flashUnsupported(p: AttentionProblem, limits: FlashLimits, tile?: FlashTile): string | undefined {
  const buffers = flashStorageBuffers(p);
  if (buffers > limits.maxStorageBuffersPerShaderStage) {
    return `the portable kernel binds ${buffers} storage buffers for this call but maxStorageBuffersPerShaderStage is ${limits.maxStorageBuffersPerShaderStage}`;
  }
  const chosen = tile ?? chooseTile(p, limits);
  if (!chosen) {
    const smallest = FLASH_TILES[FLASH_TILES.length - 1];
    const need = flashWorkgroupBytes(smallest, p.dimQK + p.dimRope, p.dimV);
    return `head dims Dq ${p.dimQK}${p.dimRope ? ` + Dr ${p.dimRope}` : ''} / Dv ${p.dimV} need at least ${need} bytes of workgroup memory but maxComputeWorkgroupStorageSize is ${limits.maxComputeWorkgroupStorageSize}`;
  }
  if (tile && !fits(tile, p, limits)) {
    return `tile ${JSON.stringify(tile)} needs ${tile.threads} invocations and ${flashWorkgroupBytes(tile, p.dimQK + p.dimRope, p.dimV)} bytes of workgroup memory ` +
      `(limits: ${limits.maxComputeInvocationsPerWorkgroup} invocations, maxComputeWorkgroupStorageSize ${limits.maxComputeWorkgroupStorageSize})`;
  }
  for (const [name, bytes] of bindingSizes(p, limits.minStorageBufferOffsetAlignment)) {
    if (bytes > limits.maxStorageBufferBindingSize) {
      return `${name} needs a storage binding of ${bytes} bytes but maxStorageBufferBindingSize is ${limits.maxStorageBufferBindingSize}`;
    }
    if (bytes > limits.maxBufferSize) return `${name} needs a buffer of ${bytes} bytes but maxBufferSize is ${limits.maxBufferSize}`;
  }
  const grid = flashGrid(p, chosen);
  const max = limits.maxComputeWorkgroupsPerDimension;
  const names = ['query blocks', 'query heads', 'batch'];
  const over = grid.findIndex((n) => n > max);
  if (over >= 0) return `the grid needs ${grid[over]} workgroups along ${names[over]} but maxComputeWorkgroupsPerDimension is ${max}`;
  return undefined;
}

export function flashGrid(p: AttentionProblem, tile: FlashTile): [number, number, number] {
  return [Math.ceil(p.seqQ / tile.rows), p.headsQ, p.batch];
}

export interface FlashRunOptions {
  /** Force a tile (benchmarks compare tiles); default: the first of FLASH_TILES that fits. */
  tile?: FlashTile;
}

/**
 * Whether q, k, v (and the RoPE parts) can be read 4 elements at a time: head dims multiples of 4,
 * d contiguous, and every stride and element offset (including where a GPU tensor starts inside
 * its binding) a multiple of 4.
 */
export function quadLoadsFit(p: AttentionProblem, offsetAlignment: number): boolean {
  if (p.dimQK % 4 !== 0 || p.dimRope % 4 !== 0 || p.dimV % 4 !== 0) return false;
  return [p.q, p.k, p.v, p.qRope, p.kRope].every((view) => {
    if (!view) return true;
    const { b, h, s, d } = view.strides;
    return d === 1 && b % 4 === 0 && h % 4 === 0 && s % 4 === 0 && (view.offset + elementBaseOf(view.tensor, offsetAlignment)) % 4 === 0;
  });
}

/** The compile-time options of the kernel for `p` (`blockTable`: the call's block structure is bound). */
export function flashOptionsOf(p: AttentionProblem, tile: FlashTile, offsetAlignment: number, blockTable = false): FlashOptions {
  return {
    ...scoreOptionsOf(p),
    blockTable: blockTable || undefined,
    dtype: p.dtype,
    dimQK: p.dimQK,
    dimRope: p.dimRope,
    dimV: p.dimV,
    tile,
    returnLse: p.returnLse,
    quadLoads: quadLoadsFit(p, offsetAlignment),
  };
}

export async function runFlash(runtime: GpuRuntime, p: AttentionProblem, run: FlashRunOptions = {}): Promise<AttentionResult> {
  const reason = flashUnsupported(p, runtime.limits, run.tile);
  if (reason) throw new UnsupportedError('options.backend', `WebGPU portable tier: ${reason}`);
  const tile = run.tile ?? (chooseTile(p, runtime.limits) as FlashTile);
  // block structure at this tile's sizes (block masks; dense masks when cheap to scan)
  const mods = gpuMods(p, { rows: tile.rows, keys: tile.keys, denseKeys: tile.keys });
  const options = flashOptionsOf(p, tile, runtime.limits.minStorageBufferOffsetAlignment, hasBlockTable(mods));
  const tablePipes = await gpuModsPipelines(runtime, mods);
  const pipeline = await runtime.pipeline(flashKernel, options);
  return measuredAttention(runtime, p, (io) => {
    const view = (v: AttentionProblem['q'] | undefined) => (v ? [v.strides.b, v.strides.h, v.strides.s, v.strides.d] : [0, 0, 0, 0]);
    const params = FLASH_PARAMS.pack({
      q_strides: view(p.q),
      k_strides: view(p.k),
      v_strides: view(p.v),
      qr_strides: view(p.qRope),
      kr_strides: view(p.kRope),
      out_strides: [p.outStrides.b, p.outStrides.h, p.outStrides.s, p.outStrides.d],
      lse_strides: [p.lseStrides.b, p.lseStrides.h, p.lseStrides.s, 0],
      q_off: p.q.offset + io.q.elementBase,
      k_off: p.k.offset + io.k.elementBase,
      v_off: p.v.offset + io.v.elementBase,
      qr_off: p.qRope ? p.qRope.offset + io.qRope!.elementBase : 0,
      kr_off: p.kRope ? p.kRope.offset + io.kRope!.elementBase : 0,
      group: p.headsQ / p.headsKv,
    });
    const B = FLASH_BINDINGS;
    const entries: Record<number, GPUBuffer | GPUBufferBinding> = {
      [B.params]: runtime.uniform(params, 'flash params'),
      [B.scoreParams]: runtime.uniform(scoreParamsOf(p, io.mask, io.bias), 'score params'),
      [B.meta]: io.meta,
      [B.q]: io.q.binding,
      [B.k]: io.k.binding,
      [B.v]: io.v.binding,
      [B.out]: io.out,
    };
    if (io.qRope) entries[B.qRope] = io.qRope.binding;
    if (io.kRope) entries[B.kRope] = io.kRope.binding;
    if (io.mask) entries[B.mask] = io.mask.binding;
    if (io.bias) entries[B.bias] = io.bias.binding;
    if (io.lse) entries[B.lse] = io.lse;
    const modData = modDataBinding(runtime, p, mods, io.mask, tablePipes);
    if (modData) entries[B.modData] = modData;
    // float16 output with odd Dv is OR-ed in atomically: it must start from zero
    if (p.dtype === 'float16' && p.dimV % 2 === 1) runtime.clear(io.out);
    if (p.seqQ > 0) {
      runtime.dispatch({
        label: 'flash-portable',
        pipeline,
        bindGroups: [runtime.bindGroup(pipeline, 0, entries)],
        workgroups: flashGrid(p, tile),
      });
    }
  });
}
