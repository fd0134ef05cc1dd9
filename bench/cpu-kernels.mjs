#!/usr/bin/env node
// The CPU backend's inner loops on one core: the fused kernel's per-tile work (QKᵀ, online softmax,
// P·V on a 64×64 tile, D = 128) with the WASM SIMD kernels and with the plain-JavaScript kernels,
// and what fraction of the machine's SIMD peak the SIMD ones reach.
//
//   node bench/cpu-kernels.mjs            (after npm run build; add --experimental-wasm-relaxed-simd
//                                          before the script to measure the FMA variant)
//
// Peak: the clock is measured with a dependent chain of integer multiplies (3-cycle latency on
// Zen 4 and most x86 cores). WASM SIMD is 128-bit: 4 float lanes; V8 issues f32x4.mul and f32x4.add
// as separate instructions (or one FMA with relaxed SIMD), and Zen 4 retires two 128-bit multiplies
// (or FMAs) and two adds per cycle, so the 128-bit peak is 16 flops/cycle. The hardware's own peak
// (AVX-512 on two 256-bit FMA pipes, what native code like ONNX Runtime uses) is 32 flops/cycle.
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const { compileKernels, instantiateKernels, scalarKernels } = await import(join(root, 'dist', 'ops', 'cpu-program.js'));
const { tileGeometry } = await import(join(root, 'dist', 'ops', 'attention', 'cpu', 'kernels.js'));
const { ModuleBuilder, i32 } = await import(join(root, 'dist', 'engines', 'cpu', 'wasm', 'encoder.js'));
const { relaxedSimdAvailable } = await import(join(root, 'dist', 'engines', 'cpu', 'platform.js'));

/** GHz from a dependent chain of i32.mul (latency 3 cycles), best of 20. */
function measureClock() {
  const m = new ModuleBuilder({ shared: false, maximumPages: 1 });
  m.func('chain', [['n', 'i32'], ['y', 'i32']], 'i32', (f) => {
    const x = f.local('i32', 'x');
    const i = f.local('i32', 'i');
    f.set(x, f.get(f.param('n')));
    f.forRange(i, i32.const(0), f.get(f.param('n')), 1, () => {
      for (let k = 0; k < 32; k++) f.set(x, i32.mul(f.get(x), f.get(f.param('y'))));
    });
    f.returnValue(f.get(x));
  });
  const { chain } = new WebAssembly.Instance(new WebAssembly.Module(m.bytes()), { env: { memory: new WebAssembly.Memory({ initial: 1, maximum: 1 }) } }).exports;
  for (let r = 0; r < 3000; r++) chain(50, 3); // tier up to TurboFan
  let best = Infinity;
  for (let r = 0; r < 20; r++) {
    const t0 = performance.now();
    chain(200000, 3);
    best = Math.min(best, performance.now() - t0);
  }
  return (200000 * 32 * 3) / best / 1e6;
}

const D = 128;
const { br: BR, bc: BC, qkRows } = tileGeometry();
const SK = 1024;
const chunks = D / 4;
const relaxed = relaxedSimdAvailable();
const memory = new WebAssembly.Memory({ initial: 2048, maximum: 65536, shared: true });
const f = new Float32Array(memory.buffer);
for (let i = 0; i < f.length; i++) f[i] = Math.random() - 0.5;
// regions: Q rows, K rows, V rows, panels, S tile, O block, row statistics
const at = {};
let next = 1 << 16;
for (const [name, bytes] of [['q', 4 * BR * D], ['k', 4 * SK * D], ['v', 4 * SK * D], ['qp', 4 * BR * D], ['kp', 4 * SK * D], ['vp', 4 * SK * D], ['s', 4 * BR * BC], ['o', 4 * BR * D], ['stats', 4 * 4 * BR]]) {
  at[name] = next;
  next += bytes + 4096;
}
const kernelSets = [
  ['WASM SIMD', instantiateKernels(await compileKernels(true, 65536, false), memory)],
  ...(relaxed ? [['WASM relaxed SIMD (FMA)', instantiateKernels(await compileKernels(true, 65536, true), memory)]] : []),
  ['scalar JS', scalarKernels(memory)],
];

