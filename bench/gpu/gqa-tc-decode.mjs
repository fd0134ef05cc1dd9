// Issue 15: grouped-query decode (llama-8b 32/8 D 128, qwen-7b 28/4, qwen2-0.5b 14/2 D 64) on the
// tensor-core decode kernel (mla-sgmatrix.wgsl.ts, forced with FUSEDATTN_DECODE_MLA=2: its 16 rows
// hold the group's query rows, the rest dead) beside the SIMT kernel (pipelined, forced with
// FUSEDATTN_DECODE_MLA=0), float16 q and cache; with GQA_TOKENS=1,2,4 also the plan's own choice
// beside both at Sq 1, 2, 4. The SIMT kernel spends ~55 SM-clocks per key at 32K whatever the
// cache dtype (int8 as slow as f16): per-key arithmetic, which grows with the query rows.
//   node bench/gpu/gqa-tc-decode.mjs [--smoke]
// Every variant is checked against float64 first (odd lengths, two query rows causal, pages of 16 in
// shuffled order); a variant that fails gets no time. Then GPU µs (timestamps, partial + combine,
// best of 5 after a warm-up) at 1K-32K keys. TC_VARIANTS: target[:whole[:compact]], the workgroups
// the tensor-core plan aims for (FUSEDATTN_DECODE_MLA_TARGET), 1 / 0 for whole tiles or the slab
// steps (FUSEDATTN_DECODE_MLA_WHOLE), 1 / 0 for the compact whole-tile layout or the full one.
import { Tensor, attentionDecode, toHalfBits, fromHalfBits } from '../../dist/index.js';
import { validateDecode, referenceDecode } from '../../dist/ops/decode/index.js';
import { planFor } from '../../dist/ops/decode/webgpu/run.js';
import { defineKernel, getRuntime } from '../../dist/engines/webgpu/runtime.js';
import { STREAM_PARAMS, buildStreamRead } from '../../dist/model/webgpu/kernels.wgsl.js';
import { gpuTimeOf, warmGpu } from './gpu-timer.mjs';

const smoke = process.argv.includes('--smoke');
const runtime = await getRuntime();
const SHAPES = { 'llama-8b': [32, 8, 128], 'qwen-7b': [28, 4, 128], 'qwen2-0.5b': [14, 2, 64] };
const shapes = (process.env.GQA_SHAPES ?? Object.keys(SHAPES).join(',')).split(',');
const targets = (process.env.TC_VARIANTS ?? '128:1,256:1,512:1,256:0').split(',');
const lengths = smoke ? [300] : (process.env.GQA_LENGTHS ?? '1024,4096,16384,32768').split(',').map(Number);
let seed = 4242;
const rnd = () => { seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0; return seed / 4294967296 * 2 - 1; };
const halves = (n, s = 1) => { const h = new Uint16Array(n); for (let i = 0; i < n; i++) h[i] = toHalfBits(rnd() * s); return h; };

function problemOf([Nq, Nkv, D], len, tokens, pageSize) {
  const q = Tensor.fromData(halves(Nq * tokens * D), [1, Nq, tokens, D], 'float16');
  let cache;
  if (pageSize) {
    const pages = Math.ceil(len / pageSize);
    const order = Array.from({ length: pages + 2 }, (_, i) => i).sort(() => rnd());
    const pool = (pages + 2) * Nkv * pageSize * D;
    cache = {
      k: Tensor.fromData(halves(pool, 2), [pages + 2, Nkv, pageSize, D], 'float16'),
      v: Tensor.fromData(halves(pool, 2), [pages + 2, Nkv, pageSize, D], 'float16'),
      lengths: [len], blockTable: Tensor.fromData(Int32Array.from(order.slice(0, pages)), [1, pages], 'int32'),
    };
  } else {
    const cap = len + 5; // odd spare capacity
    cache = { k: Tensor.fromData(halves(Nkv * cap * D, 2), [1, Nkv, cap, D], 'float16'), v: Tensor.fromData(halves(Nkv * cap * D, 2), [1, Nkv, cap, D], 'float16'), lengths: [len] };
  }
  return { q, cache, options: { causal: tokens > 1, backend: 'webgpu' } };
}

function maxErr(got, ref) {
  let e = 0, m = 0;
  for (let i = 0; i < ref.length; i++) { e = Math.max(e, Math.abs(got[i] - ref[i])); m = Math.max(m, Math.abs(ref[i])); }
  return e / Math.max(m, 1e-6);
}

