#!/usr/bin/env node
// Issue 10: the portable f32 backward's kernels, classic (portable.wgsl.ts) against the register-
// tiled ones (tiled.wgsl.ts) in several configurations, checked, then timed per pass.
//   node bench/gpu/backward-portable.mjs --out OUT [--smoke] [--variants classic,t1]
// 1. checks: every variant, f32 and f16 storage, on odd shapes (D 59/64/128, MLA 192/128 and its split
//    form, Sq != Sk both ways, both causal alignments, GQA, softcap + ALiBi, dropout) against our
//    float64 reference: "PASS|FAIL variant dtype shape err" (err = max |g - ref| / max |ref| over dq,
//    dk, dv; limits 1e-4 f32, 2e-3 f16). A configuration that does not fit prints "NOFIT".
// 2. timings on the bench shapes (inputs on the GPU), only variants that passed every check:
//    "TIME shape dtype variant ms TFLOP/s pre/kv/q/cast ms" (GPU timestamps, median of the runs after
//    one compile run, behind warmGpu). FLOPs = 2.5 × the forward's (as PyTorch's rows count them).
// Raw rows to OUT/backward-portable.jsonl.
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const lib = await import(join(root, 'dist', 'index.js'));
const testing = await import(join(root, 'dist', 'testing', 'index.js'));
const { getRuntime } = await import(join(root, 'dist', 'engines', 'webgpu', 'runtime.js'));
const { runBackwardPlan, portablePlan } = await import(join(root, 'dist', 'ops', 'attention', 'backward', 'webgpu', 'portable.js'));
const tiled = await import(join(root, 'dist', 'ops', 'attention', 'backward', 'webgpu', 'tiled.js'));
const { gpuTimeOf, warmGpu } = await import(join(here, 'gpu-timer.mjs'));

const args = process.argv.slice(2);
const arg = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const out = arg('--out') ?? 'out-backward-portable';
const smoke = args.includes('--smoke');
mkdirSync(out, { recursive: true });
const runtime = await getRuntime();
const t0 = performance.now();
const say = (line, row) => {
  console.log(line);
  appendFileSync(join(out, 'backward-portable.jsonl'), `${JSON.stringify({ commit: process.env.FUSEDATTN_COMMIT ?? 'unknown', s: +((performance.now() - t0) / 1000).toFixed(1), ...row })}\n`);
};

