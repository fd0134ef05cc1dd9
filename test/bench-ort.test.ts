// The ONNX Runtime rows of the GPU benchmark time MultiHeadAttention by differencing a chain of ops
// against one op (host copies cancel). Under noise that difference can be zero or negative (seen:
// -2.162 ms, issue 14): such a row must say "not measurable" with its raw timings, not print a time.
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain JavaScript module of the benchmark
import { timeOrtMha } from '../bench/gpu/onnx-mha.mjs';

/** A stand-in for onnxruntime-node whose sessions take `msOf(chain)` of wall time per run. */
function fakeOrt(msOf: (chain: number) => number) {
  class Tensor { constructor(public type: string, public data: Uint16Array, public dims: number[]) {} }
  return {
    Tensor,
    InferenceSession: {
      async create(model: Uint8Array) {
        const chain = Math.max(...[...new TextDecoder().decode(model).matchAll(/out_(\d+)/g)].map((m) => Number(m[1])));
        return {
          outputNames: ['out'],
          async run() {
            const until = performance.now() + msOf(chain);
            while (performance.now() < until) { /* the op's time */ }
            return { out: new Tensor('float16', new Uint16Array(4), [1, 1, 4]) };
          },
        };
      },
    },
  };
}
const shape = { batch: 1, heads: 1, seq: 1, dimQK: 4, dimV: 4, causal: false };
const inputs = [new Uint16Array(4), new Uint16Array(4), new Uint16Array(4)];

describe('ONNX Runtime chain differencing', () => {
  it('reports the per-op time when the chain is slower than one op', async () => {
    const r = await timeOrtMha(fakeOrt((n) => 10 + 20 * n), shape, ...inputs, { chain: 4, reps: 1 });
    expect(r.ms).toBeGreaterThan(10);
    expect(r.notMeasurable).toBeUndefined();
  });
  it('says "not measurable", with the raw timings, when the difference is not positive', async () => {
    const r = await timeOrtMha(fakeOrt((n) => (n === 1 ? 30 : 15)), shape, ...inputs, { chain: 4, reps: 1 });
    expect(r.ms).toBeUndefined();
    expect(r.notMeasurable).toMatch(/not measurable: 4 chained ops \d+\.\d+ ms, 1 op \d+\.\d+ ms/);
    expect(r.ms1).toBeGreaterThan(r.msChain);
  });
});
