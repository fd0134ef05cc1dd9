// The attention backward with the forward's score / mask / sink functions and block masks
// (issue 10 after issue 13): the float64 reference backward against central finite differences
// of the float64 forward, then every backend present against the reference on odd sizes
// (head dim 59, lengths 1 / 97, Sq != Sk, GQA, fully masked rows -> zero gradients, never NaN).
import { describe, expect, it } from 'vitest';
import {
  Tensor, UnsupportedError, ValueError, alibi, alibiSlopes, attention, attentionBackward, attentionSinks, attentionWithGrad, capture, causal, createBlockMask,
  composeScoreMods, documentMask, finiteDifferenceGradients, float, maskMod, referenceGradients, scoreMod, slidingWindow, softcap, validateAttention,
} from '../dist/index.js';
import { type AttentionCase, caseName, checkGradients, makeCase, makeGradCase, normal, randomFloats, uniform } from '../dist/testing/index.js';
import { backendsHere, maxAbs, softcapFunction } from './helpers.js';
import { packOnGpu } from './webgpu-helpers.js';

type Options = Record<string, unknown>;

/** A case: the suite's inputs plus the mods (built per call: they may depend on the sizes). */
interface ModCase {
  name: string;
  c: AttentionCase;
  mods: (c: AttentionCase) => Options | Promise<Options>;
  sinkGrad?: boolean;
  biasGrad?: boolean;
}

/** Causal, and every `period`-th row (from `offset`) sees nothing: fully masked rows. */
const holeyCausal = (period: number, offset: number) => maskMod(({ q, kv, qLen, kvLen }) => kv.le(q.add(kvLen).sub(qLen)).and(q.mod(period).ne(offset)), 'holey causal');
/** Documents of random lengths (1 to 20 tokens) over `n` positions. */
const docIds = (n: number, seed: number) => {
  const ids = new Int32Array(n);
  for (let i = 0, doc = 0, left = 0; i < n; i++, left--) {
    if (left <= 0) { doc++; left = 1 + Math.floor(Math.abs(Math.sin(seed * 31 + doc * 7.1)) * 20); }
    ids[i] = doc;
  }
  return ids;
};

/** A learned relative-position bias table [2·R + 1, Nq], read at kv - q clamped into [-R, R]. */
const relativeBias = (heads: number, radius: number, seed: number) => {
  const table = capture(Float32Array.from({ length: (2 * radius + 1) * heads }, (_, n) => Math.cos(seed + 0.9 * n)), [2 * radius + 1, heads], 'relative bias');
  return scoreMod(({ score, h, q, kv }) => score.add(table.at(kv.sub(q).add(radius), h)), 'relative bias');
};
/** Piecewise: min / max / select / abs / div / exp of the score, by the pair's position. */
const piecewise = scoreMod(({ score, q, kv }) => kv.gt(q).select(score.mul(0.5).max(-1).min(score.abs()), score.min(1.25).mul(1.5)).add(score.div(score.abs().add(2)).exp()), 'piecewise');

/** A score function that also hides pairs (-inf beyond a band), as FlexAttention users write masks. */
const bandByScore = scoreMod(({ score, q, kv }) => kv.sub(q).abs().gt(2).select(-Infinity, score.mul(1.5)), 'band by score');

/** Per-head sink logits around the scores' size, so the sink takes a real share of each row. */
const sinkLogits = (heads: number, seed: number) => Float32Array.from({ length: heads }, (_, h) => Math.sin(seed + 1.7 * h) * 1.5);

