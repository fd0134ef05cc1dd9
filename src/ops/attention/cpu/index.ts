// The CPU attention backend: fused FlashAttention-2-style forward on the CPU engine's persistent
// worker pool with WASM SIMD kernels over one shared WebAssembly.Memory (see docs/ARCHITECTURE.md,
// "CPU backend"). The engine starts lazily on the first call and is shared by every later call.
import type { AttentionProblem } from '../problem.js';
import type { AttentionBackend } from '../backend.js';
import { cpuEngine } from '../../cpu-engine.js';
import { cpuUnsupported, runFlash, runNaive } from './attention.js';

export { runFlash, runNaive } from './attention.js';

export const cpuBackend: AttentionBackend = {
  name: 'cpu',
  unsupported: (problem: AttentionProblem) => cpuUnsupported(problem),
  run: async (problem) => runFlash(await cpuEngine(), problem),
  runNaive: async (problem) => runNaive(await cpuEngine(), problem),
};
