#!/usr/bin/env node
// The tensor-core ceiling study (issue 14): WGSL subgroup-matrix GEMM variants swept in one process
// on whatever adapter is present, each checked against float64 before it is timed.
//   - inputs: A [S, S] and W [S, S] f16 (N(0, 1)), C = A·Wᵀ (B row-major [K, N] for the 'nn' rows);
//   - check: C poisoned (NaN bits), one dispatch, 34 full rows read back: every element written,
//     4352 sampled entries against a float64 dot of the same f16 inputs (limit by output and
//     accumulator type); a wrong variant gets no time;
//   - time: GPU timestamps around passes of n back-to-back dispatches (each pass ~30 ms) after
//     ~150 ms of spin-up; median of 5 passes; TFLOP/s = 2·S³ / time;
//   - budget: --variant-s per variant (past it the process exits 3 and the wrapper restarts it with
//     --resume, skipping what was started) and --budget-s for the whole process; JSON lines are
//     appended as it goes, so a timeout loses nothing.
// Dawn toggles (robustness, hardware bounds checks, ...) are device toggles: one process per set,
// named by --tag (bench/ceiling/run.sh runs the sets).
//
//   node bench/ceiling/gemm-sweep.mjs --out DIR [--tag robust] [--enable t1,t2] [--disable t3]
//        [--size 8192] [--budget-s 120] [--variant-s 20] [--only top:6:robust | name;name]
//        [--phase2 3] [--resume] [--no-anchor] [--set study|occupancy]
//   node bench/ceiling/gemm-sweep.mjs --smoke [--out DIR]   (no GPU: Tint compile of every variant on
//        Dawn's null backend, then the whole check-and-time path on llvmpipe with the SIMT anchor)
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { create, globals } from 'webgpu';
import { TENSORCORE_GEMM_PARAMS, TENSORCORE_GEMM_BASE, buildTensorCoreGemm, tensorCoreGemmGeometry } from '../../dist/ops/gemm/webgpu/gemm-tensorcore.wgsl.js';
import { HALF, randomHalf } from '../experiments/gpu-harness.mjs';
import { OCCUPANCY_VARIANTS, STUDY_VARIANTS, mutations, nameOf, variantProblem } from './gemm-variants.mjs';
import { SIMT_TILE, buildSimtGemm } from './simt-gemm.mjs';

Object.assign(globalThis, globals);
const { values: args } = parseArgs({
  options: {
    out: { type: 'string', default: 'ceiling-out' },
    tag: { type: 'string', default: 'robust' },
    enable: { type: 'string', default: '' },
    disable: { type: 'string', default: '' },
    size: { type: 'string', default: '8192' },
    'budget-s': { type: 'string', default: '150' },
    'variant-s': { type: 'string', default: '20' },
    only: { type: 'string', default: '' },
    set: { type: 'string', default: 'study' },
    phase2: { type: 'string', default: '0' },
    resume: { type: 'boolean', default: false },
    'no-anchor': { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    'smoke-run': { type: 'boolean', default: false },
  },
});
mkdirSync(args.out, { recursive: true });
const outFile = join(args.out, 'gemm.jsonl');
const t0 = performance.now();
const elapsed = () => (performance.now() - t0) / 1000;
const emit = (row) => appendFileSync(outFile, JSON.stringify({ tag: args.tag, ...row }) + '\n');
const readRows = () => (existsSync(outFile) ? readFileSync(outFile, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)) : []);
const H200_LIMITS = { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024 };