function setMode(mode, variant) {
  process.env.FUSEDATTN_DECODE_MLA = mode;
  const [target, whole, compact] = (variant ?? '').split(':');
  if (target) process.env.FUSEDATTN_DECODE_MLA_TARGET = target; else delete process.env.FUSEDATTN_DECODE_MLA_TARGET;
  if (whole) process.env.FUSEDATTN_DECODE_MLA_WHOLE = whole; else delete process.env.FUSEDATTN_DECODE_MLA_WHOLE;
  if (compact) process.env.FUSEDATTN_DECODE_MLA_COMPACT = compact; else delete process.env.FUSEDATTN_DECODE_MLA_COMPACT;
}
const kindOf = (plan) => (plan.mla ? 'tensor-core' : plan.pipelined ? 'pipelined' : 'split-kv');

/** float64 check of one case under the current mode; true when right and the wanted kernel ran. */
async function check(shape, len, tokens, pageSize, want) {
  const { q, cache, options } = problemOf(shape, len, tokens, pageSize);
  const p = validateDecode(q, cache, options);
  const ref = referenceDecode(p).out;
  const kind = kindOf(planFor(runtime, p));
  let err = NaN;
  try {
    const { out } = await attentionDecode(q, cache, options);
    err = maxErr(Array.from(out.data, fromHalfBits), ref);
  } catch (e) { console.log(`  ${e.message}`); }
  const ok = Number.isFinite(err) && err < 2e-2 && (kind === want || smoke);
  console.log(`check ${want} ${shape.join('/')} len ${len} Sq ${tokens} paged ${pageSize ?? '-'}: ${ok ? 'PASS' : 'FAIL'} err ${err.toExponential(2)} (ran ${kind})`);
  return ok;
}

const cases = smoke ? [[97, 1, undefined]] : [[1, 1, undefined], [97, 1, undefined], [1025, 1, undefined], [1025, 2, undefined], [4097, 1, 16], [1000, 1, 64]];
const ok = {};
for (const name of shapes) {
  const shape = SHAPES[name];
  setMode('0');
  ok[`${name} simt`] = true;
  for (const [len, tokens, page] of cases) ok[`${name} simt`] &&= await check(shape, len, tokens, page, 'pipelined');
  for (const t of targets) {
    setMode('2', t);
    ok[`${name} tc ${t}`] = true;
    for (const [len, tokens, page] of cases) ok[`${name} tc ${t}`] &&= await check(shape, len, tokens, page, 'tensor-core');
  }
}
console.log(`checks: ${JSON.stringify(ok)}`);

const streamKernel = defineKernel('model-stream-read', buildStreamRead);
async function streamUs(bytes) {
  const n4 = Math.ceil(bytes / 16);
  const src = runtime.acquire(n4 * 16, 'input', 'stream source');
  let best = Infinity;
  for (const unroll of [1, 4]) {
    for (const groups of new Set([4096, Math.min(runtime.limits.maxComputeWorkgroupsPerDimension, Math.max(1, Math.ceil(n4 / (256 * unroll))))])) {
      const pipeline = await runtime.pipeline(streamKernel, { workgroupSize: 256, unroll });
      const sums = runtime.acquire(groups * 256 * 4, 'intermediate', 'sums');
      const params = STREAM_PARAMS.pack({ n4, per_thread: Math.ceil(n4 / (groups * 256 * unroll)) });
      await warmGpu(runtime, 100);
      for (let r = 0; r < (smoke ? 1 : 3); r++) {
        const t = await gpuTimeOf(runtime, async () => runtime.dispatch({ label: 'stream', pipeline, workgroups: [groups], bindGroups: [runtime.bindGroup(pipeline, 0, { 0: src, 1: sums, 2: runtime.uniform(params, 's') })] }));
        best = Math.min(best, t.ms * 1000);
      }
      runtime.release(sums);
    }
  }
  runtime.release(src);
  return best;
}