// configurations: call 1 of session 10 swept t1-t6 (t2 won every shape), call 2 u2-u9, each one
// change of t2 (u3 won the kv pass, TILED_KV_CONFIGS[0] now; t2's q is TILED_Q_CONFIGS[0])
const c = (threads, owned, other, pairOwned, pairOther, accOwned, dimChunk, otherChunk) => ({ threads, owned, other, pairOwned, pairOther, accOwned, dimChunk, otherChunk });
const T2 = { kv: c(256, 64, 32, 4, 2, 4, 4, 8), q: tiled.TILED_Q_CONFIGS[0] };
const ALL = {
  classic: undefined,
  // whatever the tier picks for the device (on llvmpipe the 32 KiB configuration)
  tiled: 'default',
  // 128 threads, 32 owned entries, 4 × 4 pairs (the first default)
  t1: { kv: c(128, 32, 64, 4, 4, 4, 4, 16), q: c(128, 32, 64, 4, 4, 4, 4, 16) },
  t2: T2,
  // 8 owned accumulator rows per thread (one quad each at D 128)
  t3: { kv: c(128, 32, 64, 4, 4, 8, 4, 16), q: c(128, 32, 64, 4, 4, 8, 4, 16) },
  // head dims staged 8 vec4s a step (half the barriers)
  t4: { kv: c(128, 32, 64, 4, 4, 4, 8, 16), q: c(128, 32, 64, 4, 4, 4, 8, 16) },
  // 256 threads, 2 × 4 pairs, 2 accumulator rows
  t5: { kv: c(256, 32, 64, 2, 4, 2, 4, 16), q: c(256, 32, 64, 2, 4, 2, 4, 16) },
  // q: 64 rows per workgroup, 32 keys a step
  t6: { kv: c(128, 32, 64, 4, 4, 4, 4, 16), q: c(128, 64, 32, 4, 4, 8, 4, 8) },
  // t2 with 8 accumulator rows per thread
  u2: { kv: c(256, 64, 32, 4, 2, 8, 4, 8), q: c(256, 64, 64, 4, 4, 8, 4, 16) },
  // t2 with 2 × 4 / 4 × 4 pairs laid the other way (kv 2 owned × 4 other)
  u3: { kv: c(256, 64, 32, 2, 4, 4, 4, 8), q: T2.q },
  // t2 with twice the rows staged per accumulation step (half its barriers)
  u4: { kv: c(256, 64, 32, 4, 2, 4, 4, 16), q: c(256, 64, 64, 4, 4, 4, 4, 32) },
  // 512 threads: 2 × 2 / 2 × 4 pairs, 2 accumulator rows
  u5: { kv: c(512, 64, 32, 2, 2, 2, 4, 8), q: c(512, 64, 64, 2, 4, 2, 4, 16) },
  // t2 with 128 owned keys / rows and 16 other entries a step (kv) / 32 (q)
  u6: { kv: c(256, 128, 16, 4, 2, 8, 4, 8), q: c(256, 128, 32, 4, 4, 8, 4, 8) },
  // t2 with head dims staged 2 vec4s a step (less memory, twice the barriers)
  u7: { kv: c(256, 64, 32, 4, 2, 4, 2, 8), q: c(256, 64, 64, 4, 4, 4, 2, 16) },
  // 512 threads, 128 owned entries: kv 16 rows a step (4 × 1 pairs), q 32 keys (4 × 2)
  u8: { kv: c(512, 128, 16, 4, 1, 8, 4, 8), q: c(512, 128, 32, 4, 2, 8, 4, 8) },
  // kv 4 × 4 pairs over 64 keys × 64 rows, which fits 48 KiB only with head dims staged 2 vec4s a step
  u9: { kv: c(256, 64, 64, 4, 4, 4, 2, 8), q: T2.q },
};
const only = (arg('--variants') ?? process.env.PORTABLE_VARIANTS)?.split(',').filter(Boolean);
const VARIANTS = only ? Object.fromEntries(Object.entries(ALL).filter(([name]) => only.includes(name))) : ALL;
if (only && Object.keys(VARIANTS).length !== only.length) throw new Error(`--variants: expected names among ${Object.keys(ALL).join(', ')}, received ${only.join(', ')}`);

/** The variant's plan for bp, or undefined when its configuration does not fit. */
async function planOf(name, bp) {
  const wanted = VARIANTS[name];
  if (!wanted) return portablePlan(runtime, bp);
  if (wanted === 'default') {
    const picked = tiled.tiledConfigs(bp, runtime.limits);
    return picked ? tiled.tiledPlan(runtime, bp, picked) : undefined;
  }
  const got = tiled.tiledConfigs(bp, runtime.limits, wanted);
  if (!got || got.kv !== wanted.kv || got.q !== wanted.q) return undefined;
  return tiled.tiledPlan(runtime, bp, got);
}

const CHECKS = smoke
  ? [{ batch: 1, headsQ: 2, seqQ: 37, seqK: 53, dimQK: 24, dimV: 16, causal: true }]
  : [
    { batch: 1, headsQ: 2, seqQ: 131, seqK: 131, dimQK: 128 },
    { batch: 1, headsQ: 2, seqQ: 150, seqK: 97, dimQK: 128, causal: true },
    { batch: 1, headsQ: 2, seqQ: 77, seqK: 163, dimQK: 128, causal: 'top-left' },
    { batch: 2, headsQ: 2, seqQ: 201, seqK: 113, dimQK: 64 },
    { batch: 1, headsQ: 2, seqQ: 61, seqK: 95, dimQK: 59 },
    { batch: 1, headsQ: 2, seqQ: 140, seqK: 140, dimQK: 192, dimV: 128, causal: true },
    { batch: 1, headsQ: 2, headsKv: 1, seqQ: 90, seqK: 121, dimQK: 128, dimRope: 64, dimV: 128, causal: true },
    { batch: 1, headsQ: 8, headsKv: 2, seqQ: 129, seqK: 129, dimQK: 128, causal: true },
    { batch: 1, headsQ: 2, seqQ: 50, seqK: 77, dimQK: 40, softcap: 3, alibi: true },
    { batch: 1, headsQ: 4, headsKv: 2, seqQ: 97, seqK: 80, dimQK: 64, causal: true, dropout: 0.2 },
  ];
