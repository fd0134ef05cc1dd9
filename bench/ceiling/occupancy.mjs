// How many workgroups of a kind share an SM (issue 14 / 15): the decode's tensor-core tile took the
// same time at 1, 2, 4 or 8 workgroups per SM (session 14), as if only one ran at a time. This
// probe times kernels whose every warp runs one dependent chain (FMAs, or subgroup-matrix
// multiply-accumulates) at m x SMs workgroups of 128 invocations: while m workgroups fit on an SM
// at once their chains interleave and the time stays flat (up to the issue rate: 4 warps of a
// workgroup, one per scheduler); past the limit the time steps up by whole waves. So the first m
// whose time is ~2x m = 1 is one past the occupancy. Variants: workgroup memory (none / 46 KiB),
// subgroup matrices (none / one accumulator / eight), the matrix extension enabled but unused.
//   node bench/ceiling/occupancy.mjs [--sms 132] [--pads 8,16,...] [--smoke]
// Prints a table of GPU µs per dispatch (timestamps, best of 3, GPU warmed) and t(m) / t(1).
import { parseArgs } from 'node:util';
import { defineKernel, getRuntime } from '../../dist/engines/webgpu/runtime.js';
import { gpuTimeOf, warmGpu } from '../gpu/gpu-timer.mjs';
import { probe } from './occupancy-probe.mjs';

const { values: args } = parseArgs({ options: { sms: { type: 'string', default: '132' }, smoke: { type: 'boolean', default: false }, pads: { type: 'string' } } });
const runtime = await getRuntime();
const SMS = Number(args.sms);
const smoke = args.smoke;
const hasMatrix = runtime.features.has('chromium-experimental-subgroup-matrix');

const variants = [
  { name: 'FMA chain', matrices: 0, pad: 0 },
  { name: 'FMA chain, 46 KiB workgroup memory', matrices: 0, pad: 2944 },
  ...(hasMatrix ? [
    { name: 'FMA chain, matrix extension enabled', matrices: 0, pad: 0, extension: true },
    { name: 'MMA chain, 1 accumulator', matrices: 1, pad: 0 },
    { name: 'MMA chains, 8 accumulators', matrices: 8, pad: 0 },
    { name: 'MMA chain, 1 accumulator, 46 KiB', matrices: 1, pad: 2944 },
    { name: 'MMA chains, 8 accumulators, 24 KiB', matrices: 8, pad: 1536 },
  ] : []),
];
// --pads 8,16,24 (KiB): FMA chains with that much workgroup memory each (the SM's capacity from the steps)
if (args.pads) variants.splice(0, variants.length, ...args.pads.split(',').map((k) => ({ name: `FMA chain, ${k} KiB workgroup memory`, matrices: 0, pad: Number(k) * 64 })));
const kernel = defineKernel('occupancy-probe', probe);
const sink = runtime.createBuffer(8 * 256 * 4, 'probe sink');
const src = runtime.createBuffer(512 * 2, 'probe src');
runtime.write(src, 0, new Uint16Array(512).fill(0x2000)); // small f16 values: no overflow in the chains
const ms = smoke ? [1, 2] : [1, 2, 3, 4, 6, 8, 12, 16];
console.log(`adapter: ${runtime.adapter.vendor} ${runtime.adapter.architecture} ${runtime.adapter.description ?? ''}; SMs assumed ${SMS}; subgroup matrices ${hasMatrix}`);
console.log(`| variant | ${ms.map((m) => `${m}/SM µs`).join(' | ')} | ${ms.map((m) => `t(${m})/t(1)`).join(' | ')} | occupancy (first m at >= 1.6x, minus one) |`);
console.log(`|---|${ms.map(() => '---:').join('|')}|${ms.map(() => '---:').join('|')}|---:|`);
for (const v of variants) {
  if (v.pad * 16 > runtime.limits.maxComputeWorkgroupStorageSize) { console.log(`| ${v.name} | (workgroup memory over this adapter's ${runtime.limits.maxComputeWorkgroupStorageSize} bytes) |`); continue; }
  // iterations for ~200 us at one workgroup per SM (FMA ~4 clocks, MMA ~16-32 at ~1.9 GHz)
  const iterations = smoke ? 50 : v.matrices ? 6000 : 80000;
  const pipeline = await runtime.pipeline(kernel, { matrices: v.matrices, pad: v.pad, extension: !!v.extension, iterations });
  const us = [];
  for (const m of ms) {
    const bind = { 0: sink, ...(v.matrices ? { 1: src } : {}) };
    await warmGpu(runtime, smoke ? 0 : 100);
    let best = Infinity;
    for (let r = 0; r < 3; r++) {
      const t = await gpuTimeOf(runtime, async () => runtime.dispatch({ label: 'probe', pipeline, workgroups: [m * SMS], bindGroups: [runtime.bindGroup(pipeline, 0, bind)] }));
      best = Math.min(best, t.ms * 1000);
    }
    us.push(best);
  }
  const ratios = us.map((t) => t / us[0]);
  const step = ratios.findIndex((r) => r >= 1.6);
  const occupancy = step < 0 ? `>= ${ms[ms.length - 1]}` : String(ms[step - 1] ?? 0);
  console.log(`| ${v.name} | ${us.map((t) => t.toFixed(1)).join(' | ')} | ${ratios.map((r) => r.toFixed(2)).join(' | ')} | ${occupancy} |`);
}
console.log('done');
