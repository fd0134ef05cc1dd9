#!/usr/bin/env node
// fusedattn's CPU backend against ONNX Runtime's CPU MultiHeadAttention (com.microsoft contrib
// op, onnxruntime-node) on the same machine, same shapes, same process, interleaved runs.
//
//   npm run bench:cpu                  (installs bench/ deps on first use, builds nothing: run `npm run build` first)
//   node bench/cpu-vs-ort.mjs --quick  (S 512 only)
//
// Inputs are seeded normal floats in BSH layout ([B, S, N*D], ORT's layout); both results are
// checked against each other before timing. GQA: ORT's MultiHeadAttention has no KV-head groups, so
// it gets K/V repeated to Nq heads (what a GQA model exported with MHA does); with causal we also
// time ORT's GroupQueryAttention op, its native GQA kernel. Writes JSON lines to
// bench/results/cpu-vs-ort.jsonl and prints a markdown table.
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const quick = process.argv.includes('--quick');
const reps = Number(process.env.BENCH_REPS ?? 5);

if (!existsSync(join(here, 'node_modules', 'onnxruntime-node'))) {
  console.log('[bench] installing onnxruntime-node into bench/node_modules (its CUDA download is skipped)...');
  const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', npm_config_onnxruntime_node_install: 'skip' };
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: here, stdio: 'inherit', env });
  if (r.status !== 0) throw new Error('npm ci in bench/ failed');
}
const ort = (await import(join(here, 'node_modules', 'onnxruntime-node', 'dist', 'index.js'))).default;
const { multiHeadAttentionModel, groupQueryAttentionModel } = await import('./onnx-model.mjs');
const { attention, Tensor } = await import(join(root, 'dist', 'index.js'));
const { normal, uniform, randomFloats } = await import(join(root, 'dist', 'testing', 'index.js'));
const { cpuEngine } = await import(join(root, 'dist', 'ops', 'cpu-engine.js'));

const threads = os.availableParallelism();
const engine = await cpuEngine();
const commit = (() => {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
})();
const machine = {
  cpu: os.cpus()[0]?.model ?? 'unknown',
  threads,
  node: process.version,
  ort: ort.env.versions?.node ?? 'unknown',
  fusedattn: engine.describe(),
  commit,
  date: new Date().toISOString(),
};

/** Fraction of CPU time the rest of the machine used over ~0.3 s (other processes skew timings). */
function busyElsewhere() {
  const read = () => readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  try {
    const a = read();
    const until = Date.now() + 300;
    while (Date.now() < until);
    const b = read();
    const d = b.map((x, i) => x - a[i]);
    const total = d.reduce((s, x) => s + x, 0);
    const idle = d[3] + d[4];
    // this process spun one core on purpose: subtract it
    return Math.max(0, (total - idle) / total - 1 / threads);
  } catch {
    return NaN;
  }
}

/** Waits (up to BENCH_WAIT_S seconds, default 120) for other processes to leave the cores alone. */
function waitForQuiet() {
  const limit = Date.now() + 1000 * Number(process.env.BENCH_WAIT_S ?? 120);
  let busy = busyElsewhere();
  while (busy > 0.1 && Date.now() < limit) {
    spawnSync('sleep', ['1']);
    busy = busyElsewhere();
  }
  return busy;
}

const CASES = [
  ...[512, 1024, 2048].flatMap((seq) => [false, true].map((causal) => ({ batch: 1, heads: 32, kvHeads: 32, dim: 128, seq, causal }))),
  ...[false, true].map((causal) => ({ batch: 1, heads: 32, kvHeads: 8, dim: 64, seq: 2048, causal })),
].filter((c) => !quick || c.seq === 512);

const repeatHeads = (data, batch, seq, kvHeads, group, dim) => {
  const out = new Float32Array(batch * seq * kvHeads * group * dim);
  for (let t = 0; t < batch * seq; t++) {
    for (let h = 0; h < kvHeads * group; h++) {
      const src = (t * kvHeads + Math.floor(h / group)) * dim;
      out.set(data.subarray(src, src + dim), (t * kvHeads * group + h) * dim);
    }
  }
  return out;
};

