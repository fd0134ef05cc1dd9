#!/usr/bin/env node
// Prefill and decode tokens/s of a Qwen2-0.5B-shaped decoder (hidden 896, 14/2 heads, D 64,
// intermediate 4864, vocab 151936, 24 layers) with random weights generated in memory (nothing
// written to disk), greedy decoding, on each requested backend x attention module.
//
//   node bench/model-generate.mjs [--backend cpu,webgpu] [--attention unfused,fused] [--prompt 32]
//        [--new 8] [--layers 24] [--gpu-weights float32|float16] [--out bench/results/model-generate.jsonl]
// On the GPU machine: source .gpu/env.sh && node bench/model-generate.mjs --backend webgpu
// Prints a table; appends one JSON line per run to --out (with machine, date and commit).
import { cpus, loadavg, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { appendRow, commit, markdownTable } from './model-report.mjs';
import { floatsToHalf } from '../dist/index.js';
import { configFrom, createModel, generate, qwen2HalfBConfigJson, weightSpecs } from '../dist/model/index.js';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'cpu' },
    attention: { type: 'string', default: 'unfused' },
    prompt: { type: 'string', default: '32' },
    new: { type: 'string', default: '8' },
    layers: { type: 'string', default: '24' },
    'gpu-weights': { type: 'string', default: 'float32' },
    out: { type: 'string', default: 'bench/results/model-generate.jsonl' },
  },
});
const promptLength = Number(args.prompt);
const newTokens = Number(args.new);
const configJson = { ...qwen2HalfBConfigJson(), num_hidden_layers: Number(args.layers) };
const config = configFrom(configJson);

/**
 * Random weights made on demand, one tensor per read (so the model's copy is the only one in
 * memory): fast seeded uniform values with the variance of N(0, std²), each tensor from its own seed.
 */
function randomStore(seed) {
  const specs = new Map(weightSpecs(config).map((spec, i) => [spec.name, { ...spec, seed: seed + i }]));
  const values = (spec) => {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const isNorm = spec.role.endsWith('Norm');
    const std = isNorm ? 0.1 : spec.role === 'embed' ? 1 : spec.role.endsWith('Bias') ? 0.1 : 1 / Math.sqrt(spec.shape[1]);
    const a = std * Math.sqrt(3);
    let s = (spec.seed * 2654435761) >>> 0 || 1;
    for (let i = 0; i < n; i++) {
      s ^= s << 13; s ^= s >>> 17; s ^= s << 5; // xorshift32
      data[i] = (isNorm ? 1 : 0) + a * ((s >>> 0) / 2147483648 - 1);
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
  const { getRuntime } = await import('../dist/backends/webgpu/runtime.js');
  const { adapter } = await getRuntime();
  return `${adapter.description} (${adapter.backend})`;
}


const store = randomStore(1234);
const prompt = Array.from({ length: promptLength }, (_, i) => (i * 7919 + 13) % config.vocabSize);
const rows = [];
for (const backend of args.backend.split(',')) {
  for (const attention of args.attention.split(',')) {
    let model;
    const t0 = performance.now();
    try {
      model = await createModel(config, store, { backend, attention, gpuWeights: args['gpu-weights'] });
    } catch (e) {
      console.error(`[bench] skipping ${backend}/${attention}: ${e.message}`);
      continue;
    }
    console.error(`[bench] ${backend}/${attention}: weights made and loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    // one short warm-up run (JIT, pipelines), then the measured run
    await generate(model, prompt.slice(0, 4), { maxNewTokens: 2, stopTokenIds: [] });
    const r = await generate(model, prompt, { maxNewTokens: newTokens, stopTokenIds: [] });
    const row = {
      bench: 'model-generate',
      model: `qwen2-0.5b-shaped (${config.numLayers} layers, random weights)`,
      backend: model.backend,
      attention: model.attention,
      promptTokens: r.promptTokens,
      prefillMs: +r.prefillMs.toFixed(1),
      prefillTokensPerSecond: +r.prefillTokensPerSecond.toFixed(2),
      decodeSteps: r.decodeSteps,
      decodeMs: +r.decodeMs.toFixed(1),
      decodeTokensPerSecond: +r.decodeTokensPerSecond.toFixed(2),
      weightBytes: model.weightBytes,
      kvCacheBytes: r.kvCacheBytes,
      rssBytes: process.memoryUsage().rss,
      weights: model.backend === 'webgpu' ? args['gpu-weights'] : 'float32',
      machine: `${cpus()[0]?.model.trim()} x${cpus().length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
      adapter: model.backend === 'webgpu' ? await adapterName() : undefined,
      loadAverage: +loadavg()[0].toFixed(2), // other processes on the machine depress the numbers
      node: process.version,
      date: new Date().toISOString(),
      commit: commit(),
    };
    rows.push(row);
    model.dispose();
    appendRow(args.out, row);
  }
}

const header = ['backend', 'attention', 'prompt', 'prefill tok/s', 'decode steps', 'decode tok/s', 'weights MiB', 'KV MiB', 'RSS MiB'];
const table = rows.map((r) => [r.backend, r.attention, r.promptTokens, r.prefillTokensPerSecond, r.decodeSteps, r.decodeTokensPerSecond,
  (r.weightBytes / 2 ** 20).toFixed(0), (r.kvCacheBytes / 2 ** 20).toFixed(2), (r.rssBytes / 2 ** 20).toFixed(0)].map(String));
console.log(markdownTable(header, table));
process.exit(0); // the CPU worker pool and Dawn would keep the process alive
