// The CPU backward stages every layout head-major (backward/cpu/head-major.ts): the same problem in
// BSND, BSH, SBH or TND must then give exactly the bits BNSD gives (same rows, same kernels, same
// order), in float32 and float16, and copy_rows (the WASM copy that does the reordering) must equal
// its scalar twin on odd widths and strides.
import { describe, expect, it } from 'vitest';
import { Tensor, attention, attentionBackward } from '../dist/index.js';
import { configureCpu } from '../dist/ops/cpu-engine.js';
import { compileKernels, instantiateKernels, scalarKernels } from '../dist/ops/cpu-program.js';
import { makeCase, makeGradCase } from '../dist/testing/index.js';

type Layout = 'BNSD' | 'BSND' | 'BSH' | 'SBH' | 'TND';

/**
 * Rows of D elements moved between BNSD order and `layout`'s (TND: the batch's sequences back to
 * back; the others put heads inside sequence positions, SBH the batch inside them too).
 */
function moveRows(src: Float32Array | Uint16Array, layout: Layout, [B, H, S, D]: number[], toLayout: boolean): Float32Array | Uint16Array {
  const dst = new (src.constructor as Float32ArrayConstructor | Uint16ArrayConstructor)(src.length);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let s = 0; s < S; s++) {
    const bnsd = ((b * H + h) * S + s) * D;
    const other = layout === 'SBH' ? ((s * B + b) * H + h) * D : ((b * S + s) * H + h) * D;
    const [from, to] = toLayout ? [bnsd, other] : [other, bnsd];
    for (let d = 0; d < D; d++) dst[to + d] = src[from + d];
  }
  return dst;
}

/** A [B, H, S, D] (BNSD) tensor in `layout`. */
function fromBnsd(t: Tensor, layout: Layout): Tensor {
  const [B, H, S, D] = t.shape;
  const shape = layout === 'BSND' ? [B, S, H, D] : layout === 'BSH' ? [B, S, H * D] : layout === 'SBH' ? [S, B, H * D] : [B * S, H, D];
  return Tensor.fromData(moveRows(t.data as Float32Array | Uint16Array, layout, [B, H, S, D], true), shape, t.dtype as 'float32' | 'float16');
}

/** The inverse of fromBnsd, for comparing gradients. */
function toBnsd(t: Tensor, layout: Layout, B: number, H: number, S: number, D: number): Float32Array | Uint16Array {
  return moveRows(t.data as Float32Array | Uint16Array, layout, [B, H, S, D], false);
}

describe('CPU backward: head-major staging', () => {
  it('copy_rows equals its scalar twin on odd widths and strides', async () => {
    const memory = new WebAssembly.Memory({ initial: 4, maximum: 64, shared: true });
    const wasm = instantiateKernels(await compileKernels(true, 64, false), memory);
    const scalar = scalarKernels(memory);
    const f = new Float32Array(memory.buffer);
    for (const cols of [1, 2, 3, 4, 5, 7, 59, 64]) {
      // source rows, and the two destinations filled alike (the gaps between rows must survive)
      for (let i = 0; i < 20000; i++) f[i] = Math.sin(i * 0.77);
      for (let i = 0; i < 10000; i++) f[20000 + i] = f[30000 + i] = -1 - i;
      const run = (k: typeof wasm, dst: number) => k.copy_rows(1024, 4 * 131, dst, 4 * (cols + 1), 9, cols);
      run(wasm, 80000);
      run(scalar, 120000);
      const a = f.slice(20000, 20000 + 9 * (cols + 1) + 8);
      const b = f.slice(30000, 30000 + 9 * (cols + 1) + 8);
      expect(a).toEqual(b);
      // nothing past a row's cols is written: the gaps keep the old values
      expect(f[20000 + cols]).toBe(-1 - cols);
      expect(f[20000 + 1]).toBe(cols > 1 ? f[256 + 1] : -2);
    }
  });

  const CASES = [
    { name: 'GQA H4/2 S97 D40 causal', c: { batch: 2, headsQ: 4, headsKv: 2, seqQ: 97, seqK: 97, dimQK: 40, causal: true } },
    { name: 'MLA H3 S70 D48/24, dropout', c: { batch: 1, headsQ: 3, seqQ: 70, seqK: 70, dimQK: 48, dimV: 24, dropout: 0.2 } },
  ];
  for (const dtype of ['float32', 'float16'] as const) {
    for (const { name, c } of CASES) {
      it(`${name} ${dtype}: BSND, BSH, SBH and TND give BNSD's bits`, async () => {
        await configureCpu({ threads: 2 });
        const cc = { ...c, dtype };
        const made = makeCase(cc, 5);
        const fwd = await attention(made.q, made.k, made.v, { ...made.options, returnLse: true, backend: 'cpu' });
        const { dOut } = makeGradCase(cc, 5, fwd.out.shape);
        const base = await attentionBackward(made.q, made.k, made.v, fwd.out, dOut, fwd.lse!, { ...made.options, backend: 'cpu' });
        const { batch: B, headsQ: H, seqQ: S } = c;
        const Hk = c.headsKv ?? H;
        const Dv = c.dimV ?? c.dimQK;
        for (const layout of ['BSND', 'BSH', 'SBH', 'TND'] as const) {
          const heads = layout === 'BSH' || layout === 'SBH' ? { heads: H, kvHeads: Hk } : {};
          const lens = layout === 'TND' ? { cuSeqlensQ: Array.from({ length: B + 1 }, (_, b) => b * S), cuSeqlensK: Array.from({ length: B + 1 }, (_, b) => b * S) } : {};
          // the LSE in TND is [H, T]: the same values, batch entries side by side per head
          const lseValues = fwd.lse!.data as Float32Array;
          const lse = layout === 'TND'
            ? Tensor.fromData(Float32Array.from({ length: lseValues.length }, (_, i) => {
              const h = Math.floor(i / (B * S));
              const t = i % (B * S);
              return lseValues[(Math.floor(t / S) * H + h) * S + (t % S)];
            }), [H, B * S])
            : fwd.lse!;
          const options = { ...made.options, layout, ...heads, ...lens, backend: 'cpu' as const };
          const g = await attentionBackward(fromBnsd(made.q, layout), fromBnsd(made.k, layout), fromBnsd(made.v, layout),
            fromBnsd(fwd.out, layout), fromBnsd(dOut, layout), lse, options);
          expect(toBnsd(g.dq, layout, B, H, S, c.dimQK), `${layout} dq`).toEqual(base.dq.data);
          expect(toBnsd(g.dk, layout, B, Hk, S, c.dimQK), `${layout} dk`).toEqual(base.dk.data);
          expect(toBnsd(g.dv, layout, B, Hk, S, Dv), `${layout} dv`).toEqual(base.dv.data);
        }
      });
    }
  }
});