// ------------------------------------------------------------------ smoke, part 1: Tint compiles
if (args.smoke) {
  const gpu = create(['backend=null', 'enable-dawn-features=allow_unsafe_apis']);
  const adapter = await gpu.requestAdapter();
  if (!adapter) { console.log('smoke: no null adapter'); process.exit(1); }
  const device = await adapter.requestDevice({ requiredFeatures: ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'] });
  const candidates = [...STUDY_VARIANTS, ...OCCUPANCY_VARIANTS, ...mutations(TENSORCORE_GEMM_BASE), ...mutations({ ...TENSORCORE_GEMM_BASE, shape: '16x8x16', fragN: 8, layout: 'blocked', b: 'nn' })];
  let ok = 0, failed = 0, skipped = 0;
  for (const c of candidates) {
    const name = nameOf(c.options);
    const problem = variantProblem(c.options, H200_LIMITS, 8192);
    if (problem) { skipped++; continue; }
    const info = await device.createShaderModule({ code: buildTensorCoreGemm(c.options) }).getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length) { failed++; console.log(`COMPILE FAIL ${name}: ${errors.map((e) => `${e.lineNum}: ${e.message}`).join(' | ')}`); } else ok++;
  }
  const simt = await device.createShaderModule({ code: buildSimtGemm() }).getCompilationInfo();
  if (simt.messages.some((m) => m.type === 'error')) { failed++; console.log('COMPILE FAIL simt anchor'); } else ok++;
  console.log(`smoke compile: ${ok} ok, ${failed} failed, ${skipped} skipped (do not fit the H200's limits)`);
  const run = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--smoke-run', '--out', args.out, '--size', '256', '--tag', 'smoke'], { stdio: 'inherit', env: { ...process.env, EGL_PLATFORM: process.env.EGL_PLATFORM ?? 'surfaceless' } });
  if (gpu) process.exit(failed || run.status ? 1 : 0);
}

// ------------------------------------------------------------------ device
const smokeRun = args['smoke-run'];
const enable = [...new Set([...(process.env.GPU_DAWN_TOGGLES ?? 'allow_unsafe_apis,vulkan_enable_f16_on_nvidia').split(','), ...args.enable.split(',')].filter(Boolean))];
const disable = [...new Set(['timestamp_quantization', ...args.disable.split(',')].filter(Boolean))];
const flags = [`enable-dawn-features=${enable.join(',')}`, `disable-dawn-features=${disable.join(',')}`];
if (smokeRun) flags.push('backend=opengles');
else if (process.env.BACKEND) flags.push(`backend=${process.env.BACKEND}`);
const gpu = create(flags);
// the instance must outlive the device: once nothing references it V8 may collect it, and Dawn then
// crashes (segfault / futex abort) under the live device (docs/GPU-NOTES.md; seen on the H200 run 1)
globalThis.fusedattnDawnInstance = gpu;
const adapter = await gpu.requestAdapter(smokeRun || process.env.BACKEND === 'opengles' ? { featureLevel: 'compatibility' } : { powerPreference: 'high-performance' });
if (!adapter) { console.log('no adapter'); process.exit(1); }
const wanted = ['shader-f16', 'subgroups', 'timestamp-query', 'chromium-experimental-subgroup-matrix'].filter((f) => adapter.features.has(f));
const L = adapter.limits;
const requiredLimits = {};
for (const k of ['maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxStorageBufferBindingSize', 'maxBufferSize']) requiredLimits[k] = L[k];
const device = await adapter.requestDevice({ requiredFeatures: wanted, requiredLimits });
let deviceError;
device.addEventListener('uncapturederror', (e) => { deviceError = e.error?.message; console.log('uncaptured GPU error:', deviceError); });
const tensorCores = wanted.includes('chromium-experimental-subgroup-matrix') && wanted.includes('shader-f16');
const S = Number(args.size);
const info = adapter.info;
if (!args.resume) {
  emit({
    kind: 'adapter', vendor: info.vendor, architecture: info.architecture, description: info.description, device: info.device,
    subgroupMinSize: info.subgroupMinSize, subgroupMaxSize: info.subgroupMaxSize, subgroupMatrixConfigs: [...(info.subgroupMatrixConfigs ?? [])].map((c) => ({ componentType: c.componentType, resultComponentType: c.resultComponentType, M: c.M, N: c.N, K: c.K })),
    features: wanted, enable, disable, size: S, date: new Date().toISOString(), commit: process.env.FUSEDATTN_COMMIT,
    limits: { workgroupBytes: L.maxComputeWorkgroupStorageSize, invocations: L.maxComputeInvocationsPerWorkgroup },
  });
}
console.log(`[${args.tag}] ${info.vendor} ${info.architecture} ${info.description}; toggles +${enable.join(',')} -${disable.join(',')}; ${S}^3`);

// ------------------------------------------------------------------ data and reference
const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
function upload(data) {
  const b = device.createBuffer({ size: Math.ceil(data.byteLength / 16) * 16, usage: STORAGE });
  device.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
  return b;
}
const aHost = randomHalf(S * S, 1401);
const wHost = randomHalf(S * S, 1402);
const aBuf = upload(aHost);
const wBuf = upload(wHost);
let bnnBuf; // B = Wᵀ row-major [K, N], made when an 'nn' variant first needs it
const cBytes = S * S * 4;
const cBuf = device.createBuffer({ size: cBytes, usage: STORAGE });
const rows = [...new Set([0, S - 1, ...Array.from({ length: 32 }, (_, i) => (i * 263 + 7 * i * i + (i % 16)) % S)])];
const cols = (r) => Array.from({ length: 128 }, (_, j) => (j * 131 + r * 17 + (j % 16)) % S);
const reference = new Map();
{
  const tr = performance.now();
  const arow = new Float64Array(S);
  for (const r of rows) {
    for (let k = 0; k < S; k++) arow[k] = HALF[aHost[r * S + k]];
    for (const n of cols(r)) {
      let s = 0;
      const base = n * S;
      for (let k = 0; k < S; k++) s += arow[k] * HALF[wHost[base + k]];
      reference.set(r * S + n, s);
    }
  }
  console.log(`reference: ${reference.size} entries in ${((performance.now() - tr) / 1000).toFixed(1)} s`);
}
const refMax = Math.max(...[...reference.values()].map(Math.abs));

const poison = device.createComputePipeline({
  layout: 'auto',
  compute: {
    module: device.createShaderModule({ code: `@group(0) @binding(0) var<storage, read_write> c: array<u32>;
@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  for (var i = id.x; i < arrayLength(&c); i += 256u * 4096u) { c[i] = 0xffffffffu; }
}` }),
    entryPoint: 'main',
  },
});
const poisonGroup = device.createBindGroup({ layout: poison.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: cBuf } }] });

