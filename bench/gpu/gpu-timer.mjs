// GPU time of the dispatches an op queues through the GpuRuntime: every dispatch gets a compute
// pass of its own with timestamp writes (RuntimeObserver.timestampWrites); after the op, the
// timestamps are resolved and the (end - begin) of every dispatch summed.
const QUERY_RESOLVE = 0x0200, COPY_SRC = 0x0004, COPY_DST = 0x0008, MAP_READ = 0x0001;

export async function gpuTimeOf(runtime, op, maxDispatches = 64) {
  const device = runtime.device;
  if (!runtime.features.has('timestamp-query')) {
    await runtime.finish();
    const t0 = performance.now();
    const result = await op();
    await runtime.finish();
    return { ms: performance.now() - t0, dispatches: NaN, result, wallClock: true };
  }
  const querySet = device.createQuerySet({ type: 'timestamp', count: 2 * maxDispatches });
  let used = 0;
  const detach = runtime.observe({
    timestampWrites: (c) => (used < 2 * maxDispatches ? { querySet, beginningOfPassWriteIndex: used++, endOfPassWriteIndex: used++ } : undefined),
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
  for (let i = 0; i + 1 < used; i += 2) ns += Number(ticks[i + 1] - ticks[i]);
  querySet.destroy();
  resolved.destroy();
  read.destroy();
  return { ms: ns / 1e6, dispatches: used / 2, result };
}
