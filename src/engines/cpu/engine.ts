// The CPU engine: the staging memory (Arena), a program's kernels (WASM SIMD, relaxed SIMD or
// scalar JS), and where jobs run: the worker pool, or the main thread for tiny jobs and for the
// single-threaded fallback (no SharedArrayBuffer: a browser page without cross-origin isolation).
// It knows no op: the program (program.ts) brings the kernels and the tasks, and the worker script
// that serves it.
import { DeviceError, UnsupportedError } from '../../core/errors.js';
import { cpuKernelsSetting, cpuThreadsSetting } from '../../core/config.js';
import { Arena, formatBytes } from './arena.js';
import { type Job, jobClaimed, runJobTasks } from './jobs.js';
import { BUDGET_MS, nextTurn } from '../../core/pace.js';
import { WorkerPool } from './pool.js';
import type { CompiledProgram, CpuProgram, KernelKind, KernelSet, Task } from './program.js';
import { type WorkerSpawner, wasmCompileRefused, hardwareThreads, relaxedSimdAvailable, sharedMemoryAvailable, simdAvailable } from './platform.js';

export interface CpuEngineOptions<T = unknown> {
  /** Worker threads; 0 runs everything on the calling thread. Default: the machine's cores. */
  threads?: number;
  /** Kernel implementation. Default 'auto': relaxed SIMD if validated, else SIMD, else scalar. */
  kernels?: 'auto' | 'wasm-simd' | 'scalar';
  /** The program's build options (benchmarks: register blocking and tile sizes). */
  tuning?: Partial<T>;
  /** Jobs estimated below this many flops run on the calling thread (no message round trip). */
  inlineFlops?: number;
  /** A pool job without progress for this long fails (default pool.ts DEFAULT_JOB_DEADLINE_MS; tests lower it). */
  jobDeadlineMs?: number;
  /** How the pool starts its workers (tests: a script that does not load). Default: the program's. */
  spawner?: WorkerSpawner;
}

export interface CpuDescription {
  threads: number;
  sharedMemory: boolean;
  simd: boolean;
  relaxedSimd: boolean;
  kernels: KernelKind;
  /** Why the engine runs single-threaded, when it does. */
  singleThreadedReason?: string;
  /** Why it runs the scalar kernels although WASM SIMD validated (a CSP refusing compilation). */
  scalarReason?: string;
  /** Where the pool's workers started from: the script's URL, or the spawner's fallback. */
  workerScript?: WorkerScript;
  /** Why the workers run the fallback's copy of the script. */
  workerScriptReason?: string;
}

/** 'url': the worker script where the program's spawner points; 'embedded': its fallback's copy. */
export type WorkerScript = 'url' | 'embedded';

export class CpuEngine<K extends KernelSet = KernelSet, J extends object = Record<string, unknown>> {
  private constructor(
    readonly arena: Arena,
    readonly kernels: K,
    private readonly tasks: { readonly [N in keyof J]: Task<K, J[N]> },
    readonly pool: WorkerPool | undefined,
    readonly description: CpuDescription,
    private readonly inlineFlops: number,
  ) {}

  /** Why the workers did not start, when they failed to (reported once by the engine's owner). */
  loadFailure: DeviceError | undefined;

  /** Starts an engine running `program`, whose workers `spawner` starts. */
  static async create<K extends KernelSet, J extends object, T>(program: CpuProgram<K, J, T>, spawner: WorkerSpawner, options: CpuEngineOptions<T> = {}): Promise<CpuEngine<K, J>> {
    const shared = sharedMemoryAvailable();
    const simd = simdAvailable();
    spawner.enableWasmFeatures?.();
    const relaxed = relaxedSimdAvailable();
    // configure() / FUSEDATTN_CPU_THREADS are validated and clamped to the cores there;
    // options.threads (tests, benchmarks) is taken as given
    let threads = options.threads ?? cpuThreadsSetting(hardwareThreads());
    let singleThreadedReason: string | undefined;
    if (!shared && threads > 0) {
      singleThreadedReason = 'SharedArrayBuffer is unavailable (browsers need cross-origin isolation: COOP/COEP headers)';
      threads = 0;
    } else if (threads === 0) singleThreadedReason = 'threads: 0 requested';

    const arena = new Arena(shared && threads > 0);
    const want = options.kernels ?? cpuKernelsSetting();
    const tuning = options.tuning ?? {};
    let compiled: CompiledProgram | undefined;
    let scalarReason: string | undefined;
    const refused = want !== 'scalar' && simd ? wasmCompileRefused() : undefined;
    if (refused && want === 'wasm-simd') throw new UnsupportedError('cpuKernels', `CPU kernels "wasm-simd" were asked for, but ${refused}`);
    if (refused) scalarReason = refused;
    else if (want !== 'scalar' && simd) {
      try {
        compiled = await program.compile({ shared: arena.shared, maximumPages: arena.maximumPages, relaxed: want === 'auto' && relaxed, tuning });
      } catch (e) {
        // A Content-Security-Policy without 'wasm-unsafe-eval' refuses WebAssembly compilation
        // (a CompileError) but not WebAssembly.Memory: the scalar kernels run on the same arena.
        if (want === 'wasm-simd') throw new UnsupportedError('cpuKernels', `CPU kernels "wasm-simd" were asked for, but WebAssembly compilation failed here: ${(e as Error).message}`);
        scalarReason = `WebAssembly compilation refused (${(e as Error).message.slice(0, 200)}); a Content-Security-Policy needs 'wasm-unsafe-eval' in script-src for the SIMD kernels`;
      }
    }
    const kernels = compiled ? program.instantiate(compiled, arena.memory) : program.scalar(arena.memory, tuning);
    let pool: WorkerPool | undefined;
    let loadFailure: DeviceError | undefined;
    let workerScript: WorkerScript | undefined;
    let workerScriptReason: string | undefined;
    if (threads > 0) {
      const started = await startWorkers(threads, options.spawner ?? spawner, (s) => WorkerPool.start(threads, s, arena.memory, compiled, tuning, { deadlineMs: options.jobDeadlineMs }));
      ({ pool, workerScript, workerScriptReason, loadFailure } = started);
      if (!pool) {
        // The engine runs on the calling thread instead and never tries the workers again; the
        // caller reports loadFailure once.
        singleThreadedReason = `the worker script failed to load (${loadFailure?.message})`;
        threads = 0;
      }
    }
    const description: CpuDescription = {
      threads: Math.max(threads, 1), sharedMemory: shared, simd, relaxedSimd: relaxed, kernels: kernels.kind, singleThreadedReason, scalarReason, workerScript, workerScriptReason,
    };
    const engine = new CpuEngine<K, J>(arena, kernels, program.tasks, pool, description, options.inlineFlops ?? 2e6);
    engine.loadFailure = loadFailure;
    return engine;
  }