/** Reads the sampled rows of C and compares them with the float64 reference. */
async function checkOutput(outType, accumulate) {
  const elem = outType === 'float32' ? 4 : 2;
  const rowBytes = S * elem;
  const read = device.createBuffer({ size: rows.length * rowBytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  rows.forEach((r, i) => enc.copyBufferToBuffer(cBuf, r * rowBytes, read, i * rowBytes, rowBytes));
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const bytes = read.getMappedRange().slice(0);
  read.unmap();
  read.destroy();
  const values = outType === 'float32' ? new Float32Array(bytes) : new Uint16Array(bytes);
  const at = (i) => (outType === 'float32' ? values[i] : HALF[values[i]]);
  let unwritten = 0, maxErr = 0;
  rows.forEach((r, i) => {
    for (let n = 0; n < S; n++) if (!Number.isFinite(at(i * S + n))) unwritten++;
    for (const n of cols(r)) {
      const got = at(i * S + n);
      const err = Number.isFinite(got) ? Math.abs(got - reference.get(r * S + n)) : Infinity;
      maxErr = Math.max(maxErr, err);
    }
  });
  // f32 accumulation: the f16 output's rounding (2^-11 relative) dominates; f16 accumulators
  // round every 16-deep partial sum: a precision study only, with a loose limit
  const limit = accumulate === 'f16' ? 5e-2 : outType === 'float32' ? 1e-4 : 2e-3;
  const rel = maxErr / refMax;
  return { pass: unwritten === 0 && rel <= limit, rel, limit, unwritten, sampled: rows.length * 128 };
}

function dispatchPass(pipeline, group, grid, n, timestampWrites) {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass(timestampWrites ? { timestampWrites } : undefined);
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group);
  for (let i = 0; i < n; i++) pass.dispatchWorkgroups(...grid);
  pass.end();
  return enc;
}

/** ms per dispatch over one pass of n dispatches (timestamps; wall clock without them). */
async function timePass(pipeline, group, grid, n) {
  if (!device.features.has('timestamp-query')) {
    const w0 = performance.now();
    device.queue.submit([dispatchPass(pipeline, group, grid, n).finish()]);
    await device.queue.onSubmittedWorkDone();
    return { ms: (performance.now() - w0) / n, clock: 'wall' };
  }
  const qs = device.createQuerySet({ type: 'timestamp', count: 2 });
  const resolve = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = dispatchPass(pipeline, group, grid, n, { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 });
  enc.resolveQuerySet(qs, 0, 2, resolve, 0);
  enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const [a, b] = new BigUint64Array(read.getMappedRange());
  read.unmap();
  qs.destroy(); resolve.destroy(); read.destroy();
  return { ms: Number(b - a) / 1e6 / n, clock: 'timestamp' };
}

/** Compiles, checks, then times one kernel; returns the row. */
async function runKernel(row, code, bindings, grid, outType, accumulate) {
  const tc = performance.now();
  const module = device.createShaderModule({ code });
  const ci = await module.getCompilationInfo();
  const errors = ci.messages.filter((m) => m.type === 'error');
  if (errors.length) return { ...row, error: `WGSL: ${errors.slice(0, 3).map((e) => `${e.lineNum}: ${e.message}`).join(' | ')}` };
  device.pushErrorScope('validation');
  let pipeline;
  try {
    pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  } catch (e) {
    await device.popErrorScope();
    return { ...row, error: `pipeline: ${e.message.split('\n')[0]}` };
  }
  const scope = await device.popErrorScope();
  if (scope) return { ...row, error: `pipeline: ${scope.message.split('\n')[0]}` };
  row.compileMs = Math.round(performance.now() - tc);
  const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: bindings });
  // check first: poison, one dispatch, sampled rows against float64
  const enc = device.createCommandEncoder();
  const p = enc.beginComputePass();
  p.setPipeline(poison); p.setBindGroup(0, poisonGroup); p.dispatchWorkgroups(4096); p.end();
  device.queue.submit([enc.finish()]);
  device.queue.submit([dispatchPass(pipeline, group, grid, 1).finish()]);
  row.check = await checkOutput(outType, accumulate);
  if (deviceError) { row.error = `device: ${deviceError}`; return row; }
  if (!row.check.pass) return row;
  // spin-up: the clocks of an idle GPU ramp over ~100 ms (docs/GPU-NOTES.md)
  const spin = performance.now();
  let first;
  while (performance.now() - spin < 150) first = await timePass(pipeline, group, grid, 2);
  const n = Math.max(2, Math.min(60, Math.round(30 / Math.max(first.ms, 1e-3))));
  const times = [];
  for (let s = 0; s < 5; s++) times.push((await timePass(pipeline, group, grid, n)).ms);
  times.sort((x, y) => x - y);
  row.ms = times[2];
  row.msMin = times[0];
  row.msAll = times.map((t) => Number(t.toFixed(4)));
  row.perPass = n;
  row.clock = first.clock;
  row.tflops = (2 * S * S * S) / (row.ms * 1e9);
  return row;
}

