// Fault injection (README "Failure behaviour"): CPU workers terminated, throwing and hanging at
// random moments under 200 concurrent calls; a worker script that does not load; a pool that keeps
// failing; WebGPU device loss mid-queue. Every call succeeds with the right answer or fails with a
// typed DeviceError, none hangs, and later calls succeed.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { DeviceError, attention, referenceAttention, validateAttention } from '../dist/index.js';
import { checkF32, makeCase, runCpuFaultCampaign } from '../dist/testing/index.js';
import { createCpuEngine } from '../dist/ops/cpu-engine.js';
import { runFlash } from '../dist/ops/attention/cpu/attention.js';
import { nodeWorkerHandle } from '../dist/engines/cpu/platform.js';
import { skipNotice } from './webgpu-helpers.js';

const small = makeCase({ batch: 1, headsQ: 4, headsKv: 2, seqQ: 96, seqK: 128, dimQK: 64, dimV: 64, causal: true }, 77);
const smallProblem = validateAttention(small.q, small.k, small.v, small.options);
const smallRef = referenceAttention(smallProblem).out;

describe('CPU worker pool under faults', () => {
  it('200 concurrent calls while workers are terminated, throw and hang: each succeeds exactly or fails with a DeviceError; none hangs', async () => {
    const r = await runCpuFaultCampaign({ calls: 200, faults: 12, seed: 5 });
    console.log(`fault campaign: ${JSON.stringify({ ...r, samples: r.samples.slice(0, 3) })}`);
    expect(r.faultsInjected).toBeGreaterThanOrEqual(3);
    expect(r.wrong).toBe(0);
    expect(r.failedUntyped).toBe(0);
    expect(r.hung).toBe(0);
    expect(r.lost).toBe(0);
    expect(r.succeeded + r.failedCleanly).toBe(r.calls);
    expect(r.respawns).toBeGreaterThan(0);
    expect(r.laterOk).toBe(r.later);
  });

  it('a worker script that does not load gives one DeviceError naming the URL and the cause; the engine runs on the calling thread', async () => {
    const url = new URL('./no-such-worker.js', import.meta.url);
    const spawner = { url, spawn: () => nodeWorkerHandle(new Worker(url, { execArgv: [] }), url) };
    const started = performance.now();
    const engine = await createCpuEngine({ threads: 2, spawner });
    try {
      expect(engine.loadFailure).toBeInstanceOf(DeviceError);
      expect(engine.loadFailure!.message).toContain(url.href);
      expect(engine.loadFailure!.message).toMatch(/Cannot find module|ERR_MODULE_NOT_FOUND/);
      expect(engine.pool).toBeUndefined();
      expect(performance.now() - started).toBeLessThan(30_000);
      const r = await runFlash(engine, smallProblem);
      expect(checkF32('out', r.out.toFloat32(), smallRef)).toBeUndefined();
    } finally {
      engine.terminate();
    }
  });

  it('a worker that keeps failing breaks the pool with a clear error instead of respawning forever', async () => {
    const engine = await createCpuEngine({ threads: 2, jobDeadlineMs: 1000 });
    try {
      for (let i = 0; i < 4; i++) {
        engine.pool!.injectFault(0, 'terminate');
        await new Promise((r) => setTimeout(r, 300)); // replaced, then killed again before any job
      }
      const e = await runFlash(engine, smallProblem).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(DeviceError);
      expect((e as Error).message).toMatch(/the CPU worker pool is broken: worker 0 failed 4 times in a row/);
    } finally {
      engine.terminate();
    }
  });

  it('a fault that lands on a replacement while it starts is one more failure of that worker, not a broken pool', async () => {
    const engine = await createCpuEngine({ threads: 2, jobDeadlineMs: 1000 });
    try {
      const pool = engine.pool!;
      for (let round = 0; round < 2; round++) {
        pool.injectFault(1, 'throw-while-starting'); // the replacement throws before it is ready
        pool.injectFault(1, 'terminate');
        await new Promise((r) => setTimeout(r, 300));
        const r = await runFlash(engine, smallProblem);
        expect(checkF32('out', r.out.toFloat32(), smallRef)).toBeUndefined();
      }
      expect(pool.brokenReason).toBeUndefined();
    } finally {
      engine.terminate();
    }
  });

  it('a task that throws fails its call with a DeviceError and the worker serves the next one', async () => {
    const engine = await createCpuEngine({ threads: 1 });
    try {
      engine.pool!.injectFault(0, 'throw-in-task');
      const e = await runFlash(engine, smallProblem).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(DeviceError);
      expect((e as Error).message).toMatch(/CPU worker 0 failed in a '(flash|flash-pack)' task: Error: fault injected/);
      const r = await runFlash(engine, smallProblem);
      expect(checkF32('out', r.out.toFloat32(), smallRef)).toBeUndefined();
      expect(engine.pool!.respawns).toBe(0);
    } finally {
      engine.terminate();
    }
  });
});

