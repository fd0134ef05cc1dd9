// Fused linear attention on tensor cores (issue 13, FUSEDATTN_APPROX_TIER=fused), non-causal and
// causal (fused-causal.wgsl.ts, `causal` cases and timings; --causal-only skips the rest): first
// float64 checks (approx/reference.ts) on fresh random inputs — odd S (1, 97, 1025), D 59/64/128,
// Dv != D, batch > 1, GQA, the four layouts, an input at an offset that is not 8-aligned (the
// strided-load kernels), float32 inputs, elu+1 and relu — each run proven to have queued the fused
// kernels (the runtime's queued commands); no timing unless every check passed. Then GPU times
// (gpu-timer.mjs: timestamps summed over the dispatches, after warmGpu, median of 5) of the fused
// path (default chunking, 256 keys there, FUSEDATTN_APPROX_FUSED_CHUNK 512/1024/2048, FUSEDATTN_APPROX_FUSED_ROWS 64) against the portable
// path at B4 H32 S4096 D128 fp16 elu+1 non-causal, each spot-checked by rows first.
//   node bench/gpu/linear-fused.mjs OUTDIR [--smoke] [--no-time]   (--smoke: small checks, tiny timing shape;
//   without tensor cores the fused runs must be refused with the adapter's reason)
// Tolerance: max |out - ref| <= 2e-2 * max |ref| (f16 operands, f16 state times 1/Sk, f16 output).
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, floatsToHalf, linearAttention } from '../../dist/index.js';
import { getRuntime } from '../../dist/engines/webgpu/runtime.js';
import { validateApprox } from '../../dist/ops/approx/problem.js';
import { referenceApproxRows } from '../../dist/ops/approx/index.js';
import { fusedPlan } from '../../dist/ops/approx/webgpu/fused.js';
import { sgMatrixAdapterUnsupported } from '../../dist/ops/attention/webgpu/tiers/sgmatrix.js';
import { normal, randomFloats, uniform } from '../../dist/testing/index.js';
import { gpuTimeOf, warmGpu } from './gpu-timer.mjs';

const args = process.argv.slice(2);
const smoke = args.includes('--smoke');
const outDir = args.find((a) => !a.startsWith('--')) ?? 'out';
mkdirSync(outDir, { recursive: true });
const jsonl = join(outDir, 'linear-fused.jsonl');
writeFileSync(jsonl, '');
const emit = (row) => appendFileSync(jsonl, `${JSON.stringify({ bench: 'linear-fused', commit: process.env.FUSEDATTN_COMMIT ?? 'unknown', ...row })}\n`);

const TOL = 2e-2;
const runtime = await getRuntime();
const tcReason = sgMatrixAdapterUnsupported(runtime);
const unsafe = process.env.FUSEDATTN_UNSAFE_DISABLE_ROBUSTNESS === '1';
const adapter = `${runtime.adapter.vendor ?? ''} ${runtime.adapter.architecture ?? ''} ${runtime.adapter.device ?? ''}`.trim();
console.log(`adapter: ${adapter || 'unknown'}; tensor cores: ${tcReason ? `no (${tcReason})` : 'yes'}; Dawn robustness ${unsafe ? 'OFF' : 'on'}`);
emit({ part: 'adapter', adapter, tensorcore: !tcReason, reason: tcReason, robustness: !unsafe });

/** Dispatch labels an op queued (the proof of which path ran). */
async function labelsOf(fn) {
  const labels = [];
  const detach = runtime.observe({ queued: (c) => { if (c.kind === 'dispatch') labels.push(c.label); } });
  try { return { result: await fn(), labels }; } finally { detach(); }
}

async function withTier(tier, fn, chunk, rows) {
  process.env.FUSEDATTN_APPROX_TIER = tier;
  if (chunk) process.env.FUSEDATTN_APPROX_FUSED_CHUNK = String(chunk);
  if (rows) process.env.FUSEDATTN_APPROX_FUSED_ROWS = String(rows);
  try { return await fn(); } finally { for (const n of ['FUSEDATTN_APPROX_TIER', 'FUSEDATTN_APPROX_FUSED_CHUNK', 'FUSEDATTN_APPROX_FUSED_ROWS']) delete process.env[n]; }
}

