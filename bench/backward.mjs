#!/usr/bin/env node
// The attention backward on the CPU: our fused backward (bwd-pre / bwd-kv / bwd-q on the worker
// pool, no Sq×Sk buffer) against our unfused one (Sq×Sk matrices per worker), with the memory each
// needs beyond inputs and outputs. FLOPs = 2.5 × the forward's (FlashAttention's convention).
//
//   node bench/backward.mjs OUTDIR [--smoke] [--threads N] [--iters N] [--only TEXT] [--anchors]
//
// Configurations with score / mask / sink functions or a block mask (issue 13) run fused only: the
// unfused baseline refuses them; their FLOPs count the pairs the mask keeps.
// Checks before any timing, in the same run: the fused gradients against the float64 reference on
// a reduced shape of every configuration (the suite's pass rule), and fused against unfused at the
// bench shape (max |fused - unfused| <= 1e-4 · max |unfused|, both float32). A configuration that
// fails a check prints FAIL and no speed. Writes OUTDIR/backward-cpu.jsonl and OUTDIR/backward-cpu.md.
//
// PyTorch's CPU SDPA backward (the anchor) is not measured here: this machine has no
// PyTorch and no PyPI access. The same shapes can be timed against it with a few lines of
// torch.autograd (see README "Training") wherever PyTorch is installed.
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const lib = await import(join(root, 'dist', 'index.js'));
const testing = await import(join(root, 'dist', 'testing', 'index.js'));
const { configureCpu } = await import(join(root, 'dist', 'ops', 'cpu-engine.js'));

const args = process.argv.slice(2);
const outDir = args.find((a, i) => !a.startsWith('--') && !/^\d+$/.test(a) && args[i - 1] !== '--only') ?? join(root, 'bench-results', 'backward');
const smoke = args.includes('--smoke');
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const iters = flag('--iters', smoke ? 1 : 5);
const threads = flag('--threads', undefined);
mkdirSync(outDir, { recursive: true });
const engine = await configureCpu(threads === undefined ? {} : { threads });
let commit = process.env.FUSEDATTN_COMMIT;
try {
  commit ??= execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
} catch {
  commit ??= 'unknown';
}

/** Options of packed causal documents of `length` tokens (as a block mask or a mask function), a softcap score function and per-head sinks. */
function documentsWithMods(length, asBlockMask = true) {
  return async (c) => {
    const mask = lib.documentMask(Int32Array.from({ length: c.seqQ }, (_, i) => Math.floor(i / length)), { causal: true });
    const sink = Float32Array.from({ length: c.headsQ }, (_, h) => Math.sin(h));
    const masking = asBlockMask ? { blockMask: await lib.createBlockMask(mask, null, null, c.seqQ, c.seqK, { blockSize: 64 }) } : { maskMod: mask };
    return { ...masking, scoreMod: lib.softcap(20), sink };
  };
}

// the shape classes, at CPU sizes (B4 H32 S4096 would take minutes per call here)
const CONFIGS = smoke
  ? [
    { name: 'tiny causal', batch: 1, headsQ: 2, seqQ: 70, seqK: 70, dimQK: 32, causal: true },
    { name: 'tiny MLA', batch: 1, headsQ: 2, seqQ: 40, seqK: 40, dimQK: 48, dimV: 32, causal: true },
    { name: 'tiny documents blockMask + scoreMod + sink', batch: 1, headsQ: 2, seqQ: 200, seqK: 200, dimQK: 32, mods: documentsWithMods(64) },
  ]
  : [
    { name: 'B1 H8 S1024 D64', batch: 1, headsQ: 8, seqQ: 1024, seqK: 1024, dimQK: 64 },
    { name: 'B1 H8 S1024 D64 causal', batch: 1, headsQ: 8, seqQ: 1024, seqK: 1024, dimQK: 64, causal: true },
    { name: 'B1 H8/2 S1024 D128 causal (GQA)', batch: 1, headsQ: 8, headsKv: 2, seqQ: 1024, seqK: 1024, dimQK: 128, causal: true },
    { name: 'B1 H8 S1024 D192/128 causal (MLA)', batch: 1, headsQ: 8, seqQ: 1024, seqK: 1024, dimQK: 192, dimV: 128, causal: true },
    { name: 'B1 H8 S1024 D64 causal dropout 0.1', batch: 1, headsQ: 8, seqQ: 1024, seqK: 1024, dimQK: 64, causal: true, dropout: 0.1 },
    // flash_attn's layout (BSND): a head's rows 4 KiB apart at D 128; staged head-major since
    // 2026-12-04 (backward/cpu/head-major.ts), so within a few % of the BNSD row above
    { name: 'B1 H8/2 S1024 D128 causal (GQA) BSND', batch: 1, headsQ: 8, headsKv: 2, seqQ: 1024, seqK: 1024, dimQK: 128, causal: true, layout: 'BSND', ours: true },
    // issue 13's functions in the backward: a block mask of causal 256-token documents with a
    // softcap score function and sinks (the unfused baseline refuses them: fused only)
    { name: 'B1 H8 S1024 D64 causal documents blockMask + softcap() + sink', batch: 1, headsQ: 8, seqQ: 1024, seqK: 1024, dimQK: 64, mods: documentsWithMods(256) },
    { name: 'B1 H8 S1024 D64 causal documents maskMod + softcap() + sink', batch: 1, headsQ: 8, seqQ: 1024, seqK: 1024, dimQK: 64, mods: documentsWithMods(256, false) },
  ];

