#!/usr/bin/env node
// Decode attention (one query per sequence against a long KV cache) on WebGPU: the runner's
// split-KV kernels, first (decode-attention.wgsl.ts) and second version (flash-decode.wgsl.ts, a
// few workgroup sizes and split targets), against a plain streaming read of the same bytes (the
// bandwidth ceiling this GPU reaches from WGSL, the best of several grid sizes and unrolls), as
// issue 4 asks (target: >= 60% of the streaming bandwidth).
// Bytes counted: K and V of the visible prefix, read once (each KV element is read once for all
// query heads of its group); the query and partials are left out.
// Times: GPU timestamps around each dispatch (its own compute pass), summed per repetition
// (partial + combine), median of 3 rounds of --reps; and, as a cross-check, wall time of --reps
// repetitions queued in one submission. The second kernel's output is checked against a float64
// reference on every shape in the same run.
//
//   node bench/model-decode-attention.mjs [--lengths 1024,4096,16384,32768] [--shapes qwen2-0.5b,qwen-7b,llama-8b]
//        [--reps 20] [--batch 1] [--out bench/results/model-decode-attention.jsonl]
// On the GPU machine: source .gpu/env.sh && node bench/model-decode-attention.mjs
import { parseArgs } from 'node:util';
import { appendRow, commit, markdownTable } from './model-report.mjs';
import { defineKernel, getRuntime } from '../dist/engines/webgpu/runtime.js';
import { Profiler } from '../dist/profiler/index.js';
import { COMBINE_PARAMS, DECODE_PARAMS, buildDecodeCombine, buildDecodePartial, chooseSplits } from '../dist/ops/decode/webgpu/decode-attention.wgsl.js';
import { flashDecodeOptions } from '../dist/ops/decode/webgpu/flash-decode.wgsl.js';
import { flashDecodePlan, flashDecodeSplitsFor, queueFlashDecode } from '../dist/ops/decode/webgpu/flash-decode.js';
import { STREAM_PARAMS, buildStreamRead } from '../dist/model/webgpu/kernels.wgsl.js';
import { splitKvOptions } from '../dist/model/webgpu/unfused-attention.js';

const { values: args } = parseArgs({
  options: {
    lengths: { type: 'string', default: '1024,4096,16384,32768' },
    shapes: { type: 'string', default: 'qwen2-0.5b,qwen-7b,llama-8b' },
    reps: { type: 'string', default: '20' },
    batch: { type: 'string', default: '1' },
    out: { type: 'string', default: 'bench/results/model-decode-attention.jsonl' },
  },
});
const SHAPES = {
  'qwen2-0.5b': { headsQ: 14, headsKv: 2, headDim: 64 },
  'qwen-7b': { headsQ: 28, headsKv: 4, headDim: 128 },
  'llama-8b': { headsQ: 32, headsKv: 8, headDim: 128 },
};
const reps = Number(args.reps);
const B = Number(args.batch);
const runtime = await getRuntime();
const timestamps = runtime.features.has('timestamp-query');
const partialKernel = defineKernel('model-decode-partial', buildDecodePartial);
const combineKernel = defineKernel('model-decode-combine', buildDecodeCombine);
const streamKernel = defineKernel('model-stream-read', buildStreamRead);

/** Keeps the GPU busy so its clocks are up before a measurement (they drop within ~100 ms of idling). */
async function spinUp(record) {
  const t0 = performance.now();
  while (performance.now() - t0 < 150) {
    for (let i = 0; i < 20; i++) await record();
    await runtime.finish();
  }
}

/**
 * Microseconds per repetition of each variant's `record` (which queues one repetition): GPU time
 * of its dispatches (timestamps) and wall time of `reps` repetitions in one submit. The variants
 * are measured in 3 interleaved rounds, each after a spin-up, so a change of clocks touches all;
 * the median round counts.
 */
async function timeAll(records) {
  const gpu = records.map(() => []);
  const wall = records.map(() => []);
  for (let round = 0; round < 3; round++) {
    for (let v = 0; v < records.length; v++) {
      const record = records[v];
      await spinUp(record);
      if (timestamps) {
        const profiler = new Profiler(runtime, { timing: 'gpu-timestamps' });
        for (let r = 0; r < reps; r++) await record();
        await runtime.finish();
        profiler.stop();
        const report = await profiler.report();
        gpu[v].push((report.kernels.reduce((s, k) => s + (k.gpuMs ?? 0), 0) / reps) * 1000);
      }
      const t0 = performance.now();
      for (let r = 0; r < reps; r++) await record();
      await runtime.finish();
      wall[v].push(((performance.now() - t0) / reps) * 1000);
    }
  }
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  return records.map((_, v) => ({ gpuUs: gpu[v].length ? median(gpu[v]) : undefined, wallUs: median(wall[v]) }));
}