const SMALL = { batch: 2, headsQ: 2, seqQ: 5, seqK: 6, dimQK: 4 };
const REFERENCE_CASES: ModCase[] = [
  { name: 'sink [Nq] dSink', c: SMALL, mods: (c) => ({ sink: sinkLogits(c.headsQ, 1) }), sinkGrad: true },
  // bottom-right causal with Sq > Sk: rows that see no key but the sink
  { name: 'sink [B, Nq] dSink, GQA, causal', c: { ...SMALL, headsQ: 4, headsKv: 2, seqQ: 7, seqK: 4, causal: true }, mods: (c) => ({ sink: Tensor.fromData(sinkLogits(c.batch * c.headsQ, 2), [c.batch, c.headsQ]) }), sinkGrad: true },
  { name: 'attentionSinks() dSink with bias dBias', c: { ...SMALL, bias: 'random', maskShape: 'full' }, mods: (c) => ({ sink: attentionSinks(sinkLogits(c.headsQ, 3)) }), sinkGrad: true, biasGrad: true },
  { name: 'maskMod with fully masked rows', c: SMALL, mods: () => ({ maskMod: holeyCausal(3, 1) }) },
  { name: 'documentMask (causal) + sink + bool mask, GQA', c: { ...SMALL, headsQ: 4, headsKv: 2, seqQ: 6, seqK: 6, mask: 'full-rows', maskShape: 'full' }, mods: (c) => ({ maskMod: documentMask(docIds(6, 1).map((x) => x % 3), { causal: true }), sink: sinkLogits(c.headsQ, 8) }) },
  { name: 'scoreMod softcap()', c: { ...SMALL, scale: 1.3 }, mods: () => ({ scoreMod: softcap(1.5) }) },
  { name: 'scoreMod softcap written out', c: { ...SMALL, scale: 1.3 }, mods: () => ({ scoreMod: softcapFunction(1.5) }) },
  { name: 'scoreMod alibi() + sink dSink, causal', c: { ...SMALL, seqQ: 7, seqK: 5, causal: true }, mods: (c) => ({ scoreMod: alibi(alibiSlopes(c.headsQ)), sink: sinkLogits(c.headsQ, 11) }), sinkGrad: true },
  { name: 'scoreMod relative-bias table + bias dBias + option softcap', c: { ...SMALL, softcap: 2, bias: 'random', maskShape: 'full' }, mods: (c) => ({ scoreMod: relativeBias(c.headsQ, 2, 1) }), biasGrad: true },
  { name: 'scoreMod min/max/select/abs/div/exp + maskMod, GQA', c: { ...SMALL, headsQ: 4, headsKv: 2 }, mods: () => ({ scoreMod: piecewise, maskMod: holeyCausal(4, 2) }) },
  { name: 'scoreMod hiding pairs with -inf (rows with no key), + sink dSink', c: { ...SMALL, seqQ: 7, seqK: 3 }, mods: (c) => ({ scoreMod: bandByScore, sink: sinkLogits(c.headsQ, 17) }), sinkGrad: true },
  { name: 'dropout + scoreMod + maskMod + sink dSink', c: SMALL, mods: (c) => ({ dropout: { p: 0.3, seed: 77, offset: 3 }, scoreMod: piecewise, maskMod: holeyCausal(4, 0), sink: sinkLogits(c.headsQ, 18) }), sinkGrad: true },
  { name: 'TND varlen: maskMod reading the lengths + scoreMod + sink dSink', c: { ...SMALL, layout: 'TND', seqLensQ: [3, 0, 4], seqLensK: [5, 2, 3] }, mods: (c) => ({ maskMod: holeyCausal(3, 2), scoreMod: softcap(2), sink: sinkLogits(c.headsQ, 13) }), sinkGrad: true },
  { name: 'blockMask (sliding window)', c: { ...SMALL, seqQ: 9, seqK: 9 }, mods: async () => ({ blockMask: await createBlockMask(slidingWindow(2), null, null, 9, 9, { blockSize: 4 }) }) },
];