const label = (c) => `B${c.batch} H${c.headsQ}${c.headsKv ? `/${c.headsKv}` : ''} S${c.seqQ}x${c.seqK} D${c.dimQK}${c.dimRope ? `+${c.dimRope}` : ''}/${c.dimV ?? c.dimQK}${c.causal ? ` causal ${c.causal === true ? 'BR' : 'TL'}` : ''}${c.softcap ? ` softcap ${c.softcap}` : ''}${c.alibi ? ' alibi' : ''}${c.dropout ? ` dropout ${c.dropout}` : ''}`;
const LIMIT = { float32: 1e-4, float16: 2e-3 };

// ---- 1. checks
const failed = new Set();
for (const dtype of ['float32', 'float16']) {
  for (const c0 of CHECKS) {
    const cs = { ...c0, dtype };
    const made = testing.makeCase(cs, 7);
    const problem = lib.validateAttention(made.q, made.k, made.v, made.options);
    const g = testing.makeGradCase(cs, 7, problem.outShape);
    const ref = lib.referenceGradients(problem, g.dOutValues);
    // the forward on the portable tier too, so the LSE is the one this tier's users get
    const fwd = await lib.attention(made.q, made.k, made.v, { ...made.options, returnLse: true, backend: 'webgpu' });
    const bp = lib.validateAttentionBackward(made.q, made.k, made.v, fwd.out, g.dOut, fwd.lse, made.options);
    for (const name of Object.keys(VARIANTS)) {
      const row = { kind: 'check', variant: name, dtype, shape: label(c0) };
      try {
        const plan = await planOf(name, bp);
        if (!plan) { say(`NOFIT ${name} ${dtype} ${label(c0)}`, { ...row, status: 'nofit' }); continue; }
        const grads = await runBackwardPlan(runtime, bp, plan);
        let err = 0;
        for (const k of ['dq', 'dk', 'dv']) {
          const got = grads[k].toFloat32();
          const r = ref[k];
          let d = 0, m = 1e-30;
          for (let i = 0; i < got.length; i++) { d = Number.isNaN(got[i]) ? Infinity : Math.max(d, Math.abs(got[i] - r[i])); m = Math.max(m, Math.abs(r[i])); }
          err = Math.max(err, d / m);
        }
        const ok = err <= LIMIT[dtype];
        if (!ok) failed.add(name);
        say(`${ok ? 'PASS' : 'FAIL'} ${name} ${dtype} ${label(c0)} err ${err.toExponential(2)}`, { ...row, status: ok ? 'pass' : 'fail', err });
      } catch (e) {
        failed.add(name);
        say(`FAIL ${name} ${dtype} ${label(c0)} error ${String(e.message).split('\n')[0].slice(0, 200)}`, { ...row, status: 'fail', error: String(e.message).slice(0, 400) });
      }
    }
  }
}

// ---- 2. timings
const SHAPES = JSON.parse(readFileSync(join(here, 'backward-shapes.json'), 'utf8'));
const wantedShapes = (arg('--shapes') ?? process.env.PORTABLE_SHAPES ?? 'B4 H32 S4096 D128 causal,B4 H32 S4096 D128,B2 H16 S4096 D192/128 causal (MLA),B4 H32 S1024 D64').split(',');
const benches = smoke
  ? { 'B1 H2 S64 D32 causal (smoke)': { batch: 1, headsQ: 2, seq: 64, dimQK: 32, causal: true } }
  : Object.fromEntries(wantedShapes.map((n) => [n, SHAPES.bench[n]]));
