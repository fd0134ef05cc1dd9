// Performer (and an expression feature map) on the fused tensor-core kernels (issue 13,
// approx/webgpu/fused-features.ts): float64 checks first (approx/reference.ts) on fresh random
// float16 inputs — M 256 / 64 / 40 / 24, D 64 / 128 / 33, S 1 / 97 / 1025, Sq != Sk, GQA, BSND and
// BSH — each run proven to have taken the feature planes to the fused kernels (its queued
// dispatches); no timing unless every check passed. Then GPU time (gpu-timer.mjs: timestamps summed
// over the dispatches, after warmGpu, median of 5) of Performer M 256 on the fused route and on the
// portable products, linear elu+1 fused, and exact attention (the tensor-core flash tier), non-causal,
// then causal (Performer M 128, linear elu+1, exact), B1 H8 D64 for S 512 .. 16384 (the crossover)
// and at B4 H32 S4096 D128; every timed output spot-checked against float64 rows first.
//   node bench/gpu/performer-fused.mjs OUTDIR [--smoke]   (--smoke: no tensor cores needed; the
//   fused route must then be refused and the checks run the portable path)
// Tolerance: max |out - ref| <= 2e-2 * max |ref| (f16 inputs, f16 features and state, f16 output).
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, attention, featureMap, floatsToHalf, linearAttention, performerAttention } from '../../dist/index.js';
import { getRuntime } from '../../dist/engines/webgpu/runtime.js';
import { validateApprox } from '../../dist/ops/approx/problem.js';
import { referenceApproxRows } from '../../dist/ops/approx/index.js';
import { sgMatrixAdapterUnsupported } from '../../dist/ops/attention/webgpu/tiers/sgmatrix.js';
import { normal, randomFloats, uniform } from '../../dist/testing/index.js';
import { gpuTimeOf, warmGpu } from './gpu-timer.mjs';

const args = process.argv.slice(2);
const smoke = args.includes('--smoke');
const outDir = args.find((a) => !a.startsWith('--')) ?? 'out';
mkdirSync(outDir, { recursive: true });
const jsonl = join(outDir, 'performer-fused.jsonl');
writeFileSync(jsonl, '');
const emit = (row) => appendFileSync(jsonl, `${JSON.stringify({ bench: 'performer-fused', commit: process.env.FUSEDATTN_COMMIT ?? 'unknown', ...row })}\n`);

const TOL = 2e-2;
const runtime = await getRuntime();
const tcReason = sgMatrixAdapterUnsupported(runtime);
console.log(`tensor cores: ${tcReason ? `no (${tcReason})` : 'yes'}`);
const square = featureMap(({ x }) => x.mul(x).add(0.05), 'x^2 + 0.05');

async function labelsOf(fn) {
  const labels = [];
  const detach = runtime.observe({ queued: (c) => { if (c.kind === 'dispatch') labels.push(c.label); } });
  try { return { result: await fn(), labels }; } finally { detach(); }
}

async function withTier(tier, fn) {
  process.env.FUSEDATTN_APPROX_TIER = tier;
  try { return await fn(); } finally { delete process.env.FUSEDATTN_APPROX_TIER; }
}

const half = (shape, gauss, sigma) => Tensor.fromData(floatsToHalf(randomFloats(shape.reduce((a, b) => a * b, 1), gauss, sigma)), shape, 'float16');
const shapeOf = (layout, B, H, S, D) => (layout === 'BNSD' ? [B, H, S, D] : layout === 'BSND' ? [B, S, H, D] : [B, S, H * D]);
const call = (kind, options) => (kind === 'performer' ? (q, k, v, o) => performerAttention(q, k, v, { ...options, ...o }) : (q, k, v, o) => linearAttention(q, k, v, { ...options, ...o }));

async function readOut(out) {
  if (out.location !== 'webgpu') return out.toFloat32();
  const bytes = await runtime.read(out.gpu.buffer, 0, out.size * 2);
  out.gpu.buffer.destroy();
  return Tensor.fromData(new Uint16Array(bytes), out.shape, 'float16').toFloat32();
}

