// The profiler: dispatch and submit counts per span and per kernel, intermediate bytes, GPU
// timestamps where the device has them (wall time otherwise, labelled), and a Chrome trace whose
// structure Perfetto accepts, showing one attention kernel for the fused block and three for the
// unfused one (the check of seed 002).
import { describe, expect, it } from 'vitest';
import { AttentionBlock, Profiler, Scope } from '../dist/index.js';
import type { AttentionBlockConfig, ChromeTrace } from '../dist/index.js';
import { randomBlockWeights, randomHidden } from '../dist/block/random.js';
import { backendsHere } from './helpers.js';

const webgpu = (await backendsHere()).find((b) => b.name === 'webgpu')!;
if (webgpu.skip) console.warn(`\n!!! SKIPPING the profiler tests: ${webgpu.skip}\n`);

/** The structure chrome://tracing and Perfetto read (JSON object format). */
function traceProblems(trace: ChromeTrace): string[] {
  const problems: string[] = [];
  const parsed = JSON.parse(JSON.stringify(trace)) as ChromeTrace;
  if (!Array.isArray(parsed.traceEvents)) return ['traceEvents is not an array'];
  parsed.traceEvents.forEach((e, i) => {
    if (typeof e.name !== 'string' || e.name === '') problems.push(`event ${i}: no name`);
    if (!['X', 'M', 'i'].includes(e.ph)) problems.push(`event ${i}: phase ${e.ph}`);
    if (!Number.isInteger(e.pid) || !Number.isInteger(e.tid)) problems.push(`event ${i}: pid/tid`);
    if (e.ph === 'M' && !['process_name', 'thread_name'].includes(e.name)) problems.push(`event ${i}: metadata ${e.name}`);
    if (e.ph === 'M' && typeof (e.args as { name?: unknown })?.name !== 'string') problems.push(`event ${i}: metadata without args.name`);
    if (e.ph !== 'M' && !(typeof e.ts === 'number' && Number.isFinite(e.ts) && e.ts >= 0)) problems.push(`event ${i}: ts ${e.ts}`);
    if (e.ph === 'X' && !(typeof e.dur === 'number' && Number.isFinite(e.dur) && e.dur >= 0)) problems.push(`event ${i}: dur ${e.dur}`);
    if (e.ph === 'i' && e.s !== 't') problems.push(`event ${i}: instant scope ${e.s}`);
  });
  return problems;
}

describe.skipIf(webgpu.skip !== undefined)('profiler on webgpu', () => {
  const config: AttentionBlockConfig = { hidden: 32, heads: 4, kvHeads: 2, headDim: 8 };
  const x = { data: randomHidden(2 * 9, 32, 3), shape: [2, 9, 32] };

  for (const timing of ['wall', 'gpu-timestamps'] as const) {
    it(`counts spans and kernels and exports a valid Chrome trace (${timing})`, async () => {
      // minWorkgroups 0: the 3-dispatch form even at this small size
      const block = await AttentionBlock.create(config, randomBlockWeights(config, 5), { backend: 'webgpu', minWorkgroups: 0 });
      const rt = block.gpu!.runtime;
      if (timing === 'gpu-timestamps' && !rt.features.has('timestamp-query')) {
        console.warn('!!! no timestamp-query on this adapter: GPU-timestamp profiling untested here');
        return;
      }
      const profiler = new Profiler(rt, { timing });
      await profiler.span('fused', () => block.forward(x));
      await profiler.span('unfused', () => block.forwardUnfused(x));
      profiler.stop();
      const report = await profiler.report();
      expect(report.timing).toBe(timing);
      const fused = report.spans.find((s) => s.label === 'fused')!;
      const unfused = report.spans.find((s) => s.label === 'unfused')!;
      expect(fused.dispatches).toBe(3);
      expect(fused.kernels.map((k) => k.label)).toEqual(['qkv-gemm', 'block-attention', 'o-gemm']);
      expect(unfused.dispatches).toBeGreaterThanOrEqual(12);
      // seed 002: one attention kernel fused, three (QKᵀ, softmax, PV) unfused
      const attentionKernels = (s: typeof fused) => s.kernels.filter((k) => ['block-attention', 'qk-matmul', 'softmax', 'pv-matmul'].includes(k.label)).length;
      expect(attentionKernels(fused)).toBe(1);
      expect(attentionKernels(unfused)).toBe(3);
      expect(fused.submits).toBeGreaterThanOrEqual(1);
      expect(unfused.intermediateBytes).toBeGreaterThan(fused.intermediateBytes);
      expect(fused.intermediateBytes).toBeGreaterThanOrEqual(2 * 9 * (4 + 2 * 2) * 8 * 4); // the packed QKV rows at least
      if (timing === 'gpu-timestamps') {
        expect(fused.gpuMs).toBeGreaterThan(0);
        for (const k of fused.kernels) expect(k.gpuMs).toBeGreaterThanOrEqual(0);
      } else {
        expect(fused.gpuMs).toBeUndefined();
      }

      const trace = profiler.chromeTrace();
      expect(traceProblems(trace)).toEqual([]);
      const kernelEvents = trace.traceEvents.filter((e) => e.cat === 'kernel');
      expect(kernelEvents.filter((e) => e.name === 'block-attention')).toHaveLength(1);
      expect(kernelEvents.filter((e) => e.name === 'softmax')).toHaveLength(1);
      const spanEvents = trace.traceEvents.filter((e) => e.cat === 'span').map((e) => e.name);
      expect(spanEvents).toEqual(expect.arrayContaining(['fused', 'unfused', 'fused-block', 'unfused-block']));
      const names = trace.traceEvents.filter((e) => e.ph === 'M').map((e) => (e.args as { name: string }).name).join(' | ');
      expect(names).toContain(timing === 'wall' ? 'wall time' : 'timestamp queries');
      block.destroy();
    });
  }

  it('attributes replayed commands to the scope span', async () => {
    const block = await AttentionBlock.create(config, randomBlockWeights(config, 6), { backend: 'webgpu', minWorkgroups: 0 });
    const rt = block.gpu!.runtime;
    const device = rt.device;
    const buffer = device.createBuffer({ size: x.data.byteLength, usage: 0x80 | 0x4 | 0x8 });
    device.queue.writeBuffer(buffer, 0, x.data as Float32Array<ArrayBuffer>);
    const { Tensor } = await import('../dist/index.js');
    const input = Tensor.fromGpuBuffer({ device, buffer, byteOffset: 0 }, x.shape, 'float32');
    const s = new Scope(rt, 'layer');
    await s.run({ input }, () => block.forward(input));
    const profiler = new Profiler(rt, { timing: 'wall' });
    await profiler.span('replays', async () => {
      for (let i = 0; i < 3; i++) await s.run({ input }, () => block.forward(input));
    });
    profiler.stop();
    const report = await profiler.report();
    const replays = report.spans.find((r) => r.label === 'replays')!;
    expect(replays).toMatchObject({ dispatches: 9, submits: 3 });
    expect(report.kernels.find((k) => k.label === 'block-attention')?.count).toBe(3);
    expect(profiler.kernels.every((k) => k.spans.includes('scope:layer'))).toBe(true);
    s.dispose();
    block.destroy();
  });
});