function tensorCoreRow(variant) {
  const o = { ...variant.options };
  const name = nameOf(o);
  const g = tensorCoreGemmGeometry(o);
  const row = { kind: 'result', impl: 'tensorcore', name, question: variant.question, options: o, geometry: {
    tile: [g.m, g.n, o.k], threads: g.threads, workgroupBytes: g.bytes, accRegisters: g.accRegisters, operandRegisters: g.operandRegisters,
    prefetchRegisters: g.prefetchRegisters, smemBytesPerFlop: g.smemBytesPerFlop, workgroups: Math.ceil(S / g.n) * Math.ceil(S / g.m),
  } };
  return { o, g, row };
}

async function runVariant(variant) {
  if (variant.simt) {
    const row = { kind: 'result', impl: 'simt', name: 'SIMT f32 64x64 (no tensor cores)', question: 'anchor: shader cores only' };
    const params = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(params, 0, new Uint32Array([S, S, S, 0]));
    const bindings = [{ binding: 0, resource: { buffer: params } }, { binding: 1, resource: { buffer: aBuf } }, { binding: 2, resource: { buffer: wBuf } }, { binding: 3, resource: { buffer: cBuf } }];
    return runKernel(row, buildSimtGemm(), bindings, [S / SIMT_TILE.n, S / SIMT_TILE.m, 1], 'float16', 'f32');
  }
  const { o, g, row } = tensorCoreRow(variant);
  const problem = variantProblem(o, L, S);
  if (problem) return { ...row, skipped: problem };
  if (!tensorCores) return { ...row, skipped: 'the adapter has no f16 subgroup matrices' };
  const matN = g.matN;
  if (!info.subgroupMatrixConfigs?.some((c) => c.componentType === 'f16' && c.resultComponentType === o.accumulate && c.M === 16 && c.N === matN && c.K === 16)) {
    return { ...row, skipped: `the adapter has no f16 16x${matN}x16 matrix with ${o.accumulate} result` };
  }
  if (o.a === 'float32') return { ...row, skipped: 'float32 A is a block-only case (bench/gpu/block-fast.mjs times it)' };
  if (o.b === 'nn' && !bnnBuf) {
    const t = new Uint16Array(S * S);
    for (let n = 0; n < S; n++) for (let k = 0; k < S; k++) t[k * S + n] = wHost[n * S + k];
    bnnBuf = upload(t);
  }
  const params = device.createBuffer({ size: TENSORCORE_GEMM_PARAMS.byteSize, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(params, 0, TENSORCORE_GEMM_PARAMS.pack({ m: S, n: S, k: S, a_off: 0, a_stride: S, c_off: 0, c_stride: S }));
  const bindings = [{ binding: 0, resource: { buffer: params } }, { binding: 1, resource: { buffer: aBuf } }, { binding: 2, resource: { buffer: o.b === 'nn' ? bnnBuf : wBuf } }, { binding: 3, resource: { buffer: cBuf } }];
  const r = await runKernel(row, buildTensorCoreGemm(o), bindings, [Math.ceil(S / g.n), Math.ceil(S / g.m), 1], o.out, o.accumulate);
  params.destroy();
  return r;
}

// ------------------------------------------------------------------ the sweep
const previous = readRows();
const started = new Set(previous.filter((r) => r.tag === args.tag && r.kind === 'start').map((r) => r.name));
// a variant started by an earlier process of this tag with no result: that process died on it
const finished = new Set(previous.filter((r) => r.tag === args.tag && r.kind === 'result').map((r) => r.name));
for (const name of started) if (!finished.has(name)) emit({ kind: 'result', name, error: 'the sweep process died on this variant (crash in Dawn or the driver); restarted past it' });
let list;
if (args.only.startsWith('top:')) {
  const [, count, fromTag] = args.only.split(':');
  const best = previous.filter((r) => r.tag === fromTag && r.kind === 'result' && r.impl === 'tensorcore' && r.tflops).sort((a, b) => b.tflops - a.tflops);
  const seen = new Set();
  list = best.filter((r) => !seen.has(r.name) && seen.add(r.name)).slice(0, Number(count)).map((r) => ({ question: `top of ${fromTag}: ${r.question}`, options: r.options }));
  // the parity row too, so every toggle set is compared on the same kernel
  if (!seen.has(nameOf(STUDY_VARIANTS[0].options))) list.push(STUDY_VARIANTS[0]);
} else if (args.only) {
  const names = new Set(args.only.split(';'));
  list = STUDY_VARIANTS.filter((v) => names.has(nameOf(v.options)));
} else {
  const sets = { study: STUDY_VARIANTS, occupancy: OCCUPANCY_VARIANTS };
  if (!sets[args.set]) { console.error(`--set must be one of ${Object.keys(sets).join(', ')}, got ${args.set}`); process.exit(2); }
  list = smokeRun ? [] : [...sets[args.set]];
}
if (!args['no-anchor'] && !args.only) list.splice(Math.min(3, list.length), 0, { simt: true, question: 'anchor' });

const variantLimit = Number(args['variant-s']) * 1000;
const budget = Number(args['budget-s']);
async function runGuarded(variant) {
  const name = variant.simt ? 'SIMT f32 64x64 (no tensor cores)' : nameOf(variant.options);
  if (started.has(name)) return;
  started.add(name);
  emit({ kind: 'start', name, at: Number(elapsed().toFixed(1)) });
  console.log(`start ${name}`);
  let timer;
  const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), variantLimit); });
  const result = await Promise.race([runVariant(variant).catch((e) => ({ kind: 'result', name, error: e.message.split('\n')[0] })), timeout]);
  clearTimeout(timer);
  if (result === 'timeout') {
    emit({ kind: 'result', name, question: variant.question, options: variant.options, error: `timed out after ${variantLimit / 1000} s (process restarted)` });
    console.log(`TIMEOUT ${name}`);
    process.exit(3);
  }
  result.at = Number(elapsed().toFixed(1));
  emit(result);
  const status = result.skipped ? `skipped: ${result.skipped}` : result.error ? `ERROR ${result.error}`
    : !result.check?.pass ? `CHECK FAIL rel ${result.check?.rel.toExponential(2)} unwritten ${result.check?.unwritten}`
      : `${result.ms.toFixed(3)} ms ${result.tflops.toFixed(1)} TFLOP/s (err ${result.check.rel.toExponential(1)})`;
  console.log(`${name.padEnd(48)} ${status}`);
}

