#!/usr/bin/env node
// Issue 10: the tensor-core backward's variants (SG_BACKWARD_VARIANTS) checked, then timed per pass.
//   node bench/gpu/backward-tc.mjs --out OUT [--smoke] [--variants hoist4,pairs4h]
// 1. checks: every variant, f16, on odd shapes (D 64/128, MLA 192/128 and its split form 128+64/128,
//    Sq != Sk both ways, causal bottom-right and top-left, GQA, softcap + ALiBi, dropout) against our float64 reference:
//    "PASS|FAIL variant shape err" (err = max |g - ref| / max |ref| over dq, dk, dv; limit 2e-3).
//    A variant that does not fit the shape's workgroup memory prints "NOFIT", one the adapter
//    cannot run (llvmpipe) "SKIP".
// 2. timings (bench shapes of backward-shapes.json: D128 non-causal, causal, MLA), only variants that
//    passed every check: "TIME shape variant ms TFLOP/s pre/kv/q/cast ms" (GPU timestamps, median of 3
//    after one compile run, behind warmGpu). --smoke: the portable tier on a tiny shape instead, so the
//    timing and file paths run on llvmpipe. "default" = today's untuned choice where base does not fit (MLA).
// Raw rows to OUT/backward-tc.jsonl.
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
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
const out = args.includes('--out') ? args[args.indexOf('--out') + 1] : 'out-backward-tc';
const smoke = args.includes('--smoke');
mkdirSync(out, { recursive: true });
const runtime = await getRuntime();
const t0 = performance.now();
const say = (line, row) => {
  console.log(line);
  appendFileSync(join(out, 'backward-tc.jsonl'), `${JSON.stringify({ commit: process.env.FUSEDATTN_COMMIT ?? 'unknown', s: +((performance.now() - t0) / 1000).toFixed(1), ...row })}\n`);
};
// --variants a,b (or TC_VARIANTS): only those variants, so a short device part spends its time on
// the open question instead of re-timing variants already measured
const only = (args.includes('--variants') ? args[args.indexOf('--variants') + 1] : process.env.TC_VARIANTS)?.split(',').filter(Boolean);
const VARIANTS = only ? Object.fromEntries(Object.entries(sg.SG_BACKWARD_VARIANTS).filter(([name]) => only.includes(name))) : sg.SG_BACKWARD_VARIANTS;
if (only && Object.keys(VARIANTS).length !== only.length) throw new Error(`--variants: expected names among ${Object.keys(sg.SG_BACKWARD_VARIANTS).join(', ')}, received ${only.join(', ')}`);

const CHECKS = smoke
  ? [{ batch: 1, headsQ: 2, seqQ: 37, seqK: 53, dimQK: 24, dimV: 16, causal: true }]
  : [
    { batch: 1, headsQ: 2, seqQ: 131, seqK: 131, dimQK: 128 },
    { batch: 1, headsQ: 2, seqQ: 150, seqK: 97, dimQK: 128, causal: true },
    { batch: 1, headsQ: 2, seqQ: 77, seqK: 163, dimQK: 128, causal: 'top-left' },
    { batch: 2, headsQ: 2, seqQ: 201, seqK: 113, dimQK: 64 },
    { batch: 1, headsQ: 2, seqQ: 140, seqK: 140, dimQK: 192, dimV: 128, causal: true },
    { batch: 1, headsQ: 2, headsKv: 1, seqQ: 90, seqK: 121, dimQK: 128, dimRope: 64, dimV: 128, causal: true },
    { batch: 1, headsQ: 8, headsKv: 2, seqQ: 129, seqK: 129, dimQK: 128, causal: true },
    // the element-wise options every kv layout re-implements (pairs splits them over two subgroups)
    { batch: 1, headsQ: 2, seqQ: 50, seqK: 77, dimQK: 40, softcap: 3, alibi: true },
    { batch: 1, headsQ: 4, headsKv: 2, seqQ: 97, seqK: 80, dimQK: 64, causal: true, dropout: 0.2 },
  ];
