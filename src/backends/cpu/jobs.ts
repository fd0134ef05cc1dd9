// A job is one parallel launch on the CPU pool: a kind, plain-data parameters and a task count.
// Workers (and the main thread, for tiny jobs and the single-threaded fallback) claim task indices
// from a shared counter with Atomics.add until none are left, so uneven tasks (causal blocks)
// balance themselves. This file is imported by the worker script; keep it free of main-thread code.
import { CONTROL_BYTES } from './arena.js';
import { type FlashParams, flashPackTask, flashTask } from './flash.js';
import type { Kernels } from './kernels.js';
import { type MatmulParams, matmulTask } from './matmul-task.js';
import { type NaiveParams, naivePvTask, naiveScoresTask, naiveSoftmaxTask } from './naive.js';

export interface JobParamsOf {
  flash: FlashParams;
  'flash-pack': FlashParams;
  'naive-scores': NaiveParams;
  'naive-softmax': NaiveParams;
  'naive-pv': NaiveParams;
  matmul: MatmulParams;
}

export type JobKind = keyof JobParamsOf;

export interface Job<K extends JobKind = JobKind> {
  kind: K;
  params: JobParamsOf[K];
  taskCount: number;
  /** Index of this job's i32 task counter at the start of the memory. */
  counter: number;
  /** Byte address of worker 0's scratch; worker w uses scratch + w * scratchPerWorker. */
  scratch: number;
  scratchPerWorker: number;
}

type Task<P> = (kernels: Kernels, buffer: () => ArrayBufferLike, params: P, task: number, scratch: number) => void;

const TASKS: { [K in JobKind]: Task<JobParamsOf[K]> } = {
  flash: flashTask,
  'flash-pack': flashPackTask,
  'naive-scores': naiveScoresTask,
  'naive-softmax': naiveSoftmaxTask,
  'naive-pv': naivePvTask,
  matmul: matmulTask,
};

/** Whether every task of `job` has been claimed. */
export function jobClaimed(ctx: TaskContext, job: Job): boolean {
  return Atomics.load(new Int32Array(ctx.memory.buffer, 0, CONTROL_BYTES / 4), job.counter) >= job.taskCount;
}

export interface TaskContext {
  kernels: Kernels;
  memory: { readonly buffer: ArrayBufferLike };
}

/**
 * Claims and runs tasks of `job` until the counter passes the task count (or, on the main thread,
 * until performance.now() passes `until`, so the caller can give the event loop a turn); returns
 * the tasks run.
 */
export function runJobTasks(ctx: TaskContext, job: Job, worker: number, until = Infinity): number {
  const counters = new Int32Array(ctx.memory.buffer, 0, CONTROL_BYTES / 4);
  const run = TASKS[job.kind] as Task<unknown>;
  const buffer = () => ctx.memory.buffer;
  const scratch = job.scratch + worker * job.scratchPerWorker;
  let done = 0;
  for (;;) {
    const t = Atomics.add(counters, job.counter, 1);
    if (t >= job.taskCount) return done;
    run(ctx.kernels, buffer, job.params, t, scratch);
    done++;
    if (until !== Infinity && performance.now() >= until) return done;
  }
}
