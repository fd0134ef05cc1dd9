#!/usr/bin/env node
// GPU-machine checks and timings of the fused block's fast prefill pieces (issue 4): the tiled
// tensor-core GEMM (every tile in SGMAT_TILES, float32/float16 activations in and out) and the
// block's attention on the flash tiers (tensor-core "block source" configurations, portable f32),
// each checked against float64 before it is timed. Writes JSON lines to --out and prints tables.
//
//   source .gpu/env.sh && node bench/gpu/block-fast.mjs --out $OUT/block-fast.jsonl
// Parts: --parts gemm-check,gemm-time,block-check,flash-time (default all).
// The GEMM tile that is fastest on the Qwen-7B B 8 shapes is printed last as `best-gemm-tile <index>`.
import { appendFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AttentionBlock, Profiler, Tensor, referenceBlock, validateBlock } from '../../dist/index.js';
import { floatsToHalf, halfToFloats } from '../../dist/core/dtype.js';
import { getRuntime } from '../../dist/engines/webgpu/runtime.js';
import { queueLinear } from '../../dist/ops/gemm/webgpu/gemm.js';
import { SGMAT_TILES } from '../../dist/ops/gemm/webgpu/gemm-sgmat-tiled.wgsl.js';
import { SG_MATRIX_CONFIGS } from '../../dist/ops/attention/webgpu/tiers/sgmatrix.js';
import { parseTensorCoreTile } from '../../dist/ops/gemm/webgpu/linear-tensorcore.js';
import { randomBlockWeights, randomHidden } from '../../dist/block/random.js';
import { compare } from '../../dist/testing/index.js';
import { gpuTimeOf } from './gpu-timer.mjs';

const { values: args } = parseArgs({
  options: {
    out: { type: 'string', default: 'block-fast.jsonl' },
    parts: { type: 'string', default: 'gemm-check,gemm-time,block-check,flash-time' },
    reps: { type: 'string', default: '5' },
  },
});
const parts = new Set(args.parts.split(','));
const log = (...a) => console.log(...a);
const rt = await getRuntime();
const adapter = rt.adapter;
const date = new Date().toISOString();
log(`adapter: ${adapter.description}; features ${[...rt.features].join(', ')}`);
const emit = (row) => appendFileSync(args.out, JSON.stringify({ ...row, adapter: adapter.description, date }) + '\n');
const STORAGE = 0x80 | 0x08 | 0x04; // STORAGE | COPY_DST | COPY_SRC
let failures = 0;

function upload(data) {
  const buffer = rt.createBuffer(Math.max(16, Math.ceil(data.byteLength / 16) * 16), 'bench', STORAGE);
  rt.write(buffer, 0, data);
  return buffer;
}
const roundHalf = (x) => halfToFloats(floatsToHalf(x));
const tileName = (t) => (t === 'simple' ? 'simple 64x64' : `${t.kind === 'tensorcore' ? 'tensorcore ' : ''}${t.sgM * t.fragM * 16}x${t.sgN * t.fragN * (t.shape === '16x8x16' ? 8 : 16)} sg${t.sgM}x${t.sgN} k${t.k} s${t.stages}${t.kind === 'tensorcore' ? ` ${t.layout}${t.prefetch ? ' pf' : ''}${t.raster > 1 ? ` r${t.raster}` : ''}` : ''}`);
// the ceiling study's candidate (FUSEDATTN_GEMM_TILE, bench/ceiling/best-tile.mjs) is checked and timed beside the tiles
const STUDY_TILE = process.env.FUSEDATTN_GEMM_TILE ? parseTensorCoreTile(process.env.FUSEDATTN_GEMM_TILE) : undefined;
const TILES = STUDY_TILE ? [...SGMAT_TILES, STUDY_TILE] : SGMAT_TILES;

