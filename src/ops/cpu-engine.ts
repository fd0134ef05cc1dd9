// The process-wide CPU engine loaded with every op's kernels (cpu-program.ts), started lazily on
// the first call and shared by every later one. Ops' CPU code gets it here.
import { CpuEngine, type CpuEngineOptions } from '../engines/cpu/engine.js';
import { hardwareThreads, relaxedSimdAvailable, sharedMemoryAvailable, simdAvailable } from '../engines/cpu/platform.js';
import { CPU_PROGRAM, type CpuJobs, type CpuKernels, type KernelTuning } from './cpu-program.js';

/** The engine every op's CPU code runs on. */
export type OpsCpuEngine = CpuEngine<CpuKernels, CpuJobs>;
export type OpsCpuEngineOptions = CpuEngineOptions<KernelTuning>;

const WORKER_URL = new URL('./cpu-worker.js', import.meta.url);

let engine: Promise<OpsCpuEngine> | undefined;
let started: OpsCpuEngine | undefined;

/** A new engine of its own (tests and benchmarks: thread count, scalar kernels, tuning). */
export function createCpuEngine(options: OpsCpuEngineOptions = {}): Promise<OpsCpuEngine> {
  return CpuEngine.create(CPU_PROGRAM, WORKER_URL, options);
}

/** The process-wide CPU engine, started on first use. */
export function cpuEngine(): Promise<OpsCpuEngine> {
  if (!engine) {
    engine = createCpuEngine().then((e) => (started = e));
    engine.catch(() => (engine = undefined));
  }
  return engine;
}

/** Replaces the process-wide engine (tests and benchmarks: thread count, scalar kernels). */
export async function configureCpu(options: OpsCpuEngineOptions): Promise<OpsCpuEngine> {
  const previous = engine;
  engine = createCpuEngine(options).then((e) => (started = e));
  (await previous?.catch(() => undefined))?.terminate();
  return engine;
}

/** One line for `fusedattn info`: threads, SIMD, relaxed SIMD (without starting the pool). */
export async function describeCpu(): Promise<string> {
  if (started) return started.describe();
  const cores = await hardwareThreads();
  const shared = sharedMemoryAvailable();
  const parts = [
    shared ? `${cores} worker thread${cores === 1 ? '' : 's'} on shared memory (pool starts on first use)` : 'single-threaded (no SharedArrayBuffer)',
    `WASM SIMD ${simdAvailable() ? 'yes' : 'no'}`,
    `relaxed SIMD ${relaxedSimdAvailable() ? 'yes' : 'no (Node: --experimental-wasm-relaxed-simd)'}`,
  ];
  return parts.join('; ');
}
