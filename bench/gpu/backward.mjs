#!/usr/bin/env node
// fusedattn's attention backward on WebGPU (the GPU machine; llvmpipe with --smoke): checks first,
// then timings, one JSON object per line to OUT/backward-gpu.jsonl.
//
//   node bench/gpu/backward.mjs --out OUT [--inputs DIR] [--smoke]
//
// Checks (bench/gpu/backward-shapes.json "check", reduced shapes of each bench configuration):
//   with --inputs (written by backward_torch.py --dump): PyTorch's q, k, v, dO and its float64
//   reference gradients; ours in float16 (the best tier) must be within 2e-3 of the largest
//   reference gradient (issue 10) and ours in float32 (portable tier) within 1e-4.
//   without: seeded inputs here, against our float64 reference (small shapes only).
// Timings ("bench" shapes): GPU time of the backward only (timestamp queries summed over its
// dispatches; the forward runs once before), median of N, for float16 (best tier, and the portable
// tier beside it), float32 (portable) and the unfused baseline where its Sq×Sk buffers fit; each
// row names its tier (the tensor-core tier autotuned: FUSEDATTN_AUTOTUNE=on in backward.sh). A
// configuration whose check failed gets no speed. FLOPs = 2.5 × the forward's.
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const lib = await import(join(root, 'dist', 'index.js'));
const testing = await import(join(root, 'dist', 'testing', 'index.js'));
const { getRuntime } = await import(join(root, 'dist', 'engines', 'webgpu', 'runtime.js'));
const { chooseBackwardTier } = await import(join(root, 'dist', 'ops', 'attention', 'backward', 'webgpu', 'tiers.js'));
const { gpuTimeOf } = await import(join(here, 'gpu-timer.mjs'));

const args = process.argv.slice(2);
const opt = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const out = opt('--out') ?? join(root, 'bench-results', 'backward-gpu');
const inputs = opt('--inputs');
const smoke = args.includes('--smoke');
mkdirSync(out, { recursive: true });
const SHAPES = JSON.parse(readFileSync(join(here, 'backward-shapes.json'), 'utf8'));
const checks = smoke ? SHAPES.smoke : SHAPES.check;
// --shapes "a,b": only these bench shapes (a later call finishing the rows an earlier one's limit cut)
const only = opt('--shapes')?.split(',');
const benches = Object.fromEntries(Object.entries(smoke ? SHAPES.smoke : SHAPES.bench).filter(([name]) => !only || only.includes(name)));
const runtime = await getRuntime();
const commit = process.env.FUSEDATTN_COMMIT ?? 'unknown';
const adapter = runtime.adapterInfo ?? {};
const emit = (row) => {
  const line = { commit, adapter: adapter.description ?? adapter.device ?? adapter.vendor, ...row };
  appendFileSync(join(out, 'backward-gpu.jsonl'), `${JSON.stringify(line)}\n`);
  console.log(JSON.stringify(line));
};
const slug = (name) => name.replace(/[^A-Za-z0-9]/g, '_');

/** BNSD tensors of a shape entry, from PyTorch's files or seeded here, in `dtype`. */
function caseOf(s) {
  return { batch: s.batch, headsQ: s.headsQ, headsKv: s.headsKv, seqQ: s.seq, seqK: s.seq, dimQK: s.dimQK, dimV: s.dimV, causal: s.causal };
}
function fromFile(name, label, shape, dtype) {
  const bits = new Uint16Array(readFileSync(join(inputs, `${slug(name)}.${label}.f16`)).buffer.slice(0));
  const t = lib.Tensor.fromData(bits, shape, 'float16');
  return dtype === 'float16' ? t : lib.Tensor.fromData(t.toFloat32(), shape);
}
function flops(p) {
  let pairs = 0;
  const n = p.seqQ;
  pairs = p.window.right === 0 ? (n * (n + 1)) / 2 : n * n;
  return 2.5 * 2 * pairs * p.batch * p.headsQ * (p.dimQK + p.dimV);
}
const maxAbs = (x) => x.reduce((m, y) => Math.max(m, Math.abs(y)), 0);

