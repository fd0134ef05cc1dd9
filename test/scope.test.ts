// Record and replay: a replayed block is bit-identical to the unscoped run, is one submit with no
// op work (no pipeline lookups, no uniform writes), follows new input contents, records anew when
// a buffer, a shape or a uniform-affecting argument changes, and refuses what it cannot replay.
import { describe, expect, it } from 'vitest';
import { AttentionBlock, Scope, Tensor, UnsupportedError, scope } from '../dist/index.js';
import type { AttentionBlockConfig } from '../dist/index.js';
import { randomBlockWeights, randomHidden } from '../dist/block/random.js';
import { backendsHere } from './helpers.js';

const webgpu = (await backendsHere()).find((b) => b.name === 'webgpu')!;
if (webgpu.skip) console.warn(`\n!!! SKIPPING the scope tests: ${webgpu.skip}\n`);

const STORAGE = 0x80 | 0x4 | 0x8; // STORAGE | COPY_SRC | COPY_DST

describe.skipIf(webgpu.skip !== undefined)('scope (record and replay) on webgpu', () => {
  const config: AttentionBlockConfig = { hidden: 32, heads: 4, kvHeads: 2, headDim: 8 };
  const B = 2;
  const S = 11;
  const H = 32;

  async function setup() {
    const block = await AttentionBlock.create(config, randomBlockWeights(config, 11), { backend: 'webgpu' });
    const rt = block.gpu!.runtime;
    const device = rt.device;
    const gpuTensor = (data: Float32Array, shape: number[]) => {
      const buffer = device.createBuffer({ size: data.byteLength, usage: STORAGE });
      device.queue.writeBuffer(buffer, 0, data as Float32Array<ArrayBuffer>);
      return { buffer, tensor: Tensor.fromGpuBuffer({ device, buffer, byteOffset: 0 }, shape, 'float32') };
    };
    const bits = async (t: Tensor) => new Uint32Array(await rt.read(t.gpu!.buffer, t.gpu!.byteOffset, t.size * 4));
    return { block, rt, device, gpuTensor, bits };
  }

  it('replays the block bit-identically in one submit, with no per-op work, and follows new input contents', async () => {
    const { block, rt, device, gpuTensor, bits } = await setup();
    const x = gpuTensor(randomHidden(B * S, H, 1), [B, S, H]);
    const plain = await block.forward(x.tensor);
    const expected = await bits(plain.out);

    const s = new Scope(rt, 'block');
    const recorded = await s.run({ x: x.tensor }, () => block.forward(x.tensor));
    expect(s.lastRun?.mode).toBe('record');
    expect(await bits(recorded.out)).toEqual(expected);

    const hits = rt.counters.pipelineHits + rt.counters.pipelineMisses;
    const replayed = await s.run<typeof recorded>({ x: x.tensor }, () => Promise.reject(new Error('a replay must not run the function')));
    expect(s.lastRun).toMatchObject({ mode: 'replay', dispatches: plain.stats.dispatches, submits: 1 });
    expect(rt.counters.pipelineHits + rt.counters.pipelineMisses).toBe(hits);
    expect(replayed).toBe(recorded);
    expect(await bits(replayed.out)).toEqual(expected);

    // new contents in the same buffer: the replay computes on them, exactly as an unscoped run does
    device.queue.writeBuffer(x.buffer, 0, randomHidden(B * S, H, 2) as Float32Array<ArrayBuffer>);
    const fresh = await block.forward(x.tensor);
    await s.run({ x: x.tensor }, () => Promise.reject(new Error('must replay')));
    expect(s.lastRun?.mode).toBe('replay');
    expect(await bits(recorded.out)).toEqual(await bits(fresh.out));
    expect(await bits(recorded.out)).not.toEqual(expected);
    expect(s.stats).toMatchObject({ records: 1, replays: 2, recordings: 1 });
    expect(s.stats.pinnedBytes).toBeGreaterThan(0);
    s.dispose();
    expect(s.stats).toMatchObject({ recordings: 0, pinnedBytes: 0 });
    block.destroy();
  });

  it('records anew for another buffer, another shape or another start, and drops the least recently used', async () => {
    const { block, rt, gpuTensor, bits } = await setup();
    const s = new Scope(rt, 'keys', { maxRecordings: 2 });
    const a = gpuTensor(randomHidden(B * S, H, 3), [B, S, H]);
    const b = gpuTensor(randomHidden(B * S, H, 3), [B, S, H]);
    const short = gpuTensor(randomHidden(B * 5, H, 4), [B, 5, H]);
    const run = (t: Tensor, start = 0) => s.run({ x: t, start }, () => block.forward(t, { start }));
    await run(a.tensor);
    await run(a.tensor);
    expect(s.lastRun?.mode).toBe('replay');
    const fromB = await run(b.tensor);
    expect(s.lastRun?.mode).toBe('record');
    // same data in another buffer: the same numbers, through its own recording
    expect(await bits(fromB.out)).toEqual(await bits((await run(a.tensor)).out));
    await run(short.tensor);
    expect(s.lastRun?.mode).toBe('record');
    const shifted = await run(a.tensor, 7);
    expect(s.lastRun?.mode).toBe('record');
    // a different start changes the positions uniform: different results
    const unshifted = await block.forward(a.tensor);
    expect(await bits(shifted.out)).not.toEqual(await bits(unshifted.out));
    expect(s.stats.records).toBe(4);
    expect(s.stats.recordings).toBe(2);
    expect(s.stats.dropped).toBe(2);
    s.dispose();
    block.destroy();
  });

  it('replays a KV-cache step (prefill into the cache) with the cache updated as unscoped', async () => {
    const { block, rt, gpuTensor, bits } = await setup();
    const capacity = 16;
    const kvd = 2 * 8;
    const x = gpuTensor(randomHidden(B * S, H, 5), [S, B, H]);
    const keys = gpuTensor(new Float32Array(capacity * B * kvd), [capacity, B, kvd]);
    const values = gpuTensor(new Float32Array(capacity * B * kvd), [capacity, B, kvd]);
    const options = { layout: 'SBH' as const, start: 0, cache: { keys: keys.tensor, values: values.tensor } };
    const plain = await block.forward(x.tensor, options);
    const expectedKeys = await bits(keys.tensor);
    const s = new Scope(rt, 'prefill');
    await s.run({ x: x.tensor, options }, () => block.forward(x.tensor, options));
    rt.device.queue.writeBuffer(keys.buffer, 0, new Float32Array(capacity * B * kvd)); // wipe
    const replayed = await s.run({ x: x.tensor, options }, () => block.forward(x.tensor, options));
    expect(s.lastRun?.mode).toBe('replay');
    expect(await bits(keys.tensor)).toEqual(expectedKeys);
    expect(await bits(replayed.out)).toEqual(await bits(plain.out));
    s.dispose();
    block.destroy();
  });

  it('refuses to record a readback or a host write into a buffer it did not allocate', async () => {
    const { block, rt, gpuTensor } = await setup();
    const cpuInput = Tensor.fromData(randomHidden(B * S, H, 6), [B, S, H]);
    const s = new Scope(rt, 'refuse');
    await expect(s.run({ cpuInput }, () => block.forward(cpuInput))).rejects.toThrow(UnsupportedError);
    await expect(s.run({ cpuInput }, () => block.forward(cpuInput))).rejects.toThrow(/reads GPU results back/);
    const x = gpuTensor(randomHidden(B * S, H, 7), [B, S, H]);
    const writes = () => {
      rt.write(x.buffer, 0, new Float32Array(4));
      return block.forward(x.tensor);
    };
    await expect(s.run({ x: x.tensor }, writes)).rejects.toThrow(/writes from the host into/);
    expect(s.stats.recordings).toBe(0);
    expect(rt.memory().liveBytes.intermediate).toBe(0);
    block.destroy();
  });

  it('scope(label, args, fn) keeps one scope per label on the shared device', async () => {
    const { block, gpuTensor, bits } = await setup();
    const x = gpuTensor(randomHidden(B * S, H, 8), [B, S, H]);
    const first = await scope('layer0', { x: x.tensor }, () => block.forward(x.tensor));
    const again = await scope<typeof first>('layer0', { x: x.tensor }, () => Promise.reject(new Error('must replay')));
    expect(again).toBe(first);
    expect(await bits(again.out)).toEqual(await bits((await block.forward(x.tensor)).out));
    block.destroy();
  });
});
