// The persistent worker pool: one worker per core, started on first use, kept for the life of the
// process, unref'd while idle so it never keeps Node alive. Every worker instantiates the same
// compiled kernel module on the same shared memory once, at start. A job is posted to as many
// workers as it has tasks (up to all); each claims tasks from the job's shared counter and answers
// 'done'. Several jobs may be in flight: a worker takes them in the order they were posted.
// The pool knows no op: the worker script it starts (`url`) serves one program (program.ts).
//
// Supervision (README "Failure behaviour"): no call waits forever.
//  - A worker that exits or throws (error, then exit in Node) is replaced, and the jobs it had not
//    answered are posted again to its replacement, which claims what is left of them. A job
//    settles once every participant answered; if a task was lost with the worker (it died in the
//    middle of one: the shared count of finished tasks falls short), the job is rejected with a
//    DeviceError naming the worker and why. Only calls whose task was cut off fail.
//  - A task that throws fails its job with a DeviceError; the worker lives on.
//  - A worker that says nothing for `deadlineMs` while the job it is working on (its oldest)
//    claims no task either is hung: it is terminated (so it writes no memory any more), its jobs
//    fail with a DeviceError, and it is replaced. Jobs merely queued behind others never count.
//  - A worker that fails MAX_CONSECUTIVE_FAILURES times without completing a job in between, or
//    whose script does not load, breaks the pool: every later job fails at once with that error
//    (dispose() or configure() starts a new pool). A load failure is reported once, naming the URL.
import { DeviceError } from '../../core/errors.js';
import { CONTROL_BYTES } from './arena.js';
import type { Job } from './jobs.js';
import type { CompiledProgram } from './program.js';
import type { WorkerHandle, WorkerSpawner } from './platform.js';

/** Default time without any progress after which a job is declared hung. */
export const DEFAULT_JOB_DEADLINE_MS = 120_000;
/** Time a new worker has to load its script and instantiate the kernels. */
const START_DEADLINE_MS = 60_000;
/** Failures of one worker slot, without a completed job in between, before the pool gives up. */
export const MAX_CONSECUTIVE_FAILURES = 4;
/** A retired pool stops after this long without a job (a call may be between two of its jobs). */
const RETIRE_GRACE_MS = 2_000;

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

/** Fault injection (tests): throw now (uncaught), throw in the next task, or hang in the next job. */
export type FaultMode = 'throw' | 'throw-in-task' | 'hang';
export interface FaultMessage {
  type: 'fault';
  mode: FaultMode;
}

export type WorkerReply = { type: 'ready'; worker: number } | { type: 'done'; id: number; worker: number; tasks: number; busyMs?: number; error?: string };

export interface PoolOptions {
  /** See DEFAULT_JOB_DEADLINE_MS. */
  deadlineMs?: number;
}

interface Slot {
  handle: WorkerHandle;
  ready: boolean;
  /** Why it is going away, when we know before it exits (an error, a deadline, an injected fault). */
  cause?: string;
  failures: number;
  /** When it last answered (or started). */
  lastReply: number;
}

