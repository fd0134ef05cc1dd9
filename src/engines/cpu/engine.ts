// The CPU engine: the staging memory (Arena), a program's kernels (WASM SIMD, relaxed SIMD or
// scalar JS), and where jobs run: the worker pool, or the main thread for tiny jobs and for the
// single-threaded fallback (no SharedArrayBuffer: a browser page without cross-origin isolation).
// It knows no op: the program (program.ts) brings the kernels and the tasks, and the worker script
// that serves it.
import { UnsupportedError } from '../../core/errors.js';
import { Arena, formatBytes } from './arena.js';
import { type Job, runJobTasks } from './jobs.js';
import { WorkerPool } from './pool.js';
import type { CompiledProgram, CpuProgram, KernelKind, KernelSet, Task } from './program.js';
import { envVar, hardwareThreads, relaxedSimdAvailable, sharedMemoryAvailable, simdAvailable } from './platform.js';

export interface CpuEngineOptions<T = unknown> {
  /** Worker threads; 0 runs everything on the calling thread. Default: the machine's cores. */
  threads?: number;
  /** Kernel implementation. Default 'auto': relaxed SIMD if validated, else SIMD, else scalar. */
  kernels?: 'auto' | 'wasm-simd' | 'scalar';
  /** The program's build options (benchmarks: register blocking and tile sizes). */
  tuning?: Partial<T>;
  /** Jobs estimated below this many flops run on the calling thread (no message round trip). */
  inlineFlops?: number;
}

export interface CpuDescription {
  threads: number;
  sharedMemory: boolean;
  simd: boolean;
  relaxedSimd: boolean;
  kernels: KernelKind;
  /** Why the engine runs single-threaded, when it does. */
  singleThreadedReason?: string;
}

export class CpuEngine<K extends KernelSet = KernelSet, J extends object = Record<string, unknown>> {
  private constructor(
    readonly arena: Arena,
    readonly kernels: K,
    private readonly tasks: { readonly [N in keyof J]: Task<K, J[N]> },
    readonly pool: WorkerPool | undefined,
    readonly description: CpuDescription,
    private readonly inlineFlops: number,
  ) {}

  /** Starts an engine running `program`, whose worker script is at `workerUrl`. */
  static async create<K extends KernelSet, J extends object, T>(program: CpuProgram<K, J, T>, workerUrl: URL, options: CpuEngineOptions<T> = {}): Promise<CpuEngine<K, J>> {
    const shared = sharedMemoryAvailable();
    const simd = simdAvailable();
    const relaxed = relaxedSimdAvailable();
    const fromEnv = envVar('FUSEDATTN_CPU_THREADS');
    let threads = options.threads ?? (fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) : await hardwareThreads());
    if (!Number.isInteger(threads) || threads < 0) threads = 1;
    let singleThreadedReason: string | undefined;
    if (!shared && threads > 0) {
      singleThreadedReason = 'SharedArrayBuffer is unavailable (browsers need cross-origin isolation: COOP/COEP headers)';
      threads = 0;
    } else if (threads === 0) singleThreadedReason = 'threads: 0 requested';

    const arena = new Arena(shared && threads > 0);
    const want = options.kernels ?? (envVar('FUSEDATTN_CPU_KERNELS') as CpuEngineOptions['kernels']) ?? 'auto';
    const tuning = options.tuning ?? {};
    let compiled: CompiledProgram | undefined;
    if (want !== 'scalar' && simd) compiled = await program.compile({ shared: arena.shared, maximumPages: arena.maximumPages, relaxed: want === 'auto' && relaxed, tuning });
    const kernels = compiled ? program.instantiate(compiled, arena.memory) : program.scalar(arena.memory, tuning);
    const pool = threads > 0 ? await WorkerPool.start(threads, workerUrl, arena.memory, compiled, tuning) : undefined;
    const description: CpuDescription = { threads: Math.max(threads, 1), sharedMemory: shared, simd, relaxedSimd: relaxed, kernels: kernels.kind, singleThreadedReason };
    return new CpuEngine<K, J>(arena, kernels, program.tasks, pool, description, options.inlineFlops ?? 2e6);
  }

  describe(): string {
    const d = this.description;
    const where = this.pool ? `${this.pool.size} worker threads on shared memory` : `single-threaded (${d.singleThreadedReason})`;
    return `${where}; kernels ${d.kernels} (WASM SIMD ${d.simd ? 'yes' : 'no'}, relaxed SIMD ${d.relaxedSimd ? 'yes' : 'no'}); staging memory ${formatBytes(this.arena.byteLength)}`;
  }

  /** Workers a job of `taskCount` tasks would use (scratch is allocated per worker). */
  participants(taskCount: number): number {
    return this.pool ? Math.max(1, Math.min(this.pool.size, taskCount)) : 1;
  }

  /**
   * Runs one job: on the pool, or inline when it is tiny or there is no pool. `scratch` is the
   * address of participants(taskCount) × scratchPerWorker bytes the caller allocated.
   */
  async execute<N extends keyof J & string>(kind: N, params: J[N], taskCount: number, scratch: number, scratchPerWorker: number, flops: number): Promise<void> {
    if (taskCount === 0) return;
    const counter = this.arena.takeCounter();
    const job: Job<N, J[N]> = { kind, params, taskCount, counter, scratch, scratchPerWorker };
    try {
      if (this.pool && flops >= this.inlineFlops) await this.pool.run(job as Job);
      else runJobTasks({ kernels: this.kernels, memory: this.arena.memory, tasks: this.tasks as never }, job as Job, 0);
    } finally {
      this.arena.giveCounter(counter);
    }
  }

  /** Throws UnsupportedError when `bytes` of staging cannot fit the wasm32 memory. */
  checkCapacity(bytes: number): void {
    if (bytes > this.arena.capacity) {
      throw new UnsupportedError('backend', `CPU backend: this call needs ${formatBytes(bytes)} of staging memory; a wasm32 memory holds at most ${formatBytes(this.arena.capacity)}`);
    }
  }

  terminate(): void {
    this.pool?.terminate();
  }
}
