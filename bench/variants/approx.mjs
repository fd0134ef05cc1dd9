// Approximate attention benchmark (issue 13, seed 004): Performer's error against exact softmax
// attention as a function of the features M and of the sequence length, and the speed of
// Performer and linear attention against our exact flash kernel as the sequence grows (the
// crossover), on one backend. Every timed result is spot-checked first (rows against float64:
// referenceApproxRows for the approximations, the exact softmax for flash); a wrong result prints
// an error line instead of a speed. JSON lines, a markdown table and SVG plots go to OUTDIR.
//   node bench/variants/approx.mjs OUTDIR [--backend cpu|webgpu] [--smoke] [--max-seq N]
import { mkdirSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, attention, floatsToHalf, performerAttention, linearAttention } from '../../dist/index.js';
import { validateApprox } from '../../dist/ops/approx/problem.js';
import { referenceApproxRows } from '../../dist/ops/approx/index.js';
import { normal, randomFloats, uniform } from '../../dist/testing/index.js';
import { lineChart } from './svg.mjs';

const args = process.argv.slice(2);
const out = args.find((a) => !a.startsWith('--') && args[args.indexOf(a) - 1] !== '--backend' && args[args.indexOf(a) - 1] !== '--max-seq') ?? 'bench-results/variants';
const backend = args.includes('--backend') ? args[args.indexOf('--backend') + 1] : 'cpu';
const smoke = args.includes('--smoke');
const maxSeq = args.includes('--max-seq') ? Number(args[args.indexOf('--max-seq') + 1]) : backend === 'cpu' ? 8192 : 16384;
mkdirSync(out, { recursive: true });
const jsonl = join(out, `approx-${backend}.jsonl`);
writeFileSync(jsonl, '');
const emit = (row) => {
  const line = { bench: 'approx', backend, commit: process.env.FUSEDATTN_COMMIT ?? 'unknown', ...row };
  appendFileSync(jsonl, `${JSON.stringify(line)}\n`);
  console.log(JSON.stringify(line));
  return line;
};

let runtime;
let half = false;
if (backend === 'webgpu') {
  const { getRuntime } = await import('../../dist/engines/webgpu/runtime.js');
  runtime = await getRuntime();
  half = runtime.features.has('shader-f16') && !smoke;
}

const D = smoke ? 16 : 64;
const HEADS = smoke ? 2 : backend === 'cpu' ? 4 : 8;

/**
 * q, k, v [1, H, S, D] from a seed, elements N(0, sigma²) (q and k) and N(0, 1) (v); GPU tensors on
 * webgpu. The logits q·k/sqrt(D) then have standard deviation sigma²: FAVOR+'s variance grows like
 * e^(|q'+k'|²), so the error is measured at two logit scales.
 */
function inputs(seq, seed, sigma = 1) {
  const gauss = normal(uniform(seed));
  let n = 0;
  const make = () => {
    const values = randomFloats(HEADS * seq * D, gauss, n++ < 2 ? sigma : 1);
    const data = half ? floatsToHalf(values) : values;
    const t = Tensor.fromData(data, [1, HEADS, seq, D], half ? 'float16' : 'float32');
    if (!runtime) return { t, cpu: t };
    const buffer = runtime.upload(data, 'bench input');
    return { t: Tensor.fromGpuBuffer({ device: runtime.device, buffer, byteOffset: 0 }, [1, HEADS, seq, D], t.dtype), cpu: t, buffer };
  };
  return { q: make(), k: make(), v: make() };
}

async function values(t) {
  if (t.location === 'cpu') return t.toFloat32();
  const bytes = await runtime.read(t.gpu.buffer, 0, t.size * (t.dtype === 'float16' ? 2 : 4));
  return Tensor.fromData(t.dtype === 'float16' ? new Uint16Array(bytes) : new Float32Array(bytes), t.shape, t.dtype).toFloat32();
}

const release = (x) => { for (const p of [x.q, x.k, x.v]) if (p.buffer) runtime.release(p.buffer); };

/** Median wall time of `fn` (after a warm-up), waiting for the GPU each time. */
/**
 * ms of `fn`: on a GPU its kernels' time from timestamps (median of 5) after the GPU was warmed
 * (an idle H200 runs short calls at its idle clock: bench/gpu/gpu-timer.mjs), elsewhere wall time
 * (median of `reps`). Returns the first call's result too, for the spot check.
 */
