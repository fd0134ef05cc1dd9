#!/usr/bin/env node
// Issue 10 (and 13's masks on tensor cores): the tensor-core backward with bool masks, additive
// biases and dBias, checked, then timed beside the portable tier that took every such call before.
//   node bench/gpu/backward-masks.mjs --out OUT [--smoke]
// 1. checks: the suite's float16 mask / bias cases (BACKWARD_SUITE, hardwareGpu) on four layouts of
//    SG_BACKWARD_VARIANTS (pairs at blocks 32 and 16, the plain kernels with and without hoisting),
//    each against the float64 reference with the suite's float16 rule (2x the naive float16
//    backward's error, dBias included): "PASS|FAIL|NOFIT|SKIP variant case errors".
// 2. timings (GPU timestamps, median of 3 after a compile run), only when every check passed:
//    the tensor-core default without the mask, with it, and the portable tier with it, per shape;
//    "TIME shape run ms TFLOP/s" (FLOPs = 2.5 x the forward's, masked pairs counted as dense).
// Raw rows to OUT/backward-masks.jsonl. --smoke: tiny shapes, the portable rows only (llvmpipe).
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const lib = await import(join(root, 'dist', 'index.js'));
const testing = await import(join(root, 'dist', 'testing', 'index.js'));
const { getRuntime } = await import(join(root, 'dist', 'engines', 'webgpu', 'runtime.js'));
const sg = await import(join(root, 'dist', 'ops', 'attention', 'backward', 'webgpu', 'sgmatrix.js'));
const { runBackwardPlan, runPortableBackward } = await import(join(root, 'dist', 'ops', 'attention', 'backward', 'webgpu', 'portable.js'));
const { gpuTimeOf, warmGpu } = await import(join(here, 'gpu-timer.mjs'));

const args = process.argv.slice(2);
const out = args.includes('--out') ? args[args.indexOf('--out') + 1] : 'out-backward-masks';
const smoke = args.includes('--smoke');
mkdirSync(out, { recursive: true });
const runtime = await getRuntime();
const t0 = performance.now();
const say = (line, row) => {
  console.log(line);
  appendFileSync(join(out, 'backward-masks.jsonl'), `${JSON.stringify({ commit: process.env.FUSEDATTN_COMMIT ?? 'unknown', s: +((performance.now() - t0) / 1000).toFixed(1), ...row })}\n`);
};

