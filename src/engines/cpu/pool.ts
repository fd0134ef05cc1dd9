// The persistent worker pool: one worker per core, started on first use, kept for the life of the
// process, unref'd while idle so it never keeps Node alive. Every worker instantiates the same
// compiled kernel module on the same shared memory once, at start. A job is posted to as many
// workers as it has tasks (up to all); each claims tasks from the job's shared counter and answers
// 'done'. Several jobs may be in flight: a worker takes them in the order they were posted.
// The pool knows no op: the worker script it starts (`url`) serves one program (program.ts).
import type { Job } from './jobs.js';
import type { CompiledProgram } from './program.js';
import { type WorkerHandle, startWorker } from './platform.js';

interface Pending {
  remaining: number;
  errors: string[];
  resolve: () => void;
  reject: (e: Error) => void;
}

export interface InitMessage {
  type: 'init';
  worker: number;
  memory: WebAssembly.Memory;
  /** Absent: the worker uses the program's scalar JavaScript kernels. */
  compiled: CompiledProgram | undefined;
  /** The program's build options (what the scalar kernels need to match the compiled ones). */
  tuning: unknown;
}

export interface JobMessage {
  type: 'job';
  id: number;
  worker: number;
  job: Job;
}

export type WorkerReply = { type: 'ready'; worker: number } | { type: 'done'; id: number; worker: number; tasks: number; busyMs?: number; error?: string };

export class WorkerPool {
  readonly size: number;
  private readonly workers: WorkerHandle[];
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private broken: Error | undefined;
  /** Tasks each worker ran, summed over the pool's life (tests check that work is spread). */
  readonly tasksByWorker: number[];
  /** Milliseconds each worker spent running tasks (for benchmarks: wall time minus this is overhead). */
  readonly busyMsByWorker: number[];

  private constructor(workers: WorkerHandle[]) {
    this.workers = workers;
    this.size = workers.length;
    this.tasksByWorker = new Array<number>(workers.length).fill(0);
    this.busyMsByWorker = new Array<number>(workers.length).fill(0);
  }

  static async start(threads: number, url: URL, memory: WebAssembly.Memory, compiled: CompiledProgram | undefined, tuning: unknown): Promise<WorkerPool> {
    const workers = await Promise.all(Array.from({ length: threads }, () => startWorker(url)));
    const pool = new WorkerPool(workers);
    await Promise.all(workers.map((w, index) => new Promise<void>((resolve, reject) => {
      w.onError((e) => {
        reject(e);
        pool.fail(new Error(`CPU worker ${index} failed: ${e.message}`));
      });
      w.onMessage((message) => {
        const reply = message as WorkerReply;
        if (reply.type === 'ready') resolve();
        else pool.onDone(reply);
      });
      const init: InitMessage = { type: 'init', worker: index, memory, compiled, tuning };
      w.post(init);
    })));
    // unref after the listeners exist: adding a 'message' listener refs the worker's port again
    for (const w of workers) w.ref(false);
    return pool;
  }

  /** Runs a job on min(size, taskCount) workers; resolves when all of them are done. */
  run(job: Job): Promise<void> {
    if (this.broken) return Promise.reject(this.broken);
    const participants = Math.max(1, Math.min(this.size, job.taskCount));
    const id = this.nextId++;
    if (this.pending.size === 0) for (const w of this.workers) w.ref(true);
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { remaining: participants, errors: [], resolve, reject });
      for (let worker = 0; worker < participants; worker++) {
        const message: JobMessage = { type: 'job', id, worker, job };
        this.workers[worker].post(message);
      }
    });
  }

  terminate(): void {
    for (const w of this.workers) w.terminate();
    this.fail(new Error('CPU worker pool terminated'));
  }

  private onDone(reply: Extract<WorkerReply, { type: 'done' }>): void {
    const job = this.pending.get(reply.id);
    if (!job) return;
    this.tasksByWorker[reply.worker] += reply.tasks;
    this.busyMsByWorker[reply.worker] += reply.busyMs ?? 0;
    if (reply.error) job.errors.push(reply.error);
    if (--job.remaining > 0) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) for (const w of this.workers) w.ref(false);
    if (job.errors.length) job.reject(new Error(`CPU worker task failed: ${job.errors[0]}`));
    else job.resolve();
  }

  private fail(error: Error): void {
    this.broken = error;
    for (const job of this.pending.values()) job.reject(error);
    this.pending.clear();
    for (const w of this.workers) w.ref(false);
  }
}