async function timeMs(fn, reps = smoke ? 1 : 3) {
  if (runtime?.features.has('timestamp-query') && !smoke) {
    const { gpuTimeOf, warmGpu } = await import('../gpu/gpu-timer.mjs');
    const first = await fn();
    await warmGpu(runtime, 300);
    const times = [];
    for (let i = 0; i < 5; i++) {
      const { ms, result } = await gpuTimeOf(runtime, fn);
      times.push(ms);
      result.out.gpu?.buffer.destroy();
    }
    times.sort((a, b) => a - b);
    return { ms: times[2], first };
  }
  const r0 = await fn();
  if (runtime) await runtime.finish();
  const times = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    const r = await fn();
    if (runtime) await runtime.finish();
    times.push(performance.now() - t0);
    if (r.out.gpu) r.out.gpu.buffer.destroy();
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)], first: r0 };
}

/** ||a - b|| / ||b|| and the RMS of a - b (v is N(0, 1): the RMS error is in units of the values). */
const errors = (a, b) => {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return { rel: Math.sqrt(num / den), rms: Math.sqrt(num / a.length) };
};

/** Exact softmax attention of rows `rows` of head h, float64. */
function exactRows(x, h, rows, causal) {
  const [q, k, v] = [x.q.cpu.toFloat32(), x.k.cpu.toFloat32(), x.v.cpu.toFloat32()];
  const S = x.q.cpu.shape[2];
  const at = (t, s, d) => t[(h * S + s) * D + d];
  return rows.map((i) => {
    const last = causal ? i : S - 1;
    const s = [];
    for (let j = 0; j <= last; j++) { let dot = 0; for (let d = 0; d < D; d++) dot += at(q, i, d) * at(k, j, d); s.push(dot / Math.sqrt(D)); }
    const m = Math.max(...s);
    const e = s.map((z) => Math.exp(z - m));
    const sum = e.reduce((a, b) => a + b, 0);
    return Float64Array.from({ length: D }, (_, d) => e.reduce((acc, w, j) => acc + w * at(v, j, d), 0) / sum);
  });
}

/** Max |got - ref| over the spot rows, relative to max |ref|: the pass rule of a speed run. */
function spot(got, refRows, h, rows, S) {
  let err = 0;
  let scale = 1e-30;
  rows.forEach((i, n) => refRows[n].forEach((r, d) => { err = Math.max(err, Math.abs(got[(h * S + i) * D + d] - r)); scale = Math.max(scale, Math.abs(r)); }));
  return err / scale;
}
const TOL = half ? 2e-2 : 1e-4;

// ---- 0. linear attention on the issue's shape (B4 H32 S4096 D128 fp16, a GPU): against PyTorch's
// einsum formulation on the same GPU (bench/variants/torch_variants.py); first, so that a time limit
// cuts the long sweeps below rather than the issue's row
const issueRows = [];
if (runtime && half) {
  const [B, H, S, DI] = [4, 32, 4096, 128];
  const gauss = normal(uniform(9));
  const make = () => {
    const data = floatsToHalf(randomFloats(B * H * S * DI, gauss));
    const cpu = Tensor.fromData(data, [B, H, S, DI], 'float16');
    const buffer = runtime.upload(data, 'bench input');
    return { t: Tensor.fromGpuBuffer({ device: runtime.device, buffer, byteOffset: 0 }, [B, H, S, DI], 'float16'), cpu, buffer };
  };
  const x = { q: make(), k: make(), v: make() };
  const rows = [0, 1234, S - 1];
  for (const causal of [false, true]) {
    try {
      const { ms, first } = await timeMs(() => linearAttention(x.q.t, x.k.t, x.v.t, { causal, backend }));
      const got = await values(first.out);
      const ref = referenceApproxRows(validateApprox('linear', x.q.cpu, x.k.cpu, x.v.cpu, { causal }), 0, 1, rows);
      let err = 0;
      let scale = 1e-30;
      rows.forEach((i, n) => ref[n].forEach((r, d) => { err = Math.max(err, Math.abs(got[(1 * S + i) * DI + d] - r)); scale = Math.max(scale, Math.abs(r)); }));
      if (first.out.gpu) first.out.gpu.buffer.destroy();
      if (!(err / scale <= 10 * TOL)) issueRows.push(emit({ part: 'issue-shape', variant: 'linear elu+1', B, H, S, D: DI, causal, error: `spot check failed: relative error ${(err / scale).toExponential(2)}` }));
      else issueRows.push(emit({ part: 'issue-shape', variant: 'linear elu+1', B, H, S, D: DI, causal, dtype: 'float16', ms, spotError: err / scale }));
    } catch (e) {
      issueRows.push(emit({ part: 'issue-shape', variant: 'linear elu+1', B, H, S, D: DI, causal, error: String(e.message ?? e).split('\n')[0] }));
    }
  }
  release(x);
}