describe('float64 reference backward with mods vs finite differences', () => {
  for (const mc of REFERENCE_CASES) {
    it(`${mc.name} (${caseName(mc.c)})`, async () => {
      const { q, k, v, options } = makeCase(mc.c, 11);
      Object.assign(options, await mc.mods(mc.c));
      const problem = validateAttention(q, k, v, options);
      const dOut = randomFloats(problem.outShape.reduce((a, b) => a * b, 1), normal(uniform(99)));
      const ref = referenceGradients(problem, dOut, mc.biasGrad, 'float64', mc.sinkGrad);
      const fd = finiteDifferenceGradients(q, k, v, options, dOut, { biasGrad: mc.biasGrad, sinkGrad: mc.sinkGrad });
      for (const g of ['dq', 'dk', 'dv', 'dBias', 'dSink'] as const) {
        const a = ref[g];
        const b = fd[g];
        expect(a === undefined, `${g} present in one only`).toBe(b === undefined);
        if (!a || !b) continue;
        const scale = Math.max(maxAbs(b), 1e-3);
        let worst = 0;
        for (let n = 0; n < a.length; n++) {
          expect(Number.isFinite(a[n]), `${g}[${n}] = ${a[n]}`).toBe(true);
          worst = Math.max(worst, Math.abs(a[n] - b[n]));
        }
        expect(worst / scale, `${g}: max |ref - fd| ${worst.toExponential(2)} vs max |fd| ${scale.toExponential(2)}`).toBeLessThan(1e-6);
      }
      if (mc.sinkGrad) expect(maxAbs(ref.dSink!)).toBeGreaterThan(0);
    });
  }

  it('a row that sees no key but its sink has zero gradients', () => {
    // causal bottom-right, Sq 6 > Sk 3: rows 0..2 see nothing
    const c = { batch: 1, headsQ: 1, seqQ: 6, seqK: 3, dimQK: 2, causal: true } as const;
    const { q, k, v, options } = makeCase(c, 3);
    const problem = validateAttention(q, k, v, { ...options, sink: [0.5] });
    const ref = referenceGradients(problem, randomFloats(12, normal(uniform(5))));
    expect(Array.from(ref.dq.subarray(0, 6))).toEqual(new Array(6).fill(0));
    expect(Array.from(ref.dq.subarray(6)).some((x) => x !== 0)).toBe(true);
  });
});

