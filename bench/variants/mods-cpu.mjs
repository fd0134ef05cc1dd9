// Why the CPU runs score/mask functions as generated WebAssembly SIMD and not as a JavaScript
// closure tree: nanoseconds per score of each on a 64 x 64 S tile (what the fused kernel calls it
// on), for the built-ins and a composite, on this machine; both are checked to agree first.
//   node bench/variants/mods-cpu.mjs [OUT.jsonl]
import { appendFileSync } from 'node:fs';
import { alibi, alibiSlopes, causal, documentMask, softcap, t5RelativeBias, scoreMod, capture } from '../../dist/index.js';
import { planMods, packModData } from '../../dist/ops/attention/mods/plan.js';
import { buildModsModule } from '../../dist/ops/attention/mods/cpu/wasm.js';
import { scalarModsKernel } from '../../dist/ops/attention/mods/cpu/kernel.js';

const out = process.argv[2];
const rel = capture(Float32Array.from({ length: 8 * 255 }, (_, i) => Math.sin(i)), [8, 255]);
const cases = {
  'softcap 30': { scoreMod: softcap(30) },
  ALiBi: { scoreMod: alibi(alibiSlopes(8)) },
  'T5 buckets (2 gathers)': { scoreMod: t5RelativeBias(new Float32Array(32 * 8)) },
  'document mask (2 gathers)': { maskMod: documentMask(Int32Array.from({ length: 4096 }, (_, i) => i >> 9), { causal: true }) },
  'causal mask': { maskMod: causal() },
  'relative bias + softcap + causal': { scoreMod: scoreMod(({ score, h, q, kv }) => score.add(rel.at(h, q.sub(kv).add(127))).div(30).tanh().mul(30)), maskMod: causal() },
};
const ROWS = 64;
const COLS = 64;
for (const [name, parts] of Object.entries(cases)) {
  const plan = planMods(parts);
  const memory = new WebAssembly.Memory({ initial: 16, maximum: 64 });
  const wasm = new WebAssembly.Instance(new WebAssembly.Module(buildModsModule({ mods: plan.kernel, shared: false, maximumPages: 64 }).bytes()), { env: { memory } }).exports;
  const scalar = scalarModsKernel(plan.kernel, memory);
  const words = packModData(plan.tensors);
  new Uint32Array(memory.buffer, 4096, words.length).set(words);
  const f = new Float32Array(memory.buffer);
  const tileA = 262144;
  const tileB = 524288;
  const input = Float32Array.from({ length: ROWS * COLS }, (_, i) => Math.sin(i) * 5);
  const reset = () => { f.set(input, tileA / 4); f.set(input, tileB / 4); };
  reset();
  wasm.apply(tileA, 4 * COLS, ROWS, COLS, 1, 3, 1000, 900, 4096, 4096, 4096, 1, 1);
  scalar.apply(tileB, 4 * COLS, ROWS, COLS, 1, 3, 1000, 900, 4096, 4096, 4096, 1, 1);
  let maxDiff = 0;
  for (let i = 0; i < ROWS * COLS; i++) {
    const a = f[tileA / 4 + i];
    const b = f[tileB / 4 + i];
    if (a !== b) maxDiff = Math.max(maxDiff, Number.isFinite(a) && Number.isFinite(b) ? Math.abs(a - b) / Math.max(1, Math.abs(b)) : Infinity);
  }
  if (!(maxDiff < 1e-5)) { console.log(`${name}: WASM and closure tree disagree (${maxDiff}); no timing`); continue; }
  const time = (k) => {
    const reps = 300;
    for (let r = 0; r < 20; r++) { reset(); k.apply(tileA, 4 * COLS, ROWS, COLS, 1, 3, 1000, 900, 4096, 4096, 4096, 1, 1); }
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) k.apply(tileA, 4 * COLS, ROWS, COLS, 1, 3, 1000, 900, 4096, 4096, 4096, 1, 1);
    return ((performance.now() - t0) * 1e6) / (reps * ROWS * COLS);
  };
  const ns = { wasm: time(wasm), closure: time(scalar) };
  const row = { bench: 'mods-cpu', case: name, nsPerScoreWasm: ns.wasm, nsPerScoreClosure: ns.closure, speedup: ns.closure / ns.wasm };
  console.log(`${name.padEnd(34)} WASM ${ns.wasm.toFixed(2)} ns/score, closure tree ${ns.closure.toFixed(2)} ns/score (${(ns.closure / ns.wasm).toFixed(1)}x)`);
  if (out) appendFileSync(out, `${JSON.stringify(row)}\n`);
}
