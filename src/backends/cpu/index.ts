// The CPU backend: fused FlashAttention-2-style forward on a persistent worker pool with WASM SIMD
// kernels over one shared WebAssembly.Memory (see docs/ARCHITECTURE.md, "CPU backend").
// The engine starts lazily on the first call and is shared by every later call.
import type { AttentionProblem } from '../../ops/attention/problem.js';
import type { AttentionBackend } from '../../ops/attention/backend.js';
import { cpuUnsupported, runFlash, runNaive } from './attention.js';
import { cpuThreadsSetting, onConfigChange, onDispose } from '../../core/config.js';
import { CpuEngine, type CpuEngineOptions } from './engine.js';
import { type MatmulSpec, cpuMatmul } from './matmul.js';
import { hardwareThreads, relaxedSimdAvailable, sharedMemoryAvailable, simdAvailable } from './platform.js';

export { CpuEngine, type CpuEngineOptions, type CpuDescription } from './engine.js';
export { runFlash, runNaive } from './attention.js';
export type { MatmulSpec, MatrixOperand } from './matmul.js';

const cores = await hardwareThreads();
let engine: Promise<CpuEngine> | undefined;
let started: CpuEngine | undefined;

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

/** The process-wide CPU engine, started on first use. */
export function cpuEngine(): Promise<CpuEngine> {
  if (!engine) {
    const attempt = CpuEngine.create().then((e) => (started = e));
    engine = attempt;
    attempt.catch(() => {
      if (engine === attempt) engine = undefined;
    });
  }
  return engine;
}

/** Replaces the process-wide engine (tests and benchmarks: thread count, scalar kernels). */
export async function configureCpu(options: CpuEngineOptions): Promise<CpuEngine> {
  const previous = engine;
  engine = CpuEngine.create(options).then((e) => (started = e));
  (await previous?.catch(() => undefined))?.terminate();
  return engine;
}

/** Batched float32 matmul on the CPU pool (internal API for the transformer runner; see matmul.ts). */
export async function matmul(spec: MatmulSpec) {
  return cpuMatmul(await cpuEngine(), spec);
}

export const cpuBackend: AttentionBackend = {
  name: 'cpu',
  unsupported: (problem: AttentionProblem) => cpuUnsupported(problem),
  run: async (problem) => runFlash(await cpuEngine(), problem),
  runNaive: async (problem) => runNaive(await cpuEngine(), problem),
};

/** One line for `fusedattn info`: threads, SIMD, relaxed SIMD (without starting the pool). */
export function describeCpu(): string {
  if (started) return started.describe();
  const shared = sharedMemoryAvailable();
  const threads = cpuThreadsSetting(cores); // throws the ValueError of a malformed FUSEDATTN_CPU_THREADS
  const parts = [
    !shared ? 'single-threaded (no SharedArrayBuffer)'
      : threads === 0 ? 'single-threaded (threads: 0 requested)'
      : `${threads} worker thread${threads === 1 ? '' : 's'} on shared memory (pool starts on first use)`,
    `WASM SIMD ${simdAvailable() ? 'yes' : 'no'}`,
    `relaxed SIMD ${relaxedSimdAvailable() ? 'yes' : 'no (Node: --experimental-wasm-relaxed-simd)'}`,
  ];
  return parts.join('; ');
}
