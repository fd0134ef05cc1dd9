// Issue 13's correctness on the real GPU, before any timing: bool masks, bias, block masks and
// score/mask/sink functions on the tensor-core tier (forced) and the portable tier, float16 with
// FlashAttention's rule against the float64 reference (src/testing/compare.ts), and linear
// attention / Performer on WebGPU against their float64 reference. Exit code 1 on any failure.
//   node bench/variants/check-gpu.mjs [--smoke]
import {
  attention, attentionSinks, causal, createBlockMask, documentMask, linearAttention, performerAttention, prefixLM, referenceApprox,
  referenceAttention, scoreMod, capture, slidingWindow, softcap, t5RelativeBias, validateAttention,
} from '../../dist/index.js';
import { validateApprox } from '../../dist/ops/approx/problem.js';
import { caseName, checkF32, checkLowPrecision, makeCase } from '../../dist/testing/index.js';

const smoke = process.argv.includes('--smoke');
const { getRuntime } = await import('../../dist/engines/webgpu/runtime.js');
const runtime = await getRuntime();
const f16 = runtime.features.has('shader-f16') && !smoke;
const tiers = runtime.features.has('chromium-experimental-subgroup-matrix') && !smoke ? ['sgmatrix', 'portable'] : ['portable'];
const S = smoke ? 96 : 384;
const dtype = f16 ? 'float16' : 'float32';
const docs = Int32Array.from({ length: S }, (_, i) => Math.floor(i / Math.ceil(S / 5)));
const rel = capture(Float32Array.from({ length: 4 * 129 }, (_, i) => Math.sin(i) / 2), [4, 129]);
const cases = [
  ['dense bool mask (blocks)', { batch: 2, headsQ: 4, headsKv: 2, seqQ: S, seqK: S, dimQK: 128, mask: 'blocks', maskShape: 'batch', returnLse: true }, async () => ({})],
  ['dense bool mask, fully masked rows', { batch: 1, headsQ: 4, seqQ: S, seqK: S - 33, dimQK: 64, mask: 'full-rows', maskShape: 'full', returnLse: true }, async () => ({})],
  ['additive bias with -inf blocks (f32 bias)', { batch: 1, headsQ: 4, seqQ: S, seqK: S + 19, dimQK: 128, bias: 'neg-inf-blocks', returnLse: true }, async () => ({})],
  ['bias + mask + causal + softcap', { batch: 1, headsQ: 4, seqQ: S, seqK: S, dimQK: 64, bias: 'random', mask: 'random', causal: true, softcap: 20, returnLse: true }, async () => ({})],
  ['block mask (documents, causal) + softcap fn + sinks', { batch: 2, headsQ: 4, seqQ: S, seqK: S, dimQK: 128, returnLse: true },
    async () => ({ blockMask: await createBlockMask(documentMask(docs, { causal: true }), 1, 1, S, S), scoreMod: softcap(20), sink: [1, 0, -1, 2] })],
  ['block mask (sliding window 100, 64-blocks) + dense mask', { batch: 1, headsQ: 4, seqQ: S, seqK: S, dimQK: 128, mask: 'blocks', maskShape: '2d', returnLse: true },
    async () => ({ blockMask: await createBlockMask(slidingWindow(100, 0), 1, 1, S, S, { blockSize: 64 }) })],
  ['relative bias table fn + prefix-LM fn, GQA', { batch: 1, headsQ: 4, headsKv: 1, seqQ: S, seqK: S, dimQK: 64, returnLse: true },
    async () => ({ scoreMod: scoreMod(({ score, h, q, kv }) => score.add(rel.at(h, q.sub(kv).add(64)))), maskMod: prefixLM(50, 'top-left') })],
  ['T5 buckets + causal fn, odd dims', { batch: 1, headsQ: 3, seqQ: 77, seqK: 93, dimQK: 59, dimV: 111, returnLse: true },
    async () => ({ scoreMod: t5RelativeBias(Float32Array.from({ length: 96 }, (_, i) => Math.cos(i))), maskMod: causal(), scale: 1 })],
  ['sinks [Nq] with causal option', { batch: 2, headsQ: 4, seqQ: S, seqK: S, dimQK: 128, causal: true, returnLse: true }, async () => ({ sink: attentionSinks([0.5, 1, 2, -3]) })],
  // the score hook's paths on the tensor-core tier (sgmatrix-score-lines.ts): sinks alone on the
  // plain score path with the options it applies, a score function without a block table, FULL
  // block-table tiles on the plain lines and with a bias + function, PARTIAL ones with the mask
  ['sinks + softcap option + sliding window option, Sq < Sk', { batch: 1, headsQ: 4, seqQ: S, seqK: S + 40, dimQK: 64, softcap: 20, window: [100, 0], returnLse: true }, async () => ({ sink: attentionSinks([0.5, 1, 2, -3]) })],
  ['causal + softcap fn (scoreMod), no block table', { batch: 1, headsQ: 4, seqQ: S, seqK: S, dimQK: 128, causal: true, returnLse: true }, async () => ({ scoreMod: softcap(30) })],
  ['causal + softcap fn (scoreMod), exp2 tanh', { batch: 1, headsQ: 4, seqQ: S, seqK: S, dimQK: 128, causal: true, returnLse: true }, async () => ({ scoreMod: softcap(30) }), { FUSEDATTN_SGMATRIX_TANH: 'exp2' }],
  ['block mask window + softcap fn + sinks, exp2 tanh', { batch: 1, headsQ: 4, seqQ: S, seqK: S, dimQK: 128, returnLse: true },
    async () => ({ blockMask: await createBlockMask(slidingWindow(200, 0), 1, 1, S, S, { blockSize: 64 }), scoreMod: softcap(5), sink: attentionSinks([1, 0, -1, 2]) }), { FUSEDATTN_SGMATRIX_TANH: 'exp2' }],
  ['block mask causal (64-blocks): FULL tiles + diagonal PARTIAL ones', { batch: 2, headsQ: 4, seqQ: S, seqK: S, dimQK: 128, returnLse: true },
    async () => ({ blockMask: await createBlockMask(causal(), 1, 1, S, S, { blockSize: 64 }) })],
  ['block mask sliding window 200 (64-blocks) + bias + softcap fn + sinks', { batch: 1, headsQ: 4, seqQ: S, seqK: S, dimQK: 128, bias: 'random', returnLse: true },
    async () => ({ blockMask: await createBlockMask(slidingWindow(200, 0), 1, 1, S, S, { blockSize: 64 }), scoreMod: softcap(20), sink: attentionSinks([1, 0, -1, 2]) })],
];
let failed = 0;
let passed = 0;
// the float64 reference once per case, each tier checked against it
for (const [index, [name, c, extra, env = {}]] of cases.entries()) {
  const spec = { ...c, dtype };
  const { q, k, v, options } = makeCase(spec, 700 + index);
  const all = { ...options, ...(await extra()) };
  const problem = validateAttention(q, k, v, all);
  const ref = referenceAttention(problem);
  const naive = f16 ? referenceAttention(problem, 'float16') : undefined;
  for (const tier of tiers) {
    process.env.FUSEDATTN_WEBGPU_TIER = tier;
    for (const [key, value] of Object.entries(env)) process.env[key] = value;
    let message;
    try {
      const result = await attention(q, k, v, { ...all, backend: 'webgpu' });
      message = naive ? checkLowPrecision('out', result.out.toFloat32(), naive.out, ref.out) ?? '' : checkF32('out', result.out.toFloat32(), ref.out) ?? '';
      if (spec.returnLse) message += checkF32('lse', result.lse.toFloat32(), ref.lse, f16 ? 1e-3 : 1e-5) ?? '';
    } catch (e) {
      message = `threw: ${String(e.message ?? e).split('\n')[0]}`;
    }
    for (const key of Object.keys(env)) delete process.env[key];
    if (message) failed++;
    else passed++;
    console.log(`${message ? 'FAIL' : 'ok  '} ${tier.padEnd(9)} ${name} [${caseName(spec)}]${message ? ` ${message}` : ''}`);
  }
}
delete process.env.FUSEDATTN_WEBGPU_TIER;

// linear attention and Performer on WebGPU
const A = smoke ? 64 : 600;
for (const [name, kind, options] of [['linear elu+1', 'linear', {}], ['linear relu causal', 'linear', { featureMap: 'relu', causal: true }], ['Performer M 128', 'performer', { features: 128 }], ['Performer M 256 causal', 'performer', { features: 256, causal: true }]]) {
  const { q, k, v } = makeCase({ batch: 1, headsQ: 4, headsKv: 2, seqQ: A, seqK: A + 7, dimQK: 64, dtype }, 900);
  let message;
  try {
    const ref = referenceApprox(validateApprox(kind, q, k, v, options));
    const out = (await (kind === 'linear' ? linearAttention : performerAttention)(q, k, v, { ...options, backend: 'webgpu' })).out;
    message = checkF32('out', out.toFloat32(), ref, f16 ? 3e-3 : 1e-5) ?? '';
  } catch (e) {
    message = `threw: ${String(e.message ?? e).split('\n')[0]}`;
  }
  if (message) failed++;
  else passed++;
  console.log(`${message ? 'FAIL' : 'ok  '} webgpu    ${name} (S ${A}, ${dtype})${message ? ` ${message}` : ''}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
