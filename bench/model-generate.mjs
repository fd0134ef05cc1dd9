#!/usr/bin/env node
// Prefill and decode tokens/s of a Qwen2-0.5B-shaped decoder (hidden 896, 14/2 heads, D 64,
// intermediate 4864, vocab 151936, 24 layers) with random weights generated in memory (nothing
// written to disk), greedy decoding, on each requested backend x attention module.
//
//   node bench/model-generate.mjs [--backend cpu,webgpu] [--attention unfused,fused] [--prompt 32]
//        [--new 8] [--layers 24] [--gpu-weights float32,float16] [--replay on,off] [--profile 8]
//        [--out bench/results/model-generate.jsonl]
// On the GPU machine: source .gpu/env.sh && node bench/model-generate.mjs --backend webgpu
// Prints a table; appends one JSON line per run to --out (with machine, date and commit).
// Every model is checked before it is timed (bench/model-check.mjs: a short teacher-forced
// sequence through the same loaded model against the float64 decoder); a model that fails gets no
// speed, only its failure, and the exit code is 1. The timed greedy tokens of the variants are
// also compared with each other (a difference is reported, not fatal: near-ties can flip).
// --smoke: 2 layers, prompt 16, 4 new tokens (a quick run on llvmpipe or the CPU).
// WebGPU: --replay off runs every op of every decode step instead of replaying its recording;
// --profile N times N more decode steps with GPU timestamps per kernel (each kernel in its own
// compute pass, so the sum is the GPU's busy time without the gaps between kernels).
import { cpus, loadavg, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { appendRow, commit, markdownTable } from './model-report.mjs';
import { floatsToHalf } from '../dist/index.js';
import { configFrom, createModel, generate, qwen2HalfBConfigJson, weightSpecs } from '../dist/model/index.js';
import { modelChecker, usesTensorCores } from './model-check.mjs';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'cpu' },
    attention: { type: 'string', default: 'unfused' },
    prompt: { type: 'string', default: '32' },
    new: { type: 'string', default: '8' },
    layers: { type: 'string', default: '24' },
    'gpu-weights': { type: 'string', default: 'float32' },
    replay: { type: 'string', default: 'on' },
    profile: { type: 'string', default: '0' },
    // WebGPU: profile one more prefill (GPU ms per kernel by timestamps, dispatches, submits) and print it
    'profile-prefill': { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench/results/model-generate.jsonl' },
    smoke: { type: 'boolean', default: false },
  },
});
if (args.smoke) Object.assign(args, { layers: '2', prompt: '16', new: '4' });
const promptLength = Number(args.prompt);
const newTokens = Number(args.new);
const configJson = { ...qwen2HalfBConfigJson(), num_hidden_layers: Number(args.layers) };
const config = configFrom(configJson);

/**
 * Random weights made on demand, one tensor per read (so the model's copy is the only one in
 * memory): fast seeded uniform values with the variance of N(0, std²), each tensor from its own
 * seed, on a grid of float16 values (k * 2^-e, |k| <= 2047), so that float32 and float16 weights
 * are the same model and one float64 reference checks both.
 */
function randomStore(seed) {
  const specs = new Map(weightSpecs(config).map((spec, i) => [spec.name, { ...spec, seed: seed + i }]));
  const values = (spec) => {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const isNorm = spec.role.endsWith('Norm');
    const std = isNorm ? 0.1 : spec.role === 'embed' ? 1 : spec.role.endsWith('Bias') ? 0.1 : 1 / Math.sqrt(spec.shape[1]);
    const a = std * Math.sqrt(3);
    // norms 1 + k * 2^-10 (float16 spacing is 2^-11 below 1 and 2^-10 above)
    const step = isNorm ? 2 ** -10 : 2 ** -Math.min(24, Math.floor(Math.log2(2047 / a)));
    const K = Math.round(a / step);
    let s = (spec.seed * 2654435761) >>> 0 || 1;
    for (let i = 0; i < n; i++) {
      s ^= s << 13; s ^= s >>> 17; s ^= s << 5; // xorshift32
      data[i] = (isNorm ? 1 : 0) + (Math.floor(((s >>> 0) / 4294967296) * (2 * K + 1)) - K) * step;
    }
    return data;
  };
  return {
    origin: 'random Qwen2-0.5B-shaped weights',
    names: () => [...specs.keys()],
    entry: (name) => {
      const spec = specs.get(name);
      return spec && { name, dtype: 'F32', shape: spec.shape, byteOffset: 0, byteLength: 4 * spec.shape.reduce((a, b) => a * b, 1), file: 'memory' };
    },
    read: async (name, as) => {
      const data = values(specs.get(name));
      return as === 'float16' ? floatsToHalf(data) : data;
    },
    close: async () => {},
  };
}

async function adapterName() {
  const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
  const { adapter } = await getRuntime();
  return `${adapter.description} (${adapter.backend})`;
}


