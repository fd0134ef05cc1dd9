// Merges the JSON lines of one benchmark run (bench-gpu.mjs rows, torch_sdpa.py rows) into the
// markdown table of BENCHMARKS.md: per shape, every implementation with ms, TFLOP/s, speed relative
// to PyTorch's FlashAttention-2 and cuDNN backends and to ONNX Runtime, and errors.
// Usage: node bench/gpu/table.mjs file.jsonl [more.jsonl ...]
import { readFileSync } from 'node:fs';

const rows = process.argv.slice(2).flatMap((f) => readFileSync(f, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)));
const shapes = JSON.parse(readFileSync(new URL('./shapes.json', import.meta.url), 'utf8'));
const flopsOf = (s) => (4 * s.batch * s.headsQ * s.seq * s.seq * ((s.dimQK + (s.dimV ?? s.dimQK)) / 2)) / (s.causal ? 2 : 1);
const fmt = (x, d = 2) => (x === undefined || Number.isNaN(x) ? '' : x >= 100 ? x.toFixed(0) : x.toFixed(d));
const exp = (x) => (x === undefined ? '' : x === Infinity ? 'NaN!' : x.toExponential(1));

const lines = ['| shape | implementation | ms | TFLOP/s | × FA2 | × cuDNN | ours ÷ this | err vs torch (rel) | err vs f64 (naive f16) |', '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'];
for (const [name, s] of Object.entries(shapes)) {
  const torch = Object.fromEntries(rows.filter((r) => r.kind === 'torch' && r.shape === name && r.ms).map((r) => [r.backend, r.ms]));
  const ours = rows.filter((r) => r.kind === 'bench' && r.shape === name);
  const best = ours.filter((r) => r.impl.startsWith('fusedattn') && r.ms).sort((a, b) => a.ms - b.ms)[0];
  const bestRobust = ours.filter((r) => r.impl.startsWith('fusedattn') && !r.impl.includes('robustness off') && r.ms).sort((a, b) => a.ms - b.ms)[0];
  const all = [
    ...Object.entries(torch).map(([backend, ms]) => ({ impl: `PyTorch SDPA ${backend}`, ms })),
    ...ours,
  ];
  for (const r of all) {
    if (!r.ms && !r.error) continue;
    const tflops = r.ms ? flopsOf(s) / (r.ms * 1e9) : undefined;
    const ratio = (base) => (r.ms && base ? fmt(base / r.ms) : '');
    // "ours ÷ this": how many times faster our best robust run is than this row (for ORT and naive)
    const oursOver = r.ms && bestRobust && !r.impl.startsWith('fusedattn') && !r.impl.startsWith('PyTorch') ? `${fmt(r.ms / bestRobust.ms, 1)}×` : '';
    const err = r.errVsTorch !== undefined ? exp(r.errVsTorch) : '';
    const f64 = r.err !== undefined ? `${exp(r.err)} (${exp(r.naiveErr)})` : '';
    const text = r.error ? `— ${r.error.slice(0, 90)}` : '';
    lines.push(`| ${name} | ${r.impl}${r.note ? ` (${r.note})` : ''}${r.includesCopies ? ' (incl. copies)' : ''} | ${r.ms ? fmt(r.ms, 3) : text} | ${fmt(tflops, 1)} | ${ratio(torch.flash)} | ${ratio(torch.cudnn)} | ${oursOver} | ${err} | ${f64} |`);
  }
  if (best) lines.push(`| ${name} | **best fusedattn: ${best.impl}** | ${fmt(best.ms, 3)} | ${fmt(flopsOf(s) / (best.ms * 1e9), 1)} | ${torch.flash ? fmt(torch.flash / best.ms) : ''} | ${torch.cudnn ? fmt(torch.cudnn / best.ms) : ''} | | | |`);
}
console.log(lines.join('\n'));
