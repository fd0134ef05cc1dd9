#!/usr/bin/env node
// Linear attention (elu+1, non-causal and causal) and Performer (M 256) on the CPU at the issue's
// head size, B1 H8 S4096 D128 float32 BNSD: the rows session 16's CPU changes were measured on.
// Each call's output is first spot-checked against the float64 reference (four rows of head 1,
// relative error <= 1e-4 of the rows' largest value); a failing call prints FAIL and no time.
// Median of 5 after a warm-up call.
//
//   node bench/linear-cpu.mjs [--threads N]      (after npm run build)
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const lib = await import(join(root, 'dist', 'index.js'));
const testing = await import(join(root, 'dist', 'testing', 'index.js'));
const { validateApprox } = await import(join(root, 'dist', 'ops', 'approx', 'problem.js'));
const { referenceApproxRows } = await import(join(root, 'dist', 'ops', 'approx', 'index.js'));
const { configureCpu } = await import(join(root, 'dist', 'ops', 'cpu-engine.js'));
const args = process.argv.slice(2);
const threads = args.includes('--threads') ? Number(args[args.indexOf('--threads') + 1]) : 1;
await configureCpu({ threads });

const c = { batch: 1, headsQ: 8, seqQ: 4096, seqK: 4096, dimQK: 128 };
const { q, k, v } = testing.makeCase(c, 3);
const rows = [0, 1000, 2047, 4095];
const CALLS = [
  ['linear elu+1', 'linear', {}],
  ['linear elu+1, causal', 'linear', { causal: true }],
  ['Performer M 256', 'performer', { features: 256 }],
];

console.log(`CPU approximate attention, B1 H8 S4096 D128 float32 (${os.cpus()[0]?.model}, ${threads} thread${threads === 1 ? '' : 's'}, Node ${process.version}, ${new Date().toISOString()}); median of 5\n`);
console.log('| call | ms | spot error |');
console.log('|---|---:|---:|');
for (const [name, kind, options] of CALLS) {
  const run = () => (kind === 'linear' ? lib.linearAttention(q, k, v, { ...options, backend: 'cpu' }) : lib.performerAttention(q, k, v, { ...options, backend: 'cpu' }));
  const got = (await run()).out.data;
  const ref = referenceApproxRows(validateApprox(kind, q, k, v, options), 0, 1, rows);
  let err = 0;
  let scale = 1e-30;
  rows.forEach((i, n) => ref[n].forEach((r, d) => {
    err = Math.max(err, Math.abs(got[(1 * c.seqQ + i) * c.dimQK + d] - r));
    scale = Math.max(scale, Math.abs(r));
  }));
  if (!(err / scale <= 1e-4)) {
    console.log(`| ${name} | FAIL: spot error ${(err / scale).toExponential(2)} | |`);
    continue;
  }
  const times = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await run();
    times.push(performance.now() - t0);
  }
  times.sort((x, y) => x - y);
  console.log(`| ${name} | ${times[2].toFixed(1)} | ${(err / scale).toExponential(1)} |`);
}
process.exit(0);
