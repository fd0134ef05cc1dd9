// The CPU pool's worker script: the engine's job loop serving every op's kernels and tasks.
import { serveJobs } from '../engines/cpu/worker-loop.js';
import { CPU_PROGRAM } from './cpu-program.js';

void serveJobs(CPU_PROGRAM);