// ---------------------------------------------------------------- GEMM: tiled kernel vs float64
if (parts.has('gemm-check')) {
  const M = 77, K = 136;
  const cases = [];
  for (const tile of TILES) {
    cases.push({ tile, a: 'float32', out: 'float16', bias: true, N: 200 });
    cases.push({ tile, a: 'float16', out: 'float32', bias: false, N: 200 });
  }
  cases.push({ tile: SGMAT_TILES[0], a: 'float32', out: 'float32', bias: true, N: 196 });
  cases.push({ tile: SGMAT_TILES[0], a: 'float16', out: 'float16', bias: true, N: 196 });
  if (STUDY_TILE) {
    cases.push({ tile: STUDY_TILE, a: 'float32', out: 'float32', bias: true, N: 196 });
    cases.push({ tile: STUDY_TILE, a: 'float16', out: 'float16', bias: true, N: 196 });
    cases.push({ tile: STUDY_TILE, a: 'float16', out: 'float16', bias: false, N: 256, rows: 256 }); // every dimension divides: no edge checks
  }
  cases.push({ tile: 'simple', a: 'float32', out: 'float32', bias: true, N: 200, rows: 30 });
  for (const c of cases) {
    const rows = c.rows ?? M;
    const x = roundHalf(randomHidden(rows, K, 11)); // exact in f16, so the kernel's rounding costs nothing
    const w = floatsToHalf(randomHidden(c.N, K, 12).map((v) => v / Math.sqrt(K)));
    const b = randomHidden(1, c.N, 13).map((v) => v * 0.5);
    const wf = halfToFloats(w);
    const ref = new Float64Array(rows * c.N);
    for (let m = 0; m < rows; m++) for (let n = 0; n < c.N; n++) {
      let s = c.bias ? b[n] : 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * wf[n * K + k];
      ref[m * c.N + n] = s;
    }
    const linear = { weight: upload(w), dtype: 'float16', outDim: c.N, inDim: K, bias: c.bias ? upload(b) : undefined };
    const xb = upload(c.a === 'float16' ? floatsToHalf(x) : x);
    const outBytes = rows * c.N * (c.out === 'float16' ? 2 : 4);
    const out = rt.createBuffer(Math.ceil(outBytes / 16) * 16, 'gemm out', STORAGE);
    let message;
    try {
      await queueLinear(rt, 'subgroup-matrix', linear, { x: xb, xDType: c.a, rows, out, outDType: c.out, label: 'gemm-check' }, c.tile);
      const bytes = await rt.read(out, 0, outBytes);
      const got = c.out === 'float16' ? halfToFloats(new Uint16Array(bytes)) : new Float32Array(bytes);
      const r = compare(got, ref);
      const limit = c.out === 'float16' ? 2e-3 : 2e-5;
      const pass = r.badIndex < 0 && r.relError < limit;
      if (!pass) failures++;
      message = `${pass ? 'PASS' : 'FAIL'} rel err ${r.relError.toExponential(2)} (limit ${limit})`;
      emit({ kind: 'gemm-check', tile: tileName(c.tile), a: c.a, out: c.out, bias: c.bias, M: rows, N: c.N, K, pass, relError: r.relError });
    } catch (e) {
      failures++;
      message = `FAIL ${e.message.split('\n')[0]}`;
      emit({ kind: 'gemm-check', tile: tileName(c.tile), a: c.a, out: c.out, M: rows, N: c.N, K, pass: false, error: e.message });
    }
    log(`gemm-check ${tileName(c.tile)} x ${c.a} y ${c.out} bias ${c.bias} ${rows}x${c.N}x${K}: ${message}`);
    for (const buf of [linear.weight, linear.bias, xb, out]) buf?.destroy();
  }
}