// ---- 1. checks
const passed = new Map();
for (const [name, s] of Object.entries(checks)) {
  for (const dtype of ['float16', 'float32']) {
    const row = { kind: 'check', shape: name, dtype };
    try {
      const c = { ...caseOf(s), dtype };
      let q, k, v, dOut, options, ref;
      const made = testing.makeCase(c, 1);
      options = made.options;
      const problem0 = lib.validateAttention(made.q, made.k, made.v, options);
      if (inputs && existsSync(join(inputs, `${slug(name)}.q.f16`))) {
        q = fromFile(name, 'q', made.q.shape, dtype);
        k = fromFile(name, 'k', made.k.shape, dtype);
        v = fromFile(name, 'v', made.v.shape, dtype);
        dOut = fromFile(name, 'do', problem0.outShape, dtype);
        ref = Object.fromEntries(['dq', 'dk', 'dv'].map((g) => [g, new Float32Array(readFileSync(join(inputs, `${slug(name)}.ref-${g}.f32`)).buffer.slice(0))]));
        row.reference = 'torch float64';
      } else {
        ({ q, k, v } = made);
        const g = testing.makeGradCase(c, 1, problem0.outShape);
        dOut = g.dOut;
        ref = lib.referenceGradients(lib.validateAttention(q, k, v, options), g.dOutValues);
        row.reference = 'fusedattn float64';
      }
      const problem = lib.validateAttention(q, k, v, options);
      const fwd = await lib.attention(q, k, v, { ...options, returnLse: true, backend: 'webgpu' });
      const bp = lib.validateAttentionBackward(q, k, v, fwd.out, dOut, fwd.lse, options);
      row.tier = chooseBackwardTier(bp, runtime).tier.name;
      const grads = await lib.attentionBackward(q, k, v, fwd.out, dOut, fwd.lse, { ...options, backend: 'webgpu' });
      const limit = dtype === 'float16' ? 2e-3 : 1e-4;
      let ok = true;
      for (const g of ['dq', 'dk', 'dv']) {
        const got = grads[g].toFloat32();
        let err = 0;
        for (let i = 0; i < got.length; i++) err = Number.isNaN(got[i]) ? Infinity : Math.max(err, Math.abs(got[i] - ref[g][i]));
        row[g] = err / Math.max(maxAbs(ref[g]), 1e-30);
        ok &&= row[g] <= limit;
      }
      void problem;
      row.status = ok ? 'ok' : `FAIL (limit ${limit})`;
      if (ok) passed.set(`${name}/${dtype}`, true);
    } catch (e) {
      row.status = 'FAIL';
      row.error = String(e.message).slice(0, 300);
    }
    emit(row);
  }
}

// ---- 2. timings
const iters = smoke ? 1 : 5;
async function timeBackward(call) {
  const times = [];
  let last;
  let reps = iters;
  for (let i = 0; i < reps + 1; i++) {
    const t0 = performance.now();
    const t = await gpuTimeOf(runtime, call, 64);
    last = t;
    if (i === 0) {
      // the bench shape's own sanity: the gradients are finite and not all zero (a prefix of each)
      for (const name of ['dq', 'dk', 'dv']) {
        const g = t.result[name];
        const count = Math.min(g.size, 1 << 20);
        const bytes = await runtime.read(g.gpu.buffer, 0, Math.ceil((count * (g.dtype === 'float16' ? 2 : 4)) / 4) * 4);
        const values = g.dtype === 'float16' ? lib.Tensor.fromData(new Uint16Array(bytes, 0, count), [count], 'float16').toFloat32() : new Float32Array(bytes, 0, count);
        if (!values.every(Number.isFinite) || values.every((x) => x === 0)) throw new Error(`${name} at the bench shape is not finite or all zero`);
      }
    }
    for (const g of Object.values(t.result)) if (g?.gpu) g.gpu.buffer.destroy();
    if (i > 0) times.push(t.ms); // the first run compiles pipelines (and autotunes)
    else if (t.ms > 400 || performance.now() - t0 > 4000) reps = Math.min(reps, 2); // slow rows: fewer repetitions, in the time limit
  }
  times.sort((a, b) => a - b);
  const byKernel = last.byKernel && Object.fromEntries(Object.entries(last.byKernel).map(([k, ms]) => [k, +ms.toFixed(3)]));
  return { ms: times[Math.floor(times.length / 2)], dispatches: last.dispatches, wallClock: last.wallClock, stats: last.result.stats, byKernel };
}

/**
 * Bench-shape inputs fast: 2^20 seeded values (normal, as the checks' cases) tiled over the tensor.
 * Values repeat, which timing does not mind; correctness is checked on the check shapes above.
 */
