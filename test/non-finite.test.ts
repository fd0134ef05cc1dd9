// The non-finite rule (README "Failure behaviour") on every backend and path present, against the
// float64 reference: NaN in a row's inputs gives NaN in that row (never a silent 0), +Inf scores
// give NaN as PyTorch's softmax does, -Inf scores hide keys, a fully masked row stays 0 / -inf,
// NaN/Inf in v reaches only the rows that give its key a weight, and a huge finite scale gives the
// reference's answer.
import { describe, expect, it } from 'vitest';
import { attention, naiveAttention, referenceAttention, validateAttention } from '../dist/index.js';
import { NON_FINITE_CASES, compareNonFinite, makeNonFiniteCase } from '../dist/testing/index.js';
import { backendsHere } from './helpers.js';

const backends = await backendsHere();

describe.each(backends)('non-finite rule on $name', ({ name, skip }) => {
  if (skip) console.warn(`\n!!! SKIPPING non-finite rule on ${name}: ${skip}\n`);
  for (const path of ['fused', 'naive'] as const) {
    it.skipIf(skip)(`${path}: every case agrees with the reference, element by element`, async () => {
      const failures: string[] = [];
      for (const [index, c] of NON_FINITE_CASES.entries()) {
        const { q, k, v, options } = makeNonFiniteCase(c, 900 + index);
        const ref = referenceAttention(validateAttention(q, k, v, options));
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
    const find = (prefix: string) => NON_FINITE_CASES.find((c) => c.name.startsWith(prefix))!;
    const rows = (prefix: string) => {
      const { q, k, v, options } = makeNonFiniteCase(find(prefix), 1);
      return referenceAttention(validateAttention(q, k, v, options));
    };
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
