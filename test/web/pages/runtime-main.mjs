// Deno and Bun: `deno run runtime-main.mjs` / `bun runtime-main.mjs` in a project that installed
// fusedattn, no flags. Prints one JSON line and exits non-zero when a case failed.
import { runSuite } from './cpu-suite.mjs';

const report = await runSuite({ backend: 'cpu' });
const threads = Math.max(...report.stats.map((s) => s?.threads ?? 0));
console.log(JSON.stringify({ passed: report.passed, failed: report.failed, failures: report.failures.slice(0, 5), threads, cpu: report.backends[0].detail, tiers: [...new Set(report.stats.map((s) => s?.tier))] }));
globalThis.process?.exit?.(report.failed ? 1 : 0);