// ---- 1. error against exact attention, at two logit scales (sigma² = std of q·k/sqrt(D))
const errSeqFixed = smoke ? 64 : 1024;
const featureCounts = smoke ? [8, 32] : [16, 32, 64, 128, 256, 512, 1024, 2048];
const sigmas = smoke ? [0.7] : [0.5, 0.7, 1];
const errM = [];
for (const sigma of sigmas) {
  const x = inputs(errSeqFixed, 1, sigma);
  const exact = await values((await attention(x.q.t, x.k.t, x.v.t, { backend })).out);
  for (const M of featureCounts) {
    const runs = [];
    for (const seed of [1, 2, 3]) runs.push(errors(await values((await performerAttention(x.q.t, x.k.t, x.v.t, { features: M, seed, backend })).out), exact));
    const mean = (key) => runs.reduce((a, r) => a + r[key], 0) / runs.length;
    errM.push(emit({ part: 'error-vs-features', seq: errSeqFixed, sigma, logitStd: sigma * sigma, features: M, relError: mean('rel'), rmsError: mean('rms') }));
  }
  if (runtime) release(x);
}
const errS = [];
const errSeqs = smoke ? [32, 64] : [128, 256, 512, 1024, 2048, 4096];
for (const S of errSeqs) {
  for (const sigma of sigmas) {
    const x = inputs(S, 2, sigma);
    const exact = await values((await attention(x.q.t, x.k.t, x.v.t, { backend })).out);
    const M = smoke ? 16 : 256;
    const e = errors(await values((await performerAttention(x.q.t, x.k.t, x.v.t, { features: M, seed: 4, backend })).out), exact);
    errS.push(emit({ part: 'error-vs-seq', seq: S, sigma, logitStd: sigma * sigma, features: M, relError: e.rel, rmsError: e.rms }));
    if (runtime) release(x);
  }
}

// ---- 2. speed against exact flash attention
const speedSeqs = (smoke ? [64, 128] : [512, 1024, 2048, 4096, 8192, 16384, 32768]).filter((s) => s <= maxSeq);
const speed = [];
const M = smoke ? 16 : 256;
for (const S of speedSeqs) {
  const x = inputs(S, 3);
  const rows = [0, Math.floor(S / 3), S - 1];
  for (const causal of [false, true]) {
    const variants = [
      ['flash (exact)', () => attention(x.q.t, x.k.t, x.v.t, { causal, backend }), () => exactRows(x, 1, rows, causal)],
      [`Performer M=${M}`, () => performerAttention(x.q.t, x.k.t, x.v.t, { features: M, causal, backend }),
        () => referenceApproxRows(validateApprox('performer', x.q.cpu, x.k.cpu, x.v.cpu, { features: M, causal }), 0, 1, rows)],
      ['linear elu+1', () => linearAttention(x.q.t, x.k.t, x.v.t, { causal, backend }),
        () => referenceApproxRows(validateApprox('linear', x.q.cpu, x.k.cpu, x.v.cpu, { causal }), 0, 1, rows)],
    ];
    for (const [name, run, reference] of variants) {
      try {
        const { ms, first } = await timeMs(run);
        const err = spot(await values(first.out), reference(), 1, rows, S);
        if (first.out.gpu) first.out.gpu.buffer.destroy();
        if (!(err <= (name.startsWith('flash') ? TOL : 10 * TOL))) {
          speed.push(emit({ part: 'speed', variant: name, seq: S, causal, error: `spot check failed: relative error ${err.toExponential(2)}` }));
          continue;
        }
        speed.push(emit({ part: 'speed', variant: name, seq: S, causal, heads: HEADS, dim: D, dtype: half ? 'float16' : 'float32', ms, spotError: err }));
      } catch (e) {
        speed.push(emit({ part: 'speed', variant: name, seq: S, causal, error: String(e.message ?? e).split('\n')[0] }));
      }
    }
  }
  if (runtime) release(x);
}

