// Merges one GPU run of issue 13 (bench/gpu/variants.sh) into OUT/summary.md: our masks / block
// masks / score functions beside PyTorch's SDPA and FlexAttention, linear attention beside the
// einsum formulation, and the targets of the issue with their measured ratios.
//   node bench/variants/table.mjs OUT
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const out = process.argv[2] ?? 'out';
const read = (name) => (existsSync(join(out, name)) ? readFileSync(join(out, name), 'utf8').split('\n').filter(Boolean).map((l) => { try { return JSON.parse(l); } catch { return undefined; } }).filter(Boolean) : []);
const ours = read('masks-webgpu.jsonl');
const approx = read('approx-webgpu.jsonl');
const torch = read('torch.jsonl');
const t = (name) => torch.find((r) => r.case === name);
const o = (name) => ours.find((r) => r.case === name);
const fmt = (r) => (!r ? 'not run' : r.error ? `error: ${r.error.slice(0, 80)}` : `${r.ms.toFixed(3)} ms${r.tflops ? ` (${r.tflops.toFixed(0)} TFLOP/s)` : ''}`);
const lines = ['# Issue 13 on the GPU', '', `commit ${ours[0]?.commit ?? approx[0]?.commit ?? 'unknown'}`, '', '## Masks, block masks, score functions (B4 H32 S4096 D128 fp16)', '',
  '| case | ours | PyTorch |', '|---|---|---|'];
const pairs = [
  ['causal (dense)', 'sdpa flash, causal'],
  ['dense bool mask (causal 1024)', 'sdpa efficient, dense bool mask (causal 1024)'],
  ['dense bool mask (causal 1024) on the GPU, table found there', 'sdpa efficient, dense bool mask (causal 1024)'],
  ['dense bool mask (causal 1024), no block skip', ''],
  ['dense bool mask (causal 1024), portable tier', ''],
  ['window 1024 (options.window)', ''],
  ['block mask: sliding window 1024', 'flex sliding window 1024'],
  ['block mask: 8 documents of 512', 'flex 8 documents of 512'],
  ['causal + softcap 30 (option)', 'flex causal + softcap 30'],
  ['causal + softcap 30 (scoreMod)', 'flex causal + softcap 30'],
  ['causal + sinks (per head)', ''],
];
for (const [a, b] of pairs) lines.push(`| ${a} | ${fmt(o(a))} | ${b ? `${b}: ${fmt(t(b))}` : ''} |`);
lines.push('', 'PyTorch rows not matched above:', '', ...torch.filter((r) => !pairs.some(([, b]) => b === r.case)).map((r) => `- ${r.case}: ${fmt(r)}`), '');
lines.push('## Targets', '', '| target | measured | met |', '|---|---|---|');
for (const r of ours.filter((x) => x.target)) lines.push(`| ${r.target} | ${['f', 'ratio', 'bound', 'speedup', 'overhead'].filter((k) => r[k] !== undefined).map((k) => `${k} ${r[k].toFixed(3)}`).join(', ')} | ${r.met ? 'yes' : 'no'} |`);
const sdpa = t('sdpa efficient, dense bool mask (causal 1024)');
for (const [label, name] of [['CPU mask', 'dense bool mask (causal 1024)'], ['GPU mask', 'dense bool mask (causal 1024) on the GPU, table found there']]) {
  const dense = o(name);
  if (sdpa?.ms && dense?.ms) lines.push(`| dense bool mask ahead of SDPA efficient (same mask; ${label}, kernel time) | ours ${dense.ms.toFixed(3)} ms vs ${sdpa.ms.toFixed(3)} ms: ${(sdpa.ms / dense.ms).toFixed(2)}x | ${dense.ms < sdpa.ms ? 'yes' : 'no'} |`);
}
const lin = (causal) => approx.find((r) => r.part === 'speed' && r.variant === 'linear elu+1' && r.causal === causal && r.seq === 4096);
const einsum = t('linear attention elu+1 (einsum)');
lines.push('', '## Linear attention and Performer', '', `Linear attention at S 4096 (approx bench: B1 H8 D64; the issue's shape B4 H32 D128 is the PyTorch row): non-causal ${fmt(lin(false))}, causal ${fmt(lin(true))}; PyTorch einsum B4 H32 S4096 D128: ${fmt(einsum)}, chunked causal: ${fmt(t('linear attention elu+1, causal (chunked einsum)'))}.`, '',
  'Speed crossover and error plots: approx-*-webgpu.svg; tables: approx-webgpu.md, masks-webgpu.md.', '');
// the issue's shape itself (approx.mjs part 3): the targets of linear attention
const issue = (causal) => approx.find((r) => r.part === 'issue-shape' && r.causal === causal);
if (issue(false) || issue(true)) {
  const full = issue(false);
  const causal = issue(true);
  lines.push(`The issue's shape B4 H32 S4096 D128 fp16, ours: non-causal ${fmt(full)}, causal ${fmt(causal)}.`, '', '| target | measured | met |', '|---|---|---|');
  if (full?.ms && einsum?.ms) lines.push(`| linear attention (elu+1, non-causal) <= PyTorch einsum | ${full.ms.toFixed(3)} vs ${einsum.ms.toFixed(3)} ms | ${full.ms <= einsum.ms ? 'yes' : 'no'} |`);
  if (full?.ms && causal?.ms) lines.push(`| causal within 2x of non-causal | ${(causal.ms / full.ms).toFixed(2)}x | ${causal.ms <= 2 * full.ms ? 'yes' : 'no'} |`);
  lines.push('');
}
writeFileSync(join(out, 'summary.md'), lines.join('\n'));
console.log(lines.join('\n'));
