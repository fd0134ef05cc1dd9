// Deno and Bun: `deno run runtime-main.mjs` / `bun runtime-main.mjs` in a project that installed
// fusedattn, no flags (the CPU suite); `--backend=webgpu --only=0,10` runs those cases on WebGPU
// (Bun through Dawn). Prints one JSON line and exits non-zero when a case failed.
import { runSuite } from './cpu-suite.mjs';

const args = Object.fromEntries((globalThis.process?.argv ?? []).slice(2).map((a) => a.replace(/^--/, '').split('=')));
const report = await runSuite({ backend: args.backend ?? 'cpu', ...(args.only ? { only: args.only.split(',').map(Number) } : {}) });
const threads = Math.max(...report.stats.map((s) => s?.threads ?? 0));
console.log(JSON.stringify({
  passed: report.passed, failed: report.failed, unsupported: report.unsupported, failures: report.failures.slice(0, 5), threads,
  cpu: report.backends[0].detail, tiers: [...new Set(report.stats.map((s) => s?.tier))], backends: [...new Set(report.stats.map((s) => s?.backend))],
}));
// no exit(): the process must end by itself once the work is done (idle workers hold nothing)
if (report.failed && globalThis.process) globalThis.process.exitCode = 1;