let lastPasses = '';
let lastKind = '';
async function timeOf(shape, len, want, tokens = 1) {
  const { q, cache, options } = problemOf(shape, len, tokens, undefined);
  const kind = kindOf(planFor(runtime, validateDecode(q, cache, options)));
  lastKind = kind;
  if (want && kind !== want) return NaN;
  const up = (t) => { const b = runtime.createBuffer(Math.ceil(t.data.byteLength / 4) * 4, 'bench'); runtime.write(b, 0, t.data); return Tensor.fromGpuBuffer({ device: runtime.device, buffer: b, byteOffset: 0 }, t.shape, t.dtype); };
  const gq = up(q), gk = up(cache.k), gv = up(cache.v);
  const gl = up(Tensor.fromData(Int32Array.of(len), [1], 'int32'));
  const c = { k: gk, v: gv, lengths: gl };
  const o = { ...options, maxLength: len };
  (await attentionDecode(gq, c, o)).out.gpu.buffer.destroy();
  await warmGpu(runtime, 200);
  let best = Infinity;
  for (let r = 0; r < (smoke ? 1 : 5); r++) {
    const t = await gpuTimeOf(runtime, async () => { const res = await attentionDecode(gq, c, o); res.out.gpu.buffer.destroy(); });
    if (t.ms * 1000 < best) lastPasses = Object.values(t.byKernel ?? {}).map((ms) => (ms * 1000).toFixed(1)).join(' + ');
    best = Math.min(best, t.ms * 1000);
  }
  for (const t of [gq, gk, gv, gl]) t.gpu.buffer.destroy();
  return best;
}

console.log('| shape | keys | kernel | target:whole:compact | GPU us | passes us | stream us | fraction of stream | GB/s |');
console.log('|---|---:|---|---:|---:|---|---:|---:|---:|');
for (const name of shapes) for (const len of lengths) {
  const shape = SHAPES[name];
  const bytes = 2 * shape[1] * len * shape[2] * 2;
  const stream = await streamUs(bytes);
  const row = (kind, target, us) => console.log(`| ${name} | ${len} | ${kind} | ${target} | ${us.toFixed(1)} | ${lastPasses} | ${stream.toFixed(1)} | ${(stream / us).toFixed(3)} | ${(bytes / us / 1e3).toFixed(0)} |`);
  setMode('0');
  if (ok[`${name} simt`]) row('pipelined', '-', await timeOf(shape, len, 'pipelined'));
  for (const t of targets) {
    setMode('2', t);
    if (ok[`${name} tc ${t}`]) row('tensor-core', t, await timeOf(shape, len, 'tensor-core'));
  }
}
setMode('1');
// the plan's own choice (FUSEDATTN_DECODE_MLA unset) against both kernels forced, one and more query rows
const tokensList = (process.env.GQA_TOKENS ?? '').split(',').filter(Boolean).map(Number);
if (tokensList.length) {
  delete process.env.FUSEDATTN_DECODE_MLA;
  const caseOk = {};
  for (const name of shapes) for (const tokens of tokensList) {
    caseOk[`${name} ${tokens}`] = true;
    for (const mode of [undefined, '0', '2']) {
      if (mode) process.env.FUSEDATTN_DECODE_MLA = mode; else delete process.env.FUSEDATTN_DECODE_MLA;
      caseOk[`${name} ${tokens}`] &&= await check(SHAPES[name], 1025, tokens, undefined, kindOf(planFor(runtime, validateDecode(...Object.values(problemOf(SHAPES[name], 1025, tokens))))));
    }
  }
  console.log(`plan checks: ${JSON.stringify(caseOk)}`);
  console.log('| shape | Sq | keys | plan takes | plan us | SIMT us | tensor-core us | plan / best |');
  console.log('|---|---:|---:|---|---:|---:|---:|---:|');
  for (const name of shapes) for (const tokens of tokensList) for (const len of lengths) {
    if (!caseOk[`${name} ${tokens}`]) continue;
    const us = {};
    for (const [mode, key] of [[undefined, 'plan'], ['0', 'simt'], ['2', 'tc']]) {
      if (mode) process.env.FUSEDATTN_DECODE_MLA = mode; else delete process.env.FUSEDATTN_DECODE_MLA;
      us[key] = await timeOf(SHAPES[name], len, undefined, tokens);
      if (key === 'plan') us.kind = lastKind;
    }
    console.log(`| ${name} | ${tokens} | ${len} | ${us.kind} | ${us.plan.toFixed(1)} | ${us.simt.toFixed(1)} | ${us.tc.toFixed(1)} | ${(Math.min(us.simt, us.tc) / us.plan).toFixed(2)} |`);
  }
  delete process.env.FUSEDATTN_DECODE_MLA;
}
console.log('done');
