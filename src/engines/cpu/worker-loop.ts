// The loop of the CPU pool's worker script (worker_threads in Node, a module Web Worker in a
// browser), for any program: it receives the shared memory and the compiled module once, then runs
// job messages. The scripts themselves are the program's (src/ops/cpu-worker.ts for web workers,
// cpu-worker-node.ts for worker_threads): one line that calls serveJobs with the program and the
// port, so the engine never imports an op, nor a Node module.
import { type TaskContext, runJobTasks } from './jobs.js';
import type { FaultMessage, FaultMode, InitMessage, JobMessage, WorkerReply } from './pool.js';
import type { CpuProgram, KernelSet } from './program.js';

/** The worker's side of the channel to the pool. */
export interface WorkerPort {
  post(message: WorkerReply): void;
  listen(handler: (message: InitMessage | JobMessage | FaultMessage) => void): void;
}

/** The port of a module Web Worker (browsers, Deno): its global scope. */
export function selfPort(): WorkerPort {
  const scope = globalThis as unknown as { postMessage(m: unknown): void; addEventListener(t: 'message', h: (e: MessageEvent) => void): void };
  return { post: (m) => scope.postMessage(m), listen: (h) => scope.addEventListener('message', (e) => h(e.data)) };
}

/** The port of a node:worker_threads worker (its parentPort, typed here so no Node module is imported). */
export function nodePort(port: { postMessage(m: unknown): void; on(event: 'message', h: (m: unknown) => void): unknown } | null): WorkerPort {
  if (!port) throw new Error('fusedattn CPU worker started outside a worker thread');
  return { post: (m) => port.postMessage(m), listen: (h) => port.on('message', h as (m: unknown) => void) };
}

/** Answers the pool's messages with `program`'s kernels and tasks, for the life of the worker. */
export function serveJobs<K extends KernelSet, J extends object>(program: CpuProgram<K, J>, port: WorkerPort): void {
  let context: TaskContext<K> | undefined;
  // the pool's fault injection (tests): what the next job does instead of its work
  let fault: FaultMode | undefined;
  port.listen((message) => {
    if (message.type === 'fault') {
      if (message.mode === 'throw') throw new Error('fault injected by the pool: an uncaught exception in the worker');
      fault = message.mode;
      return;
    }
    if (message.type === 'init') {
      const memory = message.memory;
      const kernels = message.compiled ? program.instantiate(message.compiled, memory) : program.scalar(memory, message.tuning as never);
      context = { kernels, memory, tasks: program.tasks as TaskContext<K>['tasks'] };
      port.post({ type: 'ready', worker: message.worker });
      return;
    }
    let tasks = 0;
    try {
      if (!context) throw new Error('job before init');
      const injected = fault;
      fault = undefined;
      if (injected === 'throw-in-task') throw new Error('fault injected by the pool: a task threw');
      if (injected === 'hang') for (;;) { /* a stuck task: only terminate() ends it */ }
      const start = performance.now();
      tasks = runJobTasks(context, message.job, message.worker);
      port.post({ type: 'done', id: message.id, worker: message.worker, tasks, busyMs: performance.now() - start });
    } catch (e) {
      port.post({ type: 'done', id: message.id, worker: message.worker, tasks, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
    }
  });
}
