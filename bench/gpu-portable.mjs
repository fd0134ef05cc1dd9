// Benchmark of the portable WebGPU tier (f32 WGSL flash forward) and the naive 3-kernel WebGPU path,
// on whatever adapter is here (meant for the lent H100/H200 over Dawn's Vulkan backend).
//
//   node bench/gpu-portable.mjs [--verify] [--time] [--tiles A,B,...] [--quick] [--out FILE.jsonl] [--tag TEXT]
//
// --smoke   (with --time) the shapes shrunk to seconds on a software adapter such as llvmpipe.
// --verify  runs the shared SUITE through attention() and naiveAttention() on this adapter and checks
//           every case against the float64 reference (the test suite's pass rules).
// --time    times the benchmark shapes: GPU-resident inputs (uploaded once), GPU time per call from
//           timestamp queries put on each dispatch's compute pass through the GpuRuntime observer
//           hook (wall time to queue completion when the adapter has no timestamp-query), median
//           of the repetitions; a few output rows of each shape are checked against float64.
// Each result is one JSON line (stdout and --out); bench/gpu-portable-table.mjs makes the table.
import { appendFileSync } from 'node:fs';
import { attention, naiveAttention, referenceAttention, validateAttention, Tensor, gpuAdapterInfo } from '../dist/index.js';
import { SUITE, caseName, makeCase, checkF32, checkLowPrecision } from '../dist/testing/index.js';
import { getRuntime } from '../dist/engines/webgpu/runtime.js';
import { runFlash, chooseTile, flashUnsupported, quadLoadsFit } from '../dist/ops/attention/webgpu/portable/flash.js';
import { runNaive, naiveUnsupported } from '../dist/ops/attention/webgpu/naive/naive.js';
import { keyRange } from '../dist/ops/attention/problem.js';

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const value = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const outFile = value('--out', undefined);
const tag = value('--tag', 'default');

/** Tile variants timed (threads per workgroup, query rows, keys per K/V tile). */
const TILES = {
  A: { threads: 128, rows: 32, keys: 32 },
  B: { threads: 64, rows: 16, keys: 32 },
  C: { threads: 256, rows: 32, keys: 32 },
  D: { threads: 256, rows: 64, keys: 16 },
  E: { threads: 128, rows: 16, keys: 32 },
  F: { threads: 256, rows: 32, keys: 16 },
  G: { threads: 128, rows: 32, keys: 16 },
  H: { threads: 512, rows: 32, keys: 32 },
};
const tileNames = value('--tiles', Object.keys(TILES).join(',')).split(',');

/** The shapes of issue 3's table (f32 here), plus what the naive path can hold. */
const SHAPES = [
  { name: 'B4 H32 S4096 D128', batch: 4, headsQ: 32, seq: 4096, dimQK: 128 },
  { name: 'B4 H32 S4096 D128 causal', batch: 4, headsQ: 32, seq: 4096, dimQK: 128, causal: true },
  { name: 'B1 H32 S1024 D128 causal', batch: 1, headsQ: 32, seq: 1024, dimQK: 128, causal: true },
  { name: 'MLA B2 H16 S4096 192/128 causal', batch: 2, headsQ: 16, seq: 4096, dimQK: 192, dimV: 128, causal: true },
  { name: 'B4 H32 S1024 D64', batch: 4, headsQ: 32, seq: 1024, dimQK: 64 },
  { name: 'GQA B4 H32/8 S4096 D128 causal', batch: 4, headsQ: 32, headsKv: 8, seq: 4096, dimQK: 128, causal: true },
];

function emit(record) {
  const line = JSON.stringify({ tag, ...record });
  console.log(line);
  if (outFile) appendFileSync(outFile, line + '\n');
}

const rt = await getRuntime();
const adapter = await gpuAdapterInfo();
emit({ kind: 'adapter', vendor: adapter.vendor, architecture: adapter.architecture, device: adapter.device, description: adapter.description,
  backend: adapter.backend, features: adapter.features, limits: adapter.limits, toggles: process.env.GPU_DAWN_TOGGLES ?? '' });

