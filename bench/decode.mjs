#!/usr/bin/env node
// The decode op on WebGPU (issue 15): one query per sequence against a KV cache, every variant
// checked against float64 before it is timed (no speed is printed for a wrong result):
//   contiguous  float16 and float32 caches [B, Nkv, L, D] on the bench shapes
//   paged       the same float16 rows in pages of 16 and 64 (random page order), vs contiguous
//   int8        the same rows quantized (per position and head), speed vs float16 and the error
//               int8 adds over the float16 cache
//   mla         DeepSeek-V3's absorbed latent decode: one shared KV head of 576 (values = first
//               512), 16 / 64 / 128 query heads
// against the best of several streaming reads of the same bytes (the bandwidth ceiling this GPU
// reaches from WGSL). Times per call, three ways:
//   gpu     GPU timestamps of the call's dispatches (partial + combine), median of rounds;
//   steady  wall time of `reps` back-to-back calls queued through queueAttentionDecode (the
//           per-call host encoding and launch cost included), one submission, divided by reps;
//   api     wall time of `reps` sequential attentionDecode() calls on GPU tensors (validation,
//           binding, one submit each), divided by reps;
//   replay  wall time of `reps` back-to-back replays of the call recorded once in a Scope (what a
//           decode loop that records its step pays: one submit per call, no per-call encoding),
//           divided by reps: the row compared with PyTorch's back-to-back calls.
// The GPU timestamps are taken with the GPU kept busy: the same submission starts with a few ms of
// arithmetic (gpu-timer.mjs's heater, not counted), because an H200 left idle between short
// dispatches runs them at its idle clock (345 MHz against 1980: the same kernel read 2-3x slower
// from one process to the next, session 2026-12-02 call 1; nvidia-smi in call 2).
// PyTorch SDPA on the same shapes comes from bench/decode_torch.py (--torch FILE, its JSON lines).
//
//   node bench/decode.mjs --out DIR [--parts contiguous,paged,int8,mla] [--shapes llama-8b,qwen2-0.5b,qwen-7b] [--dtypes float16,float32] [--torch DIR/torch-decode.jsonl] [--reps 50] [--smoke]
// (--dtypes: the contiguous part's cache dtypes)
import { parseArgs } from 'node:util';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { appendRow, commit, markdownTable } from './model-report.mjs';
import { Tensor, attentionDecode, fromBfloat16Bits, fromHalfBits } from '../dist/index.js';
import { storeRow } from '../dist/ops/decode/index.js';
import { defineKernel, getRuntime } from '../dist/engines/webgpu/runtime.js';
import { Profiler } from '../dist/profiler/index.js';
import { Scope } from '../dist/scope/index.js';
import { queueHeater, warmGpu } from './gpu/gpu-timer.mjs';
import { decodePlanDevice, planDecode, prepareDecode, queueAttentionDecode } from '../dist/ops/decode/webgpu/index.js';
import { STREAM_PARAMS, buildStreamRead } from '../dist/model/webgpu/kernels.wgsl.js';
import { pipelinedLayout } from '../dist/ops/decode/webgpu/split-kv-pipelined.wgsl.js';

const { values: args } = parseArgs({
  options: {
    out: { type: 'string', default: 'bench/results/decode' },
    parts: { type: 'string', default: 'contiguous,paged,int8,mla' },
    torch: { type: 'string' },
    reps: { type: 'string', default: '50' },
    smoke: { type: 'boolean', default: false },
    shapes: { type: 'string' },
    dtypes: { type: 'string', default: 'float16,float32' },
  },
});
const smoke = args.smoke;
const reps = smoke ? 3 : Number(args.reps);
const parts = new Set(args.parts.split(','));
const ALL_SHAPES = smoke
  ? { tiny: { headsQ: 4, headsKv: 2, headDim: 32 } }
  : { 'llama-8b': { headsQ: 32, headsKv: 8, headDim: 128 }, 'qwen2-0.5b': { headsQ: 14, headsKv: 2, headDim: 64 }, 'qwen-7b': { headsQ: 28, headsKv: 4, headDim: 128 } };