for (const variant of list) {
  if (elapsed() > budget) { emit({ kind: 'budget', at: elapsed(), left: list.length }); console.log('budget spent'); break; }
  await runGuarded(variant);
}
const rounds = Number(args.phase2);
if (rounds > 0 && elapsed() <= budget) {
  // phase 2: one-option changes around the best configurations so far (this tag)
  const done = readRows().filter((r) => r.tag === args.tag && r.kind === 'result' && r.impl === 'tensorcore' && r.tflops);
  done.sort((a, b) => b.tflops - a.tflops);
  for (const best of done.slice(0, rounds)) {
    for (const m of mutations(best.options)) {
      if (elapsed() > budget) break;
      if (variantProblem(m.options, L, S)) continue;
      await runGuarded({ question: `around ${best.name}: ${m.question}`, options: m.options });
    }
  }
}
if (smokeRun && !args.resume) {
  // the check must reject an output nothing wrote
  const enc = device.createCommandEncoder();
  const p = enc.beginComputePass();
  p.setPipeline(poison); p.setBindGroup(0, poisonGroup); p.dispatchWorkgroups(4096); p.end();
  device.queue.submit([enc.finish()]);
  const c = await checkOutput('float16', 'f32');
  emit({ kind: 'selftest', what: 'poisoned output must fail the check', rejected: !c.pass });
  console.log(`self-test: an unwritten output is ${c.pass ? 'ACCEPTED (bug)' : 'rejected'}`);
  if (c.pass) process.exit(1);
}
emit({ kind: 'done', at: Number(elapsed().toFixed(1)) });
process.exit(0);