// ---------------------------------------------------------------- GEMM: time per tile, Qwen-7B shapes
let bestTile = 0;
if (parts.has('gemm-time')) {
  const K = 4096;
  const shapes = [
    { name: 'qkv B8', M: 8192, N: 12288, a: 'float32', out: 'float16', bias: true },
    { name: 'o B8', M: 8192, N: 4096, a: 'float16', out: 'float32', bias: false },
    { name: 'qkv B1', M: 1024, N: 12288, a: 'float32', out: 'float16', bias: true },
    { name: 'proj f32 B8', M: 8192, N: 4096, a: 'float32', out: 'float32', bias: false },
  ];
  const kernels = [...TILES.map((t, i) => ({ tile: t, index: i })), { tile: 'simple', index: -1 }];
  const totals = new Map();
  const table = [];
  for (const s of shapes) {
    const w = upload(floatsToHalf(randomHidden(s.N, K, 21).map((v) => v / 64)));
    const bias = s.bias ? upload(randomHidden(1, s.N, 22)) : undefined;
    const x = upload(s.a === 'float16' ? floatsToHalf(randomHidden(s.M, K, 23)) : randomHidden(s.M, K, 23));
    const out = rt.createBuffer(s.M * s.N * (s.out === 'float16' ? 2 : 4), 'gemm out', STORAGE);
    const linear = { weight: w, dtype: 'float16', outDim: s.N, inDim: K, bias };
    for (const k of kernels) {
      if (k.tile === 'simple' && (s.a === 'float16' || s.out === 'float16')) continue;
      const run = () => queueLinear(rt, 'subgroup-matrix', linear, { x, xDType: s.a, rows: s.M, out, outDType: s.out, label: 'gemm-time' }, k.tile);
      try {
        await run(); // compile + warm
        const spin = performance.now() + 300;
        while (performance.now() < spin) { await run(); await rt.finish(); }
        let best = Infinity;
        for (let round = 0; round < 3; round++) {
          const reps = Number(args.reps);
          const { ms } = await gpuTimeOf(rt, async () => { for (let i = 0; i < reps; i++) await run(); });
          best = Math.min(best, ms / reps);
        }
        const tflops = (2 * s.M * s.N * K) / (best * 1e9);
        table.push(`${s.name.padEnd(12)} ${tileName(k.tile).padEnd(24)} ${best.toFixed(3).padStart(8)} ms ${tflops.toFixed(1).padStart(6)} TFLOP/s`);
        emit({ kind: 'gemm-time', shape: s.name, M: s.M, N: s.N, K, a: s.a, out: s.out, tile: tileName(k.tile), index: k.index, ms: best, tflops });
        if (s.name.endsWith('B8') && k.index >= 0) totals.set(k.index, (totals.get(k.index) ?? 0) + best);
      } catch (e) {
        table.push(`${s.name.padEnd(12)} ${tileName(k.tile).padEnd(24)} FAILED ${e.message.split('\n')[0]}`);
      }
    }
    for (const buf of [w, bias, x, out]) buf?.destroy();
  }
  log(table.join('\n'));
  const ranked = [...totals.entries()].filter(([i]) => i >= 0).sort((p, q) => p[1] - q[1]);
  if (ranked.length) bestTile = ranked[0][0];
  log(`gemm tiles by qkv+o B8 time: ${ranked.map(([i, ms]) => `${i}:${ms.toFixed(2)}`).join(' ')}`);
}

