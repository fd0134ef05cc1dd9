// The non-finite rule (README "Failure behaviour") on every backend and path present, against the
// float64 reference: NaN in a row's inputs gives NaN in that row (never a silent 0), +Inf scores
// give NaN as PyTorch's softmax does, -Inf scores hide keys, a fully masked row stays 0 / -inf,
// NaN/Inf in v reaches only the rows that give its key a weight, and a huge finite scale gives the
// reference's answer.
import { describe, expect, it } from 'vitest';
import { attention, naiveAttention, referenceAttention, validateAttention } from '../dist/index.js';
import { NON_FINITE_CASES, compareNonFinite, makeNonFiniteCase } from '../dist/testing/index.js';

import { backendsHere, softcapFunction } from './helpers.js';

const backends = await backendsHere();
// inputs and float64 references once (the reference is the slow part); backends never modify inputs
const prepared = NON_FINITE_CASES.map((c, index) => {
  const inputs = makeNonFiniteCase(c, 900 + index);
  return { c, inputs, ref: referenceAttention(validateAttention(inputs.q, inputs.k, inputs.v, inputs.options)) };
});

describe.each(backends)('non-finite rule on $name', ({ name, skip }) => {
  if (skip) console.warn(`\n!!! SKIPPING non-finite rule on ${name}: ${skip}\n`);
  for (const path of ['fused', 'naive'] as const) {
    it.skipIf(skip)(`${path}: every case agrees with the reference, element by element`, async () => {
      const failures: string[] = [];
      for (const { c, inputs: { q, k, v, options }, ref } of prepared) {
        const run = path === 'fused' ? attention : naiveAttention;
        const r = await run(q, k, v, { ...options, backend: name });
        const bad = [...compareNonFinite('out', r.out.toFloat32(), ref.out), ...compareNonFinite('lse', r.lse!.toFloat32(), ref.lse)];
        if (bad.length) failures.push(`${c.name}: ${bad.join('; ')}`);
      }
      expect(failures.join('\n')).toBe('');
    });
  }
});

describe('the reference itself', () => {
  it('marks exactly the rows the rule says', () => {
    const rows = (prefix: string) => prepared.find(({ c }) => c.name.startsWith(prefix))!.ref;
    const nanQ = rows('NaN in q');
    expect(Number.isNaN(nanQ.lse[70 + 5])).toBe(true);
    expect(nanQ.lse.filter(Number.isNaN).length).toBe(1);
    const nanK = rows('NaN in k key 100');
    // rows 20..69 of both heads see key 100
    expect(Array.from(nanK.lse).map(Number.isNaN).filter(Boolean).length).toBe(2 * 50);
    const nanV = rows('NaN in v');
    expect(Array.from(nanV.out).filter(Number.isNaN).length).toBe(2 * 50);
    expect(nanV.lse.every(Number.isFinite)).toBe(true);
    const masked = rows('NaN in k of masked');
    expect(masked.lse[11]).toBe(-Infinity);
    expect(Number.isFinite(masked.lse[12])).toBe(true);
    expect(Number.isNaN(masked.lse[13])).toBe(true);
    const big = rows('scale 1e38');
    expect(big.out.every(Number.isFinite)).toBe(true);
  });
});

