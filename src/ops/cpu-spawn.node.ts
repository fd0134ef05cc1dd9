// Starts a CPU worker in Node or Bun (the "node" and "bun" conditions of `#cpu-spawn`): a
// worker_threads Worker running cpu-worker-node.js, which imports the unbundled modules.
import { Worker } from 'node:worker_threads';
import { type WorkerSpawner, nodeWorkerHandle } from '../engines/cpu/platform.js';

const url = new URL('./cpu-worker-node.js', import.meta.url);

export const cpuWorkerSpawner: WorkerSpawner = {
  url,
  // Workers would inherit the parent's execArgv: --input-type (node -e, stdin scripts) breaks a
  // file worker, and per-process V8 flags are refused there. Our worker needs none of them
  // (V8 flags such as --experimental-wasm-relaxed-simd apply to the whole process anyway).
  spawn: () => nodeWorkerHandle(new Worker(url, { execArgv: [] }), url),
};