function xorshift(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
    return (s >>> 0) / 4294967296 - 0.5;
  };
}
const fill = (n, seed) => { const r = xorshift(seed); const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = r() * 2; return a; };

/** float64 attention of one query row per (sequence, head) over `length` SBH cache positions. */
function reference(q, keys, values, { batch, length, headsQ, headsKv, headDim: D }) {
  const out = new Float64Array(batch * headsQ * D);
  const G = headsQ / headsKv;
  const s = new Float64Array(length);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < headsQ; h++) {
      const kv = Math.floor(h / G);
      const qo = (b * headsQ + h) * D;
      let m = -Infinity;
      for (let j = 0; j < length; j++) {
        const ko = (j * batch + b) * headsKv * D + kv * D;
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[qo + d] * keys[ko + d];
        s[j] = dot / Math.sqrt(D);
        if (s[j] > m) m = s[j];
      }
      let l = 0;
      for (let j = 0; j < length; j++) {
        const p = Math.exp(s[j] - m);
        l += p;
        const vo = (j * batch + b) * headsKv * D + kv * D;
        for (let d = 0; d < D; d++) out[qo + d] += p * values[vo + d];
      }
      for (let d = 0; d < D; d++) out[qo + d] /= l;
    }
  }
  return out;
}

const rows = [];
for (const shapeName of args.shapes.split(',')) {
  const shape = SHAPES[shapeName];
  const { headsQ: Nq, headsKv: Nkv, headDim: D } = shape;
  for (const length of args.lengths.split(',').map(Number)) {
    const kvFloats = length * B * Nkv * D;
    const bytes = 2 * kvFloats * 4;
    const qHost = fill(B * Nq * D, 1);
    const kHost = fill(kvFloats, 2);
    const vHost = fill(kvFloats, 3);
    const q = runtime.upload(qHost, 'q');
    const keys = runtime.upload(kHost, 'keys');
    const values = runtime.upload(vHost, 'values');
    const out = runtime.acquire(B * Nq * D * 4, 'output', 'out');
    const positions = runtime.upload(Uint32Array.of(length - 1, length - 1), 'positions');
    const result = { shape: shapeName, ...shape, batch: B, length, variants: [] };

    const measured = []; // { kind, info, record }
    const held = [];
    // the ceiling: the best of a few streaming reads of the same bytes (keys, then values)
    const wg = 256;
    const n4 = kvFloats / 4;
    for (const unroll of [1, 4]) {
      for (const groups of new Set([4096, Math.max(1, Math.ceil(n4 / (wg * unroll)))])) {
        const threads = groups * wg;
        const perThread = Math.ceil(n4 / (threads * unroll));
        const stream = await runtime.pipeline(streamKernel, { workgroupSize: wg, unroll });
        const sums = runtime.acquire(threads * 4, 'intermediate', 'sums');
        held.push(sums);
        const params = STREAM_PARAMS.pack({ n4, per_thread: perThread });
        measured.push({ kind: 'stream', info: { unroll, groups }, record: () => {
          for (const src of [keys, values]) {
            runtime.dispatch({ label: 'stream', pipeline: stream, workgroups: [groups], bindGroups: [runtime.bindGroup(stream, 0, { 0: src, 1: sums, 2: runtime.uniform(params, 's') })] });
          }
        } });
      }
    }

    // first kernel
    {
      const options = splitKvOptions(D, Nq / Nkv, runtime.limits.maxComputeWorkgroupStorageSize);
      const { splits, keysPerSplit } = chooseSplits(length, Nkv, B, options.tileKeys, 256);
      const partials = runtime.acquire(B * Nq * splits * (D + 2) * 4, 'intermediate', 'partials');
      held.push(partials);
      const partial = await runtime.pipeline(partialKernel, options);
      const combine = await runtime.pipeline(combineKernel, { headDim: D });
      const decodeParams = DECODE_PARAMS.pack({ batch: B, start: length - 1, heads_q: Nq, heads_kv: Nkv, splits, keys_per_split: keysPerSplit, scale: 1 / Math.sqrt(D) });
      const combineParams = COMBINE_PARAMS.pack({ row_heads: B * Nq, splits });
      measured.push({ kind: 'v1', info: { workgroup: options.workgroupSize, splits }, record: () => {
        runtime.dispatch({ label: 'partial', pipeline: partial, workgroups: [Nkv, B, splits], bindGroups: [runtime.bindGroup(partial, 0, { 0: q, 1: keys, 2: values, 3: partials, 4: runtime.uniform(decodeParams, 'p') })] });
        runtime.dispatch({ label: 'combine', pipeline: combine, workgroups: [B * Nq, 1], bindGroups: [runtime.bindGroup(combine, 0, { 0: partials, 1: out, 2: runtime.uniform(combineParams, 'c') })] });
      } });
    }

    // second kernel: the runner's plan, then tile sizes x loads in flight; output checked against float64
    const ref = reference(qHost, kHost, vHost, { batch: B, length, ...shape });
    const plan = flashDecodePlan(runtime, D, Nq / Nkv, false, length, Nkv, B);
    const variants = [{ name: 'v2 plan', options: plan.options, splits: plan.splits }];
    for (const cap of [256, 128, 64]) {
      for (const unroll of [4, 8]) {
        const options = flashDecodeOptions(D, Nq / Nkv, false, runtime.limits, cap, unroll);
        if (!options || options.workgroupSize !== cap) continue;
        variants.push({ name: 'v2', options, splits: flashDecodeSplitsFor(options, length, Nkv, B) });
      }
    }
    for (const v of variants) {
      const call = { q, keys, values, positions, out, batch: B, tokens: 1, headsQ: Nq, headsKv: Nkv, qStride: Nq * D, scale: 1 / Math.sqrt(D), splits: v.splits };
      runtime.clear(out);
      await queueFlashDecode(runtime, v.options, call);
      const got = new Float32Array(await runtime.read(out, 0, B * Nq * D * 4));
      let maxErr = 0;
      for (let i = 0; i < got.length; i++) maxErr = Math.max(maxErr, Math.abs(got[i] - ref[i]));
      measured.push({ kind: v.name, info: { workgroup: v.options.workgroupSize, unroll: v.options.unroll, splits: v.splits, maxAbsError: maxErr }, record: () => queueFlashDecode(runtime, v.options, call) });
    }

    const times = await timeAll(measured.map((m) => m.record));
    let best;
    measured.forEach((m, i) => {
      const t = times[i];
      const us = t.gpuUs ?? t.wallUs;
      if (m.kind === 'stream') {
        if (!best || us < best.us) best = { us, wallUs: t.wallUs, ...m.info };
      } else result.variants.push({ kernel: m.kind, ...m.info, ...t });
    });
    for (const b of held) runtime.release(b);
    for (const b of [q, keys, values, out, positions]) runtime.release(b);
    await runtime.finish();
    runtime.trimPool();

    for (const v of result.variants) {
      const us = v.gpuUs ?? v.wallUs;
      const row = {
        bench: 'model-decode-attention',
        shape: shapeName, headsQ: Nq, headsKv: Nkv, headDim: D, batch: B, length,
        kernel: v.kernel, workgroup: v.workgroup, unroll: v.unroll, splits: v.splits,
        decodeUs: +us.toFixed(1), decodeWallUs: +v.wallUs.toFixed(1),
        decodeGBs: +(bytes / us / 1e3).toFixed(1),
        streamUs: +best.us.toFixed(1), streamGBs: +(bytes / best.us / 1e3).toFixed(1), stream: { unroll: best.unroll, groups: best.groups },
        fractionOfStream: +(best.us / us).toFixed(3),
        maxAbsError: v.maxAbsError,
        timing: v.gpuUs !== undefined ? 'GPU timestamps per dispatch, summed per repetition, median of 3 rounds' : 'wall clock',
        adapter: `${runtime.adapter.description} (${runtime.adapter.backend})`,
        date: new Date().toISOString(),
        commit: commit(),
      };
      rows.push(row);
      appendRow(args.out, row);
    }
  }
}
const header = ['shape', 'B', 'length', 'kernel', 'WG', 'unroll', 'splits', 'decode us', 'wall us', 'decode GB/s', 'stream GB/s', 'fraction', 'max err'];
const table = rows.map((r) => [r.shape, r.batch, r.length, r.kernel, r.workgroup, r.unroll ?? '', r.splits, r.decodeUs, r.decodeWallUs, r.decodeGBs, r.streamGBs, r.fractionOfStream, r.maxAbsError?.toExponential(1) ?? ''].map(String));
console.log(`adapter: ${rows[0]?.adapter}; timing: ${rows[0]?.timing}`);
console.log(markdownTable(header, table));
process.exit(0);