// ---- 1. checks
const CASES = testing.BACKWARD_SUITE.filter((c) => c.dtype === 'float16' && (c.mask || c.bias));
const LAYOUTS = ['p8h-qp8b32', 'p8hb16-qp8', 'hoist4', 'old'];
const caseLabel = (c) => `${testing.caseName(c)}${c.biasGrad ? " dBias" : ""}`;
let failures = 0;
let checked = 0;
for (const c of CASES) {
  const made = testing.makeCase(c, 11);
  const options = { ...made.options, ...(c.biasGrad ? { biasGrad: true } : {}) };
  const problem = lib.validateAttention(made.q, made.k, made.v, made.options);
  const g = testing.makeGradCase(c, 11, problem.outShape);
  const fwd = await lib.attention(made.q, made.k, made.v, { ...made.options, returnLse: true, backend: 'webgpu' });
  const bp = lib.validateAttentionBackward(made.q, made.k, made.v, fwd.out, g.dOut, fwd.lse, options);
  const ref = lib.referenceGradients(bp.forward, g.dOutValues, bp.biasGrad);
  const why = sg.sgBackwardUnsupported(bp, runtime);
  // a folded dBias (a bias shared by the batch or the KV heads) also runs with at most 2 partial
  // planes (several pairs a plane) and with 1 (the fold alone), and twice at the default (bit-identical)
  const fold = why ? undefined : sg.sgBiasGradOf(bp);
  const planeSettings = fold && (fold.foldBatch || fold.foldHeads) ? [undefined, '2', '1'] : [undefined];
  for (const name of LAYOUTS) for (const planes of planeSettings) {
    const config = sg.SG_BACKWARD_VARIANTS[name];
    const label = planes ? `${name}/planes<=${planes}` : name;
    const row = { kind: 'check', variant: label, case: caseLabel(c) };
    if (why) { say(`SKIP ${label} ${caseLabel(c)}: ${why}`, { ...row, status: 'skip', why }); continue; }
    if (sg.fittingBackwardConfig(bp, runtime, config) !== config) { say(`NOFIT ${label} ${caseLabel(c)}`, { ...row, status: 'nofit' }); continue; }
    if (planes) process.env.FUSEDATTN_DBIAS_PLANES = planes;
    try {
      const plan = await sg.sgBackwardPlan(runtime, bp, config);
      const grads = await runBackwardPlan(runtime, bp, plan);
      const outcome = testing.checkGradients(bp.forward, g.dOutValues, grads, bp.biasGrad, ref);
      if (!planes && plan.biasPlanes) {
        const again = await runBackwardPlan(runtime, bp, plan);
        const bits = (t) => new Uint32Array(Float32Array.from(t.data).buffer);
        const a = bits(grads.dBias);
        const b = bits(again.dBias);
        if (a.some((x, i) => x !== b[i])) outcome.failures.push('dBias differs between two runs');
      }
      const errors = Object.entries(outcome.relErrors).map(([k, e]) => `${k} ${e.toExponential(2)}`).join(' ');
      checked++;
      if (outcome.failures.length) failures++;
      const planesNote = plan.biasPlanes ? ` (${plan.biasPlanes.planes} planes)` : '';
      say(`${outcome.failures.length ? 'FAIL' : 'PASS'} ${label} ${caseLabel(c)}${planesNote} ${errors}${outcome.failures.length ? ` | ${outcome.failures.join('; ')}` : ''}`,
        { ...row, status: outcome.failures.length ? 'fail' : 'pass', planes: plan.biasPlanes?.planes ?? 1, relErrors: outcome.relErrors, failures: outcome.failures });
    } catch (e) {
      failures++;
      say(`FAIL ${label} ${caseLabel(c)} error ${String(e.message).split('\n')[0].slice(0, 200)}`, { ...row, status: 'fail', error: String(e.message).slice(0, 400) });
    } finally {
      delete process.env.FUSEDATTN_DBIAS_PLANES;
    }
  }
}
// score / mask functions and block masks (the tier runs them through the forward's final_score)
const docIds = (n, length) => Int32Array.from({ length: n }, (_, i) => Math.floor(i / length));
const rel = lib.capture(testing.randomFloats(300 * 4, testing.normal(testing.uniform(5))), [300, 4], 'rel');
const MOD_CASES = [
  { c: { batch: 1, headsQ: 4, headsKv: 2, seqQ: 97, seqK: 97, dimQK: 64, causal: true }, label: 'softcap(20) + sinks', extra: async () => ({ scoreMod: lib.softcap(20), sink: Float32Array.of(0.5, -1, 2, 0) }) },
  { c: { batch: 2, headsQ: 2, seqQ: 150, seqK: 150, dimQK: 128 }, label: 'documents of 37 as a block mask (32) + softcap(30)',
    extra: async (c) => ({ blockMask: await lib.createBlockMask(lib.documentMask(docIds(c.seqQ, 37), { causal: true }), null, null, c.seqQ, c.seqK, { blockSize: 32 }), scoreMod: lib.softcap(30) }) },
  { c: { batch: 1, headsQ: 4, seqQ: 70, seqK: 90, dimQK: 40, alibi: true }, label: 'relative-position table scoreMod + documents maskMod',
    extra: async (c) => ({ scoreMod: lib.scoreMod(({ score, q, kv, h }) => score.add(rel.at(kv.sub(q).add(150), h))), maskMod: lib.documentMask(docIds(c.seqK, 29)) }) },
  { c: { batch: 1, headsQ: 2, seqQ: 65, seqK: 65, dimQK: 192, dimV: 128, causal: true, dropout: 0.1 }, label: 'MLA tanh scoreMod', extra: async () => ({ scoreMod: lib.scoreMod(({ score }) => score.mul(0.2).tanh().mul(5)) }) },
];
for (const { c: c0, label, extra } of MOD_CASES) {
  const c = { ...c0, dtype: 'float16' };
  const made = testing.makeCase(c, 13);
  const options = { ...made.options, ...(await extra(c)) };
  const problem = lib.validateAttention(made.q, made.k, made.v, options);
  const g = testing.makeGradCase(c, 13, problem.outShape);
  const fwd = await lib.attention(made.q, made.k, made.v, { ...options, returnLse: true, backend: 'webgpu' });
  const bp = lib.validateAttentionBackward(made.q, made.k, made.v, fwd.out, g.dOut, fwd.lse, options);
  const ref = lib.referenceGradients(bp.forward, g.dOutValues, false);
  const why = sg.sgBackwardUnsupported(bp, runtime);
  const name0 = `${testing.caseName(c)} ${label}`;
  for (const name of LAYOUTS) {
    const config = sg.SG_BACKWARD_VARIANTS[name];
    const row = { kind: 'check', variant: name, case: name0 };
    if (why) { say(`SKIP ${name} ${name0}: ${why}`, { ...row, status: 'skip', why }); continue; }
    if (sg.fittingBackwardConfig(bp, runtime, config) !== config) { say(`NOFIT ${name} ${name0}`, { ...row, status: 'nofit' }); continue; }
    try {
      const grads = await runBackwardPlan(runtime, bp, await sg.sgBackwardPlan(runtime, bp, config));
      const outcome = testing.checkGradients(bp.forward, g.dOutValues, grads, false, ref);
      const errors = Object.entries(outcome.relErrors).map(([k, e]) => `${k} ${e.toExponential(2)}`).join(' ');
      checked++;
      if (outcome.failures.length) failures++;
      say(`${outcome.failures.length ? 'FAIL' : 'PASS'} ${name} ${name0} ${errors}${outcome.failures.length ? ` | ${outcome.failures.join('; ')}` : ''}`,
        { ...row, status: outcome.failures.length ? 'fail' : 'pass', relErrors: outcome.relErrors, failures: outcome.failures });
    } catch (e) {
      failures++;
      say(`FAIL ${name} ${name0} error ${String(e.message).split('\n')[0].slice(0, 200)}`, { ...row, status: 'fail', error: String(e.message).slice(0, 400) });
    }
  }
}
say(`checks: ${checked} run, ${failures} failed`, { kind: 'checks', checked, failures });

