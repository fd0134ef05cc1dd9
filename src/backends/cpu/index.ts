// Placeholder until the CPU backend lands.
import type { AttentionBackend } from '../backend.js';
export const cpuBackend: AttentionBackend = {
  name: 'cpu',
  unsupported: () => 'not implemented yet',
  run: () => Promise.reject(new Error('not implemented')),
  runNaive: () => Promise.reject(new Error('not implemented')),
};
export function describeCpu(): string {
  return 'not implemented';
}
