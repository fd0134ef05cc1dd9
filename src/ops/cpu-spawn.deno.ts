// Starts a CPU worker in Deno (the "deno" condition of `#cpu-spawn`): a node:worker_threads
// Worker running the worker from source (eval), not a module Web Worker from a file. Deno starts a
// worker from a local file only with read access to it (so without --allow-read there was no
// pool), and its Web Workers cannot be unref'd (a script that used the pool never exited); an
// eval'd node:worker_threads worker needs no permission and is unref'd while idle, as in Node.
import { Worker } from 'node:worker_threads';
import { type WorkerSpawner, nodeWorkerHandle } from '../engines/cpu/platform.js';
import { CPU_WORKER_NODE_SOURCE } from './cpu-worker-node-source.js';

const url = new URL('./cpu-worker-node-source.js', import.meta.url);

export const cpuWorkerSpawner: WorkerSpawner = {
  url,
  spawn: () => nodeWorkerHandle(new Worker(CPU_WORKER_NODE_SOURCE, { eval: true }), url),
};