// odd sizes for the backends: head dim 59, lengths 1 and 97, Sq != Sk, GQA. Every case runs on the
// CPU; those marked `gpu` on WebGPU too, chosen so that together they cover every path of the
// portable kernels (each new pipeline costs seconds of llvmpipe compilation on a cold cache)
const BACKEND_CASES: Array<ModCase & { gpu?: true }> = [
  { name: 'sink [Nq] dSink, GQA', c: { batch: 1, headsQ: 4, headsKv: 2, seqQ: 97, seqK: 70, dimQK: 59 }, mods: (c) => ({ sink: sinkLogits(c.headsQ, 4) }), sinkGrad: true },
  { name: 'sink [B, Nq] dSink, causal, fully masked rows', c: { batch: 2, headsQ: 2, seqQ: 97, seqK: 40, dimQK: 32, causal: true }, mods: (c) => ({ sink: Tensor.fromData(sinkLogits(c.batch * c.headsQ, 5), [c.batch, c.headsQ]) }), sinkGrad: true },
  { name: 'sink, one query', c: { batch: 1, headsQ: 2, seqQ: 1, seqK: 97, dimQK: 59, causal: true }, mods: (c) => ({ sink: sinkLogits(c.headsQ, 6) }) },
  { name: 'maskMod with fully masked rows, GQA', c: { batch: 1, headsQ: 4, headsKv: 2, seqQ: 97, seqK: 70, dimQK: 59 }, mods: () => ({ maskMod: holeyCausal(5, 2) }) },
  { name: 'documentMask + sink + bias dBias', c: { batch: 2, headsQ: 2, seqQ: 97, seqK: 97, dimQK: 32, bias: 'random', maskShape: 'batch' }, mods: (c) => ({ maskMod: documentMask(docIds(97, 2), { causal: true }), sink: sinkLogits(c.headsQ, 9) }), biasGrad: true, sinkGrad: true },
  { name: 'blockMask (sliding window), bool mask', c: { batch: 1, headsQ: 2, seqQ: 97, seqK: 97, dimQK: 40, mask: 'blocks', maskShape: 'full' }, mods: async () => ({ blockMask: await createBlockMask(slidingWindow(20), null, null, 97, 97, { blockSize: 16 }) }) },
  { name: 'scoreMod softcap as a function, GQA', c: { batch: 1, headsQ: 4, headsKv: 2, seqQ: 97, seqK: 70, dimQK: 59 }, mods: () => ({ scoreMod: softcapFunction(4) }) },
  { name: 'scoreMod alibi() + sink dSink, causal (rows with no key)', c: { batch: 2, headsQ: 2, seqQ: 97, seqK: 60, dimQK: 32, causal: true }, mods: (c) => ({ scoreMod: alibi(alibiSlopes(c.headsQ)), sink: sinkLogits(c.headsQ, 12) }), sinkGrad: true },
  { name: 'scoreMod relative-bias table + bias dBias, |scale| > 1', c: { batch: 1, headsQ: 2, seqQ: 70, seqK: 97, dimQK: 16, scale: 3, bias: 'random', maskShape: 'full' }, mods: (c) => ({ scoreMod: relativeBias(c.headsQ, 8, 2) }), biasGrad: true },
  { name: 'scoreMod piecewise + option softcap, |scale| > 1', c: { batch: 1, headsQ: 2, seqQ: 33, seqK: 50, dimQK: 16, scale: 3, softcap: 5, causal: true }, mods: () => ({ scoreMod: piecewise }) },
  { name: 'scoreMod hiding pairs with -inf (rows with no key)', c: { batch: 1, headsQ: 2, seqQ: 97, seqK: 40, dimQK: 59 }, mods: () => ({ scoreMod: bandByScore }) },
  { name: 'maskMod on one query', c: { batch: 1, headsQ: 2, seqQ: 1, seqK: 97, dimQK: 59 }, mods: () => ({ maskMod: causal().and(maskMod(({ kv }) => kv.mod(3).ne(0))) }) },
  // on WebGPU too
  { name: 'dropout + scoreMod + maskMod (fully masked rows) + sink dSink, GQA', c: { batch: 1, headsQ: 4, headsKv: 2, seqQ: 97, seqK: 80, dimQK: 59 }, mods: (c) => ({ dropout: { p: 0.2, seed: 9, offset: 1 }, scoreMod: softcapFunction(5), maskMod: holeyCausal(6, 5), sink: sinkLogits(c.headsQ, 19) }), sinkGrad: true, gpu: true },
  { name: 'TND varlen (an empty sequence): maskMod reading the lengths + scoreMod + sink dSink', c: { layout: 'TND', batch: 3, headsQ: 2, seqQ: 0, seqK: 0, seqLensQ: [20, 0, 33], seqLensK: [40, 5, 33], dimQK: 59 }, mods: (c) => ({ maskMod: holeyCausal(4, 1), scoreMod: softcap(3), sink: sinkLogits(c.headsQ, 14) }), sinkGrad: true, gpu: true },
  { name: 'relative-bias table then a band by score (-inf: rows with no key) + bias dBias, |scale| > 1', c: { batch: 1, headsQ: 2, seqQ: 97, seqK: 40, dimQK: 16, scale: 3, bias: 'random', maskShape: 'full' }, mods: (c) => ({ scoreMod: composeScoreMods(relativeBias(c.headsQ, 8, 2), bandByScore) }), biasGrad: true, gpu: true },
  { name: 'scoreMod min/max/select + maskMod + option softcap, one query', c: { batch: 1, headsQ: 2, seqQ: 1, seqK: 97, dimQK: 59, softcap: 3 }, mods: () => ({ scoreMod: piecewise, maskMod: maskMod(({ kv }) => kv.mod(3).ne(0)) }), gpu: true },
  { name: 'float16: scoreMod + maskMod + sink', c: { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 65, seqK: 80, dimQK: 64 }, mods: (c) => ({ scoreMod: piecewise, maskMod: holeyCausal(5, 0), sink: sinkLogits(c.headsQ, 15) }), gpu: true },
  // tiles the block mask hides entirely (skipped) and ones it keeps whole (no mask evaluated),
  // intersected with a bool mask's blocks
  { name: 'blockMask with empty and full tiles (causal documents) + bool mask, GQA', c: { batch: 1, headsQ: 2, headsKv: 1, seqQ: 200, seqK: 200, dimQK: 24, mask: 'blocks', maskShape: '2d' }, mods: async () => ({ blockMask: await createBlockMask(documentMask(Int32Array.from({ length: 200 }, (_, i) => Math.floor(i / 90)), { causal: true }), null, null, 200, 200, { blockSize: 32 }) }), gpu: true },
];