// --shapes a,b: these only (the MLA part is --parts' business)
const SHAPES = args.shapes ? Object.fromEntries(Object.entries(ALL_SHAPES).filter(([name]) => args.shapes.split(',').includes(name))) : ALL_SHAPES;
// DECODE_LENGTHS="4096,32768": these cache lengths only (a device call's part with little time)
const LENGTHS = smoke ? [64, 300] : process.env.DECODE_LENGTHS ? process.env.DECODE_LENGTHS.split(',').map(Number) : [1024, 4096, 16384, 32768];
const MLA_HEADS = smoke ? [16] : [16, 64, 128];
const MLA_LENGTH = smoke ? 200 : 32768;
mkdirSync(args.out, { recursive: true });
const jsonl = join(args.out, 'decode.jsonl');

const runtime = await getRuntime();
const timestamps = runtime.features.has('timestamp-query');
const streamKernel = defineKernel('model-stream-read', buildStreamRead);
const adapter = `${runtime.adapter.description} (${runtime.adapter.backend})`;
console.log(`adapter: ${adapter}; timestamps ${timestamps}; reps ${reps}`);

// ------------------------------------------------------------------------------- data and checks

function xorshift(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
    return (s >>> 0) / 4294967296 - 0.5;
  };
}
const fill = (n, seed) => { const r = xorshift(seed); const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = r() * 2; return a; };

/**
 * float64 attention of one query row for `heads` (a sample) over `length` keys: key/value row j of
 * kv head h read by key(h, j, d) / value(h, j, d) (as stored: rounded / dequantized).
 */
function reference(q, Nq, Nkv, D, Dv, length, heads, key, value, scale) {
  const G = Nq / Nkv;
  const out = new Map();
  const s = new Float64Array(length);
  for (const h of heads) {
    const kv = Math.floor(h / G);
    let m = -Infinity;
    for (let j = 0; j < length; j++) {
      let dot = 0;
      for (let d = 0; d < D; d++) dot += q[h * D + d] * key(kv, j, d);
      s[j] = dot * scale;
      if (s[j] > m) m = s[j];
    }
    const o = new Float64Array(Dv);
    let l = 0;
    for (let j = 0; j < length; j++) {
      const p = Math.exp(s[j] - m);
      l += p;
      for (let d = 0; d < Dv; d++) o[d] += p * value(kv, j, d);
    }
    out.set(h, o.map((x) => x / l));
  }
  return out;
}

function maxRelError(got, Dv, ref) {
  let err = 0;
  let top = 0;
  for (const [h, row] of ref) {
    for (let d = 0; d < Dv; d++) {
      const g = got[h * Dv + d];
      if (!Number.isFinite(g)) return Infinity;
      err = Math.max(err, Math.abs(g - row[d]));
      top = Math.max(top, Math.abs(row[d]));
    }
  }
  return err / Math.max(top, 1e-30);
}

// ------------------------------------------------------------------------------------- timing

let warmed = false;
async function spinUp(record) {
  // the float64 reference and the data kept the GPU idle: its clocks up first (gpu-timer.mjs)
  await warmGpu(runtime, 300);
  const t0 = performance.now();
  const ms = smoke ? 5 : warmed ? 30 : 300;
  warmed = true;
  while (performance.now() - t0 < ms) {
    for (let i = 0; i < 20; i++) await record();
    await runtime.finish();
  }
}

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

/** gpu / steady microseconds per call of `record` (which queues one call), median of 3 rounds. */
async function timeQueued(record) {
  const gpu = [];
  const steady = [];
  const passes = [];
  for (let round = 0; round < 3; round++) {
    await spinUp(record);
    if (timestamps) {
      const profiler = new Profiler(runtime, { timing: 'gpu-timestamps' });
      await queueHeater(runtime);
      for (let r = 0; r < reps; r++) await record();
      await runtime.finish();
      profiler.stop();
      const report = await profiler.report();
      const kernels = report.kernels.filter((k) => k.label !== 'heater');
      gpu.push((kernels.reduce((s, k) => s + (k.gpuMs ?? 0), 0) / reps) * 1000);
      // per pass (partial kernel, combine): which of them a change moved
      passes.push(Object.fromEntries(kernels.map((k) => [k.label, +(((k.gpuMs ?? 0) / reps) * 1000).toFixed(1)])));
    }
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) await record();
    await runtime.finish();
    steady.push(((performance.now() - t0) / reps) * 1000);
  }
  const mid = gpu.length ? gpu.indexOf(median(gpu)) : -1;
  return { gpuUs: gpu.length ? median(gpu) : undefined, steadyUs: median(steady), passes: mid >= 0 ? passes[mid] : undefined };
}