const dtypes = (arg('--dtypes') ?? process.env.PORTABLE_DTYPES ?? 'float32,float16').split(',');
function gpuInput(shape, seed, dtype) {
  const n = shape.reduce((a, b) => a * b, 1);
  const block = testing.randomFloats(Math.min(n, 1 << 20), testing.normal(testing.uniform(seed)));
  const data = dtype === 'float16' ? new Uint16Array(n) : new Float32Array(n);
  const src = dtype === 'float16' ? lib.floatsToHalf(block) : block;
  for (let at = 0; at < n; at += src.length) data.set(src.subarray(0, Math.min(src.length, n - at)), at);
  const buffer = runtime.createBuffer(data.byteLength, 'bench input');
  runtime.write(buffer, 0, data);
  return lib.Tensor.fromGpuBuffer({ device: runtime.device, buffer, byteOffset: 0 }, shape, dtype);
}
const pass = (byKernel, key) => Object.entries(byKernel ?? {}).filter(([k]) => k.includes(key)).reduce((a, [, ms]) => a + ms, 0);
for (const [shapeName, s] of Object.entries(benches)) {
  for (const dtype of dtypes) {
    const hk = s.headsKv ?? s.headsQ;
    const q = gpuInput([s.batch, s.headsQ, s.seq, s.dimQK], 3, dtype);
    const k = gpuInput([s.batch, hk, s.seq, s.dimQK], 4, dtype);
    const v = gpuInput([s.batch, hk, s.seq, s.dimV ?? s.dimQK], 5, dtype);
    const options = testing.makeCase({ batch: s.batch, headsQ: s.headsQ, headsKv: s.headsKv, seqQ: 1, seqK: 1, dimQK: s.dimQK, dimV: s.dimV, causal: s.causal, dropout: s.dropout, dtype }, 2).options;
    // (call 3 of session 10 left dropout out here: its "dropout 0.1" rows ran without dropout)
    const problem = lib.validateAttention(q, k, v, options);
    const dOut = gpuInput(problem.outShape, 6, dtype);
    const fwd = await lib.attention(q, k, v, { ...options, returnLse: true, backend: 'webgpu' });
    const bp = lib.validateAttentionBackward(q, k, v, fwd.out, dOut, fwd.lse, options);
    const pairs = s.causal ? (s.seq * (s.seq + 1)) / 2 : s.seq * s.seq;
    const flops = 2.5 * 2 * pairs * s.batch * s.headsQ * (s.dimQK + (s.dimV ?? s.dimQK));
    await warmGpu(runtime, 300);
    for (const name of Object.keys(VARIANTS)) {
      const row = { kind: 'bench', variant: name, shape: shapeName, dtype };
      if (failed.has(name)) { say(`NOTIME ${name} ${shapeName} ${dtype}: a check failed`, { ...row, status: 'check failed' }); continue; }
      try {
        const plan = await planOf(name, bp);
        if (!plan) { say(`NOFIT ${name} ${shapeName} ${dtype}`, { ...row, status: 'nofit' }); continue; }
        const times = [];
        let last;
        // the classic kernels take ~1 s a run at S 4096: fewer runs
        const runs = smoke ? 2 : name === 'classic' ? 3 : 4;
        for (let i = 0; i < runs; i++) {
          last = await gpuTimeOf(runtime, () => runBackwardPlan(runtime, bp, plan), 64);
          for (const gr of Object.values(last.result)) gr?.gpu?.buffer.destroy();
          if (i > 0) times.push(last.ms);
        }
        times.sort((a, b) => a - b);
        const ms = times[Math.floor(times.length / 2)];
        const parts = ['pre', '-kv-', '-q-', 'cast'].map((key) => pass(last.byKernel, key).toFixed(2));
        say(`TIME ${shapeName} ${dtype} ${name} ${ms.toFixed(2)} ms ${(flops / ms / 1e9).toFixed(2)} TFLOP/s pre/kv/q/cast ${parts.join('/')}${last.wallClock ? ' (wall clock)' : ''}`,
          { ...row, ms, tflops: flops / ms / 1e9, byKernel: last.byKernel });
      } catch (e) {
        say(`FAIL ${name} ${shapeName} ${dtype} timing error ${String(e.message).split('\n')[0].slice(0, 200)}`, { ...row, status: 'fail', error: String(e.message).slice(0, 400) });
      }
    }
    for (const t of [q, k, v, dOut, fwd.out, fwd.lse]) t.gpu?.buffer.destroy();
  }
}
say(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s`, { kind: 'done' });
process.exit(0);
