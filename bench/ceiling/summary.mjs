#!/usr/bin/env node
// The ceiling study's tables (issue 14) from one run's files: every checked-and-timed GEMM variant
// per Dawn toggle set against cuBLAS, what each option is worth against the parity row, and the
// bounds of the best variant — tensor-core issue rate, workgroup-memory (shared) traffic, L2
// traffic, registers — from the measured time, the variant's geometry, the SPIR-V opcode counts
// and (where the driver's cache could be read) its machine code.
//   node bench/ceiling/summary.mjs DIR [--clock-ghz 1.98] [--sms 132]
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: opts, positionals } = parseArgs({ allowPositionals: true, options: { 'clock-ghz': { type: 'string', default: '1.98' }, sms: { type: 'string' } } });
const dir = positionals[0] ?? 'ceiling-out';
const lines = (f) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)) : []);
const gemm = lines('gemm.jsonl');
const cublas = lines('cublas.jsonl');
const spirv = lines('spirv.jsonl');
const sass = lines('sass.jsonl');
const env = cublas.find((r) => r.kind === 'cublas-env');
const sms = Number(opts.sms ?? env?.sms ?? 132);
const clock = Number(opts['clock-ghz']) * 1e9;
const f = (x, d = 1) => (x === undefined || x === null || Number.isNaN(x) ? '' : Number(x).toFixed(d));
const out = [];
const say = (s = '') => out.push(s);

const cub = cublas.find((r) => r.kind === 'cublas' && r.dtype === 'fp16' && r.layout.includes('nt') && r.tflops);
const cubNN = cublas.find((r) => r.kind === 'cublas' && r.dtype === 'fp16' && r.layout.includes('nn') && r.tflops);
const cubBf = cublas.find((r) => r.kind === 'cublas' && r.dtype === 'bf16' && r.layout.includes('nt') && r.tflops);
const adapters = gemm.filter((r) => r.kind === 'adapter');
const size = adapters[0]?.size ?? 8192;
say(`## GEMM ceiling study, ${size}³ f16 (bench/ceiling/run.sh)`);
say();
if (adapters[0]) say(`Adapter: ${adapters[0].vendor} ${adapters[0].architecture} ${adapters[0].description}, ${adapters[0].date?.slice(0, 10)}, commit ${adapters[0].commit ?? '?'}; matrices: ${(adapters[0].subgroupMatrixConfigs ?? []).map((c) => `${c.componentType}→${c.resultComponentType} ${c.M}x${c.N}x${c.K}`).join(', ')}.`);
say(`cuBLAS (torch.matmul, same run): fp16 A·Wᵀ ${f(cub?.ms, 3)} ms = ${f(cub?.tflops)} TFLOP/s, fp16 A·B ${f(cubNN?.tflops)}, bf16 ${f(cubBf?.tflops)}${env ? ` (${env.device}, torch ${env.torch})` : ' (no PyTorch rows)'}.`);
say();

const results = gemm.filter((r) => r.kind === 'result');
const tags = [...new Set(adapters.map((a) => a.tag))];
say('| toggle set | Dawn toggles added | variants checked / timed | best variant | TFLOP/s | × cuBLAS | parity row TFLOP/s |');
say('| --- | --- | ---: | --- | ---: | ---: | ---: |');
const defaults = new Set(['allow_unsafe_apis', 'vulkan_enable_f16_on_nvidia']);
for (const tag of tags) {
  const a = adapters.find((x) => x.tag === tag);
  const rs = results.filter((r) => r.tag === tag);
  const timed = rs.filter((r) => r.tflops && r.impl === 'tensorcore').sort((x, y) => y.tflops - x.tflops);
  const parity = rs.find((r) => r.question?.startsWith('parity: the block') || r.question?.includes('parity: the block'));
  say(`| ${tag} | ${(a.enable ?? []).filter((t) => !defaults.has(t)).join(', ') || '—'}${(a.disable ?? []).filter((t) => t !== 'timestamp_quantization').map((t) => ` −${t}`).join('')} | ${rs.filter((r) => r.check).length} / ${timed.length} | ${timed[0]?.name ?? ''} | ${f(timed[0]?.tflops)} | ${cub && timed[0] ? f(timed[0].tflops / cub.tflops, 2) : ''} | ${f(parity?.tflops)} |`);
}
say();

