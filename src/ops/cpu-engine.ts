// The process-wide CPU engine loaded with every op's kernels (cpu-program.ts), started lazily on
// the first call and shared by every later one. Ops' CPU code gets it here.
import { cpuThreadsSetting, onConfigChange, onDispose } from '../core/config.js';
import { CpuEngine, type CpuEngineOptions } from '../engines/cpu/engine.js';
import { hardwareThreads, relaxedSimdAvailable, sharedMemoryAvailable, simdAvailable, wasmCompileRefused } from '../engines/cpu/platform.js';
import { cpuWorkerSpawner } from '#cpu-spawn';
import { CPU_PROGRAM, type CpuJobs, type CpuKernels, type KernelTuning } from './cpu-program.js';

/** The engine every op's CPU code runs on. */
export type OpsCpuEngine = CpuEngine<CpuKernels, CpuJobs>;
export type OpsCpuEngineOptions = CpuEngineOptions<KernelTuning>;


let engine: Promise<OpsCpuEngine> | undefined;
let started: OpsCpuEngine | undefined;

// configure({ cpuThreads | cpuKernels }) retires the running engine: calls in flight finish on it,
// the next call starts one with the new settings. dispose() stops it at once.
onConfigChange((changed) => {
  if (!changed.includes('cpuThreads') && !changed.includes('cpuKernels')) return;
  const previous = engine;
  engine = undefined;
  started = undefined;
  void previous?.then((e) => e.retire(), () => undefined);
});
onDispose(async () => {
  const previous = engine;
  engine = undefined;
  started = undefined;
  (await previous?.catch(() => undefined))?.terminate();
});

/** A new engine of its own (tests and benchmarks: thread count, scalar kernels, tuning). */
export function createCpuEngine(options: OpsCpuEngineOptions = {}): Promise<OpsCpuEngine> {
  return CpuEngine.create(CPU_PROGRAM, cpuWorkerSpawner, options);
}

/**
 * The process-wide CPU engine, started on first use. When its workers fail to load, the first
 * call gets that DeviceError (naming the script's URL and the cause); the engine then runs on the
 * calling thread and never starts workers again (stats.fallback and listBackends() say why).
 */
export async function cpuEngine(): Promise<OpsCpuEngine> {
  if (!engine) {
    const attempt = createCpuEngine().then((e) => (started = e));
    engine = attempt;
    attempt.catch(() => {
      if (engine === attempt) engine = undefined;
    });
  }
  const e = await engine;
  if (e.loadFailure && !loadFailureReported.has(e)) {
    loadFailureReported.add(e);
    throw e.loadFailure;
  }
  return e;
}

const loadFailureReported = new WeakSet<OpsCpuEngine>();

/** Replaces the process-wide engine (tests and benchmarks: thread count, scalar kernels). */
export async function configureCpu(options: OpsCpuEngineOptions): Promise<OpsCpuEngine> {
  const previous = engine;
  engine = createCpuEngine(options).then((e) => (started = e));
  (await previous?.catch(() => undefined))?.terminate();
  return engine;
}

/** Whether the kernels get relaxed SIMD, with what the runtime has behind a flag turned on as the engine will. */
function relaxedSimd(): boolean {
  cpuWorkerSpawner.enableWasmFeatures?.();
  return relaxedSimdAvailable();
}

/** One line for `fusedattn info`: threads, SIMD, relaxed SIMD (without starting the pool). */
export async function describeCpu(): Promise<string> {
  if (started) return started.describe();
  const cores = hardwareThreads();
  const shared = sharedMemoryAvailable();
  const threads = cpuThreadsSetting(cores); // throws the ValueError of a malformed FUSEDATTN_CPU_THREADS
  const parts = [
    !shared ? 'single-threaded (no SharedArrayBuffer)'
      : threads === 0 ? 'single-threaded (threads: 0 requested)'
      : `${threads} worker thread${threads === 1 ? '' : 's'} on shared memory (pool starts on first use)`,
    `WASM SIMD ${simdAvailable() ? 'yes' : 'no'}${wasmCompileRefused() ? ` — scalar kernels: ${wasmCompileRefused()}` : ''}`,
    `relaxed SIMD ${relaxedSimd() ? 'yes' : 'no'}`,
  ];
  return parts.join('; ');
}
