#!/usr/bin/env node
// The attention block, fused vs unfused, at Qwen-7B attention shapes (hidden 4096, 32 heads, MHA,
// D 128, S 1024, B 1/4/8), on WebGPU (each GEMM tier the adapter has) and on the CPU backend; then
// the record/replay scope against the unscoped fused block at decode shapes (one new token per
// sequence, KV cache of 1024), where host-side op work is a large part of a call.
//
//   node bench/block.mjs --backend webgpu [--quick] [--tiers portable:float32,...] [--compare-kernels tiled,rows] [--gemm-tile N] [--out FILE] [--trace FILE]
//   node bench/block.mjs --backend cpu --batch 1 [--seq 1024]
// On the GPU machine (see BENCHMARKS.md for the exact command):
//   source .gpu/env.sh && node bench/block.mjs --backend webgpu --out $OUT/block.jsonl --trace $OUT/block-trace.json
// Before timing on WebGPU it checks every GEMM tier it will time against the float64 module at a
// ragged size (the subgroup-matrix tier can only be checked on a GPU that has it), and every timed
// case checks its own output too (src/block/bench-check.ts: each path's output of that case, on the
// rows a float64 reference affords); a case that fails shows WRONG instead of a time and the exit
// code is 1. Prints a table; appends one JSON line per row (adapter, date, commit) to --out.
import { cpus, loadavg } from 'node:os';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { appendRow, commit } from './model-report.mjs';
import { AttentionBlock, Profiler, referenceBlock, validateBlock } from '../dist/index.js';
import { benchWith, formatBlockTable } from '../dist/block/bench.js';
import { randomBlockWeights, randomHidden } from '../dist/block/random.js';
import { gemmUnsupported } from '../dist/ops/gemm/webgpu/gemm.js';
import { SGMAT_TILES } from '../dist/ops/gemm/webgpu/gemm-sgmat-tiled.wgsl.js';
import { BLOCK_RTOL } from '../dist/block/bench-check.js';
import { checkF32, checkLowPrecision, compare } from '../dist/testing/index.js';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'webgpu' },
    batch: { type: 'string', default: '1,4,8' },
    seq: { type: 'string', default: '1024' },
    iterations: { type: 'string', default: '5' },
    quick: { type: 'boolean', default: false },
    'skip-scope': { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench/results/block.jsonl' },
    trace: { type: 'string' },
    // GEMM tier:weight dtype pairs to time, e.g. portable:float32,subgroup-matrix:float16 (default: all the adapter has)
    tiers: { type: 'string' },
    // also time the fused block with the block's own attention kernel layouts ('tiled', 'rows'; docs/GPU-NOTES.md)
    'compare-kernels': { type: 'string', default: '' },
    // tensor-core GEMM tile (index into SGMAT_TILES, or 'simple'), for both paths; default the first
    'gemm-tile': { type: 'string' },
    // WebGPU: calls per sample queued back to back (steady state); 1 = one call waited for per sample
    'back-to-back': { type: 'string', default: '1' },
  },
});

const QWEN_7B = { hidden: 4096, heads: 32, kvHeads: 32, headDim: 128, rope: { theta: 10000 } };
// --quick: a small shape with the same structure, for a smoke run on llvmpipe
const SMALL = { hidden: 256, heads: 4, kvHeads: 4, headDim: 64, rope: { theta: 10000 } };
const shape = args.quick ? SMALL : QWEN_7B;
const gemmKernel = args['gemm-tile'] === undefined ? undefined : args['gemm-tile'] === 'simple' ? 'simple' : SGMAT_TILES[Number(args['gemm-tile'])];
const compareKernels = args['compare-kernels'] ? args['compare-kernels'].split(',') : [];
const backToBack = Number(args['back-to-back']);
const seq = args.quick ? 64 : Number(args.seq);
const batches = args.quick ? [1, 2] : args.batch.split(',').map(Number);
const iterations = args.quick ? 2 : Number(args.iterations);
const backend = args.backend;
const rev = process.env.FUSEDATTN_COMMIT ?? commit();
const date = new Date().toISOString();

const log = (...a) => console.error(...a);
const rows = [];
let adapter = { description: `${cpus()[0]?.model ?? 'cpu'} x${cpus().length}` };

