// Masks, block masks and score functions benchmark (issue 13), one backend. At B4 H32 S4096 D128
// (float16 on a GPU with shader-f16; --smoke: tiny, float32):
//   dense causal (options.causal) as the baseline; a dense bool mask (causal, 1024 keys) on the
//   tensor-core tier with and without the block skip derived from it, and on the portable tier;
//   block masks (sliding window 1024, 8 documents of 512) against dense causal time; softcap as an
//   option and as a scoreMod, and GPT-OSS sinks, against causal.
// Each result is spot-checked first (rows of every (b, h) corner against a float64 evaluation of
// the same problem); a wrong result is reported as an error, never as a speed. GPU times are
// kernel times from timestamp queries (bench/gpu/gpu-timer.mjs), wall time beside them.
//   node bench/variants/masks.mjs OUTDIR [--backend webgpu|cpu] [--smoke]
import { mkdirSync, writeFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  Tensor, attention, createBlockMask, documentMask, floatsToHalf, scoreMod, slidingWindow, softcap, validateAttention, attentionSinks,
} from '../../dist/index.js';
import { referenceMods } from '../../dist/ops/attention/mods/evaluate.js';
import { keyRange, viewIndex } from '../../dist/ops/attention/index.js';
import { normal, randomFloats, uniform } from '../../dist/testing/index.js';

const args = process.argv.slice(2);
const out = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--backend') ?? 'bench-results/variants';
const backend = args.includes('--backend') ? args[args.indexOf('--backend') + 1] : 'webgpu';
const smoke = args.includes('--smoke');
mkdirSync(out, { recursive: true });
const jsonl = join(out, `masks-${backend}.jsonl`);
writeFileSync(jsonl, '');
const emit = (row) => {
  const line = { bench: 'masks', backend, commit: process.env.FUSEDATTN_COMMIT ?? 'unknown', ...row };
  appendFileSync(jsonl, `${JSON.stringify(line)}\n`);
  console.log(JSON.stringify(line));
  return line;
};

let runtime;
let gpuTimeOf;
if (backend === 'webgpu') {
  runtime = await (await import('../../dist/engines/webgpu/runtime.js')).getRuntime();
  gpuTimeOf = (await import('../gpu/gpu-timer.mjs')).gpuTimeOf;
}
const half = Boolean(runtime?.features.has('shader-f16')) && !smoke;
const [B, H, S, D] = smoke ? [1, 2, 256, 32] : backend === 'cpu' ? [1, 4, 2048, 64] : [4, 32, 4096, 128];
const WINDOW = smoke ? 64 : 1024;
const DOCS = 8;
const DOC = S / DOCS;

// inputs: q, k, v once (GPU tensors on webgpu)
const gauss = normal(uniform(1));
const host = [0, 1, 2].map(() => randomFloats(B * H * S * D, gauss));
const cpu = host.map((x) => (half ? Tensor.fromData(floatsToHalf(x), [B, H, S, D], 'float16') : Tensor.fromData(x, [B, H, S, D])));
const [q, k, v] = runtime
  ? cpu.map((t) => Tensor.fromGpuBuffer({ device: runtime.device, buffer: runtime.upload(t.data, 'bench input'), byteOffset: 0 }, t.shape, t.dtype))
  : cpu;

const windowMask = Tensor.fromData(Uint8Array.from({ length: S * S }, (_, e) => { const i = Math.floor(e / S); const j = e % S; return j <= i && j > i - WINDOW ? 1 : 0; }), [S, S], 'bool');
const docIds = Int32Array.from({ length: S }, (_, i) => Math.floor(i / DOC));
const windowBlocks = await createBlockMask(slidingWindow(WINDOW - 1, 0), 1, 1, S, S, { blockSize: smoke ? 32 : 128 });
const docBlocks = await createBlockMask(documentMask(docIds, { causal: true }), 1, 1, S, S, { blockSize: smoke ? 32 : 128 });
const causalBlockMask = await createBlockMask((await import('../../dist/index.js')).causal(), 1, 1, S, S, { blockSize: smoke ? 32 : 128 });
const causalBlocks = causalBlockMask.density();
const sinks = Float32Array.from({ length: H }, (_, h) => (h % 5) - 2);

