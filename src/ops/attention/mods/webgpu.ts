// The WebGPU side of a call's mods: the packed data buffer (captured tensors, block table) that
// every attention kernel binds as `mod_data`, and whether the kernel walks a block table. The
// table comes from the host (block masks; CPU dense masks, scanned) or, for a dense mask that is a
// GPU tensor, from two small kernels queued before the attention kernel (webgpu-dense.ts).
import type { GpuRuntime } from '../../../engines/webgpu/runtime.js';
import type { Operand } from '../../../engines/webgpu/operands.js';
import type { AttentionProblem } from '../problem.js';
import { type BlockGrid, gridTable } from '../block-mask/grid.js';
import { type KernelTiles, denseBlocksEnabled, kernelGrid } from '../block-mask/kernel-grid.js';
import { type DensePipelines, denseMaskModData, densePipelines } from '../block-mask/webgpu-dense.js';
import { packModData } from './plan.js';
import { needsModData } from './wgsl.js';

export interface GpuMods {
  /** The block structure at the kernel's tiles, when the host knows it. */
  grid: BlockGrid | undefined;
  /** The dense mask is on the GPU: its table is found there, at these tiles. */
  gpuDense: KernelTiles | undefined;
  /** The mod_data words the host provides (header, tensors, host table), when the kernel binds them. */
  data: Uint32Array | undefined;
}

/** The kernel walks a block table. */
export function hasBlockTable(m: GpuMods | undefined): boolean {
  return m !== undefined && (m.grid !== undefined || m.gpuDense !== undefined);
}

/** What a kernel with tiles `t` needs of `p`'s mods and block structure. */
export function gpuMods(p: AttentionProblem, t: KernelTiles | undefined): GpuMods {
  const grid = t ? kernelGrid(p, t) : undefined;
  const gpuDense = t && !grid && !p.blockMask && p.mask?.tensor.location === 'webgpu' && denseBlocksEnabled() ? t : undefined;
  const table = grid !== undefined || gpuDense !== undefined;
  const data = needsModData(p.mods?.kernel, table) ? packModData(p.mods?.tensors ?? [], grid ? gridTable(grid) : undefined) : undefined;
  return { grid, gpuDense, data };
}

/** Compiles what modDataBinding will queue (call before recording). */
export async function gpuModsPipelines(runtime: GpuRuntime, m: GpuMods): Promise<DensePipelines | undefined> {
  return m.gpuDense ? densePipelines(runtime) : undefined;
}

/** The mod_data buffer to bind (queueing the GPU table kernels first when needed), or undefined. */
export function modDataBinding(runtime: GpuRuntime, p: AttentionProblem, m: GpuMods, mask: Operand | undefined, pipes: DensePipelines | undefined): GPUBuffer | undefined {
  if (!m.data) return undefined;
  if (m.gpuDense && mask && pipes) return denseMaskModData(runtime, pipes, p, mask, m.gpuDense.rows, m.gpuDense.denseKeys, m.data);
  return runtime.uploadTransient(m.data, 'mods data');
}