function benchTensor(shape, dtype, seed) {
  const n = shape.reduce((a, b) => a * b, 1);
  const unique = testing.randomFloats(Math.min(n, 1 << 20), testing.normal(testing.uniform(seed)));
  const block = dtype === 'float16' ? lib.floatsToHalf(unique) : unique;
  const data = dtype === 'float16' ? new Uint16Array(n) : new Float32Array(n);
  for (let at = 0; at < n; at += block.length) data.set(block.subarray(0, Math.min(block.length, n - at)), at);
  return lib.Tensor.fromData(data, shape, dtype);
}
function upload(t) {
  const buffer = runtime.createBuffer(t.data.byteLength, 'bench input');
  runtime.write(buffer, 0, t.data);
  return lib.Tensor.fromGpuBuffer({ device: runtime.device, buffer, byteOffset: 0 }, t.shape, t.dtype);
}

for (const [name, s] of Object.entries(benches)) {
  for (const dtype of ['float16', 'float32']) {
    // float16: the best tier (tensor cores where the adapter has them), and the portable tier beside it
    for (const impl of dtype === 'float16' ? ['fused', 'portable', 'unfused'] : ['fused', 'unfused']) {
      const row = { kind: 'bench', shape: name, dtype, impl };
      if (!passed.get(`${s.check}/${dtype}`)) {
        emit({ ...row, status: `no speed: the check of ${s.check} (${dtype}) did not pass` });
        continue;
      }
      const inputsMade = [];
      try {
        const c = { ...caseOf(s), dtype, dropout: s.dropout };
        // the options and shapes of the case, on a tiny copy; the tensors themselves are tiled random values
        const tiny = testing.makeCase({ ...c, seqQ: 1, seqK: 1 }, 2);
        const hk = s.headsKv ?? s.headsQ;
        const q = benchTensor([s.batch, s.headsQ, s.seq, s.dimQK], dtype, 3);
        const k = benchTensor([s.batch, hk, s.seq, s.dimQK], dtype, 4);
        const v = benchTensor([s.batch, hk, s.seq, s.dimV ?? s.dimQK], dtype, 5);
        const options = tiny.options;
        const problem = lib.validateAttention(q, k, v, options);
        const dOut = benchTensor(problem.outShape, dtype, 6);
        const [gq, gk, gv, gdo] = [q, k, v, dOut].map(upload);
        inputsMade.push(gq, gk, gv, gdo);
        const fwd = await lib.attention(gq, gk, gv, { ...options, returnLse: true });
        inputsMade.push(fwd.out, fwd.lse);
        const bp = lib.validateAttentionBackward(gq, gk, gv, fwd.out, gdo, fwd.lse, options);
        const forced = impl === 'portable' ? 'portable' : undefined;
        row.tier = impl === 'unfused' ? 'unfused' : chooseBackwardTier(bp, runtime, forced).tier.name;
        const run = impl === 'unfused' ? lib.naiveAttentionBackward : lib.attentionBackward;
        const before = process.env.FUSEDATTN_WEBGPU_TIER;
        if (forced) process.env.FUSEDATTN_WEBGPU_TIER = forced;
        let t;
        try {
          t = await timeBackward(() => run(gq, gk, gv, fwd.out, gdo, fwd.lse, options));
        } finally {
          if (forced) {
            if (before === undefined) delete process.env.FUSEDATTN_WEBGPU_TIER;
            else process.env.FUSEDATTN_WEBGPU_TIER = before;
          }
        }
        Object.assign(row, {
          status: 'ok', ms: +t.ms.toFixed(3), tflops: +(flops(problem) / t.ms / 1e9).toFixed(2), dispatches: t.dispatches,
          timing: t.wallClock ? 'wall clock' : 'gpu timestamps', intermediateBytes: t.stats?.intermediateBytes,
          // ms per dispatch label of the last repetition: which pass (D, dK/dV, dQ) takes the time
          byKernel: t.byKernel,
        });
      } catch (e) {
        row.status = impl === 'unfused' ? 'does not run' : 'FAIL';
        row.error = String(e.message).slice(0, 300);
      } finally {
        for (const t of inputsMade) t.gpu?.buffer.destroy();
      }
      emit(row);
    }
  }
}
process.exit(0);
