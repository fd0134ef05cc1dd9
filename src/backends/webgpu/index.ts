// Placeholder until the WebGPU backend lands.
import type { AttentionBackend } from '../backend.js';
export const webgpuBackend: AttentionBackend = {
  name: 'webgpu',
  unsupported: () => 'not implemented yet',
  run: () => Promise.reject(new Error('not implemented')),
  runNaive: () => Promise.reject(new Error('not implemented')),
};
