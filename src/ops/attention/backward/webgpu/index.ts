// The WebGPU attention backward (placeholder until the portable kernels land).
import type { BackwardBackend } from '../backend.js';

export const webgpuBackward: BackwardBackend = {
  name: 'webgpu',
  unsupported: () => 'the WebGPU backward is not implemented yet',
  run: async () => { throw new Error('unreachable'); },
  runNaive: async () => { throw new Error('unreachable'); },
};
