#!/usr/bin/env node
// What the driver gets (issue 14): the SPIR-V that Dawn/Tint generates for the study's best GEMM
// variants and for the attention kernel, under each Dawn toggle set, with an opcode count per
// module (matrix loads, MMAs, barriers, the selects and clamps robustness adds). Each module is
// compiled in a child process with Dawn's dump_shaders toggle (its log is the SPIR-V disassembly)
// and with the NVIDIA driver's shader disk cache pointed at a folder of its own, so
// bench/ceiling/sass.py can look for the machine code the driver built from it.
//
//   node bench/ceiling/dump-spirv.mjs --out DIR --top 3 --tags robust,norobust [--attention]
//   (reads DIR/gemm.jsonl; writes DIR/spirv/<n>.txt, DIR/nvcache/<n>/, DIR/spirv.jsonl)
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    out: { type: 'string', default: 'ceiling-out' },
    top: { type: 'string', default: '3' },
    tags: { type: 'string', default: 'robust' },
    attention: { type: 'boolean', default: false },
    one: { type: 'string' },
    enable: { type: 'string', default: '' },
    disable: { type: 'string', default: '' },
  },
});

if (args.one) {
  // child: compile one module with dump_shaders; Dawn prints the dumps through its log
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const job = JSON.parse(args.one);
  let code;
  if (job.kind === 'attention') code = (await import('../../dist/ops/attention/webgpu/tiers/flash-sgmatrix-wgsl.js')).buildFlashSgMatrix(job.options);
  else code = (await import('../../dist/ops/gemm/webgpu/gemm-tensorcore.wgsl.js')).buildTensorCoreGemm(job.options);
  const enable = [...(process.env.GPU_DAWN_TOGGLES ?? 'allow_unsafe_apis,vulkan_enable_f16_on_nvidia').split(','), 'dump_shaders', 'disable_symbol_renaming', ...args.enable.split(',')].filter(Boolean);
  const disable = ['timestamp_quantization', ...args.disable.split(',')].filter(Boolean);
  const gpu = create([`enable-dawn-features=${enable.join(',')}`, `disable-dawn-features=${disable.join(',')}`]);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  const device = await adapter.requestDevice({
    requiredFeatures: ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'].filter((f) => adapter.features.has(f)),
    requiredLimits: { maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize, maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup, maxComputeWorkgroupSizeX: adapter.limits.maxComputeWorkgroupSizeX },
  });
  const module = device.createShaderModule({ code });
  await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  await new Promise((r) => setTimeout(r, 500)); // let the driver's cache writer finish
  if (gpu) process.exit(0);
}

const OPS = ['OpCooperativeMatrixLoadKHR', 'OpCooperativeMatrixMulAddKHR', 'OpCooperativeMatrixStoreKHR', 'OpControlBarrier', 'OpSelect', 'OpExtInst',
  'OpLoopMerge', 'OpBranchConditional', 'OpULessThan', 'OpULessThanEqual', 'OpUDiv', 'OpUMod', 'OpIMul', 'OpIAdd', 'OpLoad', 'OpStore', 'OpAccessChain', 'OpAtomicOr'];

/** Opcode histogram of the SPIR-V disassembly in a Dawn dump (lines after "Dumped SPIR-V" or any "%x = Op..." lines). */
function spirvStats(text) {
  const counts = {};
  let total = 0;
  for (const m of text.matchAll(/\b(Op[A-Z][A-Za-z0-9]*)\b/g)) {
    counts[m[1]] = (counts[m[1]] ?? 0) + 1;
    total++;
  }
  const key = Object.fromEntries(OPS.map((op) => [op, counts[op] ?? 0]));
  const clamps = (text.match(/\b(UMin|UClamp|SClamp|SMin|NMin|FClamp)\b/g) ?? []).length;
  return { total, clamps, ...key };
}

const out = args.out;
mkdirSync(join(out, 'spirv'), { recursive: true });
const rows = existsSync(join(out, 'gemm.jsonl')) ? readFileSync(join(out, 'gemm.jsonl'), 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)) : [];
const adapters = Object.fromEntries(rows.filter((r) => r.kind === 'adapter').map((r) => [r.tag, r]));
const jobs = [];
for (const tag of args.tags.split(',')) {
  const best = rows.filter((r) => r.tag === tag && r.kind === 'result' && r.impl === 'tensorcore' && r.tflops).sort((a, b) => b.tflops - a.tflops);
  const seen = new Set();
  for (const r of best.filter((x) => !seen.has(x.name) && seen.add(x.name)).slice(0, Number(args.top))) jobs.push({ kind: 'gemm', tag, name: r.name, tflops: r.tflops, options: r.options });
  // the parity row too, so every tag has the same module to compare
  const parity = rows.find((r) => r.tag === tag && r.kind === 'result' && r.question?.startsWith('parity: the block'));
  if (parity && !seen.has(parity.name)) jobs.push({ kind: 'gemm', tag, name: parity.name, tflops: parity.tflops, options: parity.options });
}
if (args.attention) {
  const o = { dimQK: 128, dimRope: 0, dimV: 128, subgroups: 4, blockKeys: 32, headsPerTile: 1, sharedKV: false, vectorLoads: true, rescaleThreshold: 8, causalOrWindow: false, softcap: false, alibi: false, returnLse: false, rowPad: 8, smemVec4: true, prefetch: true, unrolled: false };
  for (const tag of args.tags.split(',')) jobs.push({ kind: 'attention', tag, name: 'flash-sgmatrix default D128', options: o });
}
const self = fileURLToPath(import.meta.url);
jobs.forEach((job, i) => {
  const a = adapters[job.tag];
  const enable = (a?.enable ?? []).filter((t) => !(process.env.GPU_DAWN_TOGGLES ?? '').split(',').includes(t));
  const cache = join(out, 'nvcache', String(i));
  mkdirSync(cache, { recursive: true });
  const env = { ...process.env, __GL_SHADER_DISK_CACHE: '1', __GL_SHADER_DISK_CACHE_PATH: cache, __GL_SHADER_DISK_CACHE_SKIP_CLEANUP: '1' };
  const r = spawnSync(process.execPath, [self, '--one', JSON.stringify(job), '--enable', enable.join(','), '--disable', (a?.disable ?? []).join(',')], { env, encoding: 'utf8', timeout: 60_000, maxBuffer: 256 << 20 });
  const text = `${r.stdout ?? ''}\n${r.stderr ?? ''}`;
  writeFileSync(join(out, 'spirv', `${i}.txt`), text);
  const stats = spirvStats(text.slice(text.indexOf('SPIR-V') >= 0 ? text.indexOf('SPIR-V') : 0));
  const row = { kind: 'spirv', index: i, tag: job.tag, what: job.kind, name: job.name, tflops: job.tflops, exit: r.status, stats };
  appendFileSync(join(out, 'spirv.jsonl'), JSON.stringify(row) + '\n');
  console.log(`spirv ${i} [${job.tag}] ${job.name}: ${stats.total} ops, ${stats.OpCooperativeMatrixLoadKHR} matrix loads, ${stats.OpCooperativeMatrixMulAddKHR} MMAs, ${stats.OpSelect} selects, ${stats.clamps} clamps, ${stats.OpControlBarrier} barriers (exit ${r.status})`);
});