// ---- 2. timings
function randomHalves(shape, seed) {
  const n = shape.reduce((a, b) => a * b, 1);
  const block = lib.floatsToHalf(testing.randomFloats(Math.min(n, 1 << 20), testing.normal(testing.uniform(seed))));
  const data = new Uint16Array(n);
  for (let at = 0; at < n; at += block.length) data.set(block.subarray(0, Math.min(block.length, n - at)), at);
  const buffer = runtime.createBuffer(Math.ceil(data.byteLength / 4) * 4, 'bench input');
  runtime.write(buffer, 0, data);
  return lib.Tensor.fromGpuBuffer({ device: runtime.device, buffer, byteOffset: 0 }, shape, 'float16');
}
/** Key padding [B, 1, 1, S]: sequence b keeps its first S - b·S/8 keys (the rest are padding). */
function paddingMask(batch, seq) {
  const m = new Uint8Array(batch * seq);
  for (let b = 0; b < batch; b++) for (let j = 0; j < seq - Math.floor((b * seq) / 8); j++) m[b * seq + j] = 1;
  return lib.Tensor.fromData(m, [batch, 1, 1, seq], 'bool');
}
const S = smoke
  ? { name: 'B1 H2 S64 D32', batch: 1, heads: 2, seq: 64, dim: 32 }
  : undefined;
const SHAPES = smoke
  ? [{ ...S, label: `${S.name} causal + padding mask`, causal: true, extra: () => ({ mask: paddingMask(S.batch, S.seq) }) }]
  : [
    { label: 'B4 H32 S4096 D128 causal + key padding mask [B,1,1,S]', batch: 4, heads: 32, seq: 4096, dim: 128, causal: true, extra: () => ({ mask: paddingMask(4, 4096) }) },
    { label: 'B4 H32 S1024 D64 + key padding mask [B,1,1,S]', batch: 4, heads: 32, seq: 1024, dim: 64, extra: () => ({ mask: paddingMask(4, 1024) }) },
    { label: 'B1 H16 S2048 D128 + bias [1,H,S,S] f16, dBias', batch: 1, heads: 16, seq: 2048, dim: 128, biasGrad: true, extra: () => ({ bias: randomHalves([1, 16, 2048, 2048], 9) }) },
    { label: 'B1 H16 S2048 D128 + bias [1,H,S,S] f16, no dBias', batch: 1, heads: 16, seq: 2048, dim: 128, extra: () => ({ bias: randomHalves([1, 16, 2048, 2048], 9) }) },
    { label: 'B2 H16 S2048 D64 causal + bias [S,S] f16, dBias (batch and heads folded)', batch: 2, heads: 16, seq: 2048, dim: 64, causal: true, biasGrad: true, extra: () => ({ bias: randomHalves([2048, 2048], 10) }) },
    { label: 'B4 H32 S1024 D64 + bias [1,1,S,S] f32, dBias (batch and heads folded)', batch: 4, heads: 32, seq: 1024, dim: 64, biasGrad: true, extra: () => ({ bias: lib.Tensor.fromData(testing.randomFloats(1024 * 1024, testing.normal(testing.uniform(12))), [1, 1, 1024, 1024]) }) },
    { label: 'B4 H32 S4096 D128 causal + softcap(20) scoreMod', batch: 4, heads: 32, seq: 4096, dim: 128, causal: true, scoreFunction: true, extra: () => ({ scoreMod: lib.softcap(20) }) },
    { label: 'B4 H32 S4096 D128 causal + softcap option 20', batch: 4, heads: 32, seq: 4096, dim: 128, causal: true, extra: () => ({ softcap: 20 }) },
    { label: 'B4 H32 S4096 D128 causal + documents 8x512 block mask', batch: 4, heads: 32, seq: 4096, dim: 128, causal: true, extra: () => ({ blockMask: docBlocks }) },
  ];
