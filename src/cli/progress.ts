// Progress for long steps: on a terminal, one line that updates its elapsed time; in a log
// (CI, a pipe), a line every 10 s so a slow run is visibly alive without flooding the log.
// Timers only tick while the main thread is free, which it is while a backend's workers or GPU work.

export async function withProgress<T>(label: string, work: () => Promise<T>): Promise<T> {
  const tty = process.stderr.isTTY === true;
  const start = performance.now();
  const elapsed = () => ((performance.now() - start) / 1000).toFixed(tty ? 1 : 0);
  if (tty) process.stderr.write(`  ${label} ...`);
  const timer = setInterval(() => {
    if (tty) process.stderr.write(`\r  ${label} ... ${elapsed()} s`);
    else process.stderr.write(`  ${label}: still running after ${elapsed()} s\n`);
  }, tty ? 250 : 10_000);
  try {
    return await work();
  } finally {
    clearInterval(timer);
    if (tty) process.stderr.write('\r\x1b[K');
  }
}

/** A step header, "[2/5] calibrating ...", on stdout. */
export function step(index: number, total: number, text: string): void {
  console.log(`[${index}/${total}] ${text}`);
}

/**
 * A progress line on stderr that the caller updates (generate: tokens so far): on a terminal,
 * rewritten in place at most every 100 ms; in a log, a line every 10 s. done() clears it.
 */
export function progressLine(label: string): { update(text: string): void; done(): void } {
  const tty = process.stderr.isTTY === true;
  const every = tty ? 100 : 10_000;
  let last = performance.now();
  let shown = false;
  return {
    update(text) {
      const now = performance.now();
      if (now - last < every) return;
      last = now;
      shown = true;
      if (tty) process.stderr.write(`\r\x1b[K  ${label}: ${text}`);
      else process.stderr.write(`  ${label}: ${text}\n`);
    },
    done() {
      if (tty && shown) process.stderr.write('\r\x1b[K');
    },
  };
}