/** Wall microseconds per awaited attentionDecode() call (each its own submit). */
async function timeApi(call) {
  for (let i = 0; i < 5; i++) await call();
  await runtime.finish();
  const rounds = [];
  for (let round = 0; round < 3; round++) {
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) (await call()).out.gpu.buffer.destroy();
    await runtime.finish();
    rounds.push(((performance.now() - t0) / reps) * 1000);
  }
  return median(rounds);
}

/** Wall microseconds per replay of `record` recorded once in a Scope, replays back to back. */
async function timeReplayed(record) {
  const scope = new Scope(runtime, 'decode bench');
  await warmGpu(runtime, 300);
  await scope.run('step', record);
  for (let i = 0; i < 20; i++) await scope.run('step', record);
  await runtime.finish();
  const rounds = [];
  for (let round = 0; round < 3; round++) {
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) await scope.run('step', record);
    await runtime.finish();
    rounds.push(((performance.now() - t0) / reps) * 1000);
  }
  if (scope.lastRun?.mode !== 'replay') throw new Error('the decode call did not replay from its recording');
  scope.dispose?.();
  return median(rounds);
}

/** The best streaming read of `bytes` (several grid sizes and unrolls): microseconds. */
const streamCache = new Map();
async function streamUs(bytes) {
  if (streamCache.has(bytes)) return streamCache.get(bytes);
  const n4 = Math.ceil(bytes / 16);
  const src = runtime.acquire(n4 * 16, 'input', 'stream source');
  let best = Infinity;
  const wg = 256;
  for (const unroll of [1, 4]) {
    for (const groups of new Set([4096, Math.min(runtime.limits.maxComputeWorkgroupsPerDimension, Math.max(1, Math.ceil(n4 / (wg * unroll))))])) {
      const threads = groups * wg;
      const perThread = Math.ceil(n4 / (threads * unroll));
      const pipeline = await runtime.pipeline(streamKernel, { workgroupSize: wg, unroll });
      const sums = runtime.acquire(threads * 4, 'intermediate', 'sums');
      const params = STREAM_PARAMS.pack({ n4, per_thread: perThread });
      const t = await timeQueued(() => runtime.dispatch({ label: 'stream', pipeline, workgroups: [groups], bindGroups: [runtime.bindGroup(pipeline, 0, { 0: src, 1: sums, 2: runtime.uniform(params, 's') })] }));
      best = Math.min(best, t.gpuUs ?? t.steadyUs);
      runtime.release(sums);
    }
  }
  runtime.release(src);
  streamCache.set(bytes, best);
  return best;
}

// ------------------------------------------------------------------------------------ variants

/** Host-side cache rows of one shape and length, and their GPU copies in each storage form. */
function makeRows(Nkv, D, Dv, length, seed) {
  return { k: fill(Nkv * length * D, seed), v: Dv ? fill(Nkv * length * Dv, seed + 1) : undefined };
}

/** Rows [Nkv, L, dim] converted to dtype once (float16 bits, int8 + scales [Nkv, L]), memoized per array. */
const converted = new WeakMap();
function convert(rows, Nkv, L, dim, dtype) {
  let byType = converted.get(rows);
  if (!byType) converted.set(rows, (byType = new Map()));
  if (byType.has(dtype)) return byType.get(dtype);
  const n = Nkv * L * dim;
  const data = dtype === 'float32' ? new Float32Array(n) : dtype === 'int8' ? new Int8Array(n) : new Uint16Array(n);
  const scales = dtype === 'int8' ? new Float32Array(Nkv * L) : undefined;
  for (let r = 0; r < Nkv * L; r++) storeRow(dtype, data, r * dim, rows, r * dim, dim, scales, r);
  const out = { data, scales };
  byType.set(dtype, out);
  return out;
}