/** Rows of (b, h) corners, float64, as the reference computes them (mask, mods, sink). */
function spotRows(problem) {
  const mods = problem.mods ? referenceMods(problem.mods.kernel, problem.mods.tensors) : {};
  const [qf, kf, vf] = cpu.map((t) => t.toFloat32());
  const mask = problem.mask ? windowMask.data : undefined;   // the one mask of the bench (also when bound from the GPU)
  const picks = [[0, 0, 0], [0, H - 1, S - 1], [B - 1, Math.floor(H / 2), Math.floor(S / 2) + 3], [B - 1, 1, WINDOW + 5]];
  return picks.map(([b, h, i]) => {
    const [lo, hi] = keyRange(problem, b, i);
    const s = new Float64Array(S).fill(-Infinity);
    for (let j = 0; j < S; j++) {
      if (j < lo || j > hi) continue;
      if (mask && !mask[problem.mask.strides.b * b + problem.mask.strides.h * h + problem.mask.strides.i * i + problem.mask.strides.j * j]) continue;
      if (mods.mask && !mods.mask(b, h, i, j, S, S)) continue;
      let dot = 0;
      for (let d = 0; d < D; d++) dot += qf[viewIndex(problem.q, problem.seqStartsQ, b, h, i, d)] * kf[viewIndex(problem.k, problem.seqStartsK, b, h, j, d)];
      let x = dot * problem.scale;
      if (problem.softcap > 0) x = problem.softcap * Math.tanh(x / problem.softcap);
      if (mods.score) x = mods.score(b, h, i, j, S, S, x);
      s[j] = x;
    }
    const sink = mods.sink ? mods.sink(b, h, i, S, S) : -Infinity;
    const m = Math.max(sink, ...s);
    let sum = sink === -Infinity ? 0 : Math.exp(sink - m);
    const e = s.map((x) => (x === -Infinity ? 0 : Math.exp(x - m)));
    for (const x of e) sum += x;
    const row = new Float64Array(D);
    for (let j = 0; j < S; j++) if (e[j]) for (let d = 0; d < D; d++) row[d] += (e[j] / sum) * vf[viewIndex(problem.v, problem.seqStartsK, b, h, j, d)];
    return { b, h, i, row };
  });
}

async function outputOf(t) {
  if (t.location === 'cpu') return t.toFloat32();
  const bytes = await runtime.read(t.gpu.buffer, 0, t.size * (t.dtype === 'float16' ? 2 : 4));
  return Tensor.fromData(t.dtype === 'float16' ? new Uint16Array(bytes) : new Float32Array(bytes), t.shape, t.dtype).toFloat32();
}

const TOL = half ? 1e-2 : 1e-4;
const pairsOf = (problem) => {
  const mods = problem.mods ? referenceMods(problem.mods.kernel, problem.mods.tensors) : {};
  if (!mods.mask && !problem.mask) {
    let n = 0;
    for (let i = 0; i < S; i++) { const [lo, hi] = keyRange(problem, 0, i); n += Math.max(0, hi - lo + 1); }
    return n * B * H;
  }
  let n = 0;
  for (let i = 0; i < S; i++) {
    const [lo, hi] = keyRange(problem, 0, i);
    for (let j = lo; j <= hi; j++) if ((!mods.mask || mods.mask(0, 0, i, j, S, S)) && (!problem.mask || windowMask.data[i * S + j])) n++;
  }
  return n * B * H;
};

const results = {};
/** Set to an object to keep the next measured case's output (its .out). */
let keep;
/**
 * `alt`: other inputs for the same work ({ inputs: [q, k, v], expected, pairs }): checked against
 * an output the spot-checked cases produced, instead of the spot rows.
 */
