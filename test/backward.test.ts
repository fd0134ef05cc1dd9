// The attention backward on every backend present: the backward suite against the float64
// reference (src/testing/backward.ts pass rules), fused and unfused, plus determinism, memory,
// attentionWithGrad and the typed errors of the backward's own validation.
import { describe, expect, it } from 'vitest';
import {
  DTypeError, ShapeError, Tensor, ValueError, attention, attentionBackward, attentionWithGrad, naiveAttentionBackward, validateAttention,
} from '../dist/index.js';
import { BACKWARD_SUITE, type GradCase, caseName, checkGradients, makeCase, makeGradCase } from '../dist/testing/index.js';
import { backendsHere } from './helpers.js';
import { packOnGpu } from './webgpu-helpers.js';

// the WebGPU backward runs on llvmpipe here: every case but the CPU-only long ones and those meant
// for a hardware adapter's tensor-core tier
const backends = await backendsHere();
const softwareGpu = await (async () => {
  if (backends.find((b) => b.name === 'webgpu')?.skip) return true;
  const { gpuAdapterInfo } = await import('../dist/index.js');
  const { isSoftwareAdapter } = await import('../dist/engines/webgpu/device.js');
  const info = await gpuAdapterInfo();
  return info === undefined || isSoftwareAdapter(info);
})();

async function runCase(backend: 'cpu' | 'webgpu', c: GradCase, seed: number, naive = false) {
  const { q, k, v, options } = makeCase(c, seed);
  const problem = validateAttention(q, k, v, options);
  const { dOut, dOutValues } = makeGradCase(c, seed, problem.outShape);
  const forward = await attention(q, k, v, { ...options, returnLse: true, backend });
  const run = naive ? naiveAttentionBackward : attentionBackward;
  const grads = await run(q, k, v, forward.out, dOut, forward.lse!, { ...options, backend, biasGrad: c.biasGrad });
  return { problem, dOutValues, grads };
}

for (const { name, skip } of backends) {
  if (skip) console.warn(`\n!!! SKIPPING the attention backward on ${name}: ${skip}\n`);
  describe.skipIf(skip !== undefined)(`attention backward on ${name}`, () => {
    for (const c of BACKWARD_SUITE) {
      if (name === 'webgpu' && (c.cpuOnly || (c.hardwareGpu && softwareGpu))) continue;
      it(caseName(c) + (c.biasGrad ? ' dBias' : ''), async () => {
        const { problem, dOutValues, grads } = await runCase(name, c, 21);
        const { failures } = checkGradients(problem, dOutValues, grads, c.biasGrad);
        expect(failures.join('; ')).toBe('');
        expect(grads.stats?.launches).toBeGreaterThan(0);
      });
    }

    it('the unfused backward agrees too, with more memory than the fused one', async () => {
      const c: GradCase = { batch: 1, headsQ: 2, headsKv: 1, seqQ: 97, seqK: 120, dimQK: 32, dimRope: 8, dimV: 24, causal: true, bias: 'random', maskShape: 'batch', dropout: 0.3 };
      const fused = await runCase(name, c, 4);
      const naive = await runCase(name, c, 4, true);
      expect(checkGradients(naive.problem, naive.dOutValues, naive.grads).failures.join('; ')).toBe('');
      expect(naive.grads.stats!.intermediateBytes).toBeGreaterThan(fused.grads.stats!.intermediateBytes);
    });

    it('is deterministic: bit-identical gradients from run to run', async () => {
      const c: GradCase = { batch: 2, headsQ: 4, headsKv: 2, seqQ: 90, seqK: 150, dimQK: 24, causal: true, bias: 'random', maskShape: 'batch', biasGrad: true };
      const a = await runCase(name, c, 9);
      const b = await runCase(name, c, 9);
      for (const g of ['dq', 'dk', 'dv', 'dBias'] as const) expect(b.grads[g]!.data, g).toEqual(a.grads[g]!.data);
    });

    it('a NaN in q gives NaN gradients where it reaches (its row of dq, every dk), never zeros', async () => {
      const c: GradCase = { batch: 1, headsQ: 1, seqQ: 4, seqK: 5, dimQK: 4 };
      const { q, k, v, options } = makeCase(c, 1);
      (q.data as Float32Array)[2] = NaN; // query row 0
      const problem = validateAttention(q, k, v, options);
      const { dOut } = makeGradCase(c, 1, problem.outShape);
      const forward = await attention(q, k, v, { ...options, returnLse: true, backend: name });
      const grads = await attentionBackward(q, k, v, forward.out, dOut, forward.lse!, { ...options, backend: name });
      const dq = grads.dq.toFloat32();
      expect(Array.from(dq.subarray(0, 4)).every(Number.isNaN)).toBe(true);
      expect(Array.from(dq.subarray(4)).every(Number.isFinite)).toBe(true);
      expect(Array.from(grads.dk.toFloat32()).every(Number.isNaN)).toBe(true);
    });

    it('attentionWithGrad: one call for the forward, backward(dOut) once', async () => {
      const c: GradCase = { layout: 'BSND', batch: 1, headsQ: 2, seqQ: 33, seqK: 40, dimQK: 16, causal: true, dropout: 0.25 };
      const { q, k, v, options } = makeCase(c, 2);
      const problem = validateAttention(q, k, v, options);
      const { dOut, dOutValues } = makeGradCase(c, 2, problem.outShape);
      const step = await attentionWithGrad(q, k, v, { ...options, backend: name });
      expect(step.out.shape).toEqual(problem.outShape);
      expect(step.lse.shape).toEqual(problem.lseShape);
      await expect(step.backward({ data: new Float32Array(3), shape: [3] })).rejects.toThrow(ShapeError);
      const grads = await step.backward(dOut);
      expect(checkGradients(problem, dOutValues, grads).failures.join('; ')).toBe('');
      await expect(step.backward(dOut)).rejects.toThrow(/once/);
    });
  });
}

