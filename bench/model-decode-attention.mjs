#!/usr/bin/env node
// Decode attention (one query per sequence against a long KV cache) on WebGPU: the runner's
// split-KV kernel pair vs a plain streaming-read kernel over the same bytes (the bandwidth ceiling
// this GPU reaches from WGSL), as issue 4 asks (target: >= 60% of the streaming bandwidth).
// Bytes counted: K and V of the visible prefix, read once (the kernel reads each KV element once
// for all query heads of its group); the few query/partial bytes are left out.
//
//   node bench/model-decode-attention.mjs [--lengths 1024,4096,16384,32768] [--shapes qwen2-0.5b,qwen-7b] [--reps 50]
//        [--out bench/results/model-decode-attention.jsonl]
// On the GPU machine: source .gpu/env.sh && node bench/model-decode-attention.mjs
import { parseArgs } from 'node:util';
import { appendRow, commit, markdownTable } from './model-report.mjs';
import { getRuntime } from '../dist/backends/webgpu/runtime.js';
import { defineKernel } from '../dist/backends/webgpu/runtime.js';
import { COMBINE_PARAMS, DECODE_PARAMS, buildDecodeCombine, buildDecodePartial, chooseSplits } from '../dist/model/webgpu/decode-attention.wgsl.js';
import { STREAM_PARAMS, buildStreamRead } from '../dist/model/webgpu/kernels.wgsl.js';
import { splitKvOptions } from '../dist/model/webgpu/unfused-attention.js';

const { values: args } = parseArgs({
  options: {
    lengths: { type: 'string', default: '1024,4096,16384,32768' },
    shapes: { type: 'string', default: 'qwen2-0.5b,qwen-7b' },
    reps: { type: 'string', default: '50' },
    target: { type: 'string', default: '256' },
    out: { type: 'string', default: 'bench/results/model-decode-attention.jsonl' },
  },
});
const SHAPES = {
  'qwen2-0.5b': { headsQ: 14, headsKv: 2, headDim: 64 },
  'qwen-7b': { headsQ: 28, headsKv: 4, headDim: 128 },
  'llama-8b': { headsQ: 32, headsKv: 8, headDim: 128 },
};
const reps = Number(args.reps);
const runtime = await getRuntime();
const partialKernel = defineKernel('model-decode-partial', buildDecodePartial);
const combineKernel = defineKernel('model-decode-combine', buildDecodeCombine);
const streamKernel = defineKernel('model-stream-read', buildStreamRead);

/** Seconds per repetition of `record` (which queues one repetition), after a warm-up. */
async function timeIt(record) {
  record();
  await runtime.flush();
  await runtime.finish();
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) record();
  await runtime.flush();
  await runtime.finish();
  return (performance.now() - t0) / 1000 / reps;
}

const rows = [];
for (const shapeName of args.shapes.split(',')) {
  const { headsQ: Nq, headsKv: Nkv, headDim: D } = SHAPES[shapeName];
  const options = splitKvOptions(D, Nq / Nkv, runtime.limits.maxComputeWorkgroupStorageSize);
  for (const length of args.lengths.split(',').map(Number)) {
    const kvBytes = length * Nkv * D * 4;
    const fill = (n) => { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = Math.sin(i * 0.37); return a; };
    const q = runtime.upload(fill(Nq * D), 'q');
    const keys = runtime.upload(fill(length * Nkv * D), 'keys');
    const values = runtime.upload(fill(length * Nkv * D), 'values');
    const { splits, keysPerSplit } = chooseSplits(length, Nkv, 1, options.tileKeys, Number(args.target));
    const partials = runtime.acquire(Nq * splits * (D + 2) * 4, 'intermediate', 'partials');
    const out = runtime.acquire(Nq * D * 4, 'output', 'out');
    const partial = await runtime.pipeline(partialKernel, options);
    const combine = await runtime.pipeline(combineKernel, { headDim: D });
    const decodeParams = DECODE_PARAMS.pack({ batch: 1, start: length - 1, heads_q: Nq, heads_kv: Nkv, splits, keys_per_split: keysPerSplit, scale: 1 / Math.sqrt(D) });
    const combineParams = COMBINE_PARAMS.pack({ row_heads: Nq, splits });
    const decode = await timeIt(() => {
      runtime.dispatch({ label: 'partial', pipeline: partial, workgroups: [Nkv, 1, splits], bindGroups: [runtime.bindGroup(partial, 0, { 0: q, 1: keys, 2: values, 3: partials, 4: runtime.uniform(decodeParams, 'p') })] });
      runtime.dispatch({ label: 'combine', pipeline: combine, workgroups: [Nq, 1], bindGroups: [runtime.bindGroup(combine, 0, { 0: partials, 1: out, 2: runtime.uniform(combineParams, 'c') })] });
    });
    // the ceiling: stream the same 2 * kvBytes (keys then values) with a trivial kernel
    const wg = 256 <= runtime.limits.maxComputeInvocationsPerWorkgroup ? 256 : 128;
    const stream = await runtime.pipeline(streamKernel, { workgroupSize: wg });
    const groups = Math.min(4096, Math.ceil(kvBytes / 16 / wg));
    const sums = runtime.acquire(groups * wg * 4, 'intermediate', 'sums');
    const perThread = Math.ceil(kvBytes / 16 / (groups * wg));
    const streamParams = STREAM_PARAMS.pack({ n4: kvBytes / 16, per_thread: perThread });
    const streaming = await timeIt(() => {
      for (const src of [keys, values]) {
        runtime.dispatch({ label: 'stream', pipeline: stream, workgroups: [groups], bindGroups: [runtime.bindGroup(stream, 0, { 0: src, 1: sums, 2: runtime.uniform(streamParams, 's') })] });
      }
    });
    const row = {
      bench: 'model-decode-attention',
      shape: shapeName, headsQ: Nq, headsKv: Nkv, headDim: D, length, splits, tileKeys: options.tileKeys,
      decodeUs: +(decode * 1e6).toFixed(1),
      decodeGBs: +((2 * kvBytes) / decode / 1e9).toFixed(1),
      streamGBs: +((2 * kvBytes) / streaming / 1e9).toFixed(1),
      fractionOfStream: +(streaming / decode).toFixed(3),
      adapter: `${runtime.adapter.description} (${runtime.adapter.backend})`,
      date: new Date().toISOString(),
      commit: commit(),
      timing: 'wall clock over one submit of reps dispatches, after a warm-up',
    };
    rows.push(row);
    appendRow(args.out, row);
    for (const b of [q, keys, values, partials, out, sums]) runtime.release(b);
    await runtime.flush();
    runtime.trimPool();
  }
}
const header = ['shape', 'length', 'splits', 'decode us', 'decode GB/s', 'stream GB/s', 'fraction'];
const table = rows.map((r) => [r.shape, r.length, r.splits, r.decodeUs, r.decodeGBs, r.streamGBs, r.fractionOfStream].map(String));
console.log(`adapter: ${rows[0]?.adapter}`);
console.log(markdownTable(header, table));
process.exit(0);