  describe(): string {
    const d = this.description;
    const script = d.workerScript === 'embedded' ? ` (workers from the embedded copy of their script: ${d.workerScriptReason})` : '';
    const where = this.pool ? `${this.pool.size} worker threads on shared memory${script}` : `single-threaded (${d.singleThreadedReason})`;
    const scalar = d.scalarReason ? ` — scalar fallback: ${d.scalarReason}` : '';
    return `${where}; kernels ${d.kernels} (WASM SIMD ${d.simd ? 'yes' : 'no'}, relaxed SIMD ${d.relaxedSimd ? 'yes' : 'no'})${scalar}; staging memory ${formatBytes(this.arena.byteLength)}`;
  }

  /** What a result's stats say about this engine: kernels (the tier), threads, and any fallback. */
  execution(taskCount: number, flops: number): { tier: string; threads: number; workerScript?: WorkerScript; fallback?: string } {
    const d = this.description;
    const threads = this.pool && flops >= this.inlineFlops ? this.participants(taskCount) : 1;
    const reasons = [d.singleThreadedReason && !this.pool ? `single-threaded: ${d.singleThreadedReason}` : undefined, d.scalarReason ? `scalar kernels: ${d.scalarReason}` : undefined].filter(Boolean);
    return { tier: d.kernels, threads, ...(d.workerScript ? { workerScript: d.workerScript } : {}), ...(reasons.length ? { fallback: reasons.join('; ') } : {}) };
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
    let completed: number;
    try {
      completed = this.arena.takeCounter();
    } catch (e) {
      this.arena.giveCounter(counter);
      throw e;
    }
    const job: Job<N, J[N]> = { kind, params, taskCount, counter, completed, scratch, scratchPerWorker };
    try {
      if (this.pool && flops >= this.inlineFlops) await this.pool.run(job as Job);
      else {
        // on this thread: a turn for the event loop between tasks every BUDGET_MS (the
        // single-threaded fallback runs whole calls here; one task is not split)
        const ctx = { kernels: this.kernels, memory: this.arena.memory, tasks: this.tasks as never };
        for (;;) {
          runJobTasks(ctx, job as Job, 0, performance.now() + BUDGET_MS);
          if (jobClaimed(ctx, job as Job)) break;
          await nextTurn();
        }
      }
    } finally {
      this.arena.giveCounter(counter);
      this.arena.giveCounter(completed);
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

interface StartedWorkers {
  pool?: WorkerPool;
  workerScript?: WorkerScript;
  workerScriptReason?: string;
  /** Why no worker started, to report once (a script that did not load). */
  loadFailure?: DeviceError;
}

/**
 * The pool from the spawner's script; when that script does not load, from the spawner's fallback (the browser's embedded copy, as a blob: URL). When neither starts, the
 * failure names both causes.
 */
async function startWorkers(threads: number, spawner: WorkerSpawner, start: (spawner: WorkerSpawner) => Promise<WorkerPool>): Promise<StartedWorkers> {
  let first: DeviceError;
  try {
    return { pool: await start(spawner), workerScript: 'url' };
  } catch (e) {
    first = e instanceof DeviceError ? e : new DeviceError('cpu', `CPU workers failed to start from ${spawner.url.href}: ${(e as Error).message}`);
  }
  if (!spawner.fallback) return { loadFailure: first };
  try {
    const pool = await start(await spawner.fallback());
    return { pool, workerScript: 'embedded', workerScriptReason: first.message };
  } catch (e) {
    return {
      loadFailure: new DeviceError('cpu', `${first.message}; the embedded copy of the worker script did not start either: ${(e as Error).message}. Serve the worker script (copy fusedattn's dist/ops/cpu-worker.js next to the bundle) or allow blob: in worker-src; until then the CPU backend runs on the calling thread`),
    };
  }
}
