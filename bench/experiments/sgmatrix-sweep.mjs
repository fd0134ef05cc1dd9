// GPU experiment: the subgroup-matrix flash kernel, checked and timed in one call.
//   1. correctness of every variant on small odd cases (full float64 reference, FlashAttention's
//      f16 rule: error <= 2x naive f16 error), including a large-score case that forces rescaling;
//   2. timing of every variant on the benchmark shapes, each run checked on sampled rows against a
//      float64 reference computed here.
// Usage (GPU machine): node bench/experiments/sgmatrix-sweep.mjs [out.jsonl]
// Env: ROBUST=0 disables Dawn robustness; VARIANTS=json list; SHAPES=comma list of shape names;
//      SKIP_SMALL=1; ITERS=n.
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { validateAttention, referenceAttention } from '../../dist/index.js';
import { makeCase, caseName, checkLowPrecision, compare } from '../../dist/testing/index.js';
import { Tensor } from '../../dist/index.js';
import { HALF, openDevice, randomHalf, referenceRow } from './gpu-harness.mjs';
import { runSgMatrix } from './sgmatrix-run.mjs';

const outFile = process.argv[2] ?? '/tmp/sgmatrix.jsonl';
writeFileSync(outFile, '');
const log = (row) => appendFileSync(outFile, JSON.stringify(row) + '\n');
const dev = await openDevice({ robustness: process.env.ROBUST !== '0' });
console.log('adapter', JSON.stringify(dev.info));
log({ kind: 'adapter', ...dev.info });

const DEFAULT_VARIANTS = [
  { subgroups: 4, blockKeys: 32 },
  { subgroups: 4, blockKeys: 64, sharedKV: true },
  { subgroups: 4, blockKeys: 32, smemVec4: true },
  { subgroups: 4, blockKeys: 64, sharedKV: true, smemVec4: true },
  { subgroups: 4, blockKeys: 32, smemVec4: true, prefetch: true },
  { subgroups: 4, blockKeys: 16, smemVec4: true, prefetch: true },
  { subgroups: 2, blockKeys: 32, smemVec4: true, prefetch: true },
  { subgroups: 4, blockKeys: 32, smemVec4: true, prefetch: true, rescaleThreshold: 0 },
];
const variants = process.env.VARIANTS ? JSON.parse(process.env.VARIANTS) : DEFAULT_VARIANTS;
const vname = (v) => `ns${v.subgroups} bc${v.blockKeys}${v.sharedKV ? ' sharedKV' : ''}${v.smemVec4 ? ' vec4' : ''}${v.prefetch ? ' prefetch' : ''}${v.rowPad === 0 ? ' pad0' : ''}${v.rescaleThreshold === 0 ? ' eager' : ''}${v.headsPerTile > 1 ? ` hp${v.headsPerTile}` : ''}`;

// ---------------------------------------------------------------- 1. small cases, full reference
const SMALL = [
  { dtype: 'float16', batch: 2, headsQ: 3, seqQ: 97, seqK: 97, dimQK: 64, returnLse: true },
  { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 97, seqK: 130, dimQK: 128, causal: true, returnLse: true },
  { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 130, seqK: 97, dimQK: 64, causal: 'top-left', returnLse: true },
  { dtype: 'float16', layout: 'BSND', batch: 1, headsQ: 4, headsKv: 2, seqQ: 70, seqK: 97, dimQK: 128, dimRope: 64, dimV: 128, causal: true, returnLse: true },
  { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 65, seqK: 65, dimQK: 192, dimV: 128, causal: true },
  { dtype: 'float16', batch: 2, headsQ: 2, seqQ: 60, seqK: 77, dimQK: 59, dimV: 111, softcap: 3, alibi: true, returnLse: true },
  { dtype: 'float16', layout: 'TND', batch: 3, headsQ: 4, headsKv: 2, seqQ: 0, seqK: 0, seqLensQ: [1, 97, 40], seqLensK: [1, 120, 33], dimQK: 64, causal: true, returnLse: true },
  { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 97, seqK: 97, dimQK: 32, window: [16, 8], returnLse: true },
  { dtype: 'float16', layout: 'BSND', batch: 1, headsQ: 8, headsKv: 2, seqQ: 97, seqK: 97, dimQK: 128, causal: true },
  { dtype: 'float16', batch: 1, headsQ: 1, seqQ: 1025, seqK: 1025, dimQK: 64, causal: true, returnLse: true },
  // large scores: the row max keeps growing past the lazy threshold, so O is rescaled
  { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 300, seqK: 300, dimQK: 64, scale: 2.5, returnLse: true },
];

