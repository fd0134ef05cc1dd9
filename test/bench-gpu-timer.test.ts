// The GPU benches' timing helpers (bench/gpu/gpu-timer.mjs) on the adapter here, so that a branch
// only an H200 takes is not first run there: the heater once reached the GPU machine passing a raw
// GPUComputePipeline to the runtime's dispatch, and every timed row of that call failed (session
// of 2026-12-02, call 3). Here: the heater queues through the runtime's pipeline cache and runs;
// warmGpu returns at once on an adapter without timestamps (a software one: nothing to warm);
// gpuTimeOf times an op and hands its result back, and never counts the heater's dispatches.
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain JavaScript module of the benchmarks
import { gpuTimeOf, queueHeater, warmGpu } from '../bench/gpu/gpu-timer.mjs';
import { backendsHere } from './helpers.js';

const webgpu = (await backendsHere()).find((b) => b.name === 'webgpu')!;

describe.skipIf(webgpu.skip !== undefined)('GPU bench timing helpers', () => {
  it('queue the heater through the runtime, time an op without it, and warm only where timestamps exist', async () => {
    const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
    const runtime = await getRuntime();
    const before = runtime.counters.dispatches;
    await queueHeater(runtime, { times: 2, iterations: 4 });
    expect(runtime.counters.dispatches - before).toBe(2);
    await runtime.finish();
    const t0 = performance.now();
    await warmGpu(runtime, 50);
    if (!runtime.features.has('timestamp-query')) expect(performance.now() - t0).toBeLessThan(40);
    const { Tensor, attention } = await import('../dist/index.js');
    const x = Tensor.fromData(Float32Array.from({ length: 2 * 8 * 16 }, (_, i) => Math.sin(i)), [1, 2, 8, 16]);
    const t = await gpuTimeOf(runtime, () => attention(x, x, x, { backend: 'webgpu' }));
    expect(t.ms).toBeGreaterThan(0);
    expect(t.result.out.shape).toEqual([1, 2, 8, 16]);
    if (t.byKernel) expect(Object.keys(t.byKernel)).not.toContain('heater');
  });
});