/** Which GEMM tiers to time here, each checked against float64 first. */
async function tiers() {
  if (backend !== 'webgpu') return [{ gemm: 'portable', weights: 'float32' }];
  const probe = await AttentionBlock.create(SMALL, randomBlockWeights(SMALL, 1), { backend: 'webgpu', gemm: 'portable' });
  const rt = probe.gpu.runtime;
  adapter = rt.adapter;
  log(`adapter: ${[adapter.vendor, adapter.architecture, adapter.device, adapter.description].filter(Boolean).join(' ')}; features ${adapter.features.join(', ')}`);
  probe.destroy();
  let list = [{ gemm: 'portable', weights: 'float32' }, { gemm: 'portable', weights: 'float16' }];
  const why = gemmUnsupported(rt, 'subgroup-matrix', 'float16');
  if (why) log(`subgroup-matrix GEMM not timed: ${why}`);
  else list.push({ gemm: 'subgroup-matrix', weights: 'float16' });
  if (args.tiers) {
    const wanted = new Set(args.tiers.split(','));
    list = list.filter((t) => wanted.has(`${t.gemm}:${t.weights}`));
  }
  const checked = [];
  for (const t of list) {
    const result = await check(t);
    log(`check ${t.gemm}/${t.weights}: ${result.message}`);
    rows.push({ kind: 'check', ...t, ...result, adapter: adapter.description, date, commit: rev });
    if (result.pass) checked.push(t);
  }
  return checked;
}

/** The block on `tier` vs the float64 module, at a ragged size (S and rows not multiples of the tiles). */
async function check({ gemm, weights }) {
  const config = { hidden: 320, heads: 5, kvHeads: 5, headDim: 64, rope: { theta: 10000 } };
  const w = randomBlockWeights(config, 3, { dtype: weights, oBias: true });
  const spec = validateBlock(config, w);
  const B = 2;
  const S = 77;
  const x = randomHidden(B * S, config.hidden, 4);
  const input = { x, layout: 'BSH', batch: B, seq: S, start: 0 };
  const ref = referenceBlock(spec, input);
  // the tensor-core tier rounds activations to float16: FlashAttention's rule against the float64
  // module with those activations rounded; float32 math: the block's float32 rule
  const tensorCores = gemm === 'subgroup-matrix';
  const ref16 = tensorCores ? referenceBlock(spec, input, { activations: 'float16' }).out : undefined;
  const rule = (what, got) => tensorCores
    ? checkLowPrecision(what, got, ref16, ref.out, BLOCK_RTOL * Math.max(1, compare(ref.out, ref.out).maxAbsRef))
    : checkF32(what, got, ref.out, BLOCK_RTOL);
  try {
    const block = await AttentionBlock.create(config, w, { backend: 'webgpu', gemm });
    const fusedOut = (await block.forward({ data: x, shape: [B, S, config.hidden] })).out.toFloat32();
    const unfusedOut = (await block.forwardUnfused({ data: x, shape: [B, S, config.hidden] })).out.toFloat32();
    block.destroy();
    const [fused, unfused] = [compare(fusedOut, ref.out), compare(unfusedOut, ref.out)];
    const failures = [rule('fused', fusedOut), rule('unfused', unfusedOut)].filter(Boolean);
    const pass = failures.length === 0;
    const limit = tensorCores ? `2 x float16-activation module error ${compare(ref16, ref.out).relError.toExponential(2)} + ${BLOCK_RTOL}` : BLOCK_RTOL;
    return { pass, fusedRelError: fused.relError, unfusedRelError: unfused.relError, message: `${pass ? 'PASS' : `FAIL ${failures.join('; ')}`} fused rel err ${fused.relError.toExponential(2)}, unfused ${unfused.relError.toExponential(2)} (limit ${limit})` };
  } catch (e) {
    return { pass: false, message: `FAIL ${e.message.split('\n')[0]}` };
  }
}

function record(list, extra = {}) {
  for (const r of list) {
    const row = { kind: 'time', ...r, ...extra, adapter: adapter.description, cpus: cpus().length, load: loadavg()[0], date, commit: rev };
    rows.push(row);
    appendRow(args.out, row);
  }
}

const maxPositions = seq + 1;
const weightsByDType = new Map();
const checkedTiers = await tiers();
for (const t of checkedTiers) {
  // one block per tier, reused for every case (weights made once per dtype)
  if (!weightsByDType.has(t.weights)) weightsByDType.set(t.weights, randomBlockWeights(shape, 1, { dtype: t.weights }));
  const block = await AttentionBlock.create({ ...shape, maxPositions }, weightsByDType.get(t.weights), { backend, gemm: t.gemm, gemmKernel });
  const others = backend === 'webgpu'
    ? await Promise.all(compareKernels.map((attentionKernel) => AttentionBlock.create({ ...shape, maxPositions }, weightsByDType.get(t.weights), { backend, gemm: t.gemm, gemmKernel, attentionKernel })))
    : [];
  for (const batch of batches) {
    log(`timing ${backend} ${t.gemm}/${t.weights} B${batch} S${seq}...`);
    record(await benchWith(block, { config: shape, batch, seq }, { iterations, warmup: 1, backToBack }));
    for (const other of others) record(await benchWith(other, { config: shape, batch, seq }, { iterations, warmup: 1, paths: ['fused'], backToBack }));
  }
  for (const other of others) other.destroy();
  // the scope: decode steps (1 token per sequence after a cache of `seq`), where op work on the host counts
  if (backend === 'webgpu' && !args['skip-scope']) {
    for (const batch of [1, batches.at(-1)]) {
      log(`timing scope replay ${t.gemm}/${t.weights} decode B${batch} cache ${seq}...`);
      record(await benchWith(block, { config: shape, batch, seq: 1, cached: seq }, { iterations: iterations * 4, warmup: 2, paths: ['fused', 'scope', 'unfused'], backToBack }));
    }
  }
  block.destroy();
}