describe('backward validation', () => {
  const { q, k, v } = makeCase({ batch: 1, headsQ: 2, seqQ: 5, seqK: 6, dimQK: 4 }, 1);
  const out = Tensor.fromData(new Float32Array(40), [1, 2, 5, 4]);
  const lse = Tensor.fromData(new Float32Array(10), [1, 2, 5]);
  it('names out, dOut and lse in shape and dtype errors, before any work', async () => {
    await expect(attentionBackward(q, k, v, Tensor.fromData(new Float32Array(36), [1, 2, 6, 3]), out, lse)).rejects.toThrow(/'out'.*\[1, 2, 5, 4\]/);
    await expect(attentionBackward(q, k, v, out, Tensor.fromData(new Uint16Array(40), [1, 2, 5, 4], 'float16'), lse)).rejects.toThrow(DTypeError);
    await expect(attentionBackward(q, k, v, out, out, Tensor.fromData(new Float32Array(12), [1, 2, 6]))).rejects.toThrow(/'lse'/);
    await expect(attentionBackward(q, k, v, out, out, lse, { biasGrad: true })).rejects.toThrow(ValueError);
    await expect(attentionBackward(q, k, v, out, out, lse, { window: [-3, 0] })).rejects.toThrow(ValueError);
  });
});

describe('CPU backward engines and folds', () => {
  it('scalar kernels, the inline path and 2 threads agree; a bias broadcast along keys folds its key blocks (and gets 0)', async () => {
    const { createCpuEngine } = await import('../dist/ops/cpu-engine.js');
    const { runBackward } = await import('../dist/ops/attention/backward/cpu/run.js');
    const { validateAttentionBackward } = await import('../dist/index.js');
    // bias [B, Nq, Sq, 1]: every key block adds into the same dBias elements
    const c: GradCase = { batch: 2, headsQ: 2, seqQ: 40, seqK: 100, dimQK: 16, causal: true, softcap: 2, dropout: 0.1 };
    const { q, k, v, options } = makeCase(c, 6);
    options.bias = Tensor.fromData(Float32Array.from({ length: 2 * 2 * 40 }, (_, i) => Math.sin(i)), [2, 2, 40, 1]);
    const problem = validateAttention(q, k, v, options);
    const { dOut, dOutValues } = makeGradCase(c, 6, problem.outShape);
    const forward = await attention(q, k, v, { ...options, returnLse: true, backend: 'cpu' });
    const bp = validateAttentionBackward(q, k, v, forward.out, dOut, forward.lse!, { ...options, biasGrad: true });
    const results = [];
    for (const engineOptions of [{ threads: 0, kernels: 'scalar' as const }, { threads: 0 }, { threads: 2, inlineFlops: 0 }]) {
      const engine = await createCpuEngine(engineOptions);
      try {
        results.push(await runBackward(engine, bp));
      } finally {
        engine.terminate();
      }
    }
    for (const grads of results) {
      expect(grads.dBias!.shape).toEqual([2, 2, 40, 1]);
      const { dBias, ...rest } = grads;
      expect(checkGradients(problem, dOutValues, rest).failures.join('; ')).toBe('');
      // softmax ignores a per-row shift: the exact gradient of a key-broadcast bias is 0 (float32 leaves round-off)
      expect(Math.max(...Array.from(dBias!.toFloat32(), Math.abs))).toBeLessThan(2e-6);
    }
    // the WASM kernels on one thread and on two agree bit for bit (the work split changes nothing)
    for (const g of ['dq', 'dk', 'dv', 'dBias'] as const) expect(results[2][g]!.data, g).toEqual(results[1][g]!.data);
  });
});

