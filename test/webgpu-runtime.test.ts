// GpuRuntime on a real adapter (llvmpipe in CI): pipeline cache, batching into one submit, the
// pool's reuse rule and byte accounting, host-write hazards, capture/replay, observers, and GPU
// errors surfacing as DeviceError.
import { beforeAll, describe, expect, it } from 'vitest';
import { DeviceError, UnsupportedError } from '../dist/index.js';
import { type GpuCommand, type GpuRuntime, defineKernel, getRuntime } from '../dist/engines/webgpu/runtime.js';
import { UniformLayout } from '../dist/engines/webgpu/uniforms.js';
import { skipNotice } from './webgpu-helpers.js';

const skip = await skipNotice('the GpuRuntime tests');

const AFFINE = new UniformLayout('Affine', { scale: 'f32', shift: 'f32', n: 'u32' });

/** out[i] = in[i] * scale + shift (+ extra, a compile-time constant). */
const affine = defineKernel<{ extra: number; workgroup: number }>('test-affine', (o) => `
${AFFINE.wgsl()}
@group(0) @binding(0) var<uniform> params: Affine;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@compute @workgroup_size(${o.workgroup})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < params.n) { dst[g.x] = src[g.x] * params.scale + params.shift + ${o.extra.toFixed(1)}; }
}`);

