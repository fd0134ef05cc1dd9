// The CPU engine: the staging memory (Arena), the kernels (WASM SIMD, relaxed SIMD or scalar JS),
// and where jobs run: the worker pool, or the main thread for tiny jobs and for the
// single-threaded fallback (no SharedArrayBuffer: a browser page without cross-origin isolation).
import { UnsupportedError } from '../../core/errors.js';
import { cpuKernelsSetting, cpuThreadsSetting } from '../../core/config.js';
import { Arena, formatBytes } from './arena.js';
import { type CompiledKernels, type KernelKind, type Kernels, compileKernels, instantiateKernels, scalarKernels, tileGeometry } from './kernels.js';
import type { DEFAULT_KERNEL_OPTIONS } from './wasm/kernels.js';
import { type Job, type JobKind, type JobParamsOf, jobClaimed, runJobTasks } from './jobs.js';
import { BUDGET_MS, nextTurn } from '../../core/pace.js';
import { WorkerPool } from './pool.js';
import { hardwareThreads, relaxedSimdAvailable, sharedMemoryAvailable, simdAvailable } from './platform.js';

export interface CpuEngineOptions {
  /** Worker threads; 0 runs everything on the calling thread. Default: the machine's cores. */
  threads?: number;
  /** Kernel implementation. Default 'auto': relaxed SIMD if validated, else SIMD, else scalar. */
  kernels?: 'auto' | 'wasm-simd' | 'scalar';
  /** Kernel register blocking and tile sizes (benchmarks; defaults in wasm/kernels.ts). */
  tuning?: Partial<typeof DEFAULT_KERNEL_OPTIONS>;
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

export class CpuEngine {
  readonly arena: Arena;
  readonly kernels: Kernels;
  readonly pool: WorkerPool | undefined;
  readonly description: CpuDescription;
  private readonly inlineFlops: number;

  private constructor(arena: Arena, kernels: Kernels, pool: WorkerPool | undefined, description: CpuDescription, inlineFlops: number) {
    this.arena = arena;
    this.kernels = kernels;
    this.pool = pool;
    this.description = description;
    this.inlineFlops = inlineFlops;
  }

  static async create(options: CpuEngineOptions = {}): Promise<CpuEngine> {
    const shared = sharedMemoryAvailable();
    const simd = simdAvailable();
    const relaxed = relaxedSimdAvailable();
    // configure() / FUSEDATTN_CPU_THREADS are validated and clamped to the cores there;
    // options.threads (tests, benchmarks) is taken as given
    let threads = options.threads ?? cpuThreadsSetting(await hardwareThreads());
    let singleThreadedReason: string | undefined;
    if (!shared && threads > 0) {
      singleThreadedReason = 'SharedArrayBuffer is unavailable (browsers need cross-origin isolation: COOP/COEP headers)';
      threads = 0;
    } else if (threads === 0) singleThreadedReason = 'threads: 0 requested';

    const arena = new Arena(shared && threads > 0);
    const want = options.kernels ?? cpuKernelsSetting();
    let compiled: CompiledKernels | undefined;
    if (want !== 'scalar' && simd) compiled = await compileKernels(arena.shared, arena.maximumPages, want === 'auto' && relaxed, options.tuning);
    const kernels = compiled ? instantiateKernels(compiled, arena.memory) : scalarKernels(arena.memory, tileGeometry(options.tuning));
    const pool = threads > 0 ? await WorkerPool.start(threads, arena.memory, compiled, kernels.tiles) : undefined;
    const description: CpuDescription = { threads: Math.max(threads, 1), sharedMemory: shared, simd, relaxedSimd: relaxed, kernels: kernels.kind, singleThreadedReason };
    return new CpuEngine(arena, kernels, pool, description, options.inlineFlops ?? 2e6);
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
  async execute<K extends JobKind>(kind: K, params: JobParamsOf[K], taskCount: number, scratch: number, scratchPerWorker: number, flops: number): Promise<void> {
    if (taskCount === 0) return;
    const counter = this.arena.takeCounter();
    const job: Job<K> = { kind, params, taskCount, counter, scratch, scratchPerWorker };
    try {
      if (this.pool && flops >= this.inlineFlops) await this.pool.run(job as Job);
      else {
        // on this thread: a turn for the event loop between tasks every BUDGET_MS (the
        // single-threaded fallback runs whole calls here; one task is not split)
        const ctx = { kernels: this.kernels, memory: this.arena.memory };
        for (;;) {
          runJobTasks(ctx, job as Job, 0, performance.now() + BUDGET_MS);
          if (jobClaimed(ctx, job as Job)) break;
          await nextTurn();
        }
      }
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

  /** Stops the workers once the jobs in flight are done (configure() changed the CPU settings). */
  retire(): void {
    this.pool?.retire();
  }
}