function tensor(shape, gauss, sigma, dtype) {
  const x = randomFloats(shape.reduce((a, b) => a * b, 1), gauss, sigma);
  return dtype === 'float16' ? Tensor.fromData(floatsToHalf(x), shape, 'float16') : Tensor.fromData(x, shape);
}

/** Shapes of q/k/v in a layout (heads folded into the last dim for BSH and SBH). */
function shapeOf(layout, B, H, S, D) {
  if (layout === 'BNSD') return [B, H, S, D];
  if (layout === 'BSND') return [B, S, H, D];
  if (layout === 'BSH') return [B, S, H * D];
  return [S, B, H * D];
}

/** A GPU tensor holding t's data `pad` elements into its buffer (2: not a multiple of 8, so the strided-load kernels; byteOffset must be a multiple of 4). */
function offsetGpu(t, pad) {
  const bytesPer = t.dtype === 'float16' ? 2 : 4;
  const data = t.dtype === 'float16' ? new Uint16Array(t.data.length + pad) : new Float32Array(t.data.length + pad);
  data.set(t.data, pad);
  const buffer = runtime.upload(data, 'bench offset input');
  return Tensor.fromGpuBuffer({ device: runtime.device, buffer, byteOffset: pad * bytesPer }, t.shape, t.dtype);
}

const CASES = [];
const add = (c) => CASES.push({ B: 1, H: 2, KV: 2, Sk: undefined, Dv: undefined, layout: 'BNSD', dtype: 'float16', map: 'elu+1', pad: 0, ...c });
for (const S of smoke ? [1, 97] : [1, 97, 1025]) for (const D of [64, 128, 59]) for (const map of ['elu+1', 'relu']) add({ S, D, map });
add({ S: 97, D: 64, Dv: 40 }); add({ S: 300, D: 128, Dv: 72, B: 2 }); add({ S: 130, D: 64, Dv: 192, map: 'relu' });
add({ S: 97, Sk: 333, D: 128 }); add({ S: 97, D: 64, chunk: 32 }); add({ S: 300, D: 128, Dv: 72, B: 2, chunk: 64 }); add({ S: 97, Sk: 1025, D: 128, chunk: 256 }); add({ S: 200, Sk: 1, D: 64 });
for (const layout of ['BSND', 'BSH', 'SBH']) { add({ S: 97, D: 64, Dv: 48, B: 2, layout }); add({ S: 65, D: 128, B: 2, H: 4, KV: 2, layout }); }
add({ S: 129, D: 128, H: 4, KV: 1 }); add({ S: 97, D: 192, Dv: 128 }); add({ S: 300, D: 128, rows: 64 }); add({ S: 97, D: 64, pad: 2 }); add({ S: 97, D: 128, Dv: 96, pad: 2, layout: 'BSND' });
add({ S: 97, D: 64, dtype: 'float32' }); add({ S: 70, D: 59, Dv: 33, dtype: 'float32', layout: 'BSH', B: 2 });
if (!smoke) { add({ S: 1025, D: 128, Dv: 64, B: 2, H: 2 }); add({ S: 2049, D: 64, H: 1, KV: 1 }); }
if (args.includes('--causal-only')) CASES.length = 0;
// causal (bottom-right aligned; the fused form needs Sq <= Sk and at most 128 features)
const addCausal = (c) => add({ causal: true, ...c });
for (const S of smoke ? [1, 97] : [1, 97, 1025]) for (const D of [64, 128, 59]) addCausal({ S, D, map: S === 97 && D === 59 ? 'relu' : 'elu+1' });
addCausal({ S: 97, Sk: 333, D: 128 }); addCausal({ S: 1, Sk: 1025, D: 64 }); addCausal({ S: 300, Sk: 301, D: 128, Dv: 72, B: 2 });
addCausal({ S: 130, D: 64, Dv: 192, map: 'relu' }); addCausal({ S: 97, D: 64, chunk: 32 }); addCausal({ S: 300, Sk: 450, D: 128, chunk: 96 }); addCausal({ S: 500, D: 128, chunk: 512 });
for (const layout of ['BSND', 'BSH', 'SBH']) addCausal({ S: 65, Sk: 80, D: 128, B: 2, H: 4, KV: 2, layout });
addCausal({ S: 129, D: 128, H: 4, KV: 1 }); addCausal({ S: 97, D: 64, pad: 2 }); addCausal({ S: 97, D: 128, Dv: 96, pad: 2, layout: 'BSND' });
addCausal({ S: 97, D: 64, dtype: 'float32' }); addCausal({ S: 70, Sk: 99, D: 59, Dv: 33, dtype: 'float32', layout: 'BSH', B: 2 });
if (!smoke) addCausal({ S: 2049, D: 128, H: 1, KV: 1 });