const backends = await backendsHere();
for (const { name, skip } of backends) {
  describe.skipIf(skip !== undefined)(`attention backward with mods on ${name}`, () => {
    for (const mc of BACKEND_CASES) {
      if (name === 'webgpu' && !mc.gpu) continue;
      it(`${mc.name} (${caseName(mc.c)})`, async () => {
        const { q, k, v, options } = makeCase(mc.c, 21);
        Object.assign(options, await mc.mods(mc.c));
        const problem = validateAttention(q, k, v, options);
        const { dOut, dOutValues } = makeGradCase(mc.c, 21, problem.outShape);
        // the forward's out and LSE from the CPU (the backward takes them as inputs; a WebGPU
        // forward would only add its pipelines' compile time here)
        const forward = await attention(q, k, v, { ...options, returnLse: true, backend: 'cpu' });
        const grads = await attentionBackward(q, k, v, forward.out, dOut, forward.lse!, { ...options, backend: name, biasGrad: mc.biasGrad, sinkGrad: mc.sinkGrad });
        const { failures } = checkGradients(problem, dOutValues, grads, mc.biasGrad, undefined, mc.sinkGrad);
        expect(failures.join('; ')).toBe('');
        // float32 stays on the portable tier; float16 takes the tensor-core tier where the adapter has it
        if (name === 'webgpu') expect(mc.c.dtype === 'float16' ? ['portable', 'sgmatrix'] : ['portable']).toContain(grads.stats?.tier);
      });
    }

    it('the unfused baseline takes mask functions and block masks (fully masked rows), not score functions or sinks', async () => {
      const { naiveAttentionBackward } = await import('../dist/index.js');
      const c: AttentionCase = { batch: 1, headsQ: 2, headsKv: 1, seqQ: 97, seqK: 70, dimQK: 59 };
      const { q, k, v, options } = makeCase(c, 8);
      // a mask reading captured tensors (document ids), so the mods data is bound
      const docs = documentMask(docIds(97, 4), { kvDocIds: docIds(70, 4) }).and(holeyCausal(5, 1));
      const mask = { blockMask: await createBlockMask(docs, null, null, 97, 70, { blockSize: 16 }) };
      const problem = validateAttention(q, k, v, { ...options, ...mask });
      const { dOut, dOutValues } = makeGradCase(c, 8, problem.outShape);
      const forward = await attention(q, k, v, { ...options, ...mask, returnLse: true, backend: 'cpu' });
      const grads = await naiveAttentionBackward(q, k, v, forward.out, dOut, forward.lse!, { ...options, ...mask, backend: name });
      expect(checkGradients(problem, dOutValues, grads).failures.join('; ')).toBe('');
      for (const refused of [{ scoreMod: softcapFunction(3) }, { sink: [0, 1] }]) {
        await expect(naiveAttentionBackward(q, k, v, forward.out, dOut, forward.lse!, { ...options, ...refused, backend: name })).rejects.toThrow(UnsupportedError);
      }
    });

    it.skipIf(name === 'webgpu')('attentionWithGrad takes a sink and returns dSink', async () => {
      const c: AttentionCase = { batch: 1, headsQ: 2, seqQ: 33, seqK: 40, dimQK: 16, causal: true };
      const { q, k, v, options } = makeCase(c, 2);
      const sink = sinkLogits(2, 7);
      const problem = validateAttention(q, k, v, { ...options, sink });
      const { dOut, dOutValues } = makeGradCase(c, 2, problem.outShape);
      const step = await attentionWithGrad(q, k, v, { ...options, sink, sinkGrad: true, backend: name });
      const grads = await step.backward(dOut);
      expect(grads.dSink!.shape).toEqual([2]);
      expect(checkGradients(problem, dOutValues, grads, false, undefined, true).failures.join('; ')).toBe('');
    });
  });
}

