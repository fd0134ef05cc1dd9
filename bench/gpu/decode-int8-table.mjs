#!/usr/bin/env node
// The summary of bench/gpu/decode-int8.sh: one row per (variant, length, cache) from each
// variant's decode.jsonl (bench/decode.mjs; rows there were checked against float64 before
// timing), with the kernel that ran (from the GPU passes' labels), its word size and int8's speed
// against the float16 cache on the pipelined kernel at the same length (the `general` variant's
// float16 row: issue 15 asks >= 1.6x at 32K keys).
//   node bench/gpu/decode-int8-table.mjs OUTDIR VARIANT...
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, ...variants] = process.argv.slice(2);
if (!dir || !variants.length) {
  console.error('usage: node bench/gpu/decode-int8-table.mjs OUTDIR VARIANT...');
  process.exit(2);
}
const rows = [];
for (const v of variants) {
  const file = join(dir, v, 'decode.jsonl');
  if (!existsSync(file)) {
    rows.push({ variant: v, missing: true });
    continue;
  }
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const r = JSON.parse(line);
    if (r.part === 'contiguous' || r.part === 'int8') rows.push({ variant: v, ...r });
  }
}
const us = (r) => r.gpuUs ?? r.steadyUs;
const kernelOf = (r) => {
  const labels = Object.keys(r.passes ?? {}).join(' ');
  if (/pipelined/.test(labels)) return 'pipelined';
  if (/split-KV/.test(labels)) return 'general';
  return r.pipelined ? 'pipelined?' : 'general?';
};
const wordOf = (r) => (kernelOf(r).startsWith('pipelined') ? `E${r.pipelined?.E ?? '?'} T${r.pipelined?.T ?? '?'} TK${r.pipelined?.TK ?? '?'}` : `chunk ${r.plan?.chunk ?? '?'}`);
const f16 = (r) => rows.find((x) => !x.missing && !x.error && x.cache === 'float16' && x.shape === r.shape && x.length === r.length && kernelOf(x).startsWith('pipelined'));
const header = ['variant', 'shape', 'L', 'cache', 'kernel', 'words', 'splits', 'gpu us', 'replay us', 'GB/s', 'of stream', 'vs f16 pipelined'];
const table = rows.map((r) => {
  if (r.missing) return [r.variant, '', '', '', '', '', '', 'no results', '', '', '', ''];
  if (r.error) return [r.variant, r.shape, r.length, r.cache, '', '', '', 'ERROR', '', '', '', r.error.slice(0, 60)];
  const base = f16(r);
  const kernel = kernelOf(r);
  const splits = kernel.startsWith('pipelined') ? r.pipelined?.splits : r.plan?.splits;
  return [r.variant, r.shape, r.length, r.cache, kernel, wordOf(r), splits ?? '', us(r), r.replayUs, r.GBs, r.fractionOfStream,
    base && r.cache === 'int8' ? `${(us(base) / us(r)).toFixed(2)}x` : ''];
});
const line = (cells) => `| ${cells.join(' | ')} |`;
console.log([line(header), line(header.map(() => '---')), ...table.map(line)].join('\n'));
const failed = rows.filter((r) => r.missing || r.error).length;
console.log(failed ? `${failed} variant row(s) missing or failed` : `${rows.length} rows, every one checked against float64 before timing`);