const label = (c) => `B${c.batch} H${c.headsQ}${c.headsKv ? `/${c.headsKv}` : ''} S${c.seqQ}x${c.seqK} D${c.dimQK}${c.dimRope ? `+${c.dimRope}` : ''}/${c.dimV ?? c.dimQK}${c.causal ? ` causal ${c.causal === true ? 'BR' : 'TL'}` : ''}${c.softcap ? ` softcap ${c.softcap}` : ''}${c.alibi ? ' alibi' : ''}${c.dropout ? ` dropout ${c.dropout}` : ''}`;

async function values(t) {
  if (t.data) return t.toFloat32();
  const bytes = await runtime.read(t.gpu.buffer, t.gpu.byteOffset, Math.ceil((t.size * (t.dtype === 'float16' ? 2 : 4)) / 4) * 4);
  return t.dtype === 'float16' ? lib.Tensor.fromData(new Uint16Array(bytes, 0, t.size), t.shape, 'float16').toFloat32() : new Float32Array(bytes, 0, t.size);
}

// ---- 1. checks
const failed = new Set();
for (const c0 of CHECKS) {
  const c = { ...c0, dtype: 'float16' };
  const made = testing.makeCase(c, 7);
  const problem = lib.validateAttention(made.q, made.k, made.v, made.options);
  const g = testing.makeGradCase(c, 7, problem.outShape);
  const ref = lib.referenceGradients(problem, g.dOutValues);
  const fwd = await lib.attention(made.q, made.k, made.v, { ...made.options, returnLse: true, backend: 'webgpu' });
  const bp = lib.validateAttentionBackward(made.q, made.k, made.v, fwd.out, g.dOut, fwd.lse, made.options);
  const why = sg.sgBackwardUnsupported(bp, runtime);
  for (const [name, config] of Object.entries(VARIANTS)) {
    const row = { kind: 'check', variant: name, shape: label(c0) };
    if (why) { say(`SKIP ${name} ${label(c0)}: ${why}`, { ...row, status: 'skip', why }); continue; }
    if (sg.fittingBackwardConfig(bp, runtime, config) !== config) { say(`NOFIT ${name} ${label(c0)}`, { ...row, status: 'nofit' }); continue; }
    try {
      const grads = await runBackwardPlan(runtime, bp, await sg.sgBackwardPlan(runtime, bp, config));
      let err = 0;
      for (const k of ['dq', 'dk', 'dv']) {
        const got = await values(grads[k]);
        const r = ref[k];
        let d = 0, m = 1e-30;
        for (let i = 0; i < got.length; i++) { d = Number.isNaN(got[i]) ? Infinity : Math.max(d, Math.abs(got[i] - r[i])); m = Math.max(m, Math.abs(r[i])); }
        err = Math.max(err, d / m);
        grads[k].gpu?.buffer.destroy();
      }
      const ok = err <= 2e-3;
      if (!ok) failed.add(name);
      say(`${ok ? 'PASS' : 'FAIL'} ${name} ${label(c0)} err ${err.toExponential(2)}`, { ...row, status: ok ? 'pass' : 'fail', err });
    } catch (e) {
      failed.add(name);
      say(`FAIL ${name} ${label(c0)} error ${String(e.message).split('\n')[0].slice(0, 200)}`, { ...row, status: 'fail', error: String(e.message).slice(0, 400) });
    }
  }
}

// ---- 2. timings
const SHAPES = JSON.parse(readFileSync(join(here, 'backward-shapes.json'), 'utf8'));
const benches = smoke
  ? { 'B1 H2 S64 D32 causal (smoke)': { batch: 1, headsQ: 2, seq: 64, dimQK: 32, causal: true } }
  : Object.fromEntries(['B4 H32 S4096 D128', 'B4 H32 S4096 D128 causal', 'B2 H16 S4096 D192/128 causal (MLA)'].map((n) => [n, SHAPES.bench[n]]));