describe.skipIf(skip !== undefined)('GpuRuntime', () => {
  let rt: GpuRuntime;
  beforeAll(async () => {
    rt = await getRuntime();
  });

  const floats = (n: number) => Float32Array.from({ length: n }, (_, i) => i - 3.5);
  async function readFloats(buffer: GPUBuffer, n: number) {
    return new Float32Array(await rt.read(buffer, 0, 4 * n));
  }
  async function runAffine(src: GPUBuffer, dst: GPUBuffer, n: number, scale: number, shift: number, params?: GPUBuffer) {
    const pipeline = await rt.pipeline(affine, { extra: 0, workgroup: 64 });
    const uniform = params ?? rt.uniform(AFFINE.pack({ scale, shift, n }), 'affine');
    rt.dispatch({ label: 'affine', pipeline, bindGroups: [rt.bindGroup(pipeline, 0, { 0: uniform, 1: src, 2: dst })], workgroups: Math.ceil(n / 64) });
  }

  it('folds workgroup counts past the per-dimension limit into x by y, covering every group', () => {
    const max = rt.limits.maxComputeWorkgroupsPerDimension;
    expect(rt.foldedGrid(1)).toEqual([1, 1]);
    expect(rt.foldedGrid(max)).toEqual([max, 1]);
    for (const groups of [max + 1, 3 * max + 7]) {
      const [x, y] = rt.foldedGrid(groups);
      expect(x).toBeLessThanOrEqual(max);
      expect(x * y).toBeGreaterThanOrEqual(groups);
      expect(x * (y - 1)).toBeLessThan(groups);
    }
  });

  it('caches pipelines by their options, whatever the field order', async () => {
    const misses = rt.counters.pipelineMisses;
    const a = await rt.pipeline(affine, { extra: 1, workgroup: 32 });
    const b = await rt.pipeline(affine, { workgroup: 32, extra: 1 });
    const c = await rt.pipeline(affine, { extra: 2, workgroup: 32 });
    expect(b).toBe(a);
    expect(c).not.toBe(a);
    expect(rt.counters.pipelineMisses - misses).toBe(2);
    expect(a.key).toBe('test-affine:{"extra":1,"workgroup":32}');
  });

  it('batches dispatches into one submit on flush, and observers see each command', async () => {
    const n = 100;
    const x = rt.upload(floats(n), 'x');
    const y = rt.acquire(4 * n, 'intermediate', 'y');
    const z = rt.acquire(4 * n, 'output', 'z');
    const seen: string[] = [];
    const submits: number[] = [];
    const detach = rt.observe({ queued: (c: GpuCommand) => seen.push(c.label), submitted: (cs) => submits.push(cs.length) });
    const before = { ...rt.counters };
    await runAffine(x, y, n, 2, 1);
    await runAffine(y, z, n, 0.5, -1);
    expect(rt.pendingCount).toBe(2);
    await rt.flush();
    detach();
    expect(rt.counters.submits - before.submits).toBe(1);
    expect(rt.counters.dispatches - before.dispatches).toBe(2);
    expect(seen).toEqual(['affine', 'affine']);
    expect(submits).toEqual([2]);
    expect(Array.from(await readFloats(z, n))).toEqual(Array.from(floats(n), (v) => v - 0.5)); // (2x + 1) / 2 - 1
    [x, y, z].forEach((b) => rt.release(b));
  });

  it('round-trips odd byte counts (float16 bits, u8 masks)', async () => {
    const halves = new Uint16Array([0x3c00, 0xc000, 0x7bff]);
    const bytes = new Uint8Array([1, 0, 1, 1, 0]);
    const h = rt.upload(halves, 'halves');
    const m = rt.upload(bytes, 'mask');
    expect(Array.from(new Uint16Array(await rt.read(h, 0, 6)))).toEqual([0x3c00, 0xc000, 0x7bff]);
    expect(Array.from(new Uint8Array(await rt.read(m, 0, 5)))).toEqual([1, 0, 1, 1, 0]);
    rt.release(h);
    rt.release(m);
  });

  it('submits pending work before a host write to a buffer it uses', async () => {
    const n = 8;
    const x = rt.upload(floats(n), 'x');
    const first = rt.acquire(4 * n, 'output', 'first');
    const second = rt.acquire(4 * n, 'output', 'second');
    const params = rt.acquire(AFFINE.byteSize, 'uniform', 'params', 0x40 | 0x08);
    rt.write(params, 0, new Uint8Array(AFFINE.pack({ scale: 1, shift: 10, n })));
    await runAffine(x, first, n, 0, 0, params);
    const submits = rt.counters.submits;
    rt.write(params, 0, new Uint8Array(AFFINE.pack({ scale: 1, shift: 20, n }))); // must not reach the first dispatch
    expect(rt.counters.submits).toBe(submits + 1);
    await runAffine(x, second, n, 0, 0, params);
    expect(Array.from(await readFloats(first, n))).toEqual(Array.from(floats(n), (v) => v + 10));
    expect(Array.from(await readFloats(second, n))).toEqual(Array.from(floats(n), (v) => v + 20));
    [x, first, second, params].forEach((b) => rt.release(b));
  });

  it('reuses released buffers only after a submit, and accounts bytes per role', async () => {
    const meter = rt.meter();
    const live = rt.memory().liveBytes.intermediate;
    const a = rt.acquire(1000, 'intermediate', 'a');
    const b = rt.acquire(1000, 'intermediate', 'b');
    expect(rt.memory().liveBytes.intermediate - live).toBe(2048); // size class of 1000 bytes: 1024
    rt.clear(a); // unsubmitted commands use a and b
    rt.clear(b);
    rt.release(a);
    rt.release(b);
    const c = rt.acquire(1000, 'intermediate', 'c');
    expect([a, b]).not.toContain(c);
    rt.release(c);
    await rt.flush();
    const d = rt.acquire(1000, 'intermediate', 'd');
    expect([a, b, c]).toContain(d);
    rt.release(d);
    expect(meter.peakIntermediateBytes).toBe(2048);
    meter.stop();
    expect(rt.memory().liveBytes.intermediate).toBe(live);
  });

  it('records dispatches and replays them as one submit, keeping their buffers out of the pool', async () => {
    const n = 16;
    const x = rt.upload(floats(n), 'x');
    const y = rt.acquire(4 * n, 'output', 'y');
    const capture = rt.beginCapture();
    await runAffine(x, y, n, 3, 0); // its uniform is transient: the recording must keep it
    const recording = capture.end();
    await rt.flush();
    expect(recording.commands.map((c) => c.kind)).toEqual(['dispatch']);
    expect(recording.buffers.length).toBe(1);
    // other work that would grab a freed uniform buffer of the same size
    const other = rt.acquire(4 * n, 'output', 'other');
    await runAffine(x, other, n, -1, 0);
    await rt.flush();
    rt.write(x, 0, Float32Array.from({ length: n }, () => 2));
    const submits = rt.counters.submits;
    rt.replay(recording);
    await rt.flush();
    expect(rt.counters.submits - submits).toBe(1);
    expect(Array.from(await readFloats(y, n))).toEqual(new Array(n).fill(6));
    rt.releaseRecording(recording);
    [x, y, other].forEach((b) => rt.release(b));
  });

  it('reports WGSL and validation errors as DeviceError, and stays usable', async () => {
    const broken = defineKernel<{ v: number }>('test-broken', () => '@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }');
    await expect(rt.pipeline(broken, { v: 1 })).rejects.toThrow(DeviceError);
    await expect(rt.pipeline(broken, { v: 1 })).rejects.toThrow(/test-broken does not compile[\s\S]*line 1/);
    const pipeline = await rt.pipeline(affine, { extra: 0, workgroup: 64 });
    const tooSmall = rt.acquire(4, 'input', 'tiny', 0x80); // STORAGE only: cannot be a uniform
    rt.dispatch({ label: 'bad-bind', pipeline, bindGroups: [rt.bindGroup(pipeline, 0, { 0: tooSmall, 1: tooSmall, 2: tooSmall })], workgroups: 1 });
    await expect(rt.flush()).rejects.toThrow(DeviceError);
    rt.release(tooSmall);
    const x = rt.upload(floats(4), 'x');
    const y = rt.acquire(16, 'output', 'y');
    await runAffine(x, y, 4, 1, 1);
    expect(Array.from(await readFloats(y, 4))).toEqual(Array.from(floats(4), (v) => v + 1));
    rt.release(x);
    rt.release(y);
  });

  it('refuses grids beyond maxComputeWorkgroupsPerDimension before any GPU work', async () => {
    const pipeline = await rt.pipeline(affine, { extra: 0, workgroup: 64 });
    const max = rt.limits.maxComputeWorkgroupsPerDimension;
    expect(() => rt.dispatch({ label: 'huge', pipeline, bindGroups: [], workgroups: [max + 1] })).toThrow(UnsupportedError);
    expect(rt.pendingCount).toBe(0);
  });

  it('describes its adapter', () => {
    expect(rt.adapter.limits.maxComputeWorkgroupStorageSize).toBeGreaterThanOrEqual(16384);
    expect(['vulkan', 'opengles', 'metal', 'd3d12', 'browser', 'caller']).toContain(rt.adapter.backend);
    expect(rt.adapter.features).toEqual([...rt.features].sort());
  });
});