// ---------------------------------------------------------------- block on the flash tiers vs float64
const CONFIGS = SG_MATRIX_CONFIGS.filter((c) => c.smemVec4);
if (parts.has('block-check')) {
  const shapes = [
    { name: 'MHA D128 B2 S77 BSH', config: { hidden: 256, heads: 2, kvHeads: 2, headDim: 128, rope: { theta: 10000 } }, B: 2, S: 77, layout: 'BSH', oBias: true },
    { name: 'GQA 14/2 D64 B2 S50 SBH', config: { hidden: 128, heads: 14, kvHeads: 2, headDim: 64, rope: { theta: 1e6 } }, B: 2, S: 50, layout: 'SBH' },
    { name: 'GQA 4/2 D64 B1 S130 start 100 (no cache)', config: { hidden: 64, heads: 4, kvHeads: 2, headDim: 64, rope: { theta: 1e6, factor: 4 } }, B: 1, S: 130, layout: 'BSH', start: 100 },
  ];
  const variants = [
    ...CONFIGS.map((flashConfig, i) => ({ name: `flash config ${i}`, options: { flashConfig } })),
    ...SGMAT_TILES.slice(1).map((gemmKernel, i) => ({ name: `gemm tile ${i + 1}`, options: { gemmKernel } })),
    { name: 'portable gemm (flash-portable)', options: { gemm: 'portable' }, f32: true },
  ];
  for (const s of shapes) {
    const w16 = randomBlockWeights(s.config, 31, { dtype: 'float16', oBias: s.oBias });
    const spec = validateBlock(s.config, w16);
    const x = randomHidden(s.B * s.S, s.config.hidden, 32);
    const ref = referenceBlock(spec, { x, layout: s.layout, batch: s.B, seq: s.S, start: s.start ?? 0 });
    const shape = s.layout === 'BSH' ? [s.B, s.S, s.config.hidden] : [s.S, s.B, s.config.hidden];
    for (const v of (s === shapes[0] ? variants : variants.slice(0, 2).concat(variants.at(-1)))) {
      let message;
      try {
        const block = await AttentionBlock.create(s.config, w16, { backend: 'webgpu', ...v.options });
        const r = await block.forward({ data: x, shape }, { layout: s.layout, start: s.start ?? 0 });
        const attention = block.gpu.attentionName({ seq: s.S }, false);
        const c = compare(r.out.toFloat32(), ref.out);
        const limit = 1e-2;
        const pass = c.badIndex < 0 && c.relError < limit && r.stats.dispatches === 3;
        if (!pass) failures++;
        message = `${pass ? 'PASS' : 'FAIL'} ${attention} gemm ${block.gpu.tier}, rel err ${c.relError.toExponential(2)}, ${r.stats.kernels.join(' ')}`;
        emit({ kind: 'block-check', shape: s.name, variant: v.name, attention, pass, relError: c.relError, kernels: r.stats.kernels });
        block.destroy();
      } catch (e) {
        failures++;
        message = `FAIL ${e.message.split('\n')[0]}`;
        emit({ kind: 'block-check', shape: s.name, variant: v.name, pass: false, error: e.message });
      }
      log(`block-check ${s.name}, ${v.name}: ${message}`);
    }
  }

  // KV cache: prefill 13 -> chunk 60 (reads the cache) -> decode 1, outputs and cache rows vs float64
  const config = { hidden: 64, heads: 4, kvHeads: 2, headDim: 64, rope: { theta: 10000 } };
  const w16 = randomBlockWeights(config, 41, { dtype: 'float16', oBias: true });
  const spec = validateBlock(config, w16);
  for (const v of [{ name: 'flash config 0', options: {} }, { name: 'flash config 1', options: { flashConfig: CONFIGS[1] } }]) {
    const block = await AttentionBlock.create(config, w16, { backend: 'webgpu', ...v.options });
    const B = 2, capacity = 96, kvd = 128;
    const keys = new Float32Array(capacity * B * kvd), values = new Float32Array(capacity * B * kvd);
    const refKeys = new Float32Array(capacity * B * kvd), refValues = new Float32Array(capacity * B * kvd);
    let start = 0;
    const errors = [];
    let pass = true;
    for (const [step, seq] of [13, 60, 1].entries()) {
      const x = randomHidden(B * seq, config.hidden, 50 + step);
      const ref = referenceBlock(spec, { x, layout: 'SBH', batch: B, seq, start, cacheKeys: refKeys, cacheValues: refValues });
      const r = await block.forward({ data: x, shape: [seq, B, config.hidden] }, {
        layout: 'SBH', start, cache: { keys: Tensor.fromData(keys, [capacity, B, kvd]), values: Tensor.fromData(values, [capacity, B, kvd]) },
      });
      const at = start * B * kvd;
      refKeys.set(Float32Array.from(ref.keys), at);
      refValues.set(Float32Array.from(ref.values), at);
      for (const [what, got, want] of [['out', r.out.toFloat32(), ref.out], ['keys', keys.subarray(at, at + seq * B * kvd), ref.keys], ['values', values.subarray(at, at + seq * B * kvd), ref.values]]) {
        const c = compare(got, want);
        errors.push(`${what}@${step} ${c.relError.toExponential(1)}`);
        if (c.badIndex >= 0 || c.relError > 1e-2) pass = false;
      }
      start += seq;
    }
    if (!pass) failures++;
    emit({ kind: 'block-check', shape: 'KV cache 13 -> 60 -> 1, GQA 4/2 D64 B2', variant: v.name, pass, errors });
    log(`block-check KV cache 13 -> 60 -> 1 (${v.name}): ${pass ? 'PASS' : 'FAIL'} ${errors.join(', ')}`);
    block.destroy();
  }
}

