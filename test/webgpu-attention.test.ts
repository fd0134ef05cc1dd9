// WebGPU attention beyond the shared SUITE: GPU tensors in and out (no readback), inputs at
// unaligned offsets inside shared buffers, float16 output with odd Dv, the naive 3-kernel path,
// run statistics, pipeline reuse, limit reasons, a caller's device, and device loss.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DeviceError, Tensor, UnsupportedError, attention, gpuDevice, naiveAttention, referenceAttention, validateAttention,
  type AttentionOptions,
} from '../dist/index.js';
import { SUITE, type AttentionCase, caseName, checkF32, checkLowPrecision, makeCase } from '../dist/testing/index.js';
import { type GpuRuntime, getRuntime } from '../dist/engines/webgpu/runtime.js';
import { quadLoadsFit } from '../dist/ops/attention/webgpu/portable/flash.js';
import { ownDevice, skipNotice } from './webgpu-helpers.js';

const skip = await skipNotice('the WebGPU attention tests');

/** Checks out (and LSE) of a CPU result against the float64 reference with the suite's rules. */
function expectClose(problem: ReturnType<typeof validateAttention>, out: Float32Array, lse?: Float32Array) {
  const ref = referenceAttention(problem);
  const failures = [
    problem.dtype === 'float32' ? checkF32('out', out, ref.out) : checkLowPrecision('out', out, referenceAttention(problem, 'float16').out, ref.out),
    lse ? checkF32('lse', lse, ref.lse, problem.dtype === 'float16' ? 1e-3 : 1e-5) : undefined,
  ].filter(Boolean);
  expect(failures.join('; ')).toBe('');
}

async function readFloat32(rt: GpuRuntime, t: Tensor): Promise<Float32Array> {
  const bytes = await rt.read(t.gpu!.buffer, t.gpu!.byteOffset, t.size * (t.dtype === 'float16' ? 2 : 4));
  return t.dtype === 'float16' ? Tensor.fromData(new Uint16Array(bytes), t.shape, 'float16').toFloat32() : new Float32Array(bytes);
}

