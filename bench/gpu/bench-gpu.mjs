// The WebGPU benchmark suite (issue 3): every shape of bench/gpu/shapes.json on whatever GPU is
// present, through the public attention() API with inputs and outputs resident on the GPU (no
// host copies timed): each flash tier, the naive unfused 3-kernel path, and (with --ort) ONNX
// Runtime's WebGPU MultiHeadAttention. GPU times come from timestamp queries (median of --reps
// calls after a warm-up call). Errors: against PyTorch's outputs when --inputs holds them
// (bench/gpu/torch_sdpa.py --dump), and against a float64 reference on sampled rows, next to the
// error of naive f16 attention (three rounded steps) on the same rows.
//
// Usage: node bench/gpu/bench-gpu.mjs [--inputs DIR] [--out FILE.jsonl] [--reps N] [--ort DIR]
//                                     [--label TEXT] [--shapes "name1,name2"] [--impls sgmatrix,subgroup,portable,naive,ort]
// FUSEDATTN_UNSAFE_DISABLE_ROBUSTNESS=1 runs with Dawn's robustness off (rows labelled so).
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { Tensor, attention, naiveAttention, validateAttention } from '../../dist/index.js';
import { getRuntime } from '../../dist/engines/webgpu/runtime.js';
import { chooseFlashTier } from '../../dist/ops/attention/webgpu/tiers/index.js';
import { tuneKey } from '../../dist/ops/attention/webgpu/tiers/autotune.js';
import { HALF, randomHalf, referenceRow } from '../experiments/gpu-harness.mjs';
import { gpuTimeOf } from './gpu-timer.mjs';
import { timeOrtMha } from './onnx-mha.mjs';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]?.startsWith('--') || all[i + 1] === undefined ? 'true' : all[i + 1]]] : acc), []));
const SHAPES = JSON.parse(readFileSync(args['shapes-file'] ?? new URL('./shapes.json', import.meta.url), 'utf8'));
const names = args.shapes ? args.shapes.split(',') : Object.keys(SHAPES);
const impls = (args.impls ?? 'sgmatrix,subgroup,portable,naive,ort').split(',');
const reps = Number(args.reps ?? 5);
const outFile = args.out ?? 'bench-gpu.jsonl';
const unsafe = process.env.FUSEDATTN_UNSAFE_DISABLE_ROBUSTNESS === '1';
const label = args.label ?? (unsafe ? 'robustness off' : '');
if (!existsSync(outFile)) writeFileSync(outFile, '');
const emit = (row) => {
  appendFileSync(outFile, JSON.stringify(row) + '\n');
  const ms = row.ms === undefined ? '' : `${row.ms.toFixed(3)} ms ${row.tflops?.toFixed(1) ?? ''} TFLOP/s`;
  console.log(`${row.shape.padEnd(36)} ${row.impl.padEnd(28)} ${ms}${row.error ? ` ${row.error}` : ''}${row.errVsTorch !== undefined ? ` err/torch ${row.errVsTorch.toExponential(2)}` : ''}`);
};

const slug = (n) => n.replace(/[^A-Za-z0-9]/g, '_');
const flopsOf = (s) => (4 * s.batch * s.headsQ * s.seq * s.seq * ((s.dimQK + (s.dimV ?? s.dimQK)) / 2)) / (s.causal ? 2 : 1);

// ONNX Runtime brings its own Dawn: an ORT-only run does not start ours in the same process
const oursWanted = impls.some((i) => i !== 'ort');
const runtime = oursWanted ? await getRuntime() : undefined;
if (runtime) {
  const adapter = runtime.adapter;
  emit({ kind: 'adapter', shape: 'adapter', impl: `${adapter.vendor} ${adapter.architecture} ${adapter.description}`.trim(), features: adapter.features, robustness: !unsafe, date: new Date().toISOString() });
}

