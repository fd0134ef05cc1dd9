// The CPU pool's worker script for node:worker_threads (Node, Bun): the same job loop as
// cpu-worker.ts on the thread's parentPort.
import { parentPort } from 'node:worker_threads';
import { nodePort, serveJobs } from '../engines/cpu/worker-loop.js';
import { CPU_PROGRAM } from './cpu-program.js';

serveJobs(CPU_PROGRAM, nodePort(parentPort));