describe.skipIf(skip !== undefined)('WebGPU attention', () => {
  let rt: GpuRuntime;
  beforeAll(async () => {
    rt = await getRuntime();
  });

  /** Puts CPU tensors into one GPU buffer at offsets aligned to `align` bytes but not to 256. */
  function toGpu(tensors: Tensor[], align = 4): Tensor[] {
    let offset = align;
    const placed = tensors.map((t) => {
      const bytes = (t.data as ArrayBufferView).byteLength;
      const at = offset;
      offset = Math.ceil((offset + bytes + align) / align) * align;
      return { t, at };
    });
    const buffer = rt.createBuffer(offset, 'test inputs');
    for (const { t, at } of placed) rt.write(buffer, at, t.data as ArrayBufferView);
    return placed.map(({ t, at }) => Tensor.fromGpuBuffer({ device: rt.device, buffer, byteOffset: at }, t.shape, t.dtype));
  }

  it('takes GPU tensors at unaligned offsets and leaves the result on the GPU, without readback', async () => {
    const c: AttentionCase = { layout: 'BSND', batch: 2, headsQ: 4, headsKv: 2, seqQ: 23, seqK: 31, dimQK: 24, dimV: 20, causal: true, mask: 'blocks', maskShape: 'full', returnLse: true };
    const { q, k, v, options } = makeCase(c, 7);
    const [gq, gk, gv, gm] = toGpu([q, k, v, options.mask as Tensor]);
    const commands: string[] = [];
    const detach = rt.observe({ queued: (cmd) => commands.push(cmd.kind) });
    const result = await attention(gq, gk, gv, { ...options, mask: gm });
    detach();
    // no copy: nothing was read back (the GPU mask's block table takes two small dispatches, issue 13)
    expect(commands).toEqual(['dispatch', 'dispatch', 'dispatch']);
    expect(result.out.location).toBe('webgpu');
    expect(result.out.gpu!.device).toBe(rt.device);
    expect(result.lse!.location).toBe('webgpu');
    expectClose(validateAttention(q, k, v, options), await readFloat32(rt, result.out), await readFloat32(rt, result.lse!));
  });

  it('GPU tensors at 16-byte offsets are read by quads (f32 and f16)', async () => {
    for (const dtype of ['float32', 'float16'] as const) {
      const c: AttentionCase = { dtype, layout: 'TND', batch: 2, headsQ: 4, headsKv: 2, seqQ: 0, seqK: 0, seqLensQ: [17, 30], seqLensK: [25, 9], dimQK: 32, dimRope: 8, dimV: 12, causal: true, returnLse: true };
      const { q, k, v, options } = makeCase(c, 9);
      const problem = validateAttention(q, k, v, options);
      const [gq, gk, gv, gqr, gkr] = toGpu([q, k, v, options.qRope as Tensor, options.kRope as Tensor], 16);
      const gpuProblem = validateAttention(gq, gk, gv, { ...options, qRope: gqr, kRope: gkr });
      expect(quadLoadsFit(gpuProblem, rt.limits.minStorageBufferOffsetAlignment)).toBe(true);
      const result = await attention(gq, gk, gv, { ...options, qRope: gqr, kRope: gkr });
      expectClose(problem, await readFloat32(rt, result.out), await readFloat32(rt, result.lse!));
    }
  });

  it('float16 GPU inputs with a float16 bias and odd Dv (halves OR-ed atomically)', async () => {
    const c: AttentionCase = { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 19, seqK: 27, dimQK: 33, dimV: 21, bias: 'neg-inf-blocks', maskShape: 'full' };
    const { q, k, v, options } = makeCase(c, 8);
    const bias16 = Tensor.fromData(new Uint16Array(Array.from((options.bias as Tensor).toFloat32(), (x) => (x === -Infinity ? 0xfc00 : 0))), (options.bias as Tensor).shape, 'float16');
    const cpuOptions: AttentionOptions = { ...options, bias: bias16 };
    const [gq, gk, gv, gb] = toGpu([q, k, v, bias16]);
    const gpu = await attention(gq, gk, gv, { ...options, bias: gb });
    expect(gpu.out.dtype).toBe('float16');
    expectClose(validateAttention(q, k, v, cpuOptions), await readFloat32(rt, gpu.out));
    const naive = await naiveAttention(q, k, v, { ...cpuOptions, backend: 'webgpu' });
    expectClose(validateAttention(q, k, v, cpuOptions), naive.out.toFloat32());
  });

  // a spread of the suite: varlen, GQA, MLA split form, windows, masks, -inf bias, ALiBi, float16
  const naiveCases = SUITE.filter((c) => c.layout === 'TND' || c.dimRope || c.window || c.preTokens !== undefined || c.mask === 'full-rows' ||
    c.bias === 'neg-inf-blocks' || c.alibi || c.dtype === 'float16');
  for (const c of naiveCases) {
    it(`naive path: ${caseName(c)}`, async () => {
      const { q, k, v, options } = makeCase(c, 99);
      const problem = validateAttention(q, k, v, options);
      const result = await naiveAttention(q, k, v, { ...options, backend: 'webgpu' });
      expect(result.stats!.launches).toBe(3);
      expect(result.stats!.intermediateBytes).toBeGreaterThanOrEqual(problem.batch * problem.headsQ * problem.seqQ * problem.seqK * 4);
      expectClose(problem, result.out.toFloat32(), c.returnLse ? result.lse!.toFloat32() : undefined);
    });
  }

  it('fused: one launch, no intermediates, and the second call reuses the pipeline', async () => {
    const { q, k, v, options } = makeCase({ batch: 1, headsQ: 2, seqQ: 40, seqK: 40, dimQK: 16, causal: true }, 3);
    await attention(q, k, v, { ...options, backend: 'webgpu' });
    const misses = rt.counters.pipelineMisses;
    const result = await attention(q, k, v, { ...options, backend: 'webgpu' });
    expect(rt.counters.pipelineMisses).toBe(misses);
    expect(result.stats).toEqual({ launches: 1, intermediateBytes: 0, backend: 'webgpu', tier: 'portable', threads: 1 });
  });

  it('says which limit a problem exceeds', async () => {
    const { q, k, v } = makeCase({ batch: 1, headsQ: 1, seqQ: 2, seqK: 2, dimQK: 4096 }, 4);
    const call = attention(q, k, v, { backend: 'webgpu' });
    await expect(call).rejects.toBeInstanceOf(UnsupportedError);
    await expect(call).rejects.toThrow(/head dims Dq 4096 \/ Dv 4096 need at least \d+ bytes of workgroup memory but maxComputeWorkgroupStorageSize is \d+/);
  });

  it('runs on a device the caller passes, and refuses it once lost', async () => {
    const device = await ownDevice();
    const { q, k, v, options } = makeCase({ batch: 1, headsQ: 2, seqQ: 9, seqK: 12, dimQK: 8, returnLse: true }, 5);
    const result = await attention(q, k, v, { ...options, backend: 'webgpu', device });
    expect((await getRuntime(device)).device).toBe(device);
    expect(device).not.toBe(rt.device);
    expectClose(validateAttention(q, k, v, options), result.out.toFloat32(), result.lse!.toFloat32());
    device.destroy();
    await device.lost;
    await expect(attention(q, k, v, { ...options, backend: 'webgpu', device })).rejects.toThrow(DeviceError);
  });

  afterAll(async () => {
    // last: losing the shared device; the next call acquires a new one
    if (skip) return;
    const old = await gpuDevice();
    old.destroy();
    await old.lost;
    const { q, k, v, options } = makeCase({ batch: 1, headsQ: 1, seqQ: 5, seqK: 5, dimQK: 8 }, 6);
    const result = await attention(q, k, v, { ...options, backend: 'webgpu' });
    expect(await gpuDevice()).not.toBe(old);
    expectClose(validateAttention(q, k, v, options), result.out.toFloat32());
  });
});
