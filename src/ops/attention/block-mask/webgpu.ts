// createBlockMask on the GPU: written below (placeholder until the kernel lands).
import { UnsupportedError } from '../../../core/errors.js';
import type { ModsPlan } from '../mods/plan.js';
import type { BlockGrid } from './grid.js';

export async function gpuBlockCounts(_plan: ModsPlan, _grid: BlockGrid, _device?: GPUDevice): Promise<Uint32Array> {
  throw new UnsupportedError('options.backend', 'createBlockMask on webgpu is not implemented yet');
}
