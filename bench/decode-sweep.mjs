#!/usr/bin/env node
// Where the decode op's time goes (issue 15's regression hunt): the split-KV kernel on one shape
// under plan overrides and cache layouts, every variant checked against float64 on sampled heads
// before it is timed (GPU timestamps, median of rounds), beside the streaming read of the same
// bytes. The layouts are the same cache through strides:
//   bhsd  [B, Nkv, L, D]   the op's contiguous cache (a KV head's rows adjacent)
//   sbhd  [L, B, Nkv, D]   the runner's cache before the decode op (a position's heads adjacent)
// Overrides: workgroup (keys per tile), unroll (value loads in flight), key-unroll (key chunks in
// flight), key-lanes (threads per key in the score phase), shared-weights (0/1), lane-reduce
// (workgroup/subgroup: how the key lanes sum), chunk (elements per load), splits (x the
// plan's, or =N). Times: GPU timestamps of the
// call's passes, and wall = reps calls queued in one submission / reps (the GPU's steady state
// when encoding keeps ahead of it).
//
//   node bench/decode-sweep.mjs [--shapes llama-8b:32768,qwen2-0.5b:32768] [--dtypes float16,float32]
//        [--layouts bhsd,sbhd] [--workgroups 256,128] [--unrolls 4] [--chunks plan] [--splits 1]
//        [--reps 30] [--out FILE.jsonl]
import { parseArgs } from 'node:util';
import { appendFileSync } from 'node:fs';
import { fromHalfBits } from '../dist/index.js';
import { getRuntime, defineKernel } from '../dist/engines/webgpu/runtime.js';
import { Profiler } from '../dist/profiler/index.js';
import { storeRow } from '../dist/ops/decode/index.js';
import { decodePlanDevice, planDecode, prepareDecode, queueAttentionDecode } from '../dist/ops/decode/webgpu/index.js';
import { splitKvUnsupported } from '../dist/ops/decode/webgpu/split-kv.wgsl.js';
import { STREAM_PARAMS, buildStreamRead } from '../dist/model/webgpu/kernels.wgsl.js';
import { queueHeater, warmGpu } from './gpu/gpu-timer.mjs';

const { values: args } = parseArgs({
  options: {
    shapes: { type: 'string', default: 'llama-8b:32768,llama-8b:4096,qwen2-0.5b:32768' },
    dtypes: { type: 'string', default: 'float16,float32' },
    layouts: { type: 'string', default: 'bhsd,sbhd' },
    workgroups: { type: 'string', default: 'plan' },
    unrolls: { type: 'string', default: 'plan' },
    chunks: { type: 'string', default: 'plan' },
    splits: { type: 'string', default: '1' },
    'key-unrolls': { type: 'string', default: 'plan' },
    'key-lanes': { type: 'string', default: 'plan' },
    'shared-weights': { type: 'string', default: 'plan' },
    'lane-reduce': { type: 'string', default: 'plan' },
    reps: { type: 'string', default: '30' },
    out: { type: 'string' },
  },
});
const SHAPES = { 'llama-8b': [32, 8, 128], 'qwen2-0.5b': [14, 2, 64], 'qwen-7b': [28, 4, 128], tiny: [4, 2, 32] };
const list = (s) => s.split(',').filter(Boolean);
const nums = (s) => list(s).map((x) => (x === 'plan' || x.startsWith('=') ? x : Number(x)));
const reps = Number(args.reps);
const runtime = await getRuntime();
const timestamps = runtime.features.has('timestamp-query');
console.log(`adapter: ${runtime.adapter.description} (${runtime.adapter.backend}); timestamps ${timestamps}`);

function rand(seed) {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s ^= s >>> 17; s ^= s << 5; return (s >>> 0) / 4294967296 - 0.5; };
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

async function wallUs(record) {
  const rounds = [];
  for (let round = 0; round < 3; round++) {
    const t1 = performance.now();
    for (let r = 0; r < reps; r++) await record();
    await runtime.finish();
    rounds.push(((performance.now() - t1) / reps) * 1000);
  }
  return median(rounds);
}

/** GPU us per call of each dispatch label in gpuUs()'s last timed round. */
let lastByKernel = {};
async function gpuUs(record) {
  await warmGpu(runtime, 300);
  const t0 = performance.now();
  while (performance.now() - t0 < 200) { for (let i = 0; i < 10; i++) await record(); await runtime.finish(); }
  const rounds = [];
  lastByKernel = {};
  for (let round = 0; round < 3; round++) {
    if (timestamps) {
      const profiler = new Profiler(runtime, { timing: 'gpu-timestamps' });
      await queueHeater(runtime); // the GPU at its working clock (gpu-timer.mjs)
      for (let r = 0; r < reps; r++) await record();
      await runtime.finish();
      profiler.stop();
      const report = await profiler.report();
      const kernels = report.kernels.filter((k) => k.label !== 'heater');
      rounds.push((kernels.reduce((s, k) => s + (k.gpuMs ?? 0), 0) / reps) * 1000);
      // per pass (partial, combine) of the last round, us per call
      lastByKernel = {};
      for (const k of kernels) lastByKernel[k.label] = +((lastByKernel[k.label] ?? 0) + ((k.gpuMs ?? 0) / reps) * 1000).toFixed(1);
    } else {
      const t1 = performance.now();
      for (let r = 0; r < reps; r++) await record();
      await runtime.finish();
      rounds.push(((performance.now() - t1) / reps) * 1000);
    }
  }
  return median(rounds);
}

