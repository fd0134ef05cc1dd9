#!/usr/bin/env node
// One tile of the CPU backward (bwd-head: 64 query rows × 64 keys) kernel by kernel on one core,
// with the operands' rows as BNSD stores them (row stride D floats) and as BSND at 8 heads does
// (8·D: at D 128 that is 4 KiB, the stride that made the backward 1.3x slower before its operands
// were staged head-major). Each WASM kernel is first run against its scalar twin on the same
// inputs (max |diff| <= 1e-5 · max |scalar|); a kernel that disagrees prints FAIL and no time.
//
//   node bench/cpu-backward-tile.mjs [--dim 64] [--reps 400]      (after npm run build)
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { compileKernels, instantiateKernels, scalarKernels } = await import(join(root, 'dist', 'ops', 'cpu-program.js'));
const args = process.argv.slice(2);
const flag = (name, fallback) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback);
const D = flag('--dim', 64);
const REPS = flag('--reps', 400);
const R = 64;
const C = 64;
const LDS = 4 * C;
const memory = new WebAssembly.Memory({ initial: 4096, maximum: 65536, shared: true });
const f = new Float32Array(memory.buffer);
const wasm = instantiateKernels(await compileKernels(true, 65536, false), memory);
const scalar = scalarKernels(memory);

/** Regions: row-major operands of 64 rows at stride `ld` bytes, and the S-shaped tiles. */
function layout(ld) {
  const at = {};
  let next = 1 << 16;
  for (const [name, bytes] of [['q', ld * R], ['k', ld * C], ['v', ld * C], ['dO', ld * R], ['dq', ld * R], ['dk', ld * C], ['dv', ld * C], ['s', 4 * R * C], ['dp', 4 * R * C], ['tr', 4 * R * C], ['lse', 4 * R], ['delta', 4 * R]]) {
    at[name] = next;
    next += bytes + 4096;
  }
  return at;
}

function fill(at, ld) {
  const seed = (i) => Math.sin(i * 12.9898) * 0.5;
  for (const name of ['q', 'k', 'v', 'dO', 'dq', 'dk', 'dv']) for (let r = 0; r < R; r++) for (let d = 0; d < D; d++) f[((at[name] + r * ld) >> 2) + d] = seed(r * 977 + d * 31 + name.length);
  for (let r = 0; r < R; r++) {
    f[(at.lse >> 2) + r] = 2 + 0.01 * r;
    f[(at.delta >> 2) + r] = 0.1 * Math.cos(r);
    for (let c = 0; c < C; c++) {
      f[((at.s + r * LDS) >> 2) + c] = seed(r * 64 + c);
      f[((at.dp + r * LDS) >> 2) + c] = seed(r * 64 + c + 7);
    }
  }
}

/** The tile's kernels as bwd-head calls them (tasks.ts), each a function of the kernel set. */
function kernelsOf(at, ld) {
  return {
    'S = QKᵀ (gemm_nt)': { out: ['s', LDS, R, C], run: (K) => K.gemm_nt(at.q, ld, at.k, ld, D, 0, 0, 0, 0, 0, at.s, LDS, R, C, 0.125, 0), flops: 2 * R * C * D },
    'P = exp (bwd_probs)': { out: ['s', LDS, R, C], run: (K) => K.bwd_probs(at.s, LDS, R, C, at.lse, 1) },
    'dP = dO·Vᵀ (gemm_nt)': { out: ['dp', LDS, R, C], run: (K) => K.gemm_nt(at.dO, ld, at.v, ld, D, 0, 0, 0, 0, 0, at.dp, LDS, R, C, 1, 0), flops: 2 * R * C * D },
    'dS (bwd_dscores)': { out: ['dp', LDS, R, C], run: (K) => K.bwd_dscores(at.s, at.dp, LDS, R, C, at.delta) },
    'transpose': { out: ['tr', LDS, C, R], run: (K) => K.transpose(at.s, LDS, R, C, at.tr, LDS) },
    'dV += Pᵀ·dO (gemm_nn)': { out: ['dv', ld, C, D], run: (K) => K.gemm_nn(at.tr, LDS, at.dO, ld, R, at.dv, ld, C, D, 1, 0), flops: 2 * R * C * D },
    'dQ += dS·K (gemm_nn)': { out: ['dq', ld, R, D], run: (K) => K.gemm_nn(at.dp, LDS, at.k, ld, C, at.dq, ld, R, D, 1, 0), flops: 2 * R * C * D },
  };
}

function read(at, [name, ld, rows, cols]) {
  const values = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) values[r * cols + c] = f[((at[name] + r * ld) >> 2) + c];
  return values;
}

const results = [];
for (const [label, heads] of [['BNSD rows', 1], ['BSND rows, 8 heads', 8]]) {
  const ld = 4 * D * heads;
  const at = layout(ld);
  for (const [name, k] of Object.entries(kernelsOf(at, ld))) {
    // the check: both implementations from the same inputs
    fill(at, ld);
    k.run(scalar);
    const want = read(at, k.out);
    fill(at, ld);
    k.run(wasm);
    const got = read(at, k.out);
    let err = 0;
    let ref = 0;
    for (let i = 0; i < want.length; i++) {
      err = Math.max(err, Math.abs(got[i] - want[i]));
      ref = Math.max(ref, Math.abs(want[i]));
    }
    if (!(err <= 1e-5 * ref)) {
      results.push({ label, name, fail: `max |wasm - scalar| ${err.toExponential(2)} of ${ref.toExponential(2)}` });
      continue;
    }
    let best = Infinity;
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 50; i++) k.run(wasm);
      const t0 = performance.now();
      for (let i = 0; i < REPS; i++) k.run(wasm);
      best = Math.min(best, ((performance.now() - t0) / REPS) * 1000);
    }
    results.push({ label, name, us: best, gflops: k.flops ? k.flops / best / 1e3 : undefined });
  }
}

console.log(`CPU backward tile ${R}×${C}, D ${D}, one core, WASM SIMD (${os.cpus()[0]?.model}, Node ${process.version}, ${new Date().toISOString()}); best of 6 rounds of ${REPS}\n`);
console.log('| rows | kernel | µs | GFLOP/s |');
console.log('|---|---|---:|---:|');
for (const label of new Set(results.map((r) => r.label))) {
  let total = 0;
  for (const r of results.filter((x) => x.label === label)) {
    // a tile runs the transpose twice and three gemm_nn (dV, dK, dQ)
    const times = r.name === 'transpose' ? 2 : r.name.startsWith('dQ') ? 2 : 1;
    if (r.us !== undefined) total += times * r.us;
    console.log(`| ${label} | ${r.name}${times > 1 ? ` (×${times} per tile${r.name.startsWith('dQ') ? ': dQ and dK' : ''})` : ''} | ${r.fail ? `FAIL: ${r.fail}` : r.us.toFixed(2)} | ${r.gflops ? r.gflops.toFixed(1) : ''} |`);
  }
  console.log(`| ${label} | **one tile** | **${total.toFixed(1)}** | ${(5 * 2 * R * C * D / total / 1e3).toFixed(1)} |`);
}