// ---- table and plots
const where = backend === 'cpu' ? 'CPU' : runtime?.adapter?.info?.description || 'WebGPU';
const md = [`## Approximate attention on ${backend} (${where})`, '', `Performer error vs exact: RMS error (values are N(0, 1)) / relative Frobenius error, mean of 3 seeds; S ${errSeqFixed}, D ${D}, H ${HEADS}; logit std = sigma²:`, '',
  `| M | ${sigmas.map((g) => `logit std ${(g * g).toFixed(2)}`).join(' | ')} |`, `|---|${sigmas.map(() => '---|').join('')}`,
  ...featureCounts.map((m) => `| ${m} | ${sigmas.map((g) => { const r = errM.find((x) => x.features === m && x.sigma === g); return `${r.rmsError.toFixed(4)} / ${r.relError.toFixed(3)}`; }).join(' | ')} |`), '',
  `Against the sequence length (M ${errS[0]?.features}):`, '', `| S | ${sigmas.map((g) => `logit std ${(g * g).toFixed(2)}`).join(' | ')} |`, `|---|${sigmas.map(() => '---|').join('')}`,
  ...errSeqs.map((S) => `| ${S} | ${sigmas.map((g) => { const r = errS.find((x) => x.seq === S && x.sigma === g); return `${r.rmsError.toFixed(4)} / ${r.relError.toFixed(3)}`; }).join(' | ')} |`), '',
  `Speed (ms, median; B1 H${HEADS} D${D}, ${half ? 'float16' : 'float32'}):`, '', '| S | causal | variant | ms |', '|---|---|---|---|',
  ...speed.map((r) => `| ${r.seq} | ${r.causal} | ${r.variant} | ${r.ms !== undefined ? r.ms.toFixed(2) : r.error} |`), '',
  ...(issueRows.length ? ['The issue\'s shape (B4 H32 S4096 D128 float16; PyTorch\'s einsum rows come from torch_variants.py):', '', '| variant | causal | ms |', '|---|---|---|',
    ...issueRows.map((r) => `| ${r.variant} | ${r.causal} | ${r.ms !== undefined ? r.ms.toFixed(3) : r.error} |`), ''] : []),
  runtime?.features.has('timestamp-query') ? 'GPU times: kernel time from timestamps after 300 ms of warm-up (median of 5).' : 'Times: wall clock (median).', ''];
writeFileSync(join(out, `approx-${backend}.md`), md.join('\n'));
writeFileSync(join(out, `approx-error-vs-features-${backend}.svg`), lineChart({
  title: 'Performer: error vs exact attention', xLabel: 'random features M', yLabel: 'RMS error (values N(0,1))', logX: true, logY: true,
  series: [...sigmas.map((g) => ({ name: `logit std ${(g * g).toFixed(2)}`, points: errM.filter((r) => r.sigma === g).map((r) => [r.features, r.rmsError]) })),
    { name: '∝ 1/sqrt(M)', dashed: true, points: featureCounts.map((m) => [m, errM[0].rmsError * Math.sqrt(featureCounts[0] / m)]) }],
  note: `${backend}, S ${errSeqFixed}, D ${D}, ${HEADS} heads, mean of 3 seeds`,
}));
writeFileSync(join(out, `approx-error-vs-seq-${backend}.svg`), lineChart({
  title: 'Performer: error vs sequence length', xLabel: 'sequence length S', yLabel: 'RMS error (values N(0,1))', logX: true, logY: true,
  series: sigmas.map((g) => ({ name: `logit std ${(g * g).toFixed(2)}`, points: errS.filter((r) => r.sigma === g).map((r) => [r.seq, r.rmsError]) })),
  note: `${backend}, M ${errS[0]?.features}, D ${D}, ${HEADS} heads`,
}));
for (const causal of [false, true]) {
  writeFileSync(join(out, `approx-speed-${causal ? 'causal' : 'full'}-${backend}.svg`), lineChart({
    title: `Speed vs exact flash (${causal ? 'causal' : 'non-causal'}), ${where}`, xLabel: 'sequence length S', yLabel: 'ms', logX: true, logY: true,
    series: [...new Set(speed.map((r) => r.variant))].map((v) => ({ name: v, points: speed.filter((r) => r.variant === v && r.causal === causal && r.ms !== undefined).map((r) => [r.seq, r.ms]) })),
    note: `B1 H${HEADS} D${D} ${half ? 'float16' : 'float32'}; crossover where the lines meet`,
  }));
}
console.log(`approx bench: ${jsonl}, tables and plots in ${out}`);
process.exit(0);