/** GPU ms per decode step per kernel label over `steps` more decode steps (timestamps). */
async function profileDecode(model, steps) {
  const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
  const { Profiler } = await import('../dist/profiler/index.js');
  const runtime = await getRuntime();
  if (!runtime.features.has('timestamp-query')) return undefined;
  const cache = model.createCache(1, prompt.length + steps + 1);
  await model.forward([prompt], cache);
  await model.forwardTop([[1]], cache, 1);
  const profiler = new Profiler(runtime, { timing: 'gpu-timestamps' });
  let token = 1;
  for (let i = 0; i < steps; i++) token = (await model.forwardTop([[token]], cache, 1))[0].ids[0];
  profiler.stop();
  const report = await profiler.report();
  // kernels by label, without the layer names of the weights (one line per kind of op)
  const byKind = new Map();
  for (const k of report.kernels) {
    const kind = k.label.replace(/ model\.layers\.\d+\./, ' layers.*.').replace(/ model\./, ' ');
    const e = byKind.get(kind) ?? { kernel: kind, count: 0, gpuMs: 0 };
    e.count += k.count / steps;
    e.gpuMs += (k.gpuMs ?? 0) / steps;
    byKind.set(kind, e);
  }
  return [...byKind.values()].sort((a, b) => b.gpuMs - a.gpuMs).map((e) => ({ ...e, gpuMs: +e.gpuMs.toFixed(4) }));
}

/**
 * Per decode step (greedy, GPU argmax): wall ms, and the host ms a replay takes to queue and submit
 * the step's commands (the rest is waiting for the GPU and the readback).
 */
async function hostTimes(model, steps) {
  const cache = model.createCache(1, prompt.length + steps + 2);
  await model.forward([prompt], cache);
  let token = (await model.forwardTop([[1]], cache, 1))[0].ids[0];
  let wall = 0;
  let host = 0;
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    token = (await model.forwardTop([[token]], cache, 1))[0].ids[0];
    wall += performance.now() - t0;
    host += model.replayStats()?.lastHostMs ?? 0;
  }
  return { stepWallMs: +(wall / steps).toFixed(3), stepSubmitHostMs: +(host / steps).toFixed(3) };
}

/** One more prefill inside a Profiler span: where its time goes (GPU kernels vs host), printed to stderr. */
async function profilePrefill(model) {
  const { Profiler } = await import('../dist/index.js');
  const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
  const profiler = new Profiler(await getRuntime());
  await profiler.span('prefill', () => generate(model, prompt, { maxNewTokens: 1, stopTokenIds: [] }));
  profiler.stop();
  const report = await profiler.report();
  const span = report.spans.find((s) => s.label === 'prefill');
  const top = [...span.kernels].sort((a, b) => (b.gpuMs ?? 0) - (a.gpuMs ?? 0)).slice(0, 8).map((k) => `${k.label} x${k.count} ${k.gpuMs?.toFixed(2)}ms`);
  console.error(`[profile] ${model.attention}: wall ${span.wallMs.toFixed(1)} ms (each dispatch in its own timed pass), GPU ${span.gpuMs?.toFixed(1)} ms, ${span.dispatches} dispatches, ${span.submits} submits; ${top.join(', ')}`);
}

