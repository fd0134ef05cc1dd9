// Linear attention on tensor cores (issue 13): first every variant checked against the float64
// reference (approx/reference.ts) on fresh random float16 inputs — S 1/97/1025, D 59/64/128, causal
// and not, elu+1 and relu — the portable tier and the tensor-core tier at each candidate tile
// (FUSEDATTN_APPROX_SGMAT_TILE); then GPU times (warmGpu, gpuTimeOf) of the variants that passed
// every case, at B4 H32 S4096 D128 fp16 elu+1, non-causal and causal, each spot-checked by rows.
//   node bench/gpu/linear-tc.mjs OUTDIR [--smoke] [--no-time]   (--smoke: small check set, tiny timing shape)
// Prints one line per check (PASS/FAIL/SKIP), one line per timing, and writes linear-tc.jsonl.
// Tolerance: max |out - ref| <= TOL * max |ref|. Tensor cores: 2e-2 (operands rounded to f16,
// 2^-11 relative each, over sums of up to 1025 terms, and the f16 output; the portable tier on
// the same f16 inputs gives ~5e-4, its error is printed beside it).
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, floatsToHalf, linearAttention } from '../../dist/index.js';
import { getRuntime } from '../../dist/engines/webgpu/runtime.js';
import { validateApprox } from '../../dist/ops/approx/problem.js';
import { referenceApprox, referenceApproxRows } from '../../dist/ops/approx/index.js';
import { sgMatrixAdapterUnsupported } from '../../dist/ops/attention/webgpu/tiers/sgmatrix.js';
import { SGMAT_MATMUL_TILES, sgmatMatmulSize } from '../../dist/ops/gemm/webgpu/matmul-sgmat.wgsl.js';
import { normal, randomFloats, uniform } from '../../dist/testing/index.js';
import { gpuTimeOf, warmGpu } from './gpu-timer.mjs';

const args = process.argv.slice(2);
const smoke = args.includes('--smoke');
const outDir = args.find((a) => !a.startsWith('--')) ?? 'out';
mkdirSync(outDir, { recursive: true });
const jsonl = join(outDir, 'linear-tc.jsonl');
writeFileSync(jsonl, '');
const emit = (row) => appendFileSync(jsonl, `${JSON.stringify({ bench: 'linear-tc', commit: process.env.FUSEDATTN_COMMIT ?? 'unknown', ...row })}\n`);

const TOL = { portable: 2e-3, tensorcore: 2e-2 };
const runtime = await getRuntime();
const tcReason = sgMatrixAdapterUnsupported(runtime);
const adapter = `${runtime.adapter.vendor ?? ''} ${runtime.adapter.architecture ?? ''} ${runtime.adapter.device ?? ''}`.trim();
console.log(`adapter: ${adapter || 'unknown'}; tensor cores: ${tcReason ? `no (${tcReason})` : 'yes'}`);
emit({ part: 'adapter', adapter, tensorcore: !tcReason, reason: tcReason });

const tileName = (t) => { const s = sgmatMatmulSize(SGMAT_MATMUL_TILES[t]); return `tc ${s.m}x${s.n}`; };
// 'f16φ': φ and [V | 1] stored as float16 (FUSEDATTN_APPROX_HALF_FEATURES=1; non-causal only, causal
// runs as without it and is therefore not timed)
const VARIANTS = [
  { name: 'portable', tier: 'portable' },
  ...SGMAT_MATMUL_TILES.map((_, t) => ({ name: tileName(t), tier: 'tensorcore', tile: t })),
  ...SGMAT_MATMUL_TILES.map((_, t) => ({ name: `${tileName(t)} f16φ`, tier: 'tensorcore', tile: t, half: true })),
];
/** Runs fn with the variant's tier and tile forced (the env is read per call). */
async function withVariant(v, fn) {
  process.env.FUSEDATTN_APPROX_TIER = v.tier;
  if (v.tile === undefined) delete process.env.FUSEDATTN_APPROX_SGMAT_TILE;
  else process.env.FUSEDATTN_APPROX_SGMAT_TILE = String(v.tile);
  if (v.half) process.env.FUSEDATTN_APPROX_HALF_FEATURES = '1';
  try { return await fn(); } finally { for (const name of ['FUSEDATTN_APPROX_TIER', 'FUSEDATTN_APPROX_SGMAT_TILE', 'FUSEDATTN_APPROX_HALF_FEATURES']) delete process.env[name]; }
}