async function measure(name, options, env = {}, alt = undefined) {
  const [qq, kk, vv] = alt?.inputs ?? [q, k, v];
  const saved = {};
  for (const [key, value] of Object.entries(env)) { saved[key] = process.env[key]; process.env[key] = value; }
  try {
    // the reference reads the functions as written (no split into the call's options), so the
    // spot check and the useful-pair count do not depend on what the split does
    const written = process.env.FUSEDATTN_MODS_AS_OPTIONS;
    process.env.FUSEDATTN_MODS_AS_OPTIONS = 'off';
    const problem = validateAttention(qq, kk, vv, options);
    if (written === undefined) delete process.env.FUSEDATTN_MODS_AS_OPTIONS; else process.env.FUSEDATTN_MODS_AS_OPTIONS = written;
    const first = await attention(qq, kk, vv, { ...options, backend });
    const got = await outputOf(first.out);
    if (first.out.gpu) first.out.gpu.buffer.destroy();
    let err = 0;
    let scale = 1e-30;
    if (alt) {
      got.forEach((x, n) => { err = Math.max(err, Math.abs(x - alt.expected[n])); scale = Math.max(scale, Math.abs(alt.expected[n])); });
    } else {
      for (const { b, h, i, row } of spotRows(problem)) {
        row.forEach((r, d) => { err = Math.max(err, Math.abs(got[((b * H + h) * S + i) * D + d] - r)); scale = Math.max(scale, Math.abs(r)); });
      }
    }
    if (keep) keep.out = got;
    if (!(err / scale <= TOL)) return (results[name] = emit({ case: name, error: `spot check failed: relative error ${(err / scale).toExponential(2)}` }));
    // the case and the causal baseline alternate, so load drift on a shared machine hits both;
    // GPU: kernel time from timestamps (median), CPU: wall time (minimum)
    const reps = smoke ? 1 : 5;
    // the case on its inputs, the causal baseline on the bench's
    const once = async (opts) => {
      const [a, b, c] = opts === options ? [qq, kk, vv] : [q, k, v];
      const t0 = performance.now();
      let kernelMs;
      if (gpuTimeOf) {
        const { ms: k2, result } = await gpuTimeOf(runtime, () => attention(a, b, c, { ...opts, backend }));
        kernelMs = k2;
        result.out.gpu?.buffer.destroy();
      } else {
        await attention(a, b, c, { ...opts, backend });
      }
      return { wall: performance.now() - t0, kernel: kernelMs };
    };
    const kernel = [];
    const wall = [];
    const base = [];
    // the spot check kept the GPU idle for seconds: its clocks up again first (gpu-timer.mjs)
    if (runtime) await (await import('../gpu/gpu-timer.mjs')).warmGpu(runtime, 300);
    for (let r = 0; r < reps; r++) {
      const x = await once(options);
      wall.push(x.wall);
      if (x.kernel !== undefined) kernel.push(x.kernel);
      const y = await once({ causal: true });
      base.push(gpuTimeOf ? y.kernel : y.wall);
    }
    const median = (x) => x.slice().sort((a, b2) => a - b2)[Math.floor(x.length / 2)];
    const pick = gpuTimeOf ? median : (x) => Math.min(...x);
    const ms = gpuTimeOf ? median(kernel) : pick(wall);
    const baseline = pick(base);
    const pairs = alt?.pairs ?? pairsOf(problem);
    return (results[name] = emit({ case: name, B, H, S, D, dtype: half ? 'float16' : 'float32', ms, wallMs: median(wall), causalMs: baseline, vsCausal: ms / baseline, tflops: (4 * D * pairs) / (ms * 1e9), spotError: err / scale }));
  } catch (e) {
    return (results[name] = emit({ case: name, error: String(e.message ?? e).split('\n')[0] }));
  } finally {
    for (const [key, value] of Object.entries(saved)) { if (value === undefined) delete process.env[key]; else process.env[key] = value; }
  }
}

await measure('causal (dense)', { causal: true });
await measure(`window ${WINDOW} (options.window)`, { causal: true, window: [WINDOW - 1, 0] });
await measure(`dense bool mask (causal ${WINDOW})`, { mask: windowMask });
if (runtime) {
  const gpuMask = Tensor.fromGpuBuffer({ device: runtime.device, buffer: runtime.upload(windowMask.data, 'bench mask'), byteOffset: 0 }, windowMask.shape, 'bool');
  await measure(`dense bool mask (causal ${WINDOW}) on the GPU, table found there`, { mask: gpuMask });
  await measure(`dense bool mask (causal ${WINDOW}), no block skip`, { mask: windowMask }, { FUSEDATTN_MASK_BLOCKS: 'off' });
  await measure(`dense bool mask (causal ${WINDOW}), portable tier`, { mask: windowMask }, { FUSEDATTN_WEBGPU_TIER: 'portable' });
}
// causal as a block mask: f = 1, so it is the table path's own cost (FULL tiles on the plain lines)
await measure('block mask: causal', { blockMask: causalBlockMask });
await measure(`block mask: sliding window ${WINDOW}`, { blockMask: windowBlocks });
keep = {};
await measure(`block mask: ${DOCS} documents of ${DOC}`, { blockMask: docBlocks });
const docsOut = keep.out;
keep = undefined;
// the same work as dense causal calls: the documents are contiguous runs of S / DOCS rows of each
// (b, h), so [B, H, S, D] is [B, H·DOCS, DOC, D] (BNSD) and causal attention there is the mask's
if (runtime && docsOut) {
  const asDocs = [q, k, v].map((t) => Tensor.fromGpuBuffer({ device: runtime.device, buffer: t.gpu.buffer, byteOffset: 0 }, [B, H * DOCS, DOC, D], t.dtype));
  const docsAlt = { inputs: asDocs, expected: docsOut, pairs: (B * H * S * (DOC + 1)) / 2 };
  await measure(`causal on the ${DOCS} documents as sequences (B${B} H${H * DOCS} S${DOC})`, { causal: true }, {}, docsAlt);
  // both under each tensor-core configuration (MASKS_CONFIGS=1): does a short-row shape want another?
  if (process.env.MASKS_CONFIGS === '1') {
    const { SG_MATRIX_CONFIGS } = await import('../../dist/ops/attention/webgpu/tiers/sgmatrix.js');
    for (const c of SG_MATRIX_CONFIGS.slice(0, 6)) {
      const env = { FUSEDATTN_SGMATRIX_CONFIG: JSON.stringify(c) };
      const tag = `sg ${c.subgroups} bc ${c.blockKeys}${c.sharedKV ? ' sharedKV' : ''}${c.smemVec4 ? '' : ' scalar smem'}${c.prefetch ? '' : ' no prefetch'}${c.headsPerTile > 1 ? ` ${c.headsPerTile} heads` : ''}`;
      await measure(`block mask: ${DOCS} documents of ${DOC}, ${tag}`, { blockMask: docBlocks }, env);
      await measure(`causal on the documents as sequences, ${tag}`, { causal: true }, env, docsAlt);
    }
  }
}
await measure('causal + softcap 30 (option)', { causal: true, softcap: 30 });
const softcapFunction = scoreMod(({ score }) => score.mul(1 / 30).tanh().mul(30), 'softcap(30) written out');
await measure('causal + softcap 30 (scoreMod)', { causal: true, scoreMod: softcap(30) });
// softcap() runs as the option (mods/softcap-part.ts); the same function written out stays one
await measure('causal + softcap 30 (scoreMod written out: a function)', { causal: true, scoreMod: softcapFunction });
// what the splits into options save: the block masks and softcap() as written (no split)
await measure(`block mask: ${DOCS} documents of ${DOC}, not split`, { blockMask: docBlocks }, { FUSEDATTN_MODS_AS_OPTIONS: 'off' });
await measure('block mask: causal, not split', { blockMask: causalBlockMask }, { FUSEDATTN_MODS_AS_OPTIONS: 'off' });
await measure('causal + sinks (per head)', { causal: true, sink: attentionSinks(sinks) });