const gpuSkip = await skipNotice('WebGPU device loss');

describe.skipIf(gpuSkip)('WebGPU device loss', () => {
  it('device.destroy() mid-queue: queued calls succeed or fail with DeviceError, the next call gets a fresh device', async () => {
    const { gpuDevice } = await import('../dist/index.js');
    const c = makeCase({ batch: 1, headsQ: 2, seqQ: 64, seqK: 96, dimQK: 32, dimV: 32, causal: true }, 3);
    const ref = referenceAttention(validateAttention(c.q, c.k, c.v, c.options)).out;
    await attention(c.q, c.k, c.v, { ...c.options, backend: 'webgpu' }); // compiled, warm
    const before = await gpuDevice();
    const calls = Array.from({ length: 12 }, () => attention(c.q, c.k, c.v, { ...c.options, backend: 'webgpu' }));
    await new Promise((r) => setTimeout(r, 5));
    before.destroy();
    const results = await Promise.allSettled(calls);
    let ok = 0;
    let failed = 0;
    for (const r of results) {
      if (r.status === 'fulfilled') {
        expect(checkF32('out', r.value.out.toFloat32(), ref)).toBeUndefined();
        ok++;
      } else {
        expect(r.reason).toBeInstanceOf(DeviceError);
        failed++;
      }
    }
    console.log(`device loss: ${ok} calls succeeded, ${failed} failed with DeviceError`);
    const after = await attention(c.q, c.k, c.v, { ...c.options, backend: 'webgpu' });
    expect(checkF32('out', after.out.toFloat32(), ref)).toBeUndefined();
    expect(await gpuDevice()).not.toBe(before);
  });
});

describe('huge CPU inputs', () => {
  it('staging 2 x 64 MiB of keys and values gives the event loop a turn every few tens of ms', async () => {
    const Sk = 1 << 18;
    const D = 64;
    const fill = (n: number, x: number) => new Float32Array(n).fill(x);
    const problem = validateAttention({ data: fill(4 * D, 0.1), shape: [1, 4, 1, D] }, { data: fill(Sk * D, 0.01), shape: [1, 1, Sk, D] }, { data: fill(Sk * D, 0.02), shape: [1, 1, Sk, D] });
    // an engine of its own: its arena (about half a GiB here) goes away with it
    const engine = await createCpuEngine({ threads: 2 });
    try {
      await runFlash(engine, problem); // warm: workers, memory grown
      const gaps: number[] = [];
      let last = performance.now();
      const timer = setInterval(() => {
        const now = performance.now();
        gaps.push(now - last);
        last = now;
      }, 5);
      const started = performance.now();
      const r = await runFlash(engine, problem);
      clearInterval(timer);
      const ms = performance.now() - started;
      gaps.sort((a, b) => a - b);
      const worst = gaps[gaps.length - 1] ?? ms;
      console.log(`huge staging: call ${ms.toFixed(0)} ms, ${gaps.length} event-loop turns, median gap ${gaps[gaps.length >> 1]?.toFixed(1)} ms, worst ${worst.toFixed(0)} ms`);
      expect(Math.abs(r.out.toFloat32()[0] - 0.02)).toBeLessThan(0.02 * 1e-2); // float32 sums over 512k keys
      expect(gaps.length).toBeGreaterThan(ms / 100);
      // the paced steps take ~25 ms; the rest is this shared machine's scheduler
      expect(worst).toBeLessThan(250);
    } finally {
      engine.terminate();
    }
  });
});