// The float16 fast tiers (tensor-core, subgroup) need adapter features llvmpipe lacks: compiled
// here by the WGSL tests, run by this block on a GPU that has them (the lead's H200 runs).
describe('non-finite rule on the float16 fast tiers', async () => {
  const { configure, gpuAdapterInfo, attention: run, maskMod, softcap, attentionSinks } = await import('../dist/index.js');
  const { makeCase } = await import('../dist/testing/index.js');
  const info = backends.find((b) => b.name === 'webgpu')?.skip ? undefined : await gpuAdapterInfo().catch(() => undefined);
  const NAN = 0x7e00;
  const INF = 0x7c00;
  const base = { dtype: 'float16' as const, batch: 1, headsQ: 2, headsKv: 1, seqQ: 70, seqK: 150, dimQK: 64, dimV: 64, returnLse: true };
  const cases: Array<{ name: string; c: typeof base & { causal?: boolean; softcap?: number; scale?: number; seqQ: number; seqK: number }; plant?: (q: Uint16Array, k: Uint16Array) => void; extra?: Record<string, unknown> }> = [
    { name: 'NaN in q row 5', c: base, plant: (q) => void (q[(1 * 70 + 5) * 64 + 7] = NAN) },
    { name: 'NaN in k key 100, causal', c: { ...base, causal: true }, plant: (_q, k) => void (k[100 * 64 + 3] = NAN) },
    { name: '+Inf in k key 40', c: base, plant: (_q, k) => void (k[40 * 64] = INF) },
    { name: '+Inf in k key 40, softcap 30 (capped)', c: { ...base, softcap: 30 }, plant: (_q, k) => void (k[40 * 64] = INF) },
    { name: 'scale 1e10 (finite, one-hot)', c: { ...base, scale: 1e10 } },
    { name: 'rows that see no key (Sq > Sk, causal)', c: { ...base, seqQ: 150, seqK: 70, causal: true } },
    // the tensor-core tier's score hook (sgmatrix-score-lines.ts): hidden keys never poison a row,
    // visible NaN / +inf scores do before a score function, sinks change only the normalisation
    { name: 'NaN in k key 100 hidden by a mask function', c: base, plant: (_q, k) => void (k[100 * 64 + 3] = NAN), extra: { maskMod: maskMod(({ kv }) => kv.lt(100)) } },
    { name: 'NaN in k key 100 hidden by a mask function, softcap 30', c: { ...base, softcap: 30 }, plant: (_q, k) => void (k[100 * 64 + 3] = NAN), extra: { maskMod: maskMod(({ kv }) => kv.lt(100)) } },
    { name: '+Inf in k key 40, softcap 30 as a function (poisoned before it)', c: base, plant: (_q, k) => void (k[40 * 64] = INF), extra: { scoreMod: softcapFunction(30) } },
    { name: '+Inf in k key 40, softcap() 30 (the option\'s lines with a function\'s rule)', c: base, plant: (_q, k) => void (k[40 * 64] = INF), extra: { scoreMod: softcap(30) } },
    { name: 'NaN in k key 100, causal, sinks', c: { ...base, causal: true }, plant: (_q, k) => void (k[100 * 64 + 3] = NAN), extra: { sink: attentionSinks([1, -1]) } },
    // rows 0-19 do not see key 100 but share its key tile: with the softcap option only the rows
    // that see it are poisoned, hooked (with the sink) or plain (every fast tier, since the third
    // session of 2026-12-02: the plain kernels tested the NaN before the window)
    { name: 'NaN in k key 100, causal, softcap 30', c: { ...base, causal: true, softcap: 30 }, plant: (_q, k) => void (k[100 * 64 + 3] = NAN) },
    { name: 'NaN in k key 100, causal, softcap 30, sinks', c: { ...base, causal: true, softcap: 30 }, plant: (_q, k) => void (k[100 * 64 + 3] = NAN), extra: { sink: attentionSinks([1, -1]) } },
  ];
  for (const tier of ['sgmatrix', 'subgroup'] as const) {
    const has = info && (tier === 'sgmatrix' ? info.features.includes('chromium-experimental-subgroup-matrix') : info.features.includes('subgroups')) && info.features.includes('shader-f16');
    if (!has) console.warn(`\n!!! SKIPPING the non-finite rule on the ${tier} tier: the adapter lacks its features (${info ? info.features.join(', ') || 'none' : 'no WebGPU'})\n`);
    it.skipIf(!has)(`${tier}: every case agrees with the reference`, async () => {
      const failures: string[] = [];
      configure({ webgpuTier: tier });
      try {
        for (const [index, { name, c, plant, extra }] of cases.entries()) {
          if (extra && tier !== 'sgmatrix') continue;
          const made = makeCase(c, 700 + index);
          const { q, k, v } = made;
          const options = { ...made.options, ...extra };
          plant?.(q.data as Uint16Array, k.data as Uint16Array);
          const ref = referenceAttention(validateAttention(q, k, v, options));
          const r = await run(q, k, v, { ...options, backend: 'webgpu' });
          const bad = [...compareNonFinite('out', r.out.toFloat32(), ref.out, 5e-3), ...compareNonFinite('lse', r.lse!.toFloat32(), ref.lse, 5e-3)];
          if (bad.length) failures.push(`${name}: ${bad.join('; ')}`);
        }
      } finally {
        configure({ webgpuTier: undefined });
      }
      expect(failures.join('\n')).toBe('');
    });
  }
});