// ---- checks
const CASES = [];
const add = (c) => CASES.push({ kind: 'performer', B: 1, H: 2, KV: 2, Sk: undefined, Dv: undefined, layout: 'BNSD', M: 256, ...c });
for (const S of smoke ? [1, 97] : [1, 97, 1025]) for (const D of [64, 128]) add({ S, D });
add({ S: 97, Sk: 333, D: 64, M: 64 }); add({ S: 130, D: 33, M: 40 }); add({ S: 97, D: 64, M: 24, Dv: 40 });
add({ S: 129, D: 128, H: 4, KV: 1 }); add({ S: 97, D: 64, Dv: 48, B: 2, layout: 'BSND' }); add({ S: 65, D: 64, B: 2, H: 4, KV: 2, layout: 'BSH' });
add({ kind: 'linear', map: square, S: 300, D: 64, H: 4, KV: 2 }); add({ kind: 'linear', map: square, S: 97, Sk: 200, D: 128, Dv: 72 });
// causal (fused-causal.wgsl.ts through the same planes; at most 128 features)
add({ causal: true, S: 97, D: 64, M: 128 }); add({ causal: true, S: 1025, D: 128, M: 128 }); add({ causal: true, S: 97, Sk: 333, D: 64, M: 64, H: 4, KV: 2 });
add({ causal: true, S: 65, D: 64, M: 40, B: 2, layout: 'BSND' }); add({ causal: true, kind: 'linear', map: square, S: 300, Sk: 310, D: 64, H: 4, KV: 2 });
let allPass = true;
let seed = 6000;
const checkTier = tcReason ? 'portable' : 'fused';
for (const c of CASES) {
  const gauss = normal(uniform(seed++));
  const Sk = c.Sk ?? c.S;
  const Dv = c.Dv ?? c.D;
  const q = half(shapeOf(c.layout, c.B, c.H, c.S, c.D), gauss, 0.7);
  const k = half(shapeOf(c.layout, c.B, c.KV, Sk, c.D), gauss, 0.7);
  const v = half(shapeOf(c.layout, c.B, c.KV, Sk, Dv), gauss, 1);
  const options = { layout: c.layout, causal: c.causal ?? false, ...(c.layout === 'BSH' ? { heads: c.H, kvHeads: c.KV } : {}), ...(c.kind === 'performer' ? { features: c.M, seed: seed % 7 } : { featureMap: c.map }) };
  const name = `${c.causal ? 'causal ' : ''}${c.kind === 'performer' ? `Performer M${c.M}` : `linear ${c.map.label}`} ${c.layout} B${c.B} H${c.H}/${c.KV} S${c.S}${c.Sk ? `/${Sk}` : ''} D${c.D}${Dv !== c.D ? ` Dv${Dv}` : ''}`;
  const p = validateApprox(c.kind, q, k, v, options);
  const st = p.base.outStrides;
  const rows = c.S <= 200 ? [...Array(c.S).keys()] : [...Array(c.S).keys()].filter((i) => i < 17 || i >= c.S - 17 || i % 29 === 0);
  const want = new Map();
  let scale = 1e-30;
  for (let bb = 0; bb < c.B; bb++) for (let h = 0; h < c.H; h++) {
    referenceApproxRows(p, bb, h, rows).forEach((row, n) => row.forEach((x, d) => {
      want.set(bb * st.b + h * st.h + rows[n] * st.s + d * st.d, x);
      scale = Math.max(scale, Math.abs(x));
    }));
  }
  let err = NaN, routed = false, note = '';
  try {
    const { result, labels } = await labelsOf(() => withTier(checkTier, () => call(c.kind, options)(q, k, v, { backend: 'webgpu' })));
    routed = checkTier === 'portable' || (labels.includes('approx-feature-planes') && labels.includes(c.causal ? 'approx-fused-causal-output' : 'approx-fused-output'));
    const out = await readOut(result.out);
    err = 0;
    for (const [i, r] of want) err = Math.max(err, Number.isFinite(out[i]) ? Math.abs(out[i] - r) : Infinity);
    err /= scale;
    if (!routed) note = ` NOT FUSED (dispatches: ${labels.join(', ')})`;
  } catch (e) {
    note = ` ERROR ${String(e.message ?? e).split('\n')[0]}`;
  }
  const ok = routed && err <= TOL;
  if (!ok) allPass = false;
  console.log(`check ${ok ? 'ok  ' : 'FAIL'} ${name.padEnd(50)} error ${err.toExponential(1)}${note}`);
  emit({ part: 'check', case: name, error: err, routed, pass: ok });
}
if (tcReason) console.log(`SKIP fused: ${tcReason} (the checks ran the portable path: ${allPass ? 'all ok' : 'FAILED'})`);
else console.log(`${allPass ? 'PASS' : 'FAIL'} Performer / expression maps on the fused kernels (${CASES.length} cases, tolerance ${TOL} of max |ref|, every run proven routed)`);

// ---- timings: every variant checks rows of head 1 against float64 before it is timed
/** float64 rows of exact softmax attention (head h, batch 0, BNSD, no mask). */
function exactRows(q, k, v, h, rows, causal = false) {
  const [, , S, D] = q.shape;
  const Dv = v.shape[3];
  const [qf, kf, vf] = [q.toFloat32(), k.toFloat32(), v.toFloat32()];
  const scale = 1 / Math.sqrt(D);
  return rows.map((i) => {
    const s = new Float64Array(S);
    let m = -Infinity;
    for (let j = 0; j < S; j++) {
      if (causal && j > i) { s[j] = -Infinity; continue; }
      let dot = 0;
      for (let d = 0; d < D; d++) dot += qf[(h * S + i) * D + d] * kf[(h * S + j) * D + d];
      s[j] = dot * scale;
      m = Math.max(m, s[j]);
    }
    const out = new Float64Array(Dv);
    let l = 0;
    for (let j = 0; j < S; j++) {
      const w = Math.exp(s[j] - m);
      l += w;
      for (let d = 0; d < Dv; d++) out[d] += w * vf[(h * S + j) * Dv + d];
    }
    return out.map((x) => x / l);
  });
}

