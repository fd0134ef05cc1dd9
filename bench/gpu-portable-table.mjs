// Turns the JSON lines of bench/gpu-portable.mjs (one or more tags) and bench/gpu-portable-torch.py
// into the markdown table of BENCHMARKS.md.
//   node bench/gpu-portable-table.mjs ours.jsonl torch.jsonl [more.jsonl ...]
import { readFileSync } from 'node:fs';

const records = process.argv.slice(2).flatMap((file) =>
  readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)));

const ours = records.filter((r) => r.kind === 'time' && r.ms !== undefined);
const torch = records.filter((r) => r.kind === 'torch-time');
const shapes = [...new Set([...ours.map((r) => r.shape), ...torch.map((r) => r.shape)])];
const tags = [...new Set(ours.map((r) => r.tag))];
const fmt = (ms) => (ms === undefined ? '—' : ms < 1 ? ms.toFixed(3) : ms < 10 ? ms.toFixed(2) : ms.toFixed(1));
const tf = (r) => (r?.tflops === undefined ? '' : ` (${r.tflops.toFixed(1)})`);
const torchRow = (shape, backend, dtype) => torch.find((r) => r.shape === shape && r.backend === backend && r.dtype === dtype && r.ms !== undefined);
const best = (rows) => rows.reduce((a, b) => (a === undefined || b.ms < a.ms ? b : a), undefined);

const header = ['shape', ...tags.map((t) => `ours portable f32 [${t}] ms (TFLOP/s), tile`), 'naive WebGPU f32 ms',
  'torch fp32 math', 'torch fp32 efficient', 'torch fp16 flash', 'torch fp16 cuDNN', 'torch fp16 math',
  `ours [${tags[0]}] / torch fp32 math (speed)`, `ours [${tags[0]}] / torch fp16 flash (speed)`];
console.log(`| ${header.join(' | ')} |`);
console.log(`| ${header.map(() => '---').join(' | ')} |`);
for (const shape of shapes) {
  const flash = tags.map((t) => best(ours.filter((r) => r.shape === shape && r.tag === t && r.path === 'flash-portable')));
  const naive = best(ours.filter((r) => r.shape === shape && r.path === 'naive-webgpu' && r.tag === tags[0]));
  const naiveCell = naive ? `${fmt(naive.ms)}${tf(naive)}` : records.find((r) => r.shape === shape && r.path === 'naive-webgpu' && r.unsupported) ? 'too big (S×S > binding limit)' : '—';
  const m32 = torchRow(shape, 'math', 'float32');
  const f16 = torchRow(shape, 'flash', 'float16');
  const ourBest = flash[0]; // ratios for the first tag (the default configuration)
  const ratio = (t) => (t && ourBest ? (t.ms / ourBest.ms).toFixed(2) : '—');
  const cells = [
    shape,
    ...flash.map((r) => (r ? `${fmt(r.ms)}${tf(r)}, ${r.tile}${r.rowsOk === false ? ' ROWS WRONG' : ''}` : '—')),
    naiveCell,
    ...[m32, torchRow(shape, 'efficient', 'float32'), f16, torchRow(shape, 'cudnn', 'float16'), torchRow(shape, 'math', 'float16')]
      .map((r) => (r ? `${fmt(r.ms)}${tf(r)}` : 'n/a')),
    ratio(m32),
    ratio(f16),
  ];
  console.log(`| ${cells.join(' | ')} |`);
}
const tiles = [...new Set(ours.filter((r) => r.tileShape).map((r) => `${r.tile} = ${r.tileShape.threads} threads, ${r.tileShape.rows} rows, ${r.tileShape.keys} keys`))];
console.log(`\nTiles: ${tiles.join('; ')}.`);
const verify = records.filter((r) => r.kind === 'verify-summary');
for (const v of verify) console.log(`SUITE on this adapter [${v.tag}]: ${v.cases} cases x (fused, naive), ${v.failures} failures.`);
