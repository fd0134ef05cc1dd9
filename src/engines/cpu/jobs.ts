// A job is one parallel launch on the CPU pool: a kind, plain-data parameters and a task count.
// Workers (and the main thread, for tiny jobs and the single-threaded fallback) claim task indices
// from a shared counter with Atomics.add until none are left, so uneven tasks (causal blocks)
// balance themselves. What a task of each kind does is the program's (program.ts); this file is
// imported by the worker script, so keep it free of main-thread code.
import { CONTROL_BYTES } from './arena.js';
import type { Task } from './program.js';

export interface Job<N extends string = string, P = unknown> {
  kind: N;
  params: P;
  taskCount: number;
  /** Index of this job's i32 task counter at the start of the memory. */
  counter: number;
  /**
   * Index of its i32 count of finished tasks: what the pool reads when a worker dies before it
   * could answer (its 'done' message is lost with it), to tell a finished job from a broken one.
   */
  completed: number;
  /** Byte address of worker 0's scratch; worker w uses scratch + w * scratchPerWorker. */
  scratch: number;
  scratchPerWorker: number;
}

/** Whether every task of `job` has been claimed. */
export function jobClaimed(ctx: { memory: { readonly buffer: ArrayBufferLike } }, job: Job): boolean {
  return Atomics.load(new Int32Array(ctx.memory.buffer, 0, CONTROL_BYTES / 4), job.counter) >= job.taskCount;
}

export interface TaskContext<K> {
  kernels: K;
  memory: { readonly buffer: ArrayBufferLike };
  tasks: { readonly [kind: string]: Task<K, never> };
}

/**
 * Claims and runs tasks of `job` until the counter passes the task count (or, on the main thread,
 * until performance.now() passes `until`, so the caller can give the event loop a turn); returns
 * the tasks run.
 */
export function runJobTasks<K>(ctx: TaskContext<K>, job: Job, worker: number, until = Infinity): number {
  const counters = new Int32Array(ctx.memory.buffer, 0, CONTROL_BYTES / 4);
  const run = ctx.tasks[job.kind] as Task<K, unknown> | undefined;
  if (!run) throw new Error(`CPU engine: no task of kind '${job.kind}' in the program`);
  const buffer = () => ctx.memory.buffer;
  const scratch = job.scratch + worker * job.scratchPerWorker;
  let done = 0;
  for (;;) {
    const t = Atomics.add(counters, job.counter, 1);
    if (t >= job.taskCount) return done;
    run(ctx.kernels, buffer, job.params, t, scratch);
    Atomics.add(counters, job.completed, 1);
    done++;
    if (until !== Infinity && performance.now() >= until) return done;
  }
}