/** The converted rows as a cache: contiguous [1, Nkv, L, dim], or pages [NP, Nkv, P, dim] by `table` (block copies). */
function storeCache(rows, Nkv, L, dim, dtype, pageSize, table, poolPages) {
  const c = convert(rows, Nkv, L, dim, dtype);
  if (!pageSize) return { data: c.data, scales: c.scales, shape: [1, Nkv, L, dim] };
  const P = pageSize;
  const data = new c.data.constructor(poolPages * Nkv * P * dim);
  const scales = c.scales ? new Float32Array(poolPages * Nkv * P) : undefined;
  for (let p = 0; p * P < L; p++) {
    const count = Math.min(P, L - p * P);
    for (let h = 0; h < Nkv; h++) {
      const from = h * L + p * P;
      const to = (table[p] * Nkv + h) * P;
      data.set(c.data.subarray(from * dim, (from + count) * dim), to * dim);
      if (scales) scales.set(c.scales.subarray(from, from + count), to);
    }
  }
  return { data, scales, shape: [poolPages, Nkv, P, dim] };
}

function gpuTensor(data, shape, dtype) {
  const buffer = runtime.createBuffer(Math.max(16, Math.ceil(data.byteLength / 4) * 4), 'bench tensor');
  runtime.write(buffer, 0, data);
  return Tensor.fromGpuBuffer({ device: runtime.device, buffer, byteOffset: 0 }, shape, dtype);
}

/** What stored rows read back as (for the reference). */
function readBack(stored, dtype, Nkv, P, dim, pageOf) {
  const { data, scales } = stored;
  return (h, j, d) => {
    const page = pageOf(j);
    const at = (page * Nkv + h) * P + (j % P);
    const raw = data[at * dim + d];
    if (dtype === 'float32') return raw;
    if (dtype === 'int8') return raw * scales[at];
    if (dtype === 'float16') return fromHalfBits(raw);
    return fromBfloat16Bits(raw);
  };
}

const rows = [];
let failures = 0;

/**
 * One variant: builds the cache, checks the output against float64 on sampled heads, then times
 * it. Returns the row (with `error` instead of times when it failed).
 */