// ---------------------------------------------------------------- block attention kernel time per flash config
if (parts.has('flash-time')) {
  const QWEN_7B = { hidden: 4096, heads: 32, kvHeads: 32, headDim: 128, rope: { theta: 10000 }, maxPositions: 1025 };
  const QWEN_05B = { hidden: 896, heads: 14, kvHeads: 2, headDim: 64, rope: { theta: 1e6 }, maxPositions: 1025 };
  for (const [name, config, B, S] of [['qwen-7b B8 S1024', QWEN_7B, 8, 1024], ['qwen-7b B1 S1024', QWEN_7B, 1, 1024], ['qwen2-0.5b B1 S512', QWEN_05B, 1, 512]]) {
    const w16 = randomBlockWeights(config, 1, { dtype: 'float16' });
    const x = randomHidden(B * S, config.hidden, 2);
    const xb = upload(x);
    const xt = Tensor.fromGpuBuffer({ device: rt.device, buffer: xb, byteOffset: 0 }, [B, S, config.hidden], 'float32');
    const line = [];
    for (const [label, options] of [...CONFIGS.map((c, i) => [`sgm cfg ${i}`, { flashConfig: c }]), ['portable', { gemm: 'portable' }], ['own tiled', { attentionKernel: 'tiled', gemm: 'portable' }]]) {
      try {
        const block = await AttentionBlock.create(config, w16, { backend: 'webgpu', ...options });
        for (let i = 0; i < 2; i++) (await block.forward(xt)).out.gpu.buffer.destroy();
        let best = Infinity;
        let gpuMs;
        for (let round = 0; round < 3; round++) {
          const profiler = new Profiler(rt);
          const r = await profiler.span('fused', () => block.forward(xt));
          profiler.stop();
          r.out.gpu.buffer.destroy();
          const report = await profiler.report();
          const k = report.spans.find((sp) => sp.label === 'fused')?.kernels.find((kk) => kk.label === 'block-attention');
          if (k?.gpuMs !== undefined && k.gpuMs < best) { best = k.gpuMs; gpuMs = report.spans.find((sp) => sp.label === 'fused').gpuMs; }
        }
        const flops = 4 * B * config.heads * S * S * config.headDim / 2;
        line.push(`${label} ${best.toFixed(3)} ms (${(flops / best / 1e9).toFixed(1)} TFLOP/s; block ${gpuMs?.toFixed(2)} ms)`);
        emit({ kind: 'flash-time', shape: name, variant: label, attentionMs: best, blockGpuMs: gpuMs, tflops: flops / best / 1e9 });
        block.destroy();
      } catch (e) {
        line.push(`${label} FAILED ${e.message.split('\n')[0]}`);
      }
    }
    log(`flash-time ${name}: ${line.join('; ')}`);
    xb.destroy();
  }
}

log(`failures: ${failures}`);
log(`best-gemm-tile ${bestTile}`);
process.exit(0);
