// Starts a CPU worker in Node or Bun (the "node" and "bun" conditions of `#cpu-spawn`): a
// worker_threads Worker running cpu-worker-node.js, which imports the unbundled modules.
import v8 from 'node:v8';
import { Worker } from 'node:worker_threads';
import { envChoice } from '../core/env.js';
import { type WorkerSpawner, nodeWorkerHandle, relaxedSimdAvailable } from '../engines/cpu/platform.js';

const url = new URL('./cpu-worker-node.js', import.meta.url);

export const cpuWorkerSpawner: WorkerSpawner = {
  url,
  // Workers would inherit the parent's execArgv: --input-type (node -e, stdin scripts) breaks a
  // file worker, and per-process V8 flags are refused there. Our worker needs none of them
  // (V8 flags such as --experimental-wasm-relaxed-simd apply to the whole process anyway).
  spawn: () => nodeWorkerHandle(new Worker(url, { execArgv: [] }), url),
  enableWasmFeatures,
};

/**
 * Node 20 (V8 11.3) has relaxed SIMD behind --experimental-wasm-relaxed-simd; V8 11.4 (Chrome 114,
 * Node 22) ships it. Setting the flag at run time, before any kernel is compiled, gives our kernels
 * fused multiply-adds there too: the GPU machine's Xeon measured the CPU backward 7-22% faster with
 * them (BENCHMARKS.md "CPU backward with relaxed SIMD"), the dev machine's tile kernels 3-6%
 * (bench/cpu-kernels.mjs). The flag only makes more modules valid; a module valid without it means
 * the same with it. FUSEDATTN_RELAXED_SIMD=off leaves the flag alone, auto (the default) sets it
 * (Bun has no V8: nothing to set).
 */
function enableWasmFeatures(): void {
  // read (and validated: a ValueError for anything else) before asking the runtime
  if (envChoice('FUSEDATTN_RELAXED_SIMD', ['auto', 'off'] as const) === 'off' || relaxedSimdAvailable()) return;
  try {
    if (typeof v8.setFlagsFromString === 'function' && process.versions.v8) v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
  } catch {
    // a runtime that refuses the flag keeps the plain SIMD kernels
  }
}