const docBlocks = smoke ? undefined : await lib.createBlockMask(lib.documentMask(docIds(4096, 512), { causal: true }), null, null, 4096, 4096, { blockSize: 128 });
if (failures === 0) {
  for (const s of SHAPES) {
    const q = randomHalves([s.batch, s.heads, s.seq, s.dim], 3);
    const k = randomHalves([s.batch, s.heads, s.seq, s.dim], 4);
    const v = randomHalves([s.batch, s.heads, s.seq, s.dim], 5);
    const dOut = randomHalves([s.batch, s.heads, s.seq, s.dim], 6);
    const plain = { causal: s.causal ?? false };
    const masked = { ...plain, ...s.extra() };
    const pairs = s.causal ? (s.seq * (s.seq + 1)) / 2 : s.seq * s.seq;
    const flops = 2.5 * 2 * pairs * s.batch * s.heads * 2 * s.dim;
    const runs = {};
    const plan = async (options, grad) => {
      const fwd = await lib.attention(q, k, v, { ...options, returnLse: true, backend: 'webgpu' });
      return { fwd, bp: lib.validateAttentionBackward(q, k, v, fwd.out, dOut, fwd.lse, { ...options, ...(grad ? { biasGrad: true } : {}) }) };
    };
    const base = await plan(plain, false);
    const withMask = await plan(masked, s.biasGrad);
    const why = sg.sgBackwardUnsupported(withMask.bp, runtime);
    if (!smoke && !why) {
      const config = sg.fittingBackwardConfig(base.bp, runtime);
      runs['tensor cores, no mask'] = async () => runBackwardPlan(runtime, base.bp, await sg.sgBackwardPlan(runtime, base.bp, config));
      runs['tensor cores, masked'] = async () => runBackwardPlan(runtime, withMask.bp, await sg.sgBackwardPlan(runtime, withMask.bp, sg.fittingBackwardConfig(withMask.bp, runtime)));
      // the before of this session's changes, in the same run: a shared bias's dBias folded without
      // planes, softcap() as a score function on the general score path
      const env = (name, value, run) => async () => { process.env[name] = value; try { return await run(); } finally { delete process.env[name]; } };
      if (s.biasGrad && (sg.sgBiasGradOf(withMask.bp)?.foldBatch || sg.sgBiasGradOf(withMask.bp)?.foldHeads)) runs['tensor cores, masked, fold without planes'] = env('FUSEDATTN_DBIAS_PLANES', '1', runs['tensor cores, masked']);
      if (s.scoreFunction) runs['tensor cores, masked, as a score function'] = env('FUSEDATTN_MODS_AS_OPTIONS', 'off', runs['tensor cores, masked']);
    } else if (!smoke) say(`SKIP tensor cores ${s.label}: ${why}`, { kind: 'bench', shape: s.label, status: 'skip', why });
    runs['portable, masked'] = () => runPortableBackward(runtime, withMask.bp);
    await warmGpu(runtime, 300);
    for (const [name, run] of Object.entries(runs)) {
      try {
        const times = [];
        let last;
        for (let i = 0; i < (smoke ? 2 : 4); i++) {
          last = await gpuTimeOf(runtime, run, 64);
          for (const gr of Object.values(last.result)) gr?.gpu?.buffer.destroy();
          if (i > 0) times.push(last.ms);
        }
        times.sort((a, b) => a - b);
        const ms = times[Math.floor(times.length / 2)];
        say(`TIME ${s.label} | ${name} ${ms.toFixed(2)} ms ${(flops / ms / 1e9).toFixed(1)} TFLOP/s${last.wallClock ? ' (wall clock)' : ''}`,
          { kind: 'bench', shape: s.label, run: name, ms, tflops: flops / ms / 1e9, byKernel: last.byKernel });
      } catch (e) {
        say(`FAIL ${s.label} | ${name} timing error ${String(e.message).split('\n')[0].slice(0, 200)}`, { kind: 'bench', shape: s.label, run: name, status: 'fail', error: String(e.message).slice(0, 400) });
      }
    }
    for (const t of [q, k, v, dOut, base.fwd.out, base.fwd.lse, withMask.fwd.out, withMask.fwd.lse, masked.bias]) t?.gpu?.buffer.destroy();
  }
} else say('NOTIME: a check failed, no timings', { kind: 'bench', status: 'check failed' });
say(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s`, { kind: 'done' });
process.exit(0);