describe.skipIf(backends.find((b) => b.name === 'webgpu')?.skip !== undefined)('WebGPU backward with mods on GPU tensors', () => {
  it('leaves dq, dk, dv on the GPU and gives dSink from the row statistics read back (float16, odd sizes)', async () => {
    const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
    const rt = await getRuntime();
    const c: AttentionCase = { dtype: 'float16', batch: 1, headsQ: 1, seqQ: 23, seqK: 31, dimQK: 13 };
    const { q, k, v, options } = makeCase(c, 3);
    Object.assign(options, { maskMod: holeyCausal(4, 1), scoreMod: softcap(3), sink: sinkLogits(1, 16) });
    const problem = validateAttention(q, k, v, options);
    const { dOut, dOutValues } = makeGradCase(c, 3, problem.outShape);
    const forward = await attention(q, k, v, { ...options, returnLse: true, backend: 'cpu' });
    const [gq, gk, gv, gout, gdo, glse] = packOnGpu(rt, [q, k, v, forward.out, dOut, forward.lse!]);
    const grads = await attentionBackward(gq, gk, gv, gout, gdo, glse, { ...options, sinkGrad: true });
    expect(grads.dq.location).toBe('webgpu');
    expect(grads.dSink!.location).toBe('cpu');
    const read = async (t: Tensor) => {
      const bytes = await rt.read(t.gpu!.buffer, t.gpu!.byteOffset, Math.ceil((t.size * 2) / 4) * 4);
      return Tensor.fromData(new Uint16Array(bytes, 0, t.size), t.shape, 'float16');
    };
    const host = { dq: await read(grads.dq), dk: await read(grads.dk), dv: await read(grads.dv) };
    expect(checkGradients(problem, dOutValues, host).failures.join('; ')).toBe('');
    const ref = referenceGradients(problem, dOutValues, false, 'float64', true);
    const naive = referenceGradients(problem, dOutValues, false, 'float16', true);
    const got = grads.dSink!.toFloat32();
    // dSink is reduced on the host from the pre pass's float32 D of the float16 out / dO: within the naive float16 backward's error of it
    let err = 0;
    let bound = 0;
    for (let h = 0; h < 1; h++) {
      err = Math.max(err, Math.abs(got[h] - ref.dSink![h]));
      bound = Math.max(bound, 2 * Math.abs(naive.dSink![h] - ref.dSink![h]) + 1e-3 * Math.abs(ref.dSink![h]));
    }
    expect(err).toBeLessThanOrEqual(bound);
    expect(Math.max(...Array.from(got).map(Math.abs))).toBeGreaterThan(0);
  });
});

describe('backward validation with mods', () => {
  const { q, k, v } = makeCase({ batch: 1, headsQ: 2, seqQ: 4, seqK: 4, dimQK: 4 }, 1);
  const out = Tensor.fromData(new Float32Array(32), [1, 2, 4, 4]);
  const lse = Tensor.fromData(new Float32Array(8), [1, 2, 4]);
  it('sinkGrad needs per-head sink logits', async () => {
    const lib = await import('../dist/index.js');
    await expect(attentionBackward(q, k, v, out, out, lse, { sinkGrad: true, backend: 'cpu' })).rejects.toThrow(ValueError);
    await expect(attentionWithGrad(q, k, v, { sinkGrad: true, backend: 'cpu' })).rejects.toThrow(/sinkGrad/);
    const rowSink = lib.sinkMod(({ q: i }) => i.toFloat().mul(0.1));
    await expect(attentionBackward(q, k, v, out, out, lse, { sink: rowSink, sinkGrad: true, backend: 'cpu' })).rejects.toThrow(/per-head sink logits/);
    // without sinkGrad, a sink function of the row is fine
    await expect(attentionBackward(q, k, v, out, out, lse, { sink: rowSink, backend: 'cpu' })).resolves.toBeDefined();
  });

});

describe('CPU backward with mods on every engine', () => {
  it('scalar kernels, the inline path and 2 worker threads agree with the reference', async () => {
    const { createCpuEngine } = await import('../dist/ops/cpu-engine.js');
    const { runBackward } = await import('../dist/ops/attention/backward/cpu/run.js');
    const { validateAttentionBackward } = await import('../dist/index.js');
    const c: AttentionCase = { batch: 2, headsQ: 2, seqQ: 70, seqK: 90, dimQK: 16 };
    const { q, k, v, options } = makeCase(c, 6);
    Object.assign(options, { maskMod: holeyCausal(4, 3), sink: sinkLogits(2, 10) });
    const problem = validateAttention(q, k, v, options);
    const { dOut, dOutValues } = makeGradCase(c, 6, problem.outShape);
    const forward = await attention(q, k, v, { ...options, returnLse: true, backend: 'cpu' });
    const bp = validateAttentionBackward(q, k, v, forward.out, dOut, forward.lse!, options);
    for (const engineOptions of [{ threads: 0, kernels: 'scalar' as const }, { threads: 0 }, { threads: 2, inlineFlops: 0 }]) {
      const engine = await createCpuEngine(engineOptions);
      try {
        const grads = await runBackward(engine, bp);
        expect(checkGradients(problem, dOutValues, grads).failures.join('; '), JSON.stringify(engineOptions)).toBe('');
      } finally {
        engine.terminate();
      }
    }
  });
});

