// The non-finite rule as declarative cases (README "Failure behaviour"): seeded inputs with a NaN,
// a ±Inf or an extreme scale planted where it exercises one clause of the rule, and a comparison
// that demands the same class (NaN, +Inf, -Inf, finite) as the float64 reference element by
// element, and finite elements within the usual float32 tolerance. Shared by the tests on every
// backend and by bench/faults.mjs.
import { Tensor } from '../core/tensor.js';
import type { AttentionCase, CaseInputs } from './cases.js';
import { makeCase } from './cases.js';

export interface NonFiniteCase {
  name: string;
  base: AttentionCase;
  /** Plants the non-finite values into fresh inputs (in place) and may add options. */
  plant(inputs: CaseInputs): void;
}

// Sq 70, Sk 150 over two key tiles; causal bottom-right: query i sees keys j <= i + 80, so key 100
// is seen by rows 20.. and sits in a tile that rows 0..19 also process (with weight 0 for it).
const BASE: AttentionCase = { batch: 1, headsQ: 2, headsKv: 1, seqQ: 70, seqK: 150, dimQK: 32, dimV: 24, returnLse: true };
const CAUSAL: AttentionCase = { ...BASE, causal: true };

/** Element (b=0, h, s, d) of a BNSD float32 tensor. */
function set(t: Tensor, seq: number, dim: number, h: number, s: number, d: number, value: number): void {
  (t.data as Float32Array)[(h * seq + s) * dim + d] = value;
}

function bias(inputs: CaseInputs, sq: number, sk: number, entries: Array<[number, number, number]>): void {
  const values = new Float32Array(sq * sk);
  for (const [i, j, value] of entries) values[i * sk + j] = value;
  inputs.options.bias = Tensor.fromData(values, [sq, sk]);
}

export const NON_FINITE_CASES: readonly NonFiniteCase[] = [
  { name: 'NaN in q row 5 (head 1)', base: BASE, plant: (x) => set(x.q, 70, 32, 1, 5, 7, NaN) },
  { name: 'NaN in k key 100, causal (rows 20.. see it)', base: CAUSAL, plant: (x) => set(x.k, 150, 32, 0, 100, 3, NaN) },
  { name: '+Inf in k key 40 (scores of both signs)', base: BASE, plant: (x) => set(x.k, 150, 32, 0, 40, 0, Infinity) },
  { name: '+Inf bias at (row 9, key 33)', base: BASE, plant: (x) => bias(x, 70, 150, [[9, 33, Infinity]]) },
  { name: 'NaN bias at (row 60, key 149)', base: BASE, plant: (x) => bias(x, 70, 150, [[60, 149, NaN]]) },
  { name: '-Inf bias hides keys; a row with every key -Inf stays 0 / -inf', base: BASE, plant: (x) => {
    const entries: Array<[number, number, number]> = [];
    for (let j = 0; j < 150; j++) entries.push([3, j, -Infinity]);
    for (let j = 0; j < 150; j += 3) entries.push([4, j, -Infinity]);
    bias(x, 70, 150, entries);
  } },
  { name: 'NaN in v key 100, causal (only rows that see key 100, only column 5)', base: CAUSAL, plant: (x) => set(x.v, 150, 24, 0, 100, 5, NaN) },
  { name: '+Inf in v key 120 column 2, causal', base: CAUSAL, plant: (x) => set(x.v, 150, 24, 0, 120, 2, Infinity) },
  { name: 'NaN in k of masked keys: a fully masked row stays 0 / -inf', base: BASE, plant: (x) => {
    const mask = new Uint8Array(70 * 150).fill(1);
    mask.fill(0, 11 * 150, 12 * 150); // row 11 sees nothing
    for (let j = 0; j < 150; j += 2) mask[12 * 150 + j] = 0; // row 12 misses the even keys
    // key 42 is even: rows 11 and 12 do not see its NaNs, every other row does
    set(x.k, 150, 32, 0, 42, 1, NaN);
    set(x.v, 150, 24, 0, 42, 1, NaN);
    x.options.mask = Tensor.fromData(mask, [70, 150], 'bool');
  } },
  { name: 'scale 1e38 (finite; scores overflow float32 unless kept relative)', base: { ...BASE, scale: 1e38 }, plant: () => {} },
  { name: 'scale -3e38 with softcap 30 and a bias', base: { ...BASE, scale: -3e38, softcap: 30 }, plant: (x) => bias(x, 70, 150, [[0, 0, 5], [1, 2, -Infinity]]) },
];

export function makeNonFiniteCase(c: NonFiniteCase, seed: number): CaseInputs {
  const inputs = makeCase(c.base, seed);
  c.plant(inputs);
  return inputs;
}

type Kind = 'nan' | '+inf' | '-inf' | 'finite';

function kind(x: number): Kind {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return '+inf';
  if (x === -Infinity) return '-inf';
  return 'finite';
}

/**
 * Compares `got` (float32 results) with the float64 reference `ref`: the same class everywhere
 * (a reference value beyond float32's range counts as the infinity it rounds to) and finite
 * values within atol + rtol·max|ref|. Returns the first few mismatches, or [] when none.
 */
export function compareNonFinite(what: string, got: ArrayLike<number>, ref: ArrayLike<number>, rtol = 2e-5): string[] {
  const failures: string[] = [];
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    const r = Math.fround(ref[i]);
    if (Number.isFinite(r)) scale = Math.max(scale, Math.abs(r));
  }
  const tolerance = rtol * Math.max(scale, 1e-6);
  for (let i = 0; i < ref.length && failures.length < 5; i++) {
    const r = Math.fround(ref[i]);
    const g = got[i];
    const [kr, kg] = [kind(r), kind(g)];
    if (kr !== kg) failures.push(`${what}[${i}]: got ${g}, reference ${ref[i]} (${kr})`);
    else if (kr === 'finite' && Math.abs(g - r) > tolerance) failures.push(`${what}[${i}]: got ${g}, reference ${ref[i]} (|diff| ${Math.abs(g - r).toExponential(2)} > ${tolerance.toExponential(2)})`);
  }
  return failures;
}