describe.skipIf(backends.find((b) => b.name === 'webgpu')?.skip !== undefined)('WebGPU backward on GPU tensors', () => {
  it('takes GPU tensors at unaligned offsets (f16, odd sizes) and leaves the gradients on the GPU', async () => {
    const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
    const rt = await getRuntime();
    const read = async (t: Tensor) => {
      const bytes = await rt.read(t.gpu!.buffer, t.gpu!.byteOffset, Math.ceil((t.size * (t.dtype === 'float16' ? 2 : 4)) / 4) * 4);
      return t.dtype === 'float16' ? Tensor.fromData(new Uint16Array(bytes, 0, t.size), t.shape, 'float16') : Tensor.fromData(new Float32Array(bytes, 0, t.size), t.shape);
    };
    // float16: the gradients are cast on the GPU (float32 ones are the kernels' own buffers)
    for (const dtype of ['float16'] as const) {
      const c: GradCase = { dtype, layout: 'BSND', batch: 1, headsQ: 4, headsKv: 2, seqQ: 23, seqK: 31, dimQK: 13, dimRope: 3, dimV: 7, causal: true };
      const { q, k, v, options } = makeCase(c, 3);
      const problem = validateAttention(q, k, v, options);
      const { dOut, dOutValues } = makeGradCase(c, 3, problem.outShape);
      const [gq, gk, gv, gqr, gkr, gdo] = packOnGpu(rt, [q, k, v, options.qRope as Tensor, options.kRope as Tensor, dOut]);
      const step = await attentionWithGrad(gq, gk, gv, { ...options, qRope: gqr, kRope: gkr });
      expect(step.lse.location).toBe('webgpu');
      const grads = await step.backward(gdo);
      for (const g of [grads.dq, grads.dk, grads.dv, grads.dqRope!, grads.dkRope!]) {
        expect(g.location).toBe('webgpu');
        expect(g.dtype).toBe(dtype);
      }
      const host = { dq: await read(grads.dq), dk: await read(grads.dk), dv: await read(grads.dv), dqRope: await read(grads.dqRope!), dkRope: await read(grads.dkRope!) };
      expect(checkGradients(problem, dOutValues, host).failures.join('; '), dtype).toBe('');
    }
  });
});

// The portable tier's two kernel families (tiled.wgsl.ts by default, the classic ones for dBias and
// devices the tiled ones do not fit) at model widths: each against float64, and against each other
describe.skipIf(backends.find((b) => b.name === 'webgpu')?.skip !== undefined)('WebGPU portable backward: tiled and classic kernels', () => {
  const CASES: GradCase[] = [
    { batch: 1, headsQ: 2, seqQ: 97, seqK: 130, dimQK: 128, causal: true },
    { batch: 1, headsQ: 4, headsKv: 1, seqQ: 70, seqK: 70, dimQK: 64, causal: 'top-left', dropout: 0.2, softcap: 5 },
    { layout: 'BSND', batch: 1, headsQ: 2, headsKv: 1, seqQ: 40, seqK: 66, dimQK: 128, dimRope: 64, dimV: 128, causal: true },
    { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 65, seqK: 33, dimQK: 128, alibi: true },
    { layout: 'TND', batch: 3, headsQ: 2, seqQ: 0, seqK: 0, seqLensQ: [37, 0, 20], seqLensK: [50, 9, 20], dimQK: 59, window: [16, 4] },
  ];
  for (const c of CASES) {
    it(caseName(c), async () => {
      const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
      const { runBackwardPlan, runPortableBackward } = await import('../dist/ops/attention/backward/webgpu/portable.js');
      const { tiledConfigs, tiledPlan, tiledQuadsFit } = await import('../dist/ops/attention/backward/webgpu/tiled.js');
      const { validateAttentionBackward } = await import('../dist/index.js');
      const rt = await getRuntime();
      const { q, k, v, options } = makeCase(c, 5);
      const problem = validateAttention(q, k, v, options);
      const { dOut, dOutValues } = makeGradCase(c, 5, problem.outShape);
      const forward = await attention(q, k, v, { ...options, returnLse: true, backend: 'webgpu' });
      const bp = validateAttentionBackward(q, k, v, forward.out, dOut, forward.lse!, options);
      const configs = tiledConfigs(bp, rt.limits);
      expect(configs, 'a tiled configuration fits llvmpipe').toBeDefined();
      // 4-element loads where the head dims allow them (D 59 takes the element path)
      expect(tiledQuadsFit(bp, rt.limits.minStorageBufferOffsetAlignment)).toBe(c.dimQK % 4 === 0);
      const tiled = await runBackwardPlan(rt, bp, await tiledPlan(rt, bp, configs!));
      const classic = await runPortableBackward(rt, bp);
      expect(checkGradients(problem, dOutValues, tiled).failures.join('; ')).toBe('');
      expect(checkGradients(problem, dOutValues, classic).failures.join('; ')).toBe('');
      for (const g of ['dq', 'dk', 'dv'] as const) {
        const a = tiled[g].toFloat32();
        const b = classic[g].toFloat32();
        let d = 0;
        let m = 1e-30;
        for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); }
        expect(d / m, g).toBeLessThan(c.dtype === 'float16' ? 1e-3 : 1e-6);
      }
    });
  }
});