describe('block status of a tile not aligned to the grid', async () => {
  const { tileStatus } = await import('../dist/ops/attention/block-mask/kernel-grid.js');
  const { EMPTY, FULL, PARTIAL, emptyGrid } = await import('../dist/ops/attention/block-mask/grid.js');
  it('is EMPTY / FULL only when every block it touches is', () => {
    // 2 × 2 blocks of 8: row 0 (FULL, EMPTY), row 1 (FULL, PARTIAL)
    const g = emptyGrid(1, 1, 16, 16, 8, 8);
    g.status.set([FULL, EMPTY, FULL, PARTIAL]);
    expect(tileStatus(g, 0, 0, 0, 8, 8, 8)).toBe(EMPTY);
    expect(tileStatus(g, 0, 0, 2, 12, 0, 5)).toBe(FULL);
    expect(tileStatus(g, 0, 0, 4, 8, 6, 4)).toBe(PARTIAL);
    expect(tileStatus(g, 0, 0, 0, 4, 9, 64)).toBe(EMPTY); // keys past the end clamp to the last block
  });
});

describe('scoreDerivative (the score function\'s chain rule)', async () => {
  const { scoreDerivative } = await import('../dist/ops/attention/mods/derivative.js');
  const { Lowering } = await import('../dist/ops/attention/mods/program.js');
  const { makeEnv, programEvaluator, VAR_INDEX } = await import('../dist/ops/attention/mods/evaluate.js');
  const table = capture(Float32Array.from([0.5, -1, 2, 0.25]), [4], 'table');
  /** f and f' of a score function as float64 functions of the score (pair (1, 0, 2, 5) of lengths 7 / 9). */
  const compile = (mod: ReturnType<typeof scoreMod>) => {
    const lowering = new Lowering();
    const f = programEvaluator(lowering.lower(mod.root), lowering.tensors);
    const df = programEvaluator(lowering.lower(scoreDerivative(mod.root)), lowering.tensors);
    const env = makeEnv();
    Object.assign(env, { [VAR_INDEX.b]: 1, [VAR_INDEX.h]: 0, [VAR_INDEX.q]: 2, [VAR_INDEX.kv]: 5, [VAR_INDEX.qLen]: 7, [VAR_INDEX.kvLen]: 9 });
    const at = (g: typeof f) => (s: number) => { env[VAR_INDEX.score] = s; return g(env); };
    return { f: at(f), df: at(df) };
  };
  const MODS: Array<[string, ReturnType<typeof scoreMod>]> = [
    ['softcap', softcap(3)],
    ['neg / sub / mul by variables', scoreMod(({ score, q, kv }) => score.neg().sub(kv.toFloat()).mul(score.mul(q.add(1))))],
    ['div both ways', scoreMod(({ score }) => score.div(score.mul(score).add(1)).add(float(2).div(score.abs().add(1))))],
    ['exp / log / sqrt', scoreMod(({ score }) => score.mul(score).add(1).sqrt().log().add(score.mul(0.1).exp()))],
    ['min / max / clamp / abs', scoreMod(({ score }) => score.clamp(-1.5, 2).add(score.abs().mul(0.5)).add(score.max(0.3).min(score.mul(2))))],
    ['select on the score and on positions', scoreMod(({ score, q, kv }) => score.gt(0).select(score.mul(3), score.tanh()).add(kv.gt(q).select(score, 2)))],
    ['captured tensor indexed by a variable and by toInt(score)', scoreMod(({ score, h }) => score.mul(table.at(h)).add(table.at(score.toInt().clamp(0, 3))))],
  ];
  for (const [name, mod] of MODS) {
    it(`matches central differences: ${name}`, () => {
      const { f, df } = compile(mod);
      for (const s of [-2.7, -0.9, -0.2, 0.35, 0.8, 1.4, 3.1]) {
        const h = 1e-6;
        const numeric = (f(s + h) - f(s - h)) / (2 * h);
        expect(df(s), `${name} at ${s}`).toBeCloseTo(numeric, 5);
      }
    });
  }

  it('gives 0 for floor / ceil / toInt of the score and for terms without it', () => {
    const { df } = compile(scoreMod(({ score, q }) => score.floor().add(score.ceil()).add(score.toInt().toFloat()).add(q.toFloat().mul(2))));
    for (const s of [-1.3, 0.2, 4.7]) expect(df(s)).toBe(0);
    const { f: g, df: dg } = compile(scoreMod(({ score }) => score.mul(score)));
    expect(dg(1.5)).toBe(3);
    expect(g(1.5)).toBe(2.25);
  });
});