const m = at.stats;
const l = m + 4 * BR;
const alpha = l + 4 * BR;
function tileStep(K, tile) {
  K.qk_tile(at.qp, at.kp + tile * BC * chunks * 16, chunks, BR, BC, at.s, 0.088);
  K.softmax_update(at.s, 4 * BC, BR, BC, m, l, alpha);
  K.pv_tile(at.s, at.vp + tile * BC * 32, SK * 32, BC, at.o, 4 * D, BR, D, alpha);
}
const results = [];
for (const [name, K] of kernelSets) {
  K.pack_panel(at.q, 4 * D, BR, D, at.qp, qkRows, chunks, 0);
  K.pack_panel(at.k, 4 * D, SK, D, at.kp, 4, chunks, 0);
  K.pack_v(at.v, 4 * D, SK, D, at.vp, SK * 32);
  f.fill(-Infinity, m >> 2, (m >> 2) + BR);
  f.fill(0, l >> 2, (l >> 2) + BR);
  const scalar = name === 'scalar JS';
  const reps = scalar ? 3 : 300;
  const parts = { qk: Infinity, softmax: Infinity, pv: Infinity };
  for (let round = 0; round < (scalar ? 2 : 8); round++) {
    for (let i = 0; i < (scalar ? 1 : 200); i++) tileStep(K, i % (SK / BC)); // warm-up / tier-up
    const time = (fn) => {
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) fn(i % (SK / BC));
      return ((performance.now() - t0) / reps) * 1000;
    };
    parts.qk = Math.min(parts.qk, time((t) => K.qk_tile(at.qp, at.kp + t * BC * chunks * 16, chunks, BR, BC, at.s, 0.088)));
    parts.softmax = Math.min(parts.softmax, time(() => {
      f.fill(-Infinity, m >> 2, (m >> 2) + BR);
      K.softmax_update(at.s, 4 * BC, BR, BC, m, l, alpha);
    }));
    parts.pv = Math.min(parts.pv, time((t) => K.pv_tile(at.s, at.vp + t * BC * 32, SK * 32, BC, at.o, 4 * D, BR, D, alpha)));
  }
  results.push({ name, ...parts });
}

const ghz = measureClock();
const gemmFlops = 2 * BR * BC * D; // one of QKᵀ or P·V on a tile
const simdPeak = 16 * ghz; // GFLOP/s per core, 128-bit
const hwPeak = 32 * ghz;
const commit = (() => {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
})();
console.log(`\n${os.cpus()[0]?.model}, measured clock ${ghz.toFixed(2)} GHz, Node ${process.version}, commit ${commit}, ${new Date().toISOString()}`);
console.log(`tile ${BR}×${BC}, D ${D}, one core; peaks per core: 128-bit SIMD ${simdPeak.toFixed(1)} GFLOP/s (16 flops/cycle), hardware AVX-512 ${hwPeak.toFixed(1)} GFLOP/s (32 flops/cycle)\n`);
console.log('| kernels | QKᵀ µs | softmax µs | P·V µs | QKᵀ GFLOP/s | P·V GFLOP/s | tile GFLOP/s | % of 128-bit peak (QKᵀ / P·V / tile) | % of hardware peak (tile) |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
mkdirSync(join(here, 'results'), { recursive: true });
for (const r of results) {
  const tile = r.qk + r.softmax + r.pv;
  const g = (us) => gemmFlops / us / 1e3;
  const tileG = (2 * gemmFlops) / tile / 1e3;
  const pct = (x, peak) => `${((x / peak) * 100).toFixed(0)}%`;
  console.log(`| ${r.name} | ${r.qk.toFixed(1)} | ${r.softmax.toFixed(1)} | ${r.pv.toFixed(1)} | ${g(r.qk).toFixed(1)} | ${g(r.pv).toFixed(1)} | ${tileG.toFixed(1)} | ${pct(g(r.qk), simdPeak)} / ${pct(g(r.pv), simdPeak)} / ${pct(tileG, simdPeak)} | ${pct(tileG, hwPeak)} |`);
  appendFileSync(join(here, 'results', 'cpu-kernels.jsonl'), `${JSON.stringify({ bench: 'cpu-kernels', kernels: r.name, tile: [BR, BC, D], us: { qk: r.qk, softmax: r.softmax, pv: r.pv }, gflops: { qk: g(r.qk), pv: g(r.pv), tile: tileG }, ghz, simdPeak, hwPeak, cpu: os.cpus()[0]?.model, node: process.version, commit, date: new Date().toISOString() })}\n`);
}