const rows = [];
const record = (row) => {
  const line = { kind: 'backward-cpu', commit, cpu: os.cpus()[0]?.model, threads: engine.description.threads, kernels: engine.description.kernels, ...row };
  appendFileSync(join(outDir, 'backward-cpu.jsonl'), `${JSON.stringify(line)}\n`);
  rows.push(line);
  console.log(JSON.stringify(line));
};

// as bench/backward_cpu_torch.py times PyTorch: one warm-up call (the arena grows and its pages
// fault in on a first call), then the median of `iters`
async function timeIt(fn) {
  const times = [];
  let last = await fn();
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    last = await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)], result: last };
}

function maxRel(a, b) {
  let err = 0;
  let ref = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    ref = Math.max(ref, Math.abs(b[i]));
  }
  return err / Math.max(ref, 1e-30);
}

// --only TEXT: the configurations whose name contains TEXT
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
// --anchors: only the configurations bench/backward_cpu_torch.py also runs (no score/mask functions,
// no `ours` rows: those compare our own variants)
const anchors = args.includes('--anchors');
for (const config of CONFIGS.filter((x) => (only === undefined || x.name.includes(only)) && !(anchors && (x.mods || x.ours)))) {
  const { name, mods, ours, ...c } = config;
  const row = { config: name };
  const withMods = async (options, shape) => (mods ? { ...options, ...(await mods(shape)) } : options);
  try {
    // 1. the float64 check on a reduced shape of the same configuration
    const small = { ...c, headsQ: Math.min(c.headsQ, 2), headsKv: c.headsKv ? 1 : undefined, seqQ: Math.min(c.seqQ, 161), seqK: Math.min(c.seqK, 161) };
    {
      const made = testing.makeCase(small, 5);
      const { q, k, v } = made;
      const options = await withMods(made.options, small);
      const problem = lib.validateAttention(q, k, v, options);
      const { dOut, dOutValues } = testing.makeGradCase(small, 5, problem.outShape);
      const fwd = await lib.attention(q, k, v, { ...options, returnLse: true, backend: 'cpu' });
      const grads = await lib.attentionBackward(q, k, v, fwd.out, dOut, fwd.lse, { ...options, backend: 'cpu' });
      const { failures } = testing.checkGradients(problem, dOutValues, grads);
      if (failures.length) throw new Error(`float64 check failed at the reduced shape: ${failures.join('; ')}`);
    }
    // 2. the bench shape: fused vs unfused
    const made = testing.makeCase(c, 7);
    const { q, k, v } = made;
    const options = await withMods(made.options, c);
    const problem = lib.validateAttention(q, k, v, options);
    const { dOut } = testing.makeGradCase(c, 7, problem.outShape);
    const fwd = await lib.attention(q, k, v, { ...options, returnLse: true, backend: 'cpu' });
    const call = { ...options, backend: 'cpu' };
    const fused = await timeIt(() => lib.attentionBackward(q, k, v, fwd.out, dOut, fwd.lse, call));
    let naive;
    try {
      naive = await timeIt(() => lib.naiveAttentionBackward(q, k, v, fwd.out, dOut, fwd.lse, call));
    } catch (e) {
      row.unfusedError = e.message;
    }
    if (naive) {
      for (const g of ['dq', 'dk', 'dv']) {
        const rel = maxRel(fused.result[g].toFloat32(), naive.result[g].toFloat32());
        if (!(rel <= 1e-4)) throw new Error(`fused ${g} differs from unfused by ${rel.toExponential(2)} (limit 1e-4)`);
      }
    }
    // FLOPs: forward = 2 matmuls of 2·D flops per visible pair; backward = 2.5 × that
    let pairs = 0;
    for (let b = 0; b < problem.batch; b++) for (let i = 0; i < problem.seqLensQ[b]; i++) {
      const diag = problem.window.align === 'bottom-right' ? problem.seqLensK[b] - problem.seqLensQ[b] : 0;
      const hi = Math.min(problem.seqLensK[b] - 1, problem.window.right === Infinity ? Infinity : diag + i + problem.window.right);
      const lo = Math.max(0, problem.window.left === Infinity ? 0 : diag + i - problem.window.left);
      pairs += Math.max(0, hi - lo + 1);
    }
    // a mask function: the pairs it keeps (head-independent here), counted in float64
    if (problem.mods?.kernel.mask) {
      const { referenceMods } = await import(join(root, 'dist', 'ops', 'attention', 'mods', 'evaluate.js'));
      const keep = referenceMods(problem.mods.kernel, problem.mods.tensors).mask;
      pairs = 0;
      for (let b = 0; b < problem.batch; b++) for (let i = 0; i < problem.seqLensQ[b]; i++) for (let j = 0; j < problem.seqLensK[b]; j++) if (keep(b, 0, i, j, problem.seqLensQ[b], problem.seqLensK[b])) pairs++;
    }
    pairs *= problem.headsQ;
    const flops = 2.5 * 2 * pairs * (problem.dimQK + problem.dimRope + problem.dimV);
    Object.assign(row, {
      status: 'ok',
      fusedMs: +fused.ms.toFixed(1),
      fusedGflops: +(flops / fused.ms / 1e6).toFixed(2),
      fusedIntermediateBytes: fused.result.stats.intermediateBytes,
      // the last timed call's phases (stage, plan, each pool job, readBack), wall ms
      fusedPhasesMs: fused.result.stats.phasesMs,
      fusedBusyMs: fused.result.stats.busyMs,
      unfusedMs: naive ? +naive.ms.toFixed(1) : undefined,
      unfusedGflops: naive ? +(flops / naive.ms / 1e6).toFixed(2) : undefined,
      unfusedIntermediateBytes: naive?.result.stats.intermediateBytes,
      speedup: naive ? +(naive.ms / fused.ms).toFixed(2) : undefined,
    });
  } catch (e) {
    Object.assign(row, { status: 'FAIL', error: e.message });
  }
  record(row);
}

const mib = (b) => (b === undefined ? '—' : `${(b / 2 ** 20).toFixed(1)} MiB`);
const table = [
  `CPU backward (${os.cpus()[0]?.model}, ${engine.description.threads} threads, ${engine.description.kernels}, commit ${commit}; one warm-up call, then the median of ${iters})`,
  '',
  '| shape | fused ms | fused GFLOP/s | fused memory | unfused ms | unfused memory | fused speedup |',
  '|---|---:|---:|---:|---:|---:|---:|',
  ...rows.map((r) => (r.status === 'ok'
    ? `| ${r.config} | ${r.fusedMs} | ${r.fusedGflops} | ${mib(r.fusedIntermediateBytes)} | ${r.unfusedMs ?? '—'} | ${mib(r.unfusedIntermediateBytes)} | ${r.speedup ?? '—'}× |`
    : `| ${r.config} | FAIL: ${r.error} | | | | | |`)),
  '',
];
writeFileSync(join(outDir, 'backward-cpu.md'), table.join('\n'));
console.log(table.join('\n'));
engine.terminate();
process.exit(rows.every((r) => r.status === 'ok') ? 0 : 1);