if (args.trace && backend === 'webgpu') {
  // GPU time per kernel (timestamp queries where the adapter has them), fused vs unfused, for each
  // tier at the first and last batch size; the first profile is written as a Chrome trace
  let written = false;
  for (const t of checkedTiers) {
    const block = await AttentionBlock.create({ ...shape, maxPositions }, weightsByDType.get(t.weights) ?? randomBlockWeights(shape, 1, { dtype: t.weights }), { backend: 'webgpu', gemm: t.gemm, gemmKernel });
    for (const batch of [batches[0], batches.at(-1)]) {
      const x = { data: randomHidden(batch * seq, shape.hidden, 2), shape: [batch, seq, shape.hidden] };
      // clocks up, pipelines compiled
      const until = performance.now() + 1000;
      while (performance.now() < until) {
        for (const r of [await block.forward(x), await block.forwardUnfused(x)]) void r;
      }
      // `calls` calls back to back per span (clocks stay up); GPU ms per kernel averaged per call
      const calls = Math.max(1, backToBack);
      const outputs = [];
      const profiler = new Profiler(block.gpu.runtime);
      for (const [label, run] of [['fused block', () => block.forward(x)], ['unfused block', () => block.forwardUnfused(x)]]) {
        await profiler.span(label, async () => { for (let i = 0; i < calls; i++) outputs.push((await run()).out); });
      }
      profiler.stop();
      const report = await profiler.report();
      for (const out of outputs.splice(0)) out.gpu?.buffer.destroy();
      if (!written) writeFileSync(args.trace, JSON.stringify(profiler.chromeTrace()));
      written = true;
      for (const s of report.spans.filter((r) => r.label.endsWith(' block') && r.label.split(' ').length === 2)) {
        const perKernel = new Map();
        for (const k of s.kernels) perKernel.set(k.label, (perKernel.get(k.label) ?? 0) + (k.gpuMs ?? NaN) / calls);
        const kernels = [...perKernel].map(([label, ms]) => `${label} ${ms.toFixed(2)}ms`).join(', ');
        const gpuMs = s.gpuMs !== undefined ? s.gpuMs / calls : undefined;
        log(`profile ${t.gemm}/${t.weights} B${batch} (${report.timing}, ${calls} calls back to back) ${s.label}: ${s.dispatches / calls} dispatches per call${gpuMs !== undefined ? `, GPU ${gpuMs.toFixed(2)} ms per call` : ''}: ${kernels}`);
        rows.push({ kind: 'profile', gemm: t.gemm, weights: t.weights, batch, seq, calls, timing: report.timing, span: s.label, dispatches: s.dispatches / calls, gpuMs, kernels: [...perKernel].map(([label, gpuMs]) => ({ label, gpuMs })), adapter: adapter.description, date, commit: rev });
      }
    }
    block.destroy();
  }
}

const timedRows = rows.filter((r) => r.kind === 'time');
console.log(formatBlockTable(timedRows));
const wrong = timedRows.filter((r) => r.check !== 'ok');
const failedTiers = rows.filter((r) => r.kind === 'check' && !r.pass);
console.log(`checked: every timed row's output against the float64 module (${[...new Set(timedRows.map((r) => r.checked))].join('; ')}); ${wrong.length} wrong`);
for (const r of wrong) console.log(`WRONG ${r.path} ${r.gemm}/${r.weights} B${r.batch} S${r.seq} cache ${r.cached}: ${r.check}`);
for (const r of failedTiers) console.log(`NOT TIMED ${r.gemm}/${r.weights}: ${r.message}`);
for (const r of rows.filter((r) => r.kind === 'profile')) appendRow(args.out, r);
for (const r of rows.filter((r) => r.kind === 'check')) appendRow(args.out, r);
process.exit(wrong.length || failedTiers.length ? 1 : 0);