const store = randomStore(1234);
const prompt = Array.from({ length: promptLength }, (_, i) => (i * 7919 + 13) % config.vocabSize);
const rows = [];
const profiles = [];
const checker = modelChecker(config, store);
let failed = false;
for (const backend of args.backend.split(',')) {
  for (const attention of args.attention.split(',')) {
   for (const gpuWeights of backend === 'webgpu' ? args['gpu-weights'].split(',') : ['float32']) {
    for (const replay of backend === 'webgpu' ? args.replay.split(',') : ['on']) {
    let model;
    const t0 = performance.now();
    try {
      model = await createModel(config, store, { backend, attention, gpuWeights, replayDecode: replay === 'on' });
    } catch (e) {
      console.error(`[bench] skipping ${backend}/${attention}: ${e.message}`);
      continue;
    }
    console.error(`[bench] ${backend}/${attention}/${gpuWeights}/replay ${replay}: weights made and loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    // the check first: a model that computes wrong logits gets no speed
    const t1 = performance.now();
    const lowPrecision = await usesTensorCores(model, gpuWeights);
    const check = await checker.check(model, lowPrecision);
    console.error(`[bench] check ${check.pass ? 'PASS' : 'FAIL'} (${((performance.now() - t1) / 1000).toFixed(1)} s): ${check.message}`);
    if (!check.pass) {
      failed = true;
      const row = { bench: 'model-generate', backend: model.backend, attention: model.attention, weights: model.backend === 'webgpu' ? gpuWeights : 'float32', replay: model.backend === 'webgpu' ? replay : undefined, check, date: new Date().toISOString(), commit: commit() };
      rows.push(row);
      appendRow(args.out, row);
      model.dispose();
      continue;
    }
    // a warm-up run of the same prompt (JIT, the prefill and decode pipelines), then the measured run
    await generate(model, prompt, { maxNewTokens: 3, stopTokenIds: [] });
    const r = await generate(model, prompt, { maxNewTokens: newTokens, stopTokenIds: [] });
    const profile = model.backend === 'webgpu' && Number(args.profile) > 0 ? await profileDecode(model, Number(args.profile)) : undefined;
    const host = model.backend === 'webgpu' ? await hostTimes(model, 16) : undefined;
    if (profile) profiles.push({ name: `${attention} ${gpuWeights} replay ${replay}`, profile });
    const row = {
      bench: 'model-generate',
      model: `qwen2-0.5b-shaped (${config.numLayers} layers, random weights)`,
      backend: model.backend,
      attention: model.attention,
      promptTokens: r.promptTokens,
      prefillMs: +r.prefillMs.toFixed(1),
      prefillTokensPerSecond: +r.prefillTokensPerSecond.toFixed(2),
      decodeSteps: r.decodeSteps,
      // greedy tokens: two runs of the same model (e.g. GEMM before/after) must agree on them
      tokens: r.tokens,
      decodeMs: +r.decodeMs.toFixed(1),
      decodeTokensPerSecond: +r.decodeTokensPerSecond.toFixed(2),
      weightBytes: model.weightBytes,
      kvCacheBytes: r.kvCacheBytes,
      rssBytes: process.memoryUsage().rss,
      weights: model.backend === 'webgpu' ? gpuWeights : 'float32',
      replay: model.backend === 'webgpu' ? replay : undefined,
      check,
      tokens: r.tokens,
      replayStats: model.replayStats(),
      msPerToken: r.decodeSteps > 0 ? +(r.decodeMs / r.decodeSteps).toFixed(3) : undefined,
      weightGBsPerToken: r.decodeSteps > 0 ? +((model.weightBytes / 1e9) * r.decodeTokensPerSecond).toFixed(1) : undefined,
      profileGpuMsPerStep: profile ? +profile.reduce((a, e) => a + e.gpuMs, 0).toFixed(3) : undefined,
      profile,
      ...host,
      replaySubmitEvery: Number(process.env.FUSEDATTN_REPLAY_SUBMIT_EVERY ?? 0) || undefined,
      machine: `${cpus()[0]?.model.trim()} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
      adapter: model.backend === 'webgpu' ? await adapterName() : undefined,
      loadAverage: +loadavg()[0].toFixed(2), // other processes on the machine depress the numbers
      node: process.version,
      date: new Date().toISOString(),
      commit: commit(),
    };
    rows.push(row);
    if (args['profile-prefill'] && model.backend === 'webgpu') await profilePrefill(model);
    model.dispose();
    appendRow(args.out, row);
    }
   }
  }
}

for (const p of profiles) {
  console.log(`\nGPU ms per decode step, ${p.name} (timestamps; total ${p.profile.reduce((a, e) => a + e.gpuMs, 0).toFixed(3)} ms):`);
  console.log(markdownTable(['kernel', 'per step', 'GPU ms'], p.profile.slice(0, 14).map((e) => [e.kernel, e.count.toFixed(1), e.gpuMs.toFixed(4)])));
}
// the timed greedy tokens, variant against variant (the first checked variant is the yardstick)
const timed = rows.filter((r) => r.tokens);
for (const r of timed) {
  const first = timed[0];
  const at = r.tokens.findIndex((t, i) => t !== first.tokens[i]);
  r.sameTokens = at < 0 ? 'yes' : `from step ${at}`;
  if (at >= 0) console.error(`[bench] NOTE: ${r.attention} ${r.weights} generated other tokens than ${first.attention} ${first.weights} from step ${at} (logits checked; a near-tie can flip a greedy pick)`);
}
const header = ['backend', 'attention', 'weights', 'replay', 'check', 'prompt', 'prefill tok/s', 'decode steps', 'decode tok/s', 'ms/token', 'kernel GPU ms', 'step ms', 'submit host ms', 'weights MiB', 'KV MiB', 'RSS MiB', 'tokens = first row'];
const table = rows.map((r) => r.check.pass
  ? [r.backend, r.attention, r.weights, r.replay ?? '', `ok (${r.check.maxRelError.toExponential(1)})`, r.promptTokens, r.prefillTokensPerSecond, r.decodeSteps, r.decodeTokensPerSecond,
    r.msPerToken ?? '', r.profileGpuMsPerStep ?? '', r.stepWallMs ?? '', r.stepSubmitHostMs ?? '', (r.weightBytes / 2 ** 20).toFixed(0), (r.kvCacheBytes / 2 ** 20).toFixed(2), (r.rssBytes / 2 ** 20).toFixed(0), r.sameTokens]
  : [r.backend, r.attention, r.weights, r.replay ?? '', 'WRONG: no speed', ...Array(12).fill('')]).map((cells) => cells.map(String));
console.log(markdownTable(header, table));
console.log(`check: each model ran ${checker.tokens} teacher-forced tokens (prefill, decode steps, GPU argmax) against the float64 decoder on the same weights before it was timed`);
for (const r of rows.filter((r) => !r.check.pass)) console.log(`FAILED ${r.backend} ${r.attention} ${r.weights}: ${r.check.message}`);
process.exit(failed ? 1 : 0); // (exit: the CPU worker pool and Dawn would keep the process alive)
