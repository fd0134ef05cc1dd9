// Every attention result says what ran it: stats.backend, stats.tier, stats.threads (and
// stats.fallback when a slower path was taken), on the CPU and on WebGPU, fused and naive.
import { describe, expect, it } from 'vitest';
import { Tensor, attention, listBackends, naiveAttention } from '../dist/index.js';
import { createCpuEngine } from '../dist/ops/cpu-engine.js';
import { randomFloats, uniform } from '../dist/testing/index.js';
import { webgpuSkipReason } from './webgpu-helpers.js';

const gpuSkip = await webgpuSkipReason();

const rand = uniform(7);
const t = (shape: number[]) => Tensor.fromData(randomFloats(shape.reduce((a, b) => a * b, 1), rand), shape);

describe('stats say what ran', () => {
  it('CPU: backend, kernels as the tier, threads that computed it', async () => {
    // big enough for the pool (above the inline threshold), small enough to be quick
    const q = t([1, 4, 256, 64]);
    const k = t([1, 4, 256, 64]);
    const fused = await attention(q, k, k, { backend: 'cpu' });
    expect(fused.stats).toMatchObject({ backend: 'cpu', tier: expect.stringMatching(/^(wasm-relaxed-simd|wasm-simd|scalar)$/) });
    expect(fused.stats?.threads).toBeGreaterThanOrEqual(1);
    expect(fused.stats?.threads).toBeLessThanOrEqual(Number(process.env.FUSEDATTN_CPU_THREADS ?? 64));
    const naive = await naiveAttention(q, k, k, { backend: 'cpu' });
    expect(naive.stats).toMatchObject({ backend: 'cpu', tier: fused.stats?.tier });
    // a tiny call runs on the calling thread
    const tiny = await attention(t([1, 1, 2, 8]), t([1, 1, 2, 8]), t([1, 1, 2, 8]), { backend: 'cpu' });
    expect(tiny.stats?.threads).toBe(1);
  });

  it('CPU: an engine without workers or WebAssembly says so in stats and describe()', async () => {
    const engine = await createCpuEngine({ threads: 0, kernels: 'scalar' });
    try {
      expect(engine.execution(100, 1e9)).toEqual({ tier: 'scalar', threads: 1, fallback: 'single-threaded: threads: 0 requested' });
      expect(engine.describe()).toMatch(/single-threaded \(threads: 0 requested\); kernels scalar/);
    } finally {
      engine.terminate();
    }
  });

  it.skipIf(gpuSkip !== undefined)('WebGPU: the flash tier, or naive', async () => {
    const q = t([1, 2, 33, 16]);
    expect((await attention(q, q, q, { backend: 'webgpu' })).stats).toMatchObject({ backend: 'webgpu', tier: 'portable', threads: 1 });
    expect((await naiveAttention(q, q, q, { backend: 'webgpu' })).stats).toMatchObject({ backend: 'webgpu', tier: 'naive', threads: 1 });
  });

  it('listBackends() describes the CPU engine', async () => {
    const [cpu] = await listBackends();
    expect(cpu.name).toBe('cpu');
    expect(cpu.detail).toMatch(/worker threads|single-threaded/);
  });
});