const shapes = smoke ? [[1, 2, 256, 32]] : [[1, 8, 512, 64], [1, 8, 1024, 64], [1, 8, 2048, 64], [1, 8, 4096, 64], [1, 8, 8192, 64], [1, 8, 16384, 64], [4, 32, 4096, 128]];
const variants = [
  { name: 'Performer M256 portable', kind: 'performer', tier: 'portable' },
  ...(!tcReason && allPass ? [{ name: 'Performer M256 fused', kind: 'performer', tier: 'fused' }, { name: 'linear elu+1 fused', kind: 'linear', tier: 'fused' }] : []),
  { name: 'exact (flash)', kind: 'exact' },
  // causal: the chunk form on the fused kernels (Performer at 128 features, the most it takes there)
  ...(!tcReason && allPass ? [{ name: 'causal Performer M128 fused', kind: 'performer', tier: 'fused', causal: true, M: 128 }, { name: 'causal linear elu+1 fused', kind: 'linear', tier: 'fused', causal: true }] : []),
  { name: 'causal exact (flash)', kind: 'exact', causal: true },
];
if (!tcReason && !allPass) console.log('time: the fused route refused (a check failed above)');
console.log('timing, fp16 non-causal then causal (GPU ms summed over dispatches, median of 5 after warmGpu 300 ms; spot = rows of head 1 against float64)');
for (const [B, H, S, D] of shapes) {
  const gauss = normal(uniform(S + H));
  const host = [half([B, H, S, D], gauss, 0.7), half([B, H, S, D], gauss, 0.7), half([B, H, S, D], gauss, 1)];
  const gpu = host.map((t) => Tensor.fromGpuBuffer({ device: runtime.device, buffer: runtime.upload(t.data, 'bench input'), byteOffset: 0 }, t.shape, 'float16'));
  const rows = [0, 1, S >> 1, S - 1];
  const wants = {
    performer: referenceApproxRows(validateApprox('performer', host[0], host[1], host[2], { features: 256, seed: 0 }), 0, 1, rows),
    linear: referenceApproxRows(validateApprox('linear', host[0], host[1], host[2], {}), 0, 1, rows),
    exact: exactRows(host[0], host[1], host[2], 1, rows),
    'causal performer': referenceApproxRows(validateApprox('performer', host[0], host[1], host[2], { features: 128, seed: 0, causal: true }), 0, 1, rows),
    'causal linear': referenceApproxRows(validateApprox('linear', host[0], host[1], host[2], { causal: true }), 0, 1, rows),
    'causal exact': exactRows(host[0], host[1], host[2], 1, rows, true),
  };
  for (const variant of variants) {
    const label = `B${B} H${H} S${S} D${D} ${variant.name}`.padEnd(46);
    const run = variant.kind === 'exact'
      ? () => attention(gpu[0], gpu[1], gpu[2], { backend: 'webgpu', causal: variant.causal ?? false })
      : () => withTier(variant.tier, () => call(variant.kind, variant.kind === 'performer' ? { features: variant.M ?? 256, seed: 0 } : {})(gpu[0], gpu[1], gpu[2], { backend: 'webgpu', causal: variant.causal ?? false }));
    try {
      const { result: first, labels } = await labelsOf(run);
      const got = await readOut(first.out);
      const want = wants[variant.causal ? `causal ${variant.kind}` : variant.kind];
      let err = 0, scale = 1e-30;
      rows.forEach((i, n) => want[n].forEach((r, d) => { err = Math.max(err, Math.abs(got[(1 * S + i) * D + d] - r)); scale = Math.max(scale, Math.abs(r)); }));
      err /= scale;
      if (variant.tier === 'fused' && !labels.includes(variant.causal ? 'approx-fused-causal-output' : 'approx-fused-output')) { console.log(`time ${label} FAIL: not fused (${labels.join(', ')})`); continue; }
      if (!(err <= TOL)) { console.log(`time ${label} FAIL spot check: ${err.toExponential(2)}`); emit({ part: 'time', B, H, S, D, variant: variant.name, error: `spot ${err}` }); continue; }
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
      const parts = Object.entries(byKernel).map(([name, t]) => `${name} ${t.toFixed(3)}`).join(', ');
      console.log(`time ${label} ${ms.toFixed(3).padStart(8)} ms  spot ${err.toExponential(1)}  [${parts}]`);
      emit({ part: 'time', B, H, S, D, variant: variant.name, causal: variant.causal ?? false, ms, spot: err, byKernel });
    } catch (e) {
      console.log(`time ${label} ERROR ${String(e.message ?? e).split('\n')[0]}`);
      emit({ part: 'time', B, H, S, D, variant: variant.name, error: String(e.message ?? e) });
    }
  }
  for (const t of gpu) t.gpu.buffer.destroy();
}
console.log('performer-fused done');
process.exit(0);