let allPass = true;
let seed = 5000;
let refusedOnce = false;
const checkTier = tcReason ? 'portable' : 'fused';
for (const c of CASES) {
  const gauss = normal(uniform(seed++));
  const Sk = c.Sk ?? c.S;
  const Dv = c.Dv ?? c.D;
  const q = tensor(shapeOf(c.layout, c.B, c.H, c.S, c.D), gauss, 0.7, c.dtype);
  const k = tensor(shapeOf(c.layout, c.B, c.KV, Sk, c.D), gauss, 0.7, c.dtype);
  const v = tensor(shapeOf(c.layout, c.B, c.KV, Sk, Dv), gauss, 1, c.dtype);
  const options = { featureMap: c.map, layout: c.layout, causal: c.causal ?? false, ...(c.layout === 'BSH' || c.layout === 'SBH' ? { heads: c.H, kvHeads: c.KV } : {}) };
  const name = `${c.causal ? 'causal ' : ''}${c.layout} B${c.B} H${c.H}/${c.KV} S${c.S}${c.Sk ? `/${Sk}` : ''} D${c.D}${Dv !== c.D ? ` Dv${Dv}` : ''} ${c.dtype} ${c.map}${c.pad ? ` offset ${c.pad}` : ''}${c.chunk ? ` chunk ${c.chunk}` : ''}${c.rows ? ` rows ${c.rows}` : ''}`;
  if (tcReason && !refusedOnce) {
    refusedOnce = true;
    try {
      await withTier('fused', () => linearAttention(q, k, v, { ...options, backend: 'webgpu' }));
      console.log(`FAIL fused: ran although the adapter has no tensor cores (${name})`);
      allPass = false;
    } catch (e) {
      console.log(`SKIP fused: refused as expected: ${String(e.message ?? e).split('\n')[0]}`);
    }
    console.log('  (no tensor cores: the checks below run the portable path, to exercise this harness)');
  }
  const p = validateApprox('linear', q, k, v, options);
  const b = p.base;
  const rowsOf = c.S <= 200 ? [...Array(c.S).keys()] : [...Array(c.S).keys()].filter((i) => i < 17 || i >= c.S - 17 || i % 29 === 0);
  const st = b.outStrides;
  const want = new Map();
  let scale = 1e-30;
  for (let bb = 0; bb < c.B; bb++) for (let h = 0; h < c.H; h++) {
    referenceApproxRows(p, bb, h, rowsOf).forEach((row, n) => row.forEach((x, d) => {
      want.set(bb * st.b + h * st.h + rowsOf[n] * st.s + d * st.d, x);
      scale = Math.max(scale, Math.abs(x));
    }));
  }
  const inputs = c.pad ? [offsetGpu(q, c.pad), offsetGpu(k, c.pad), offsetGpu(v, c.pad)] : [q, k, v];
  if (c.rows) process.env.FUSEDATTN_APPROX_FUSED_ROWS = String(c.rows);
  const plan = fusedPlan(validateApprox('linear', ...inputs, options), { q: c.pad, k: c.pad, v: c.pad }, c.chunk);
  delete process.env.FUSEDATTN_APPROX_FUSED_ROWS;
  const planName = c.causal ? `causal, out 64x${plan.causal.tn} fp ${plan.causal.fp}${plan.causal.vecQ ? ' vecQ' : ''}${plan.causal.vecKV ? ' vecKV' : ''}${plan.causal.vecOut ? ' vecOut' : ''}, ${plan.chunks} chunks of ${plan.chunkKeys} shifted ${plan.keyShift}` : `state ${plan.state.tm}x${plan.state.tn}${plan.state.vec ? ' vec' : ' strided'}, out ${plan.output.tm}x${plan.output.tn}${plan.output.vec ? ' vec' : ' strided'}${plan.output.vecOut ? ' vecOut' : ''}, ${plan.chunks} chunks of ${plan.chunkKeys}`;
  let err = NaN, fused = false, note = '';
  try {
    const { result, labels } = await labelsOf(() => withTier(checkTier, () => linearAttention(...inputs, { ...options, backend: 'webgpu' }), c.chunk, c.rows));
    fused = checkTier === 'portable' || labels.includes('approx-fused-state') && labels.includes(c.causal ? 'approx-fused-causal-output' : 'approx-fused-output') && !labels.some((l) => l.startsWith('approx-features'));
    let out;
    if (result.out.location === 'webgpu') {
      const bytes = await runtime.read(result.out.gpu.buffer, 0, result.out.size * (c.dtype === 'float16' ? 2 : 4));
      out = (c.dtype === 'float16' ? Tensor.fromData(new Uint16Array(bytes), result.out.shape, 'float16') : Tensor.fromData(new Float32Array(bytes), result.out.shape)).toFloat32();
      result.out.gpu.buffer.destroy();
    } else out = result.out.toFloat32();
    err = 0;
    for (const [i, r] of want) err = Math.max(err, Number.isFinite(out[i]) ? Math.abs(out[i] - r) : Infinity);
    err /= scale;
    if (!fused) note = ` NOT FUSED (dispatches: ${labels.join(', ')})`;
  } catch (e) {
    note = ` ERROR ${String(e.message ?? e).split('\n')[0]}`;
  }
  const ok = fused && err <= TOL;
  if (!ok) allPass = false;
  console.log(`check ${ok ? 'ok  ' : 'FAIL'} ${name.padEnd(52)} error ${err.toExponential(1)} [${planName}]${note}`);
  emit({ part: 'check', case: name, causal: c.causal ?? false, plan: planName, error: err, fused, pass: ok });
}
if (tcReason) console.log(`SKIP fused checks and timings: ${tcReason} (harness checks on the portable path: ${allPass ? 'all ok' : 'FAILED'})`);
else console.log(`${allPass ? 'PASS' : 'FAIL'} fused (${CASES.length} cases, tolerance ${TOL} of max |ref|, every run proven fused)`);

