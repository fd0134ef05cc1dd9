// Philox4x32-10 against Random123's published known-answer vectors, and the keep mask built on it:
// a pure function of (seed, offset, batch, head, query, key), with the asked drop rate.
import { describe, expect, it } from 'vitest';
import { Tensor, ValueError, attentionDropoutMask, philox4x32_10, validateAttention } from '../dist/index.js';

describe('Philox4x32-10', () => {
  // Random123 kat_vectors: counter (4 words), key (2 words) -> output (4 words)
  const KAT: Array<[number[], number[], number[]]> = [
    [[0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]],
    [[0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]],
    [[0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]],
  ];
  for (const [ctr, key, want] of KAT) {
    it(`matches the known answer for counter ${ctr.map((x) => x.toString(16)).join(' ')}`, () => {
      const out = philox4x32_10(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1]);
      expect(Array.from(out)).toEqual(want);
    });
  }
});

describe('dropout keep mask', () => {
  const q = Tensor.fromData(new Float32Array(2 * 3 * 40 * 4), [2, 3, 40, 4]);
  const k = Tensor.fromData(new Float32Array(2 * 3 * 50 * 4), [2, 3, 50, 4]);
  const v = k;

  it('keeps 1 - p of the weights and depends on seed and offset only', () => {
    const a = attentionDropoutMask(q, k, v, { dropout: { p: 0.25, seed: 42 } });
    expect(a.shape).toEqual([2, 3, 40, 50]);
    const bits = a.data as Uint8Array;
    const kept = bits.reduce((s, x) => s + x, 0) / bits.length;
    expect(Math.abs(kept - 0.75)).toBeLessThan(0.02);
    // the same call gives the same bits; keepProb = 1 - p is the same option
    expect(attentionDropoutMask(q, k, v, { dropout: { keepProb: 0.75, seed: 42 } }).data).toEqual(bits);
    const other = (o: object) => attentionDropoutMask(q, k, v, { dropout: { p: 0.25, seed: 42, ...o } }).data as Uint8Array;
    for (const changed of [other({ seed: 43 }), other({ offset: 1 }), other({ seed: 42n + (1n << 40n) })]) {
      let same = 0;
      for (let n = 0; n < bits.length; n++) same += bits[n] === changed[n] ? 1 : 0;
      // independent masks agree on 0.75² + 0.25² = 62.5% of the elements
      expect(Math.abs(same / bits.length - 0.625)).toBeLessThan(0.03);
    }
  });

  it('does not depend on the layout, and rows of TND sequences count from their start', () => {
    const fixed = attentionDropoutMask(q, k, v, { dropout: { p: 0.5, seed: 7 } }).data as Uint8Array;
    const tq = Tensor.fromData(new Float32Array(80 * 3 * 4), [80, 3, 4]);
    const tk = Tensor.fromData(new Float32Array(100 * 3 * 4), [100, 3, 4]);
    const varlen = attentionDropoutMask(tq, tk, tk, { layout: 'TND', cuSeqlensQ: [0, 40, 80], cuSeqlensK: [0, 50, 100], dropout: { p: 0.5, seed: 7 } });
    expect(varlen.data).toEqual(fixed);
  });

  it('rejects bad dropout options with typed errors naming the field', () => {
    const bad = (dropout: unknown, field: string) => {
      expect(() => validateAttention(q, k, v, { dropout: dropout as never })).toThrow(ValueError);
      try {
        validateAttention(q, k, v, { dropout: dropout as never });
      } catch (e) {
        expect((e as ValueError).argument).toBe(field);
      }
    };
    bad({ p: 1, seed: 1 }, 'options.dropout.p');
    bad({ p: -0.1, seed: 1 }, 'options.dropout.p');
    bad({ keepProb: 0, seed: 1 }, 'options.dropout.keepProb');
    bad({ p: 0.1, keepProb: 0.9, seed: 1 }, 'options.dropout.keepProb');
    bad({ p: 0.1, seed: 1.5 }, 'options.dropout.seed');
    bad({ p: 0.1, seed: -1 }, 'options.dropout.seed');
    bad({ p: 0.1, seed: 1, offset: 2 ** 32 }, 'options.dropout.offset');
    bad({ p: 0.1 }, 'options.dropout.seed');
    bad({ p: 0.1, seed: 1, rate: 2 }, 'options.dropout.rate');
    // p = 0 is no dropout at all
    expect(validateAttention(q, k, v, { dropout: { p: 0, seed: 1 } }).dropout).toBeUndefined();
  });
});

describe('dropout on the CPU in WASM SIMD (dropout_rows)', () => {
  it('gives the bits of dropoutTile (the JavaScript Philox) for any key offset, width and seed', async () => {
    const { createCpuEngine } = await import('../dist/ops/cpu-engine.js');
    const { dropoutTile } = await import('../dist/ops/attention/dropout/cpu.js');
    const { resolveDropout } = await import('../dist/ops/attention/dropout/options.js');
    const engine = await createCpuEngine({ threads: 0 });
    try {
      const memory = engine.arena.memory;
      const lds = 4 * 80;
      const rows = 5;
      const [a, b, want, scratch] = [0, 1, 2, 3].map((n) => 4096 + n * rows * lds);
      for (const [p, seed, offset] of [[0.1, 7, 0], [0.5, 2 ** 40 + 12345, 3], [0.9, 0xffffffff, 0xfffffff0]] as const) {
        const spec = resolveDropout({ p, seed, offset })!;
        for (const [j0, cols] of [[0, 64], [3, 1], [13, 61], [61, 5], [1000, 77], [8, 8]]) {
          const f = new Float32Array(memory.buffer);
          for (let n = 0; n < 3 * rows * lds / 4; n++) f[a / 4 + n] = Math.sin(n) + 2;
          f.copyWithin(want / 4, a / 4, a / 4 + rows * lds / 4);
          f.copyWithin(b / 4, a / 4, a / 4 + rows * lds / 4);
          dropoutTile(memory.buffer, spec, 3, 1, 2, 17, rows, j0, cols, want, lds);
          engine.kernels.dropout_rows(a, b, lds, rows, cols, 17, j0, 1 * 3 + 2, spec.offset, spec.seedLo, spec.seedHi, spec.threshold, spec.scale, scratch);
          const g = new Float32Array(memory.buffer);
          for (const tile of [a, b]) expect(g.slice(tile / 4, tile / 4 + rows * lds / 4), `p ${p} j0 ${j0} cols ${cols}`).toEqual(g.slice(want / 4, want / 4 + rows * lds / 4));
        }
      }
    } finally {
      engine.terminate();
    }
  });
});