async function verify() {
  let failures = 0;
  for (const [index, c] of SUITE.entries()) {
    const { q, k, v, options } = makeCase(c, 1234 + index);
    const problem = validateAttention(q, k, v, options);
    const ref = referenceAttention(problem);
    const naive16 = problem.dtype === 'float16' ? referenceAttention(problem, 'float16') : undefined;
    for (const [path, fn] of [['flash', attention], ['naive', naiveAttention]]) {
      let message;
      try {
        const r = await fn(q, k, v, { ...options, backend: 'webgpu' });
        const out = r.out.toFloat32();
        message = naive16 ? checkLowPrecision('out', out, naive16.out, ref.out) : checkF32('out', out, ref.out);
        if (!message && c.returnLse) message = checkF32('lse', r.lse.toFloat32(), ref.lse, naive16 ? 1e-3 : 1e-5);
      } catch (e) {
        message = `threw ${e.name}: ${e.message}`;
      }
      if (message) failures++;
      emit({ kind: 'verify', path, case: caseName(c), ok: !message, message });
    }
  }
  emit({ kind: 'verify-summary', cases: SUITE.length, failures });
}

/** xorshift32 -> uniform in [-sqrt(3), sqrt(3)) (variance 1): fast enough for 10^8 values. */
function fill(n, seed) {
  const a = new Float32Array(n);
  let x = seed >>> 0 || 1;
  const scale = Math.sqrt(3) * 2 / 4294967296;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    a[i] = x * scale - Math.sqrt(3);
  }
  return a;
}

function gpuTensor(data, shape) {
  const buffer = rt.createBuffer(data.byteLength, 'bench input');
  rt.write(buffer, 0, data);
  return Tensor.fromGpuBuffer({ device: rt.device, buffer, byteOffset: 0 }, shape, 'float32');
}

/**
 * GPU time of each dispatch, through the runtime's observer hooks: every dispatch gets its own
 * compute pass with timestamp writes, resolved into a 256-byte slot of a buffer before finish().
 */