function tiled(shape, seed) {
  const n = shape.reduce((a, b) => a * b, 1);
  const block = lib.floatsToHalf(testing.randomFloats(Math.min(n, 1 << 20), testing.normal(testing.uniform(seed))));
  const data = new Uint16Array(n);
  for (let at = 0; at < n; at += block.length) data.set(block.subarray(0, Math.min(block.length, n - at)), at);
  const buffer = runtime.createBuffer(data.byteLength, 'bench input');
  runtime.write(buffer, 0, data);
  return lib.Tensor.fromGpuBuffer({ device: runtime.device, buffer, byteOffset: 0 }, shape, 'float16');
}
const pass = (byKernel, key) => Object.entries(byKernel ?? {}).filter(([k]) => k.includes(key)).reduce((a, [, ms]) => a + ms, 0);
for (const [shapeName, s] of Object.entries(benches)) {
  const hk = s.headsKv ?? s.headsQ;
  const q = tiled([s.batch, s.headsQ, s.seq, s.dimQK], 3);
  const k = tiled([s.batch, hk, s.seq, s.dimQK], 4);
  const v = tiled([s.batch, hk, s.seq, s.dimV ?? s.dimQK], 5);
  const options = testing.makeCase({ batch: s.batch, headsQ: s.headsQ, headsKv: s.headsKv, seqQ: 1, seqK: 1, dimQK: s.dimQK, dimV: s.dimV, causal: s.causal, dtype: 'float16' }, 2).options;
  const problem = lib.validateAttention(q, k, v, options);
  const dOut = tiled(problem.outShape, 6);
  const fwd = await lib.attention(q, k, v, { ...options, returnLse: true });
  const bp = lib.validateAttentionBackward(q, k, v, fwd.out, dOut, fwd.lse, options);
  const pairs = s.causal ? (s.seq * (s.seq + 1)) / 2 : s.seq * s.seq;
  const flops = 2.5 * 2 * pairs * s.batch * s.headsQ * (s.dimQK + (s.dimV ?? s.dimQK));
  const runs = smoke ? { portable: () => runPortableBackward(runtime, bp) } : {};
  // today's choice with autotune off (the first fitting SG_BACKWARD_CONFIGS entry, timed on its own only when no named variant is it)
  const why = sg.sgBackwardUnsupported(bp, runtime);
  const fallback = why ? undefined : sg.fittingBackwardConfig(bp, runtime);
  if (fallback && !Object.values(VARIANTS).includes(fallback)) runs['default'] = async () => runBackwardPlan(runtime, bp, await sg.sgBackwardPlan(runtime, bp, fallback));
  for (const [name, config] of Object.entries(VARIANTS)) {
    if (why) { say(`SKIP ${name} ${shapeName}: ${why}`, { kind: 'bench', variant: name, shape: shapeName, status: 'skip' }); continue; }
    if (failed.has(name)) { say(`NOTIME ${name} ${shapeName}: a check failed`, { kind: 'bench', variant: name, shape: shapeName, status: 'check failed' }); continue; }
    if (sg.fittingBackwardConfig(bp, runtime, config) !== config) { say(`NOFIT ${name} ${shapeName}`, { kind: 'bench', variant: name, shape: shapeName, status: 'nofit' }); continue; }
    runs[name] = async () => runBackwardPlan(runtime, bp, await sg.sgBackwardPlan(runtime, bp, config));
  }
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
      const parts = ['pre', 'kv', '-q-', 'cast'].map((key) => pass(last.byKernel, key).toFixed(2));
      say(`TIME ${shapeName} ${name} ${ms.toFixed(2)} ms ${(flops / ms / 1e9).toFixed(1)} TFLOP/s pre/kv/q/cast ${parts.join('/')}${last.wallClock ? ' (wall clock)' : ''}`,
        { kind: 'bench', variant: name, shape: shapeName, ms, tflops: flops / ms / 1e9, byKernel: last.byKernel });
    } catch (e) {
      say(`FAIL ${name} ${shapeName} timing error ${String(e.message).split('\n')[0].slice(0, 200)}`, { kind: 'bench', variant: name, shape: shapeName, status: 'fail', error: String(e.message).slice(0, 400) });
    }
  }
  for (const t of [q, k, v, dOut, fwd.out, fwd.lse]) t.gpu?.buffer.destroy();
}
say(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s`, { kind: 'done' });
process.exit(0);