function loadInput(s, name, which, heads, dim, seed) {
  const n = s.batch * heads * s.seq * dim;
  const file = args.inputs && join(args.inputs, `${slug(name)}.${which}.f16`);
  if (file && existsSync(file)) {
    const buf = readFileSync(file);
    return new Uint16Array(buf.buffer, buf.byteOffset, n).slice();
  }
  return randomHalf(n, seed);
}
function loadTorch(name, backend, count) {
  const file = args.inputs && join(args.inputs, `${slug(name)}.out-${backend}.f16`);
  if (!file || !existsSync(file)) return undefined;
  const buf = readFileSync(file);
  return new Uint16Array(buf.buffer, buf.byteOffset, count).slice();
}
function gpuTensor(data, shape) {
  const buffer = runtime.createBuffer(Math.ceil(data.byteLength / 16) * 16, 'bench input');
  runtime.write(buffer, 0, data);
  return Tensor.fromGpuBuffer({ device: runtime.device, buffer, byteOffset: 0 }, shape, 'float16');
}
/** max |a - b| / max |b| over float16 arrays (Infinity on NaN). */
function relErr(a, b) {
  let d = 0, m = 0;
  for (let i = 0; i < b.length; i++) {
    const x = HALF[a[i]], y = HALF[b[i]];
    if (Number.isNaN(x)) return Infinity;
    d = Math.max(d, Math.abs(x - y));
    m = Math.max(m, Math.abs(y));
  }
  return d / m;
}