for (const tag of tags) {
  const rs = results.filter((r) => r.tag === tag);
  const parity = rs.find((r) => r.question?.includes('parity: the block'))?.tflops;
  say(`### ${tag}: every variant (fastest first; "vs parity" = TFLOP/s over the block's tile in the same process)`);
  say();
  say('| variant | question | ms | TFLOP/s | vs parity | err vs f64 | workgroup KiB | acc regs | shared B/FLOP | note |');
  say('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  const sorted = [...rs].sort((x, y) => (y.tflops ?? -1) - (x.tflops ?? -1));
  for (const r of sorted) {
    const note = r.skipped ? `skipped: ${r.skipped}` : r.error ? `error: ${r.error.slice(0, 80)}` : r.check && !r.check.pass ? `WRONG: rel ${r.check.rel.toExponential(1)}, ${r.check.unwritten} unwritten` : '';
    say(`| ${r.name} | ${r.question ?? ''} | ${f(r.ms, 3)} | ${f(r.tflops)} | ${r.tflops && parity ? f(r.tflops / parity, 2) : ''} | ${r.check ? r.check.rel.toExponential(1) : ''} | ${r.geometry ? f(r.geometry.workgroupBytes / 1024) : ''} | ${r.geometry ? f(r.geometry.accRegisters, 0) : ''} | ${r.geometry ? f(r.geometry.smemBytesPerFlop, 4) : ''} | ${note} |`);
  }
  say();
}

// bounds of the best variant of the first tag (the default one) and of the overall best
const best = results.filter((r) => r.tflops && r.impl === 'tensorcore').sort((x, y) => y.tflops - x.tflops)[0];
if (best) {
  const g = best.geometry;
  const flopsPerClkSm = (best.tflops * 1e12) / (sms * clock);
  const [tm, tn] = g.tile;
  const l2Bytes = 2 * size ** 3 * (1 / tm + 1 / tn); // every workgroup reads its A rows and B columns once per K
  say(`### What bounds the best variant (${best.name}, ${best.tag}, ${f(best.tflops)} TFLOP/s)`);
  say();
  say(`Assumed: ${sms} SMs at ${opts['clock-ghz']} GHz (the H200's boost clock; the run's clock was not read).`);
  say(`- tensor-core issue: ${f(flopsPerClkSm, 0)} FLOP per SM-clock = ${f(flopsPerClkSm / 4096, 2)} m16n8k16 MMAs per SM-clock (dense f16 peak 4096 FLOP/SM-clock = 1 per clock; cuBLAS ${cub ? f((cub.tflops * 1e12) / (sms * clock), 0) : '?'}).`);
  say(`- workgroup (shared) memory read by matrix loads: ${f(g.smemBytesPerFlop * flopsPerClkSm, 1)} B per SM-clock (hardware: 128 B per SM-clock).`);
  say(`- L2 → SM traffic of the staging loads: ${f(l2Bytes / 1e9, 1)} GB per GEMM = ${f(l2Bytes / (best.ms * 1e-3) / 1e12, 2)} TB/s.`);
  say(`- registers: ${f(g.accRegisters, 0)} accumulator + ${f(g.operandRegisters, 0)} operand + ${f(g.prefetchRegisters, 0)} prefetch 32-bit registers per invocation (estimate); ${g.threads} invocations per workgroup, ${f(g.workgroupBytes / 1024)} KiB of workgroup memory → at most ${Math.min(Math.floor(228 / Math.max(1, g.workgroupBytes / 1024)), Math.floor(2048 / g.threads))} workgroups per SM by shared memory and threads.`);
  say();
}
if (spirv.length) {
  say('### SPIR-V the driver gets (Dawn dump_shaders; opcode counts per module)');
  say();
  say('| # | toggle set | module | TFLOP/s | instructions | matrix loads | MMAs | matrix stores | barriers | OpSelect | clamps (UMin/…) | loops |');
  say('| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of spirv) {
    const s = r.stats;
    say(`| ${r.index} | ${r.tag} | ${r.name} | ${f(r.tflops)} | ${s.total} | ${s.OpCooperativeMatrixLoadKHR} | ${s.OpCooperativeMatrixMulAddKHR} | ${s.OpCooperativeMatrixStoreKHR} | ${s.OpControlBarrier} | ${s.OpSelect} | ${s.clamps} | ${s.OpLoopMerge} |`);
  }
  say();
}
if (sass.length) {
  say('### Machine code from the driver\'s shader cache (bench/ceiling/sass.py; best effort)');
  say();
  say('| # | toggle set | module | registers | spills (local B) | shared B | HMMA | LDSM | LDS | LDG | BAR | SEL | note |');
  say('| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const r of sass) {
    const o = r.ops ?? {};
    say(`| ${r.index ?? ''} | ${r.tag ?? ''} | ${r.name ?? ''} | ${r.reg ?? ''} | ${r.local ?? ''} | ${r.shared ?? ''} | ${o.HMMA ?? ''} | ${o.LDSM ?? ''} | ${o.LDS ?? ''} | ${o.LDG ?? ''} | ${o.BAR ?? ''} | ${o.SEL ?? ''} | ${r.error ?? ''} |`);
  }
  say();
}
console.log(out.join('\n'));