function halves(shape, gauss, sigma) {
  return Tensor.fromData(floatsToHalf(randomFloats(shape.reduce((a, b) => a * b, 1), gauss, sigma)), shape, 'float16');
}

// ---- checks: one line per case, the error of each variant (relative to max |ref|; '!' = over its tolerance)
console.log(`check columns: ${VARIANTS.map((v, i) => `${i + 1} ${v.name}`).join(', ')}`);
const passed = new Map(VARIANTS.map((v) => [v.name, true]));
const refused = new Set();
const seqs = smoke ? [1, 97] : [1, 97, 1025];
const dims = smoke ? [59, 64] : [59, 64, 128];
let seed = 1000;
for (const S of seqs) for (const D of dims) for (const causal of [false, true]) for (const map of ['elu+1', 'relu']) {
  const gauss = normal(uniform(seed++));
  const B = 1, H = 2;
  const q = halves([B, H, S, D], gauss, 0.7), k = halves([B, H, S, D], gauss, 0.7), v = halves([B, H, S, D], gauss, 1);
  const options = { causal, featureMap: map };
  // long cases against rows only (the full float64 reference is O(S² D) per head in JavaScript):
  // the first and last 16 (chunk and tile edges, the row that sees every key) and every 13th
  const p = validateApprox('linear', q, k, v, options);
  const rowsOf = S <= 128 ? [...Array(S).keys()] : [...Array(S).keys()].filter((i) => i < 16 || i >= S - 16 || i % 13 === 0);
  const ref = new Float64Array(B * H * S * D).fill(NaN);
  if (S <= 128) ref.set(referenceApprox(p));
  else for (let h = 0; h < H; h++) referenceApproxRows(p, 0, h, rowsOf).forEach((row, n) => ref.set(row, (h * S + rowsOf[n]) * D));
  let scale = 1e-30;
  for (const r of ref) if (!Number.isNaN(r)) scale = Math.max(scale, Math.abs(r));
  const errors = {};
  const line = [];
  for (const variant of VARIANTS) {
    const name = `S ${S} D ${D} ${causal ? 'causal' : 'non-causal'} ${map}`;
    if (variant.tier === 'tensorcore' && tcReason) {
      // once per variant, the whole host path up to the adapter's refusal (llvmpipe: --smoke)
      if (!refused.has(variant.name)) {
        refused.add(variant.name);
        try {
          await withVariant(variant, () => linearAttention(q, k, v, { ...options, backend: 'webgpu' }));
          console.log(`  ${variant.name}: ran although the adapter has no tensor cores?`);
          passed.set(variant.name, false);
        } catch (e) {
          console.log(`  SKIP ${variant.name}: refused as expected: ${String(e.message ?? e).split('\n')[0]}`);
        }
      }
      line.push('SKIP'.padStart(8));
      continue;
    }
    let err;
    try {
      const out = (await withVariant(variant, () => linearAttention(q, k, v, { ...options, backend: 'webgpu' }))).out.toFloat32();
      err = 0;
      for (let i = 0; i < out.length; i++) if (!Number.isNaN(ref[i])) err = Math.max(err, Number.isFinite(out[i]) ? Math.abs(out[i] - ref[i]) : Infinity);
      err /= scale;
    } catch (e) {
      err = NaN;
      console.log(`  ${variant.name} ${name}: ${String(e.message ?? e).split('\n')[0]}`);
    }
    const ok = err <= TOL[variant.tier];
    if (!ok) passed.set(variant.name, false);
    errors[variant.name] = err;
    line.push(`${err.toExponential(1)}${ok ? ' ' : '!'}`.padStart(8));
    emit({ part: 'check', S, D, causal, map, variant: variant.name, error: err, pass: ok });
  }
  console.log(`check S ${String(S).padStart(4)} D ${String(D).padStart(3)} ${causal ? 'causal    ' : 'non-causal'} ${map.padEnd(5)} |${line.join('|')}`);
}
if (tcReason) console.log(`SKIP tensor-core variants: ${tcReason}`);
for (const v of VARIANTS) {
  if (v.tier === 'tensorcore' && tcReason) continue;
  console.log(`${passed.get(v.name) ? 'PASS' : 'FAIL'} ${v.name} (tolerance ${TOL[v.tier]} of max |ref|)`);
}