// ---- targets
const T = (name) => results[name]?.ms;
const rows = [`## Masks, block masks and score functions on ${backend} (B${B} H${H} S${S} D${D}, ${half ? 'float16' : 'float32'})`, '',
  '| case | ms | TFLOP/s | vs causal |', '|---|---|---|---|',
  ...Object.values(results).map((r) => `| ${r.case} | ${r.ms?.toFixed(3) ?? r.error} | ${r.tflops?.toFixed(r.tflops < 1 ? 3 : 1) ?? ''} | ${r.vsCausal?.toFixed(3) ?? ''} |`), ''];
const checks = [];
const blockTarget = (name, bm) => {
  const f = bm.density() / causalBlocks;
  const ratio = results[name]?.vsCausal;
  if (ratio) checks.push(emit({ target: `${name}: time <= 1.15 f causal + 5%`, f, ratio, bound: 1.15 * f + 0.05, met: ratio <= 1.15 * f + 0.05 }));
};
blockTarget('block mask: causal', causalBlockMask);
blockTarget(`block mask: sliding window ${WINDOW}`, windowBlocks);
blockTarget(`block mask: ${DOCS} documents of ${DOC}`, docBlocks);
blockTarget(`block mask: ${DOCS} documents of ${DOC}, not split`, docBlocks);
const tc = T(`dense bool mask (causal ${WINDOW})`);
const portable = T(`dense bool mask (causal ${WINDOW}), portable tier`);
if (tc && portable) checks.push(emit({ target: 'dense bool mask: tensor-core >= 5x portable', speedup: portable / tc, met: portable / tc >= 5 }));
for (const name of ['causal + softcap 30 (option)', 'causal + softcap 30 (scoreMod)', 'causal + softcap 30 (scoreMod written out: a function)', 'causal + sinks (per head)']) {
  const ratio = results[name]?.vsCausal;
  if (ratio) checks.push(emit({ target: `${name} <= 1.15 x causal`, overhead: ratio - 1, met: ratio <= 1.15 }));
}
rows.push('| target | value | met |', '|---|---|---|', ...checks.map((c) => `| ${c.target} | ${JSON.stringify(Object.fromEntries(Object.entries(c).filter(([k2]) => ['f', 'ratio', 'bound', 'speedup', 'overhead'].includes(k2)).map(([k2, x]) => [k2, Number(x.toFixed(3))])))} | ${c.met ? 'yes' : 'no'} |`), '');
writeFileSync(join(out, `masks-${backend}.md`), rows.join('\n'));
console.log(rows.join('\n'));
process.exit(0);