async function variant({ part, shapeName, Nq, Nkv, D, Dv, length, dtype, pageSize, shared, hostRows, q }) {
  const base = { bench: 'decode', part, shape: shapeName, headsQ: Nq, headsKv: Nkv, headDim: D, dimV: Dv, length, cache: dtype, pageSize: pageSize ?? null, adapter, commit: commit(), date: new Date().toISOString() };
  const held = [];
  try {
    const P = pageSize ?? length;
    const pages = pageSize ? Math.ceil(length / P) : 1;
    // paged: the pages in a random order out of a pool with a few spare ones
    const r = xorshift(99);
    const pool = pageSize ? Array.from({ length: pages + 3 }, (_, i) => i).sort(() => r()) : [0];
    const table = pool.slice(0, pages);
    const kPool = storeCache(hostRows.k, Nkv, length, D, dtype, pageSize, table, pool.length);
    const vPool = shared ? undefined : storeCache(hostRows.v, Nkv, length, Dv, dtype, pageSize, table, pool.length);
    const poolShape = (x) => x.shape;
    const cache = {
      k: gpuTensor(kPool.data, poolShape(kPool), dtype),
      lengths: gpuTensor(Int32Array.of(length), [1], 'int32'),
    };
    held.push(cache.k, cache.lengths);
    if (vPool) { cache.v = gpuTensor(vPool.data, poolShape(vPool), dtype); held.push(cache.v); } else cache.valueDim = Dv;
    if (dtype === 'int8') {
      cache.kScale = gpuTensor(kPool.scales, poolShape(kPool).slice(0, 3), 'float32');
      held.push(cache.kScale);
      if (vPool) { cache.vScale = gpuTensor(vPool.scales, poolShape(vPool).slice(0, 3), 'float32'); held.push(cache.vScale); }
    }
    if (pageSize) { cache.blockTable = gpuTensor(Int32Array.from(table), [1, pages], 'int32'); held.push(cache.blockTable); }
    const qT = gpuTensor(q, [1, Nq, 1, D], 'float32');
    held.push(qT);
    const scale = 1 / Math.sqrt(D);
    const options = { maxLength: length, scale };

    // check first (sampled heads, float64 over the stored values)
    const result = await attentionDecode(qT, cache, options);
    const got = new Float32Array(await runtime.read(result.out.gpu.buffer));
    result.out.gpu.buffer.destroy();
    const pageOf = (j) => (pageSize ? table[Math.floor(j / P)] : 0);
    const key = readBack(kPool, dtype, Nkv, P, D, pageOf);
    const value = vPool ? readBack(vPool, dtype, Nkv, P, Dv, pageOf) : key;
    const sample = [...new Set([0, Nq - 1, Math.floor(Nq / 2)])];
    const ref = reference(q, Nq, Nkv, D, Dv, length, sample, key, value, scale);
    const err = maxRelError(got, Dv, ref);
    if (!(err < 1e-4)) throw new Error(`output differs from the float64 reference: max error ${err} of the largest value`);

    // the same call through the queue (steady state) and through the API
    const pagedShape = { dimQK: D, dimV: Dv, group: Nq / Nkv, headsKv: Nkv, batch: 1, tokens: 1, maxKeys: length, cache: dtype, io: 'float32', paged: !!pageSize, sharedKV: !!shared, append: false, rope: false, softcap: false, alibi: false, lse: false };
    // the device as the op plans for it (subgroups included), so the timed queue runs what attentionDecode runs
    const plan = planDecode(pagedShape, runtime.limits, undefined, decodePlanDevice(runtime));
    if (typeof plan === 'string') throw new Error(plan);
    await prepareDecode(runtime, plan, false);
    const out = runtime.acquire(Nq * Dv * 4, 'output', 'bench out');
    const bufferOf = (t) => t.gpu.buffer;
    const strides = (dim) => ({ sp: Nkv * P * dim, sh: P * dim, spos: dim });
    const meta = new Uint32Array(1 + pages);
    meta[0] = length;
    meta.set(table, 1);
    const metaBuf = gpuTensor(meta, [meta.length], 'int32');
    held.push(metaBuf);
    const call = {
      batch: 1, tokens: 1, headsQ: Nq, headsKv: Nkv, q: { binding: bufferOf(qT), off: 0, sb: Nq * D, sh: D, si: D },
      keys: { binding: bufferOf(cache.k), off: 0, ...strides(D) }, values: cache.v ? { binding: bufferOf(cache.v), off: 0, ...strides(Dv) } : undefined,
      kScales: cache.kScale ? { binding: bufferOf(cache.kScale), off: 0, ...strides(1) } : undefined,
      vScales: cache.vScale ? { binding: bufferOf(cache.vScale), off: 0, ...strides(1) } : undefined,
      pageSize: pageSize ?? 0, maxPages: pages, numPages: pageSize ? pool.length : 1,
      meta: { binding: bufferOf(metaBuf), lengthsAt: 0, tableAt: 1 },
      out: { binding: out, off: 0, sb: Nq * Dv, sh: Dv, si: Dv }, scale, softcap: 0, window: { left: Infinity, right: Infinity, align: 'bottom-right' },
    };
    const t = await timeQueued(() => queueAttentionDecode(runtime, plan, call));
    const queuedOut = new Float32Array(await runtime.read(out, 0, Nq * Dv * 4));
    const err2 = maxRelError(queuedOut, Dv, ref);
    if (!(err2 < 1e-4)) throw new Error(`queued output differs from the float64 reference: ${err2}`);
    runtime.write(out, 0, new Float32Array(Nq * Dv));
    const replayUs = await timeReplayed(() => queueAttentionDecode(runtime, plan, call));
    const replayedOut = new Float32Array(await runtime.read(out, 0, Nq * Dv * 4));
    const err3 = maxRelError(replayedOut, Dv, ref);
    if (!(err3 < 1e-4)) throw new Error(`replayed output differs from the float64 reference: ${err3}`);
    runtime.release(out);
    const apiUs = await timeApi(() => attentionDecode(qT, cache, options));
    // bytes the call reads: the sequence's rows (and scales), not the pool's spare pages
    const perRow = (dim) => dim * (dtype === 'float32' ? 4 : dtype === 'int8' ? 1 : 2) + (dtype === 'int8' ? 4 : 0);
    const bytes = Nkv * length * (perRow(D) + (vPool ? perRow(Dv) : 0));
    const stream = await streamUs(bytes);
    const us = t.gpuUs ?? t.steadyUs;
    const row = {
      ...base, gpuUs: t.gpuUs && +t.gpuUs.toFixed(1), passes: t.passes, steadyUs: +t.steadyUs.toFixed(1), replayUs: +replayUs.toFixed(1), apiUs: +apiUs.toFixed(1), bytes,
      GBs: +(bytes / us / 1e3).toFixed(1), streamUs: +stream.toFixed(1), streamGBs: +(bytes / stream / 1e3).toFixed(1), fractionOfStream: +(stream / us).toFixed(3),
      maxRelError: +err.toExponential(2), plan: { workgroup: plan.kernel.workgroupSize, chunk: plan.kernel.chunk, rows: plan.kernel.headsPerBlock * plan.kernel.tokensPerBlock, splits: plan.splits, unroll: plan.kernel.unroll },
      // the pipelined kernel's, where the plan has one (the passes' labels say which kernel ran)
      ...(plan.pipelined ? { pipelined: { ...pipelinedLayout(plan.pipelined.kernel), keyWords: plan.pipelined.kernel.keyWords, workgroup: plan.pipelined.kernel.workgroupSize, splits: plan.pipelined.splits } } : {}),
      timing: `${timestamps ? 'GPU timestamps per dispatch, ' : ''}median of 3 rounds of ${reps}`,
    };
    return row;
  } catch (e) {
    failures++;
    console.error(`FAILED ${part} ${shapeName} L${length} ${dtype}${pageSize ? ` P${pageSize}` : ''}: ${e.message}`);
    return { ...base, error: String(e.message ?? e) };
  } finally {
    for (const t of held) t.gpu.buffer.destroy();
    await runtime.finish();
    runtime.trimPool();
  }
}

