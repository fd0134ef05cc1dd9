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
