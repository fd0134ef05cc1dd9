// The CPU pool's worker script for module Web Workers (browsers, Deno): the engine's job loop
// serving every op's kernels and tasks. The build bundles this file with everything it imports
// into one self-contained module (scripts/bundle-worker.mjs), so a bundler that inlines it or
// copies only this file still has a worker that runs.
import { selfPort, serveJobs } from '../engines/cpu/worker-loop.js';
import { CPU_PROGRAM } from './cpu-program.js';

serveJobs(CPU_PROGRAM, selfPort());