function record(row) {
  rows.push(row);
  appendRow(jsonl, row);
  const what = `${row.part} ${row.shape} L${row.length} ${row.cache}${row.pageSize ? ` P${row.pageSize}` : ''}`;
  console.log(row.error ? `${what}: ERROR ${row.error}` : `${what}: gpu ${row.gpuUs ?? '-'} us, steady ${row.steadyUs} us, replay ${row.replayUs} us, api ${row.apiUs} us, ${row.GBs} GB/s = ${row.fractionOfStream} of stream (err ${row.maxRelError})${row.passes ? ` passes ${JSON.stringify(row.passes)}` : ''}`);
}

// ------------------------------------------------------------------------------------------ run

for (const [shapeName, s] of Object.entries(SHAPES)) {
  const { headsQ: Nq, headsKv: Nkv, headDim: D } = s;
  for (const length of LENGTHS) {
    const hostRows = makeRows(Nkv, D, D, length, 7);
    const q = fill(Nq * D, 3);
    const common = { shapeName, Nq, Nkv, D, Dv: D, length, hostRows, q };
    if (parts.has('contiguous')) {
      for (const dtype of args.dtypes.split(',')) record(await variant({ ...common, part: 'contiguous', dtype }));
    }
    if (parts.has('paged')) {
      for (const pageSize of smoke ? [16] : [16, 64]) record(await variant({ ...common, part: 'paged', dtype: 'float16', pageSize }));
    }
    if (parts.has('int8')) {
      const row = await variant({ ...common, part: 'int8', dtype: 'int8' });
      // the error int8 adds over the float16 cache of the same rows, on sampled heads
      if (!row.error) {
        const L = length;
        const stored = (dtype, which) => readBack(storeCache(hostRows[which], Nkv, L, D, dtype), dtype, Nkv, L, D, () => 0);

        const sample = [0, Nq - 1];
        const a = reference(q, Nq, Nkv, D, D, L, sample, stored('float16', 'k'), stored('float16', 'v'), 1 / Math.sqrt(D));
        const b = reference(q, Nq, Nkv, D, D, L, sample, stored('int8', 'k'), stored('int8', 'v'), 1 / Math.sqrt(D));
        let err = 0;
        let top = 0;
        for (const h of sample) for (let d = 0; d < D; d++) { err = Math.max(err, Math.abs(a.get(h)[d] - b.get(h)[d])); top = Math.max(top, Math.abs(a.get(h)[d])); }
        row.int8ErrorVsF16 = +(err / top).toExponential(2);
        const f16row = rows.find((x) => x.part === 'contiguous' && x.shape === shapeName && x.length === length && x.cache === 'float16' && !x.error);
        if (f16row) row.speedupVsF16 = +((f16row.gpuUs ?? f16row.steadyUs) / (row.gpuUs ?? row.steadyUs)).toFixed(2);
      }
      record(row);
    }
  }
}
if (parts.has('mla')) {
  const D = 576;
  const Dv = 512;
  const hostRows = makeRows(1, D, 0, MLA_LENGTH, 17);
  for (const Nq of MLA_HEADS) {
    record(await variant({ part: 'mla', shapeName: `mla ${Nq} heads`, Nq, Nkv: 1, D, Dv, length: MLA_LENGTH, dtype: 'float16', shared: true, hostRows, q: fill(Nq * D, 5) }));
  }
}