// ---- timings of the variants that passed every check
if (args.includes('--no-time')) process.exit(0);
const [B, H, S, D] = smoke ? [1, 2, 256, 32] : [4, 32, 4096, 128];
const gauss = normal(uniform(7));
const host = [halves([B, H, S, D], gauss, 0.7), halves([B, H, S, D], gauss, 0.7), halves([B, H, S, D], gauss, 1)];
const gpu = host.map((t) => Tensor.fromGpuBuffer({ device: runtime.device, buffer: runtime.upload(t.data, 'bench input'), byteOffset: 0 }, t.shape, 'float16'));
const rows = [0, 1, S >> 1, S - 1];
const flops = B * H * 4 * S * D * (D + 1);
console.log(`timing B${B} H${H} S${S} D${D} fp16 elu+1 (GPU ms, median of 5 after warmGpu 300 ms; spot error = rows of head 1 against float64)`);
for (const causal of [false, true]) {
  const want = referenceApproxRows(validateApprox('linear', host[0], host[1], host[2], { causal }), 0, 1, rows);
  for (const variant of VARIANTS) {
    if (!passed.get(variant.name) || (variant.tier === 'tensorcore' && tcReason) || (variant.half && causal)) continue;
    const label = `${causal ? 'causal    ' : 'non-causal'} ${variant.name.padEnd(17)}`;
    try {
      const run = () => withVariant(variant, () => linearAttention(gpu[0], gpu[1], gpu[2], { causal, backend: 'webgpu' }));
      const first = await run();
      const bytes = await runtime.read(first.out.gpu.buffer, 0, first.out.size * 2);
      const got = Tensor.fromData(new Uint16Array(bytes), first.out.shape, 'float16').toFloat32();
      first.out.gpu.buffer.destroy();
      let err = 0, scale = 1e-30;
      rows.forEach((i, n) => want[n].forEach((r, d) => { err = Math.max(err, Math.abs(got[(1 * S + i) * D + d] - r)); scale = Math.max(scale, Math.abs(r)); }));
      err /= scale;
      if (!(err <= TOL[variant.tier])) {
        console.log(`time ${label} FAIL spot check: relative error ${err.toExponential(2)}`);
        emit({ part: 'time', B, H, S, D, causal, variant: variant.name, error: `spot ${err}` });
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
      const parts = Object.entries(byKernel).filter(([, t]) => t > 0.02 * ms).map(([k, t]) => `${k} ${t.toFixed(2)}`).join(', ');
      console.log(`time ${label} ${ms.toFixed(3).padStart(8)} ms ${(flops / (ms * 1e9)).toFixed(1).padStart(6)} TFLOP/s  spot ${err.toExponential(1)}  [${parts}]`);
      emit({ part: 'time', B, H, S, D, causal, variant: variant.name, ms, tflops: flops / (ms * 1e9), spot: err, byKernel });
    } catch (e) {
      console.log(`time ${label} ERROR ${String(e.message ?? e).split('\n')[0]}`);
      emit({ part: 'time', B, H, S, D, causal, variant: variant.name, error: String(e.message ?? e) });
    }
  }
}
console.log('linear-tc done');
process.exit(0);