// ---- timings, only when every check passed
if (args.includes('--no-time')) process.exit(0);
const [B, H, S, D] = smoke ? [1, 2, 256, 32] : [4, 32, 4096, 128];
const causalOnly = args.includes('--causal-only');
const variants = causalOnly ? [] : [{ name: 'portable', tier: 'portable' }];
if (!tcReason && allPass && !causalOnly) {
  variants.push({ name: 'fused', tier: 'fused' });
  for (const chunk of [512, 1024, 2048]) variants.push({ name: `fused kc${chunk}`, tier: 'fused', chunk });
  variants.push({ name: 'fused rows64', tier: 'fused', rows: 64 }, { name: 'fused kc512 rows64', tier: 'fused', chunk: 512, rows: 64 });
}
// causal: the portable chunked path, then the fused form at its default 128-key chunks and others
variants.push({ name: 'causal portable', tier: 'portable', causal: true });
if (!tcReason && allPass) {
  variants.push({ name: 'causal fused', tier: 'fused', causal: true }, { name: 'fused (non-causal)', tier: 'fused' });
  for (const chunk of [64, 256, 512]) variants.push({ name: `causal fused kc${chunk}`, tier: 'fused', causal: true, chunk });
}
if (!tcReason && !allPass) console.log('time: fused refused (a check failed above); portable only');
const gauss = normal(uniform(7));
const host = [tensor([B, H, S, D], gauss, 0.7, 'float16'), tensor([B, H, S, D], gauss, 0.7, 'float16'), tensor([B, H, S, D], gauss, 1, 'float16')];
const gpu = host.map((t) => Tensor.fromGpuBuffer({ device: runtime.device, buffer: runtime.upload(t.data, 'bench input'), byteOffset: 0 }, t.shape, 'float16'));
const rows = [0, 1, S >> 1, S - 1];
const flops = B * H * 4 * S * D * (D + 1);
const want = referenceApproxRows(validateApprox('linear', host[0], host[1], host[2], {}), 0, 1, rows);
const wantCausal = referenceApproxRows(validateApprox('linear', host[0], host[1], host[2], { causal: true }), 0, 1, rows);
console.log(`timing B${B} H${H} S${S} D${D} fp16 elu+1 non-causal and causal (FLOP/s of the non-causal count) (GPU ms summed over dispatches, median of 5 after warmGpu 300 ms; spot = rows of head 1 against float64)`);
for (const variant of variants) {
  const label = `${variant.name}${unsafe ? ' unsafe' : ''}`.padEnd(22);
  try {
    const run = () => withTier(variant.tier, () => linearAttention(gpu[0], gpu[1], gpu[2], { backend: 'webgpu', causal: variant.causal ?? false }), variant.chunk, variant.rows);
    const ref = variant.causal ? wantCausal : want;
    const { result: first, labels } = await labelsOf(run);
    const bytes = await runtime.read(first.out.gpu.buffer, 0, first.out.size * 2);
    const got = Tensor.fromData(new Uint16Array(bytes), first.out.shape, 'float16').toFloat32();
    first.out.gpu.buffer.destroy();
    let err = 0, scale = 1e-30;
    rows.forEach((i, n) => ref[n].forEach((r, d) => { err = Math.max(err, Math.abs(got[(1 * S + i) * D + d] - r)); scale = Math.max(scale, Math.abs(r)); }));
    err /= scale;
    if (variant.tier === 'fused' && !labels.includes(variant.causal ? 'approx-fused-causal-output' : 'approx-fused-output')) {
      console.log(`time ${label} FAIL: the fused kernels did not run (${labels.join(', ')})`);
      continue;
    }
    if (!(err <= TOL)) {
      console.log(`time ${label} FAIL spot check: relative error ${err.toExponential(2)}`);
      emit({ part: 'time', B, H, S, D, variant: variant.name, causal: variant.causal ?? false, error: `spot ${err}` });
      continue;
    }
    await warmGpu(runtime, 300);
    const times = [];
    let byKernel = {};
    for (let i = 0; i < 5; i++) {
      const r = await gpuTimeOf(runtime, run);
      times.push(r.ms);
      byKernel = r.byKernel ?? {};
      r.result.out.gpu.buffer.destroy();
    }
    times.sort((a, b) => a - b);
    const ms = times[2];
    const parts = Object.entries(byKernel).map(([k, t]) => `${k} ${t.toFixed(3)}`).join(', ');
    console.log(`time ${label} ${ms.toFixed(3).padStart(8)} ms ${(flops / (ms * 1e9)).toFixed(1).padStart(6)} TFLOP/s  spot ${err.toExponential(1)}  [${parts}]`);
    emit({ part: 'time', B, H, S, D, variant: variant.name, causal: variant.causal ?? false, robustness: !unsafe, ms, tflops: flops / (ms * 1e9), spot: err, byKernel, labels });
  } catch (e) {
    console.log(`time ${label} ERROR ${String(e.message ?? e).split('\n')[0]}`);
    emit({ part: 'time', B, H, S, D, variant: variant.name, error: String(e.message ?? e) });
  }
}
console.log('linear-fused done');
process.exit(0);