// ---------------------------------------------------------------------------------------- table

const torch = args.torch && existsSync(args.torch) ? readFileSync(args.torch, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.kind === 'torch-decode') : [];
const torchOf = (r) => torch.find((t) => t.shape === (r.part === 'mla' ? `mla-${r.headsQ}` : r.shape) && t.length === r.length && !t.error);
const header = ['part', 'shape', 'L', 'cache', 'page', 'gpu us', 'steady us', 'replay us', 'api us', 'GB/s', 'stream GB/s', 'fraction', 'torch steady us', 'torch lone us', 'torch / ours (replay vs steady)', 'notes'];
const table = rows.map((r) => {
  if (r.error) return [r.part, r.shape, r.length, r.cache, r.pageSize ?? '', 'ERROR', '', '', '', '', '', '', '', '', '', r.error.slice(0, 60)];
  const t = torchOf(r);
  const notes = [];
  if (r.int8ErrorVsF16 !== undefined) notes.push(`int8 error vs f16 ${r.int8ErrorVsF16}`);
  if (r.speedupVsF16 !== undefined) notes.push(`${r.speedupVsF16}x f16 speed`);
  if (r.part === 'paged') {
    const c = rows.find((x) => x.part === 'contiguous' && x.shape === r.shape && x.length === r.length && x.cache === 'float16' && !x.error);
    if (c) notes.push(`${((c.gpuUs ?? c.steadyUs) / (r.gpuUs ?? r.steadyUs)).toFixed(2)}x contiguous speed`);
  }
  return [r.part, r.shape, r.length, r.cache, r.pageSize ?? '', r.gpuUs ?? '', r.steadyUs, r.replayUs, r.apiUs, r.GBs, r.streamGBs, r.fractionOfStream,
    t?.steadyUs ?? '', t?.loneUs ?? '', t ? (t.steadyUs / r.replayUs).toFixed(2) : '', notes.join('; ')];
});
const md = `adapter: ${adapter}; commit ${commit()}; ${rows[0]?.timing ?? ''}\n\n${markdownTable(header, table)}\n`;
writeFileSync(join(args.out, 'decode.md'), md);
console.log(md);
console.log(failures ? `${failures} variant(s) failed` : 'all variants checked against float64 before timing');
process.exit(failures ? 1 : 0);