let failures = 0;
if (process.env.SKIP_SMALL !== '1') {
  for (const c of SMALL.filter((c) => !process.env.SMALL_MAX_D || c.dimQK <= Number(process.env.SMALL_MAX_D))) {
    const { q, k, v, options } = makeCase(c, 42);
    const problem = validateAttention(q, k, v, options);
    const ref = referenceAttention(problem);
    const naive = referenceAttention(problem, 'float16');
    for (const variant of [...variants, { subgroups: 4, blockKeys: 32, headsPerTile: 4, smemVec4: true, prefetch: true }]) {
      let r;
      try {
        r = await runSgMatrix(dev, problem, variant);
      } catch (e) {
        console.log(`FAIL ${caseName(c)} | ${vname(variant)}: ${e.message.split('\n').slice(0, 3).join(' ')}`);
        failures++;
        continue;
      }
      if (r.skipped) continue;
      const got = Array.from(r.out, (h) => HALF[h]);
      let msg = checkLowPrecision('out', got, naive.out, ref.out) ?? '';
      if (c.returnLse) {
        const cl = compare(r.lse, ref.lse);
        if (cl.badIndex >= 0 || cl.maxAbsError > 1e-3 * Math.max(1, cl.maxAbsRef)) msg += ` lse err ${cl.maxAbsError} bad@${cl.badIndex} (${r.lse[cl.badIndex]} vs ${ref.lse[cl.badIndex]})`;
      }
      const err = compare(got, ref.out).maxAbsError;
      const nerr = compare(naive.out, ref.out).maxAbsError;
      if (msg) failures++;
      console.log(`${msg ? 'FAIL' : 'ok  '} ${caseName(c)} | ${vname(variant)} | err ${err.toExponential(2)} naive16 ${nerr.toExponential(2)} ${msg}`);
      log({ kind: 'check', case: caseName(c), variant: vname(variant), pass: !msg, err, naiveErr: nerr, msg });
    }
  }
}

// ---------------------------------------------------------------- 2. benchmark shapes, sampled rows
const SHAPES = JSON.parse(readFileSync(new URL('../gpu/shapes.json', import.meta.url), 'utf8'));
const wanted = process.env.SHAPES ? process.env.SHAPES.split(',') : Object.keys(SHAPES);

function bigProblem(s, seed) {
  const hk = s.headsKv ?? s.headsQ;
  const dv = s.dimV ?? s.dimQK;
  const t = (h, d, salt) => Tensor.fromData(randomHalf(s.batch * h * s.seq * d, seed * 7 + salt), [s.batch, h, s.seq, d], 'float16');
  return validateAttention(t(s.headsQ, s.dimQK, 1), t(hk, s.dimQK, 2), t(hk, dv, 3), { causal: s.causal ?? false });
}
const flops = (s) => 4 * s.batch * s.headsQ * s.seq * s.seq * ((s.dimQK + (s.dimV ?? s.dimQK)) / 2) / (s.causal ? 2 : 1);

const table = [];
for (const name of wanted) {
  const s = SHAPES[name];
  if (!s) continue;
  const problem = bigProblem(s, 5);
  const samples = [];
  for (let n = 0; n < 24; n++) {
    const b = (n * 7) % s.batch, h = (n * 13) % s.headsQ, i = n < 4 ? [0, 1, 17, s.seq - 1][n] : (n * 997) % s.seq;
    samples.push({ b, h, i, ...referenceRow(problem, b, h, i) });
  }
  const list = name.includes('GQA') ? [...variants, ...variants.slice(0, 2).map((v) => ({ ...v, headsPerTile: 4 }))] : variants;
  for (const variant of list) {
    let r;
    try {
      r = await runSgMatrix(dev, problem, variant, { iters: Number(process.env.ITERS ?? 8), warmup: 2 });
    } catch (e) {
      console.log(`FAIL ${name} | ${vname(variant)}: ${e.message.split('\n')[0]}`);
      continue;
    }
    if (r.skipped) { console.log(`skip ${name} | ${vname(variant)}: ${r.skipped}`); continue; }
    let maxErr = 0, maxRef = 0;
    for (const { b, h, i, out } of samples) {
      const base = b * problem.outStrides.b + i * problem.outStrides.s + h * problem.outStrides.h;
      for (let d = 0; d < problem.dimV; d++) {
        const g = HALF[r.out[base + d]];
        const e = Number.isNaN(g) ? Infinity : Math.abs(g - out[d]);
        maxErr = Math.max(maxErr, e);
        maxRef = Math.max(maxRef, Math.abs(out[d]));
      }
    }
    const tflops = flops(s) / (r.ms * 1e-3) / 1e12;
    const row = { kind: 'bench', shape: name, variant: vname(variant), ms: r.ms, tflops, sampledMaxErr: maxErr, sampledMaxRef: maxRef, wgBytes: r.bytes, robustness: dev.info.robustness };
    log(row);
    table.push(row);
    console.log(`${name.padEnd(36)} ${vname(variant).padEnd(26)} ${r.ms.toFixed(3).padStart(9)} ms ${tflops.toFixed(1).padStart(6)} TFLOP/s  err ${maxErr.toExponential(2)}`);
  }
}
console.log(`\nsmall-case failures: ${failures}`);
console.log('\nbest per shape:');
for (const name of wanted) {
  const rows = table.filter((r) => r.shape === name && r.sampledMaxErr < 5e-3).sort((a, b) => a.ms - b.ms);
  if (rows[0]) console.log(`  ${name.padEnd(36)} ${rows[0].variant.padEnd(26)} ${rows[0].ms.toFixed(3)} ms ${rows[0].tflops.toFixed(1)} TFLOP/s`);
}
process.exit(0);
