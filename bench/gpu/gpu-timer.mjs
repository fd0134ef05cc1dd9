// GPU time of the dispatches an op queues through the GpuRuntime: every dispatch gets a compute
// pass of its own with timestamp writes (RuntimeObserver.timestampWrites); after the op, the
// timestamps are resolved and the (end - begin) of every dispatch summed.
//
// The op's dispatches go into one submission behind a few milliseconds of arithmetic ("heater",
// not timed): an H200 left idle between short calls runs them at its idle clock (345 MHz against
// 1980), so the same kernel read 2-5x slower from one bench to the next (session of 2026-12-02,
// call 1 against call 2; nvidia-smi in bench/results/h200-2026-12-02-s2/call2). Timed after the
// heater, a kernel runs as it does inside a busy training or serving loop. `heat: false` times it
// as it comes.
import { defineKernel } from '../../dist/engines/webgpu/runtime.js';

const QUERY_RESOLVE = 0x0200, COPY_SRC = 0x0004, COPY_DST = 0x0008, MAP_READ = 0x0001;

const heaterKernel = defineKernel('heater', ({ iterations }) => `@group(0) @binding(0) var<storage, read_write> sink: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  var x = f32(g.x);
  for (var i = 0u; i < ${iterations}u; i++) { x = fma(x, 0.9999, 0.5); }
  if (x == 1234.5) { sink[0] = x; }
}`);
const sinks = new WeakMap();

/**
 * Queues about 5 ms of dependent FMAs on every SM of an H200 (longer at a low clock), recorded
 * but not submitted: the next submit runs it first. Its dispatches are labelled 'heater'.
 */
export async function queueHeater(runtime, { times = 4, iterations = 400000 } = {}) {
  const pipeline = await runtime.pipeline(heaterKernel, { iterations });
  let sink = sinks.get(runtime);
  if (!sink) sinks.set(runtime, (sink = runtime.createBuffer(16, 'heater sink')));
  for (let i = 0; i < times; i++) runtime.dispatch({ label: 'heater', pipeline, workgroups: [1024], bindGroups: [runtime.bindGroup(pipeline, 0, { 0: sink })] });
}

/**
 * Keeps the GPU busy with the heater for `ms` milliseconds (submitted and waited for, in slices):
 * an idle H200 took longer than a few milliseconds of work to leave its idle clock (bench-gpu.mjs
 * found 300 ms of calls enough). Call after CPU-side work (references, data) and before timing.
 */
export async function warmGpu(runtime, ms = 300) {
  if (!runtime.features.has('timestamp-query')) return; // software adapters: no clocks to raise, and the heater is slow there
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    await queueHeater(runtime);
    await runtime.finish();
  }
}

export async function gpuTimeOf(runtime, op, maxDispatches = 64, { heat = true } = {}) {
  const device = runtime.device;
  if (!runtime.features.has('timestamp-query')) {
    await runtime.finish();
    const t0 = performance.now();
    const result = await op();
    await runtime.finish();
    return { ms: performance.now() - t0, dispatches: NaN, result, wallClock: true };
  }
  if (heat) await queueHeater(runtime);
  const querySet = device.createQuerySet({ type: 'timestamp', count: 2 * maxDispatches });
  let used = 0;
  const labels = [];
  const detach = runtime.observe({
    timestampWrites: (c) => {
      if (c.label === 'heater' || used >= 2 * maxDispatches) return undefined;
      labels.push(c.label);
      return { querySet, beginningOfPassWriteIndex: used++, endOfPassWriteIndex: used++ };
    },
  });
  let result;
  try {
    result = await op();
    await runtime.finish();
  } finally {
    detach();
  }
  const bytes = Math.max(16, used * 8);
  const resolved = device.createBuffer({ size: bytes, usage: QUERY_RESOLVE | COPY_SRC });
  const read = device.createBuffer({ size: bytes, usage: MAP_READ | COPY_DST });
  const encoder = device.createCommandEncoder();
  if (used > 0) encoder.resolveQuerySet(querySet, 0, used, resolved, 0);
  encoder.copyBufferToBuffer(resolved, 0, read, 0, bytes);
  device.queue.submit([encoder.finish()]);
  await read.mapAsync(MAP_READ);
  const ticks = new BigUint64Array(read.getMappedRange().slice(0));
  read.unmap();
  let ns = 0;
  // byKernel: ms per dispatch label (which pass of an op takes the time)
  const byKernel = {};
  for (let i = 0; i + 1 < used; i += 2) {
    const d = Number(ticks[i + 1] - ticks[i]);
    ns += d;
    byKernel[labels[i / 2]] = (byKernel[labels[i / 2]] ?? 0) + d / 1e6;
  }
  querySet.destroy();
  resolved.destroy();
  read.destroy();
  return { ms: ns / 1e6, dispatches: used / 2, byKernel, result };
}
