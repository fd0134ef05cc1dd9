// The WebGPU side of a call's mods: the packed data buffer (captured tensors, block table) that
// every attention kernel binds as `mod_data`, and the kernel options that say what to compile.
import type { AttentionProblem } from '../problem.js';
import { type BlockGrid, gridTable } from '../block-mask/grid.js';
import { type KernelTiles, kernelGrid } from '../block-mask/kernel-grid.js';
import { packModData } from './plan.js';
import { needsModData } from './wgsl.js';

export interface GpuMods {
  /** The block structure at the kernel's tiles, when the call has one. */
  grid: BlockGrid | undefined;
  /** The mod_data words to upload, when the kernel binds them. */
  data: Uint32Array | undefined;
}

/** What a kernel with tiles `t` needs of `p`'s mods and block structure. */
export function gpuMods(p: AttentionProblem, t: KernelTiles | undefined): GpuMods {
  const grid = t ? kernelGrid(p, t) : undefined;
  const data = needsModData(p.mods?.kernel, grid !== undefined) ? packModData(p.mods?.tensors ?? [], grid ? gridTable(grid) : undefined) : undefined;
  return { grid, data };
}
