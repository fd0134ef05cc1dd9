// The loop of the CPU pool's worker script (worker_threads in Node, a module Web Worker in a
// browser), for any program: it receives the shared memory and the compiled module once, then runs
// job messages. The script itself is the program's (src/ops/cpu-worker.ts): one line that calls
// serveJobs with the program, so the engine never imports an op.
import { type TaskContext, runJobTasks } from './jobs.js';
import type { InitMessage, JobMessage, WorkerReply } from './pool.js';
import type { CpuProgram, KernelSet } from './program.js';
import { isNode } from './platform.js';

interface Port {
  post(message: WorkerReply): void;
  listen(handler: (message: InitMessage | JobMessage) => void): void;
}

async function parentPort(): Promise<Port> {
  if (isNode) {
    const { parentPort: port } = await import('node:worker_threads');
    if (!port) throw new Error('fusedattn CPU worker started outside a worker thread');
    return { post: (m) => port.postMessage(m), listen: (h) => port.on('message', h) };
  }
  const scope = globalThis as unknown as { postMessage(m: unknown): void; addEventListener(t: 'message', h: (e: MessageEvent) => void): void };
  return { post: (m) => scope.postMessage(m), listen: (h) => scope.addEventListener('message', (e) => h(e.data)) };
}

/** Answers the pool's messages with `program`'s kernels and tasks, for the life of the worker. */
export async function serveJobs<K extends KernelSet, J extends object>(program: CpuProgram<K, J>): Promise<void> {
  const port = await parentPort();
  let context: TaskContext<K> | undefined;
  port.listen((message) => {
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
      const start = performance.now();
      tasks = runJobTasks(context, message.job, message.worker);
      port.post({ type: 'done', id: message.id, worker: message.worker, tasks, busyMs: performance.now() - start });
    } catch (e) {
      port.post({ type: 'done', id: message.id, worker: message.worker, tasks, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
    }
  });
}