function maxAbsDiff(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function time(fn) {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

const rows = [];
mkdirSync(join(here, 'results'), { recursive: true });
const jsonl = join(here, 'results', 'cpu-vs-ort.jsonl');
for (const c of CASES) {
  const { batch, heads, kvHeads, dim, seq, causal } = c;
  const group = heads / kvHeads;
  const rand = normal(uniform(seq * 31 + heads));
  const q = randomFloats(batch * seq * heads * dim, rand);
  const k = randomFloats(batch * seq * kvHeads * dim, rand);
  const v = randomFloats(batch * seq * kvHeads * dim, rand);
  const scale = 1 / Math.sqrt(dim);
  const kFull = group > 1 ? repeatHeads(k, batch, seq, kvHeads, group, dim) : k;
  const vFull = group > 1 ? repeatHeads(v, batch, seq, kvHeads, group, dim) : v;
  const ortTensor = (data, n) => new ort.Tensor('float32', data, [batch, seq, n * dim]);
  const sessionOptions = { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', extra: { session: { intra_op: { allow_spinning: process.env.ORT_SPIN ?? '0' } } } };
  const mha = await ort.InferenceSession.create(multiHeadAttentionModel({ heads, dim, causal, scale }), sessionOptions);
  const mhaFeeds = { query: ortTensor(q, heads), key: ortTensor(kFull, heads), value: ortTensor(vFull, heads) };
  const contenders = [['ORT MultiHeadAttention', () => mha.run(mhaFeeds).then((r) => r.output.data)]];
  if (group > 1 && causal) {
    const gqa = await ort.InferenceSession.create(groupQueryAttentionModel({ heads, kvHeads, dim, scale }), sessionOptions);
    const feeds = {
      query: ortTensor(q, heads), key: ortTensor(k, kvHeads), value: ortTensor(v, kvHeads),
      seqlens_k: new ort.Tensor('int32', Int32Array.from({ length: batch }, () => seq - 1), [batch]),
      total_sequence_length: new ort.Tensor('int32', Int32Array.of(seq), []),
    };
    contenders.push(['ORT GroupQueryAttention', () => gqa.run(feeds).then((r) => r.output.data)]);
  }
  const [tq, tk, tv] = [[q, heads], [k, kvHeads], [v, kvHeads]].map(([d, n]) => Tensor.fromData(d, [batch, seq, n * dim]));
  const options = { layout: 'BSH', heads, kvHeads, causal, scale, backend: 'cpu' };
  contenders.push(['fusedattn cpu', () => attention(tq, tk, tv, options).then((r) => r.out.data)]);

  // same answer first (warm-up run of each)
  const outputs = [];
  for (const [, run] of contenders) outputs.push(await run());
  const diffs = outputs.slice(0, -1).map((o) => maxAbsDiff(o, outputs[outputs.length - 1]));
  const times = contenders.map(() => []);
  const busy = [];
  for (let r = 0; r < reps; r++) {
    busy.push(waitForQuiet());
    for (const [i, [, run]] of contenders.entries()) times[i].push(await time(run));
  }
  const flops = 4 * batch * heads * dim * seq * seq * (causal ? (seq + 1) / (2 * seq) : 1);
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const shape = `B${batch} Nq${heads}/${kvHeads} S${seq} D${dim}${causal ? ' causal' : ''}`;
  const ours = times[times.length - 1];
  for (const [i, [name]] of contenders.entries()) {
    const record = {
      bench: 'cpu-vs-ort', shape, ...c, impl: name, msMin: Math.min(...times[i]), msMedian: median(times[i]), ms: times[i],
      gflops: flops / Math.min(...times[i]) / 1e6, maxAbsDiffVsOurs: i < diffs.length ? diffs[i] : 0,
      busyElsewhere: Math.max(...busy), machine,
    };
    appendFileSync(jsonl, `${JSON.stringify(record)}\n`);
    rows.push({ shape, name, min: Math.min(...times[i]), median: median(times[i]), gflops: record.gflops, speed: i < times.length - 1 ? Math.min(...times[i]) / Math.min(...ours) : 1, diff: record.maxAbsDiffVsOurs, busy: Math.max(...busy) });
  }
  console.error(`[bench] ${shape} done`);
}

console.log(`\n${machine.cpu}, ${threads} threads, Node ${machine.node}, onnxruntime-node ${machine.ort}, commit ${commit}, ${machine.date}`);
console.log(`fusedattn: ${machine.fusedattn}\n`);
console.log('| shape | implementation | min ms | median ms | GFLOP/s | ours vs it (speed ratio) | max abs diff vs ours | other load |');
console.log('|---|---|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const ratio = r.name === 'fusedattn cpu' ? '' : `${r.speed.toFixed(2)}×`;
  console.log(`| ${r.shape} | ${r.name} | ${r.min.toFixed(1)} | ${r.median.toFixed(1)} | ${r.gflops.toFixed(1)} | ${ratio} | ${r.diff.toExponential(1)} | ${(r.busy * 100).toFixed(0)}% |`);
}
process.exit(0);