interface Pending {
  job: Job;
  kind: string;
  taskCount: number;
  counter: number;
  completed: number;
  /** Participants that have not answered (nor died). */
  waiting: Set<number>;
  tasksDone: number;
  taskError?: string;
  /** Why a participant was lost. */
  lost?: string;
  lastCounter: number;
  /** When the counter last moved (or the job was posted). */
  lastProgress: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class WorkerPool {
  readonly size: number;
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Pending>();
  /** Slots whose next worker gets a 'throw' fault before its init message (injectFault). */
  private readonly startFaults = new Set<number>();
  /** Slots being replaced: the messages their replacement gets once it exists. */
  private readonly replacing = new Map<number, JobMessage[]>();
  private nextId = 1;
  private broken: DeviceError | undefined;
  private retiring = false;
  private retireTimer: ReturnType<typeof setTimeout> | undefined;
  private watchdog: ReturnType<typeof setInterval> | undefined;
  private readonly deadlineMs: number;
  /** Tasks each worker ran, summed over the pool's life (tests check that work is spread). */
  readonly tasksByWorker: number[];
  /** Milliseconds each worker spent running tasks (for benchmarks: wall time minus this is overhead). */
  readonly busyMsByWorker: number[];
  /** Workers replaced after a failure, over the pool's life (tests, the fault-injection figures). */
  respawns = 0;

  private constructor(
    threads: number,
    private readonly spawner: WorkerSpawner,
    private readonly init: Omit<InitMessage, 'worker'>,
    options: PoolOptions,
  ) {
    this.size = threads;
    this.deadlineMs = options.deadlineMs ?? DEFAULT_JOB_DEADLINE_MS;
    this.tasksByWorker = new Array<number>(threads).fill(0);
    this.busyMsByWorker = new Array<number>(threads).fill(0);
  }

  static async start(threads: number, spawner: WorkerSpawner, memory: WebAssembly.Memory, compiled: CompiledProgram | undefined, tuning: unknown, options: PoolOptions = {}): Promise<WorkerPool> {
    const pool = new WorkerPool(threads, spawner, { type: 'init', memory, compiled, tuning }, options);
    try {
      await Promise.all(Array.from({ length: threads }, (_, index) => pool.spawn(index, true)));
    } catch (e) {
      pool.terminate();
      throw e;
    }
    return pool;
  }

  /** Why every job fails at once, if the pool gave up. */
  get brokenReason(): DeviceError | undefined {
    return this.broken;
  }

  /** Runs a job on min(size, taskCount) workers; resolves when all of them are done. */
  run(job: Job): Promise<void> {
    if (this.broken) return Promise.reject(this.broken);
    if (this.retireTimer) clearTimeout(this.retireTimer);
    this.retireTimer = undefined;
    const participants = Math.max(1, Math.min(this.size, job.taskCount));
    const id = this.nextId++;
    if (this.pending.size === 0) {
      for (const s of this.slots) s.handle.ref(true);
      this.startWatchdog();
    }
    return new Promise<void>((resolve, reject) => {
      const waiting = new Set(Array.from({ length: participants }, (_, w) => w));
      this.pending.set(id, {
        job, kind: job.kind, taskCount: job.taskCount, counter: job.counter, completed: job.completed, waiting, tasksDone: 0,
        lastCounter: -1, lastProgress: performance.now(), resolve, reject,
      });
      for (const worker of waiting) this.post(worker, { type: 'job', id, worker, job });
    });
  }

  /** Stops every worker; jobs in flight fail with a DeviceError. */
  terminate(reason = 'the CPU worker pool was disposed'): void {
    const error = new DeviceError('cpu', `${reason}; a new call starts a new pool`);
    this.broken ??= error;
    this.stopWatchdog();
    if (this.retireTimer) clearTimeout(this.retireTimer);
    for (const s of this.slots) {
      s.cause = 'was stopped';
      s.handle.terminate();
    }
    for (const job of this.pending.values()) job.reject(error);
    this.pending.clear();
  }

  /** Terminates once no job has been in flight for a moment; jobs posted meanwhile still run. */
  retire(): void {
    this.retiring = true;
    if (this.pending.size === 0) this.scheduleRetire();
  }

  /**
   * Test hook: makes worker `index` fail the way `fault` says (see FaultMode), or terminates it;
   * 'throw-while-starting' makes the next worker started in that slot throw before it is ready.
   */
  injectFault(index: number, fault: FaultMode | 'terminate' | 'throw-while-starting'): void {
    if (fault === 'throw-while-starting') {
      this.startFaults.add(index);
      return;
    }
    const slot = this.slots[index];
    if (!slot) return;
    if (fault === 'terminate') {
      slot.cause = 'was terminated (injected fault)';
      slot.handle.terminate();
    } else {
      slot.handle.post({ type: 'fault', mode: fault } satisfies FaultMessage);
    }
  }

  // ---------------------------------------------------------------- workers

  private post(index: number, message: JobMessage): void {
    const backlog = this.replacing.get(index);
    if (backlog) backlog.push(message);
    else this.slots[index].handle.post(message);
  }

  /**
   * Starts worker `index` (first start or replacement); resolves when it is ready. On the first
   * start, rejects when its script does not load (an error or exit before it is ready, or no
   * answer in START_DEADLINE_MS). A replacement that fails while starting is a worker failure like
   * any other (onExit: replaced again, MAX_CONSECUTIVE_FAILURES in a row break the pool): the script
   * loaded before, so one failed start (a fault landing on the new worker) must not break the pool.
   */
  private async spawn(index: number, initial = false): Promise<void> {
    let handle: WorkerHandle;
    try {
      handle = this.spawner.spawn();
    } catch (e) {
      throw this.loadFailure(index, `could not be created: ${(e as Error).message ?? e}`);
    }
    const failures = this.slots[index]?.failures ?? 0;
    const slot: Slot = { handle, ready: false, failures, lastReply: performance.now() };
    this.slots[index] = slot;
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      let gone = false;
      const fail = (cause: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(this.loadFailure(index, cause));
      };
      // the worker is gone (exit event, or ended by us where no exit event comes: browsers)
      const exited = (code: number) => {
        if (gone) return;
        gone = true;
        if (!slot.ready && initial) return fail(slot.cause ?? `exited with code ${code} while starting`);
        if (!settled) {
          settled = true;
          clearTimeout(timer);
          resolve();
        }
        this.onExit(index, slot, code);
      };
      const end = () => {
        handle.terminate();
        if (!handle.emitsExit) exited(1);
      };
      const timer = setTimeout(() => {
        slot.cause = `did not start within ${START_DEADLINE_MS / 1000} s`;
        if (initial) fail(slot.cause);
        end();
      }, START_DEADLINE_MS);
      (timer as { unref?: () => void }).unref?.();
      handle.onError((e) => {
        slot.cause ??= slot.ready ? `threw ${e.message.split('\n')[0]}` : e.message.split('\n')[0];
        if (!slot.ready && initial) fail(slot.cause); // the script did not load, or threw while starting
        else if (!handle.emitsExit) end(); // browsers: a worker that threw lives on; end it
      });
      handle.onExit((code) => exited(code));
      handle.onMessage((message) => {
        const reply = message as WorkerReply;
        if (reply.type === 'ready') {
          slot.ready = true;
          settled = true;
          clearTimeout(timer);
          // unref after the listeners exist: adding a 'message' listener refs the worker's port again
          handle.ref(this.pending.size > 0);
          resolve();
        } else this.onDone(index, reply);
      });
      if (this.startFaults.delete(index)) handle.post({ type: 'fault', mode: 'throw' } satisfies FaultMessage);
      handle.post({ ...this.init, worker: index } satisfies InitMessage);
      // a replacement takes over the jobs its predecessor had not answered, in order
      const backlog = this.replacing.get(index);
      this.replacing.delete(index);
      for (const message of backlog ?? []) handle.post(message);
    });
  }

  /** The error of a worker that did not start; platform.ts's messages name the script and the cause. */
  private loadFailure(index: number, cause: string): DeviceError {
    return new DeviceError('cpu', cause.includes(this.spawner.url.href) ? `CPU worker ${index}: ${cause}` : `CPU worker ${index} (${this.spawner.url.href}) did not start: ${cause}`);
  }

  private onExit(index: number, slot: Slot, code: number): void {
    if (this.slots[index] !== slot) return; // an old worker of this slot
    const cause = slot.cause ?? `exited with code ${code}`;
    slot.cause = cause;
    if (this.broken) return;
    slot.failures++;
    if (slot.failures >= MAX_CONSECUTIVE_FAILURES) {
      this.fail(new DeviceError('cpu', `the CPU worker pool is broken: worker ${index} failed ${slot.failures} times in a row (last: it ${cause}); dispose() or configure() starts a new pool`));
      return;
    }
    // its unanswered jobs go to the replacement (which claims what is left of each)
    const backlog: JobMessage[] = [];
    for (const [id, job] of this.pending) {
      if (!job.waiting.has(index)) continue;
      job.lost ??= `CPU worker ${index} ${cause}`;
      backlog.push({ type: 'job', id, worker: index, job: job.job });
    }
    this.replacing.set(index, backlog);
    this.respawns++;
    this.spawn(index).catch((e: DeviceError) => this.fail(new DeviceError('cpu', `the CPU worker pool is broken: replacing worker ${index} failed (${e.message})`)));
  }

  // ---------------------------------------------------------------- jobs

  private onDone(index: number, reply: Extract<WorkerReply, { type: 'done' }>): void {
    const job = this.pending.get(reply.id);
    this.slots[index].lastReply = performance.now();
    if (!job || !job.waiting.delete(index)) return;
    this.tasksByWorker[index] += reply.tasks;
    this.busyMsByWorker[index] += reply.busyMs ?? 0;
    job.tasksDone += reply.tasks;
    job.lastProgress = performance.now();
    if (reply.error) job.taskError ??= `CPU worker ${index} failed in a '${job.kind}' task: ${reply.error.split('\n')[0]}`;
    else this.slots[index].failures = 0;
    this.settle(reply.id, job);
  }

  /** Resolves or rejects a job once no participant can still touch its memory. */
  private settle(id: number, job: Pending): void {
    if (job.waiting.size > 0) return;
    this.pending.delete(id);
    if (this.pending.size === 0) {
      this.stopWatchdog();
      for (const s of this.slots) s.handle.ref(false);
      if (this.retiring) this.scheduleRetire();
    }
    if (job.taskError) {
      job.reject(new DeviceError('cpu', job.taskError));
      return;
    }
    // a lost participant may have finished tasks it could not report: the shared count knows
    const finished = job.lost ? Atomics.load(new Int32Array(this.init.memory.buffer, 0, CONTROL_BYTES / 4), job.completed) : job.taskCount;
    if (finished >= job.taskCount) job.resolve(); // every task ran, whoever ran it
    else job.reject(new DeviceError('cpu', `${job.lost} during a '${job.kind}' job (${finished} of ${job.taskCount} tasks done); the call failed, the worker is replaced`));
  }

  private fail(error: DeviceError): void {
    this.broken ??= error;
    this.replacing.clear();
    for (const job of this.pending.values()) job.reject(error);
    this.pending.clear();
    this.stopWatchdog();
    for (const s of this.slots) s.handle.ref(false);
  }

  private scheduleRetire(): void {
    if (this.retireTimer) clearTimeout(this.retireTimer);
    this.retireTimer = setTimeout(() => {
      if (this.pending.size === 0) this.terminate('the CPU worker pool was retired (configure() changed the CPU settings)');
    }, RETIRE_GRACE_MS);
    (this.retireTimer as { unref?: () => void }).unref?.();
  }

  // ---------------------------------------------------------------- deadline

  private startWatchdog(): void {
    if (this.watchdog) return;
    this.watchdog = setInterval(() => this.checkProgress(), Math.max(10, Math.min(1000, this.deadlineMs / 4)));
    (this.watchdog as { unref?: () => void }).unref?.();
  }

  private stopWatchdog(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  /**
   * A worker is hung when it has not answered for deadlineMs and the job it works on (the oldest
   * it has: workers take jobs in order) has claimed no task for as long.
   */
  private checkProgress(): void {
    const counters = new Int32Array(this.init.memory.buffer, 0, CONTROL_BYTES / 4);
    const now = performance.now();
    for (const job of this.pending.values()) {
      const counter = Atomics.load(counters, job.counter);
      if (counter !== job.lastCounter) {
        job.lastCounter = counter;
        job.lastProgress = now;
      }
    }
    const seconds = (this.deadlineMs / 1000).toFixed(this.deadlineMs < 1000 ? 1 : 0);
    this.slots.forEach((slot, index) => {
      if (!slot.ready || slot.cause) return;
      // pending is in posting order: the first job this worker still owes is the one it runs
      const current = [...this.pending.values()].find((job) => job.waiting.has(index));
      if (!current || now - Math.max(slot.lastReply, current.lastProgress) < this.deadlineMs) return;
      slot.cause = `made no progress on a '${current.kind}' job for ${seconds} s (hung) and was terminated`;
      slot.handle.terminate();
    });
  }
}