for (const name of names) {
  const s = SHAPES[name];
  if (!s) continue;
  const hk = s.headsKv ?? s.headsQ, dv = s.dimV ?? s.dimQK;
  const q = loadInput(s, name, 'q', s.headsQ, s.dimQK, 1), k = loadInput(s, name, 'k', hk, s.dimQK, 2), v = loadInput(s, name, 'v', hk, dv, 3);
  const options = { causal: s.causal ?? false, backend: 'webgpu' };
  const cpuProblem = validateAttention(Tensor.fromData(q, [s.batch, s.headsQ, s.seq, s.dimQK], 'float16'), Tensor.fromData(k, [s.batch, hk, s.seq, s.dimQK], 'float16'), Tensor.fromData(v, [s.batch, hk, s.seq, dv], 'float16'), options);
  const [qg, kg, vg] = runtime ? [gpuTensor(q, [s.batch, s.headsQ, s.seq, s.dimQK]), gpuTensor(k, [s.batch, hk, s.seq, s.dimQK]), gpuTensor(v, [s.batch, hk, s.seq, dv])] : [];
  const outCount = s.batch * s.headsQ * s.seq * dv;
  const torchRef = loadTorch(name, 'flash', outCount) ?? loadTorch(name, 'cudnn', outCount);
  // sampled float64 rows, and naive f16's error on them
  const samples = [];
  for (let n = 0; n < 16; n++) {
    const b = (n * 7) % s.batch, h = (n * 13) % s.headsQ, i = n < 3 ? [0, 17, s.seq - 1][n] : (n * 997) % s.seq;
    samples.push({ b, h, i, ref: referenceRow(cpuProblem, b, h, i).out, naive: referenceRow(cpuProblem, b, h, i, { naive16: true }).out });
  }
  const sampledErrors = (out) => {
    let err = 0, naiveErr = 0;
    for (const { b, h, i, ref, naive } of samples) {
      const base = ((b * s.headsQ + h) * s.seq + i) * dv;
      for (let d = 0; d < dv; d++) {
        const g = HALF[out[base + d]];
        err = Math.max(err, Number.isNaN(g) ? Infinity : Math.abs(g - ref[d]));
        naiveErr = Math.max(naiveErr, Math.abs(naive[d] - ref[d]));
      }
    }
    return { err, naiveErr };
  };

  const runOurs = async (impl) => {
    const tier = impl === 'naive' ? undefined : impl;
    if (tier) process.env.FUSEDATTN_WEBGPU_TIER = tier;
    else delete process.env.FUSEDATTN_WEBGPU_TIER;
    const call = () => (impl === 'naive' ? naiveAttention(qg, kg, vg, options) : attention(qg, kg, vg, options));
    const row = { kind: 'bench', shape: name, impl: `fusedattn ${impl}${label ? ` (${label})` : ''}`, flops: flopsOf(s) };
    try {
      if (tier) {
        const gpuProblem = validateAttention(qg, kg, vg, options);
        chooseFlashTier(gpuProblem, runtime); // throws with the reason when the tier cannot run it
        if (tier === 'sgmatrix') row.tuneKey = tuneKey(runtime, gpuProblem);
      }
      // warm-up outside the timer (compiles, tunes with FUSEDATTN_AUTOTUNE=on), then keep the GPU
      // busy for 300 ms so its clocks are up: short kernels after CPU-side work ran 3-4x slower
      (await call()).out.gpu.buffer.destroy();
      await runtime.finish();
      const t0 = performance.now();
      (await call()).out.gpu.buffer.destroy();
      await runtime.finish();
      const callMs = performance.now() - t0;
      for (let i = 0; i < 200 && performance.now() - t0 < 300 && callMs < 1000; i++) {
        (await call()).out.gpu.buffer.destroy();
        await runtime.finish();
      }
      // Steady state, like PyTorch's CUDA-event timing and ORT's chained ops: each sample queues
      // `batch` calls back to back (each submits without waiting) and divides the GPU time of
      // all their dispatches by `batch`; median over `reps` samples.
      const batch = callMs < 5 ? 10 : callMs < 50 ? 3 : 1;
      const times = [];
      let last;
      const n = callMs > 2000 ? 2 : reps;
      for (let r = 0; r < n; r++) {
        const t = await gpuTimeOf(runtime, async () => {
          const results = [];
          for (let i = 0; i < batch; i++) results.push(await call());
          return results;
        }, 8 * batch);
        times.push(t.ms / batch);
        if (last) last.out.gpu.buffer.destroy();
        for (const x of t.result.slice(0, -1)) x.out.gpu.buffer.destroy();
        last = t.result[t.result.length - 1];
        row.dispatches = t.dispatches / batch;
        row.batch = batch;
      }
      times.sort((a, b) => a - b);
      row.ms = times[Math.floor(times.length / 2)];
      row.msAll = times;
      row.tflops = row.flops / (row.ms * 1e9);
      const outBuf = last.out.gpu.buffer;
      const out = new Uint16Array(await runtime.read(outBuf, 0, outCount * 2));
      outBuf.destroy();
      Object.assign(row, sampledErrors(out));
      if (torchRef) row.errVsTorch = relErr(out, torchRef);
    } catch (e) {
      row.error = e.message.split('\n')[0].slice(0, 200);
    } finally {
      delete process.env.FUSEDATTN_WEBGPU_TIER;
    }
    emit(row);
  };
  for (const impl of impls.filter((x) => x !== 'ort')) await runOurs(impl);

  if (impls.includes('ort') && args.ort && !unsafe) {
    const row = { kind: 'bench', shape: name, impl: 'onnxruntime webgpu MHA', flops: flopsOf(s) };
    try {
      const require = createRequire(join(resolve(args.ort), 'node_modules', 'x.js'));
      const ort = require('onnxruntime-node');
      // MHA takes as many K/V heads as query heads: GQA K/V are expanded (same math)
      const expand = (x, d) => {
        if (hk === s.headsQ) return x;
        const g = s.headsQ / hk, outx = new Uint16Array(s.batch * s.headsQ * s.seq * d);
        for (let b = 0; b < s.batch; b++) for (let h = 0; h < s.headsQ; h++) outx.set(x.subarray(((b * hk + Math.floor(h / g)) * s.seq) * d, ((b * hk + Math.floor(h / g)) * s.seq + s.seq) * d), ((b * s.headsQ + h) * s.seq) * d);
        return outx;
      };
      const r = await timeOrtMha(ort, { batch: s.batch, heads: s.headsQ, seq: s.seq, dimQK: s.dimQK, dimV: dv, causal: s.causal ?? false }, q, expand(k, s.dimQK), expand(v, dv));
      Object.assign(row, { ms1: r.ms1, msChain: r.msChain, chain: r.chain, includesCopies: r.includesCopies });
      if (r.ms === undefined) row.error = r.notMeasurable; // raw timings kept in ms1 / msChain
      else Object.assign(row, { ms: r.ms, tflops: row.flops / (r.ms * 1e9) });
      if (hk !== s.headsQ) row.note = 'K/V expanded to the query heads';
      // ORT's output is BSH: back to BNSD for the error
      const bsh = r.out.data, bnsd = new Uint16Array(outCount);
      for (let b = 0; b < s.batch; b++) for (let h = 0; h < s.headsQ; h++) for (let i = 0; i < s.seq; i++) bnsd.set(bsh.subarray(((b * s.seq + i) * s.headsQ + h) * dv, ((b * s.seq + i) * s.headsQ + h) * dv + dv), ((b * s.headsQ + h) * s.seq + i) * dv);
      Object.assign(row, sampledErrors(bnsd));
      if (torchRef) row.errVsTorch = relErr(bnsd, torchRef);
    } catch (e) {
      row.error = e.message.split('\n')[0].slice(0, 200);
    }
    emit(row);
  }
  if (runtime) for (const t of [qg, kg, vg]) t.gpu.buffer.destroy();
}
process.exit(0);