class DispatchTimer {
  constructor(capacity = 16) {
    this.capacity = capacity;
    this.querySet = rt.device.createQuerySet({ type: 'timestamp', count: 2 * capacity });
    this.resolved = rt.device.createBuffer({ size: 256 * capacity, usage: 0x200 | 0x4 }); // QUERY_RESOLVE | COPY_SRC
    this.used = 0;
    this.detach = rt.observe({
      timestampWrites: () => {
        if (this.used >= this.capacity) return undefined;
        const i = this.used++;
        return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
      },
      beforeFinish: (encoder) => {
        for (let i = this.resolvedUpTo ?? 0; i < this.used; i++) encoder.resolveQuerySet(this.querySet, 2 * i, 2, this.resolved, 256 * i);
        this.resolvedUpTo = this.used;
      },
    });
  }
  /** Nanoseconds of each dispatch since the last collect(). */
  async collect() {
    const n = this.used;
    this.used = 0;
    this.resolvedUpTo = 0;
    if (n === 0) return [];
    const bytes = new BigUint64Array(await rt.read(this.resolved, 0, 256 * n));
    return Array.from({ length: n }, (_, i) => Number(bytes[32 * i + 1] - bytes[32 * i]));
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function time() {
  let timer;
  try {
    if (rt.features.has('timestamp-query')) timer = new DispatchTimer();
  } catch (e) {
    emit({ kind: 'note', message: `timestamp queries unavailable, timing wall clock: ${e.message}` });
  }
  // --smoke: the same shapes shrunk, to try the script on a software adapter
  const shapes = flag('--smoke') ? SHAPES.map((x) => ({ ...x, name: `${x.name} (smoke: B1 S160 H4)`, batch: 1, seq: 160, headsQ: 4, headsKv: x.headsKv ? 1 : undefined }))
    : flag('--quick') ? SHAPES.filter((x) => x.seq <= 1024) : SHAPES;
  for (const s of shapes) {
    const headsKv = s.headsKv ?? s.headsQ;
    const dimV = s.dimV ?? s.dimQK;
    const t0 = performance.now();
    const data = { q: fill(s.batch * s.headsQ * s.seq * s.dimQK, 1), k: fill(s.batch * headsKv * s.seq * s.dimQK, 2), v: fill(s.batch * headsKv * s.seq * dimV, 3) };
    const q = gpuTensor(data.q, [s.batch, s.headsQ, s.seq, s.dimQK]);
    const k = gpuTensor(data.k, [s.batch, headsKv, s.seq, s.dimQK]);
    const v = gpuTensor(data.v, [s.batch, headsKv, s.seq, dimV]);
    const options = { causal: s.causal ?? false };
    const problem = validateAttention(q, k, v, options);
    const flops = 4 * s.batch * s.headsQ * s.seq * s.seq * ((s.dimQK + dimV) / 2) * (s.causal ? 0.5 : 1);
    const setupMs = performance.now() - t0;
    const reps = s.seq >= 4096 ? 3 : 7;

    const measure = async (label, call, extra) => {
      const gpu = [];
      const wall = [];
      let last;
      for (let r = 0; r <= reps; r++) {
        const start = performance.now();
        const result = await call();
        await rt.finish();
        const w = performance.now() - start;
        let ns;
        if (timer) {
          try {
            ns = (await timer.collect()).reduce((a, b) => a + b, 0);
          } catch (e) {
            emit({ kind: 'note', message: `timestamp readback failed, timing wall clock from here: ${e.message}` });
            timer.detach();
            timer = undefined;
          }
        }
        if (r > 0) { wall.push(w); if (ns !== undefined) gpu.push(ns / 1e6); } // r = 0: warm-up (compiles the pipeline)
        if (last) { last.out.gpu.buffer.destroy(); }
        last = result;
      }
      const ms = gpu.length ? median(gpu) : median(wall);
      const check = await checkRows(problem, last.out, data);
      last.out.gpu.buffer.destroy();
      emit({ kind: 'time', shape: s.name, path: label, ...extra, ms, clock: gpu.length ? 'gpu-timestamps' : 'wall', wallMs: median(wall),
        tflops: flops / (ms * 1e-3) / 1e12, reps, launches: last.stats?.launches, intermediateBytes: last.stats?.intermediateBytes, ...check });
    };

    for (const name of tileNames) {
      const tile = TILES[name];
      const reason = flashUnsupported(problem, rt.limits, tile);
      if (reason) {
        emit({ kind: 'time', shape: s.name, path: 'flash-portable', tile: name, unsupported: reason });
        continue;
      }
      await measure('flash-portable', () => runFlash(rt, problem, { tile }), { tile: name, tileShape: tile, quadLoads: quadLoadsFit(problem, rt.limits.minStorageBufferOffsetAlignment) });
    }
    const naiveReason = naiveUnsupported(problem, rt.limits);
    if (naiveReason) emit({ kind: 'time', shape: s.name, path: 'naive-webgpu', unsupported: naiveReason });
    else await measure('naive-webgpu', () => runNaive(rt, problem), {});
    emit({ kind: 'shape-done', shape: s.name, setupMs, defaultTile: chooseTile(problem, rt.limits) });
    for (const t of [q, k, v]) t.gpu.buffer.destroy();
  }
  timer?.detach();
}

/** float64 attention of a few sampled output rows (b, h, i), compared with the GPU result. */
async function checkRows(p, out, { q: qData, k: kData, v: vData }) {
  const group = p.headsQ / p.headsKv;
  let maxErr = 0;
  let maxRef = 0;
  const rows = 6;
  for (let n = 0; n < rows; n++) {
    const b = n % p.batch;
    const h = (n * 7) % p.headsQ;
    const i = n === 0 ? 0 : n === 1 ? p.seqQ - 1 : Math.floor((n * 0.173 % 1) * p.seqQ);
    const hk = Math.floor(h / group);
    const [lo, hi] = keyRange(p, b, i);
    const qBase = ((b * p.headsQ + h) * p.seqQ + i) * p.dimQK;
    const scores = [];
    let max = -Infinity;
    for (let j = lo; j <= hi; j++) {
      const kBase = ((b * p.headsKv + hk) * p.seqK + j) * p.dimQK;
      let s = 0;
      for (let d = 0; d < p.dimQK; d++) s += qData[qBase + d] * kData[kBase + d];
      s *= p.scale;
      scores.push(s);
      if (s > max) max = s;
    }
    const rowStart = ((b * p.headsQ + h) * p.seqQ + i) * p.dimV;
    const got = new Float32Array(await rt.read(out.gpu.buffer, 4 * rowStart, 4 * p.dimV));
    const e = scores.map((s) => Math.exp(s - max));
    const sum = e.reduce((a, x) => a + x, 0);
    for (let d = 0; d < p.dimV; d++) {
      let acc = 0;
      for (let j = lo; j <= hi; j++) acc += e[j - lo] * vData[((b * p.headsKv + hk) * p.seqK + j) * p.dimV + d];
      const ref = acc / sum;
      const g = got[d];
      maxErr = Math.max(maxErr, Math.abs(g - ref));
      maxRef = Math.max(maxRef, Math.abs(ref));
    }
  }
  return { checkedRows: rows, maxAbsErrorVsFloat64: maxErr, maxAbsRef: maxRef, rowsOk: maxErr <= 1e-5 * Math.max(1, maxRef) };
}

if (flag('--verify')) await verify();
if (flag('--time')) await time();