const streamKernel = defineKernel('model-stream-read', buildStreamRead);
async function streamUs(bytes) {
  const n4 = Math.ceil(bytes / 16);
  const src = runtime.acquire(n4 * 16, 'input', 'stream source');
  let best = Infinity;
  for (const unroll of [1, 4]) {
    for (const groups of new Set([4096, Math.min(runtime.limits.maxComputeWorkgroupsPerDimension, Math.ceil(n4 / (256 * unroll)))])) {
      const pipeline = await runtime.pipeline(streamKernel, { workgroupSize: 256, unroll });
      const sums = runtime.acquire(groups * 256 * 4, 'intermediate', 'sums');
      const params = STREAM_PARAMS.pack({ n4, per_thread: Math.ceil(n4 / (groups * 256 * unroll)) });
      best = Math.min(best, await gpuUs(() => runtime.dispatch({ label: 'stream', pipeline, workgroups: [groups], bindGroups: [runtime.bindGroup(pipeline, 0, { 0: src, 1: sums, 2: runtime.uniform(params, 's') })] })));
      runtime.release(sums);
    }
  }
  runtime.release(src);
  return best;
}

for (const spec of list(args.shapes)) {
  const [name, lenText] = spec.split(':');
  const [Nq, Nkv, D] = SHAPES[name];
  const L = Number(lenText);
  const G = Nq / Nkv;
  const r = rand(11);
  const host = { k: Float32Array.from({ length: Nkv * L * D }, r), v: Float32Array.from({ length: Nkv * L * D }, r) };
  const q = Float32Array.from({ length: Nq * D }, () => 2 * r());
  for (const dtype of list(args.dtypes)) {
    // stored rows [Nkv, L, D] (host order), and what they read back as
    const stored = {};
    for (const which of ['k', 'v']) {
      const data = dtype === 'float32' ? new Float32Array(Nkv * L * D) : new Uint16Array(Nkv * L * D);
      for (let row = 0; row < Nkv * L; row++) storeRow(dtype, data, row * D, host[which], row * D, D, undefined, row);
      stored[which] = data;
    }
    const value = (data, i) => (dtype === 'float32' ? data[i] : fromHalfBits(data[i]));
    const scale = 1 / Math.sqrt(D);
    const sample = [0, Nq - 1];
    const ref = new Map();
    for (const h of sample) {
      const kv = Math.floor(h / G);
      const s = new Float64Array(L);
      let m = -Infinity;
      for (let j = 0; j < L; j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[h * D + d] * value(stored.k, (kv * L + j) * D + d);
        s[j] = dot * scale;
        m = Math.max(m, s[j]);
      }
      const o = new Float64Array(D);
      let l = 0;
      for (let j = 0; j < L; j++) { const p = Math.exp(s[j] - m); l += p; for (let d = 0; d < D; d++) o[d] += p * value(stored.v, (kv * L + j) * D + d); }
      ref.set(h, o.map((x) => x / l));
    }
    const bytes = 2 * Nkv * L * D * (dtype === 'float32' ? 4 : 2);
    const stream = await streamUs(bytes);
    for (const layout of list(args.layouts)) {
      // the same rows in this layout (B = 1): element (h, j, d) at h sh + j spos + d
      const [sh, spos] = layout === 'bhsd' ? [L * D, D] : [D, Nkv * D];
      const bufs = {};
      for (const which of ['k', 'v']) {
        const src = stored[which];
        const dst = new src.constructor(src.length);
        for (let h = 0; h < Nkv; h++) for (let j = 0; j < L; j++) dst.set(src.subarray((h * L + j) * D, (h * L + j + 1) * D), h * sh + j * spos);
        bufs[which] = runtime.createBuffer(dst.byteLength, `sweep ${which}`);
        runtime.write(bufs[which], 0, dst);
      }
      const qBuf = runtime.createBuffer(q.byteLength, 'sweep q');
      runtime.write(qBuf, 0, q);
      const meta = runtime.createBuffer(16, 'sweep meta');
      runtime.write(meta, 0, Uint32Array.of(L, 0, 0, 0));
      const out = runtime.createBuffer(Nq * D * 4, 'sweep out');
      const shape = { dimQK: D, dimV: D, group: G, headsKv: Nkv, batch: 1, tokens: 1, maxKeys: L, cache: dtype, io: 'float32', paged: false, sharedKV: false, append: false, rope: false, softcap: false, alibi: false, lse: false };
      const base = planDecode(shape, runtime.limits, undefined, decodePlanDevice(runtime));
      if (typeof base === 'string') throw new Error(base);
      const call = {
        batch: 1, tokens: 1, headsQ: Nq, headsKv: Nkv, q: { binding: qBuf, off: 0, sb: Nq * D, sh: D, si: D },
        keys: { binding: bufs.k, off: 0, sp: 0, sh, spos }, values: { binding: bufs.v, off: 0, sp: 0, sh, spos },
        pageSize: L, maxPages: 1, numPages: 1, meta: { binding: meta, lengthsAt: 0 },
        out: { binding: out, off: 0, sb: Nq * D, sh: D, si: D }, scale, softcap: 0, window: { left: Infinity, right: Infinity, align: 'bottom-right' },
      };
      for (const wg of nums(args.workgroups)) for (const unroll of nums(args.unrolls)) for (const ku of nums(args['key-unrolls'])) for (const lanes of nums(args['key-lanes'])) for (const sw of nums(args['shared-weights'])) for (const lr of list(args['lane-reduce'])) for (const chunk of nums(args.chunks)) for (const sx of nums(args.splits)) {
        const kernel = { ...base.kernel, workgroupSize: wg === 'plan' ? base.kernel.workgroupSize : wg, unroll: unroll === 'plan' ? base.kernel.unroll : unroll, chunk: chunk === 'plan' ? base.kernel.chunk : chunk };
        if (ku !== 'plan') kernel.keyUnroll = ku;
        if (lanes !== 'plan') kernel.keyLanes = lanes;
        if (sw !== 'plan') kernel.sharedWeights = sw === 1;
        if (lr !== 'plan') kernel.laneReduce = lr;
        if ((kernel.keyLanes ?? 1) < 2) delete kernel.laneReduce;
        const splits = typeof sx === 'string' && sx.startsWith('=') ? Number(sx.slice(1)) : Math.max(1, Math.round(base.splits * (sx === 'plan' ? 1 : sx)));
        const what = `${name} L${L} ${dtype} ${layout} wg ${kernel.workgroupSize} unroll ${kernel.unroll} keyUnroll ${kernel.keyUnroll ?? kernel.unroll} lanes ${kernel.keyLanes ?? 1}${kernel.laneReduce === 'subgroup' ? ' (subgroup)' : ''}${kernel.sharedWeights ? ' sharedWeights' : ''} chunk ${kernel.chunk} splits ${splits}`;
        const why = splitKvUnsupported(kernel);
        if (why) { console.log(`${what}: skipped (${why})`); continue; }
        const plan = { kernel: { ...kernel, direct: splits === 1 }, splits, grid: [base.grid[0], base.grid[1], splits], combine: splits > 1 };
        try {
          await prepareDecode(runtime, plan, false);
          await queueAttentionDecode(runtime, plan, call);
          const got = new Float32Array(await runtime.read(out, 0, Nq * D * 4));
          let err = 0, top = 0;
          for (const [h, row] of ref) for (let d = 0; d < D; d++) { const g = got[h * D + d]; err = Number.isFinite(g) ? Math.max(err, Math.abs(g - row[d])) : Infinity; top = Math.max(top, Math.abs(row[d])); }
          if (!(err / top < 1e-4)) { console.log(`${what}: WRONG (max error ${err / top})`); continue; }
          const us = await gpuUs(() => queueAttentionDecode(runtime, plan, call));
          const byKernel = lastByKernel;
          const wall = await wallUs(() => queueAttentionDecode(runtime, plan, call));
          const row = { bench: 'decode-sweep', shape: name, length: L, dtype, layout, ...kernel, splits, us: +us.toFixed(1), wallUs: +wall.toFixed(1), GBs: +(bytes / us / 1e3).toFixed(1), fractionOfStream: +(stream / us).toFixed(3), streamUs: +stream.toFixed(1), err: +(err / top).toExponential(2), byKernel, adapter: runtime.adapter.description };
          console.log(`${what}: ${row.us} us (wall ${row.wallUs}), ${row.GBs} GB/s = ${row.fractionOfStream} of stream (${row.streamUs} us) ${Object.entries(byKernel).map(([k, v]) => `${k} ${v}`).join(', ')}`);
          if (args.out) appendFileSync(args.out, JSON.stringify(row) + '\n');
        } catch (e) {
          console.log(`${what}: FAILED ${e.message}`);
        }
      }
      for (const b of [...Object.values(bufs), qBuf, meta, out]) b.destroy();
    }
  }
}
