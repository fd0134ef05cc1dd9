// Long synchronous loops on the main thread (staging huge inputs, copying results out) give the
// event loop a turn every ~BUDGET_MS, so timers, I/O and progress output keep running: a Pacer
// measures the time since its last yield and yields only when that is over budget, so small calls
// never pay for a yield.

/** Most milliseconds a paced loop keeps the event loop waiting. */
export const BUDGET_MS = 25;

/** Resolves on a later turn of the event loop (setImmediate in Node, a MessageChannel in browsers). */
export function nextTurn(): Promise<void> {
  const g = globalThis as { setImmediate?: (f: () => void) => void };
  if (typeof g.setImmediate === 'function') return new Promise((resolve) => g.setImmediate!(resolve));
  if (typeof MessageChannel === 'function') {
    return new Promise((resolve) => {
      const channel = new MessageChannel();
      channel.port1.onmessage = () => {
        channel.port1.close();
        resolve();
      };
      channel.port2.postMessage(0);
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 0));
}

export class Pacer {
  private last = performance.now();
  constructor(private readonly budgetMs = BUDGET_MS) {}

  /** True when the work since the last yield used up the budget. */
  get due(): boolean {
    return performance.now() - this.last >= this.budgetMs;
  }

  /** Yields if due. */
  async tick(): Promise<void> {
    if (!this.due) return;
    await nextTurn();
    this.last = performance.now();
  }
}

/** Elements per step of a paced copy: 2 Mi floats is a few ms of memcpy, conversion or scan. */
export const PACED_CHUNK = 1 << 21;

/** Runs `step(start, end)` over [0, n) in PACED_CHUNK pieces, yielding between them when due. */
export async function pacedRange(n: number, pacer: Pacer, step: (start: number, end: number) => void): Promise<void> {
  for (let start = 0; start < n; start += PACED_CHUNK) {
    step(start, Math.min(n, start + PACED_CHUNK));
    await pacer.tick();
  }
}
