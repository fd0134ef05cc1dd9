// PagedKVCache: the allocator (free list, reference counts, copy-on-write of a shared partly
// filled page, full pages staying shared, errors that change nothing) and whole generations on
// it: prompts of different lengths written by write(), decode steps whose new rows the attention
// kernel appends, a fork in the middle (beam search) after which both branches go on with
// different tokens. Every step is checked against the float64 reference on a contiguous cache
// holding the same rows as they were stored.
import { describe, expect, it } from 'vitest';
import { PagedKVCache, Tensor, ValueError, referenceDecode, roundToStorage, int8Scale, validateDecode } from '../dist/index.js';
import { checkF32, normal, randomFloats, uniform } from '../dist/testing/index.js';
import { backendsHere } from './helpers.js';
import { toCpu, toGpu } from './decode-helpers.js';

const webgpu = (await backendsHere()).find((b) => b.name === 'webgpu')!;
if (webgpu.skip) console.warn(`\n!!! SKIPPING the WebGPU paged-cache tests: ${webgpu.skip}\n`);

describe('PagedKVCache allocator', () => {
  it('allocates, forks, copies a shared partly filled page on write, and frees', async () => {
    const cache = await PagedKVCache.create({ numPages: 8, pageSize: 4, kvHeads: 1, headDim: 4, dtype: 'float32', backend: 'cpu' });
    const a = cache.addSequence();
    cache.reserve([a], 6); // pages for positions 0..5: two pages
    expect(cache.pagesOf(a)).toHaveLength(2);
    expect(cache.freePages).toBe(6);
    const rows = (n: number, x: number) => Tensor.fromData(new Float32Array(n * 4).fill(x), [n, 1, 4]);
    await cache.write(a, 0, rows(6, 1), rows(6, 2));
    cache.advance([a], 6);
    const b = cache.fork(a);
    expect(cache.pagesOf(b)).toEqual(cache.pagesOf(a));
    expect(cache.freePages).toBe(6);
    // b writes position 6, inside the shared second page: b gets a copy, the first page stays shared
    cache.reserve([b], 1);
    const [shared, copied] = cache.pagesOf(b);
    expect(shared).toBe(cache.pagesOf(a)[0]);
    expect(copied).not.toBe(cache.pagesOf(a)[1]);
    expect(cache.freePages).toBe(5);
    const k = cache.keys[0].data as Float32Array;
    const pageElems = 4 * 4;
    expect(Array.from(k.subarray(copied * pageElems, copied * pageElems + 8))).toEqual(Array(8).fill(1)); // positions 4, 5 came along
    // a now owns its second page alone: writing there copies nothing
    cache.reserve([a], 1);
    expect(cache.freePages).toBe(5);
    cache.free(a);
    expect(cache.freePages).toBe(6); // a's second page; the first is still b's
    cache.free(b);
    expect(cache.freePages).toBe(8);
  });

  it('throws without changing anything when pages run out or a sequence is unknown', async () => {
    const cache = await PagedKVCache.create({ numPages: 3, pageSize: 2, kvHeads: 1, headDim: 4, backend: 'cpu', maxLength: 4 });
    const a = cache.addSequence();
    const b = cache.addSequence();
    cache.reserve([a], 2);
    expect(() => cache.reserve([a, b], 3)).toThrow(ValueError);
    expect(() => cache.reserve([a, b], 3)).toThrow(/needs 3 more pages.*has 2 free/);
    expect(cache.pagesOf(a)).toHaveLength(1);
    expect(cache.pagesOf(b)).toHaveLength(0);
    expect(() => cache.reserve([a], 5)).toThrow(/over the cache's 4 per sequence/);
    expect(() => cache.advance([b], 1)).toThrow(/reserve\(\) first/);
    expect(() => cache.length(99)).toThrow(/sequence 99 is not in this cache/);
    expect(() => cache.view([])).toThrow(ValueError);
    await expect(PagedKVCache.create({ numPages: 0, pageSize: 2, kvHeads: 1, headDim: 4, backend: 'cpu' })).rejects.toThrow(/numPages must be an integer >= 1/);
  });
});

/** A host mirror of each sequence's rows as stored (rounded / quantized), to build the reference. */
class Mirror {
  rows = new Map<number, { k: Float32Array[]; v: Float32Array[] }>();
  constructor(readonly dtype: 'float32' | 'float16' | 'bfloat16' | 'int8', readonly heads: number, readonly dim: number) {}
  add(seq: number, k: Float32Array, v: Float32Array): void {
    // k, v: [Nkv, D] of one position
    const entry = this.rows.get(seq) ?? { k: [], v: [] };
    const stored = (x: Float32Array) => {
      const out = new Float32Array(x.length);
      for (let h = 0; h < this.heads; h++) {
        const row = x.subarray(h * this.dim, (h + 1) * this.dim);
        const scale = this.dtype === 'int8' ? int8Scale(row) : 0;
        for (let d = 0; d < this.dim; d++) out[h * this.dim + d] = roundToStorage(this.dtype, row[d], scale);
      }
      return out;
    };
    entry.k.push(stored(k));
    entry.v.push(stored(v));
    this.rows.set(seq, entry);
  }
  fork(from: number, to: number): void {
    const e = this.rows.get(from)!;
    this.rows.set(to, { k: [...e.k], v: [...e.v] });
  }
  /** float64 reference of one query row per sequence against what the mirror holds (plus `pending` rows). */
  reference(q: Tensor, seqs: number[]): Float64Array {
    const L = Math.max(...seqs.map((s) => this.rows.get(s)!.k.length));
    const B = seqs.length;
    const k = new Float32Array(B * this.heads * L * this.dim);
    const v = new Float32Array(k.length);
    seqs.forEach((s, b) => {
      const e = this.rows.get(s)!;
      e.k.forEach((row, p) => {
        for (let h = 0; h < this.heads; h++) {
          k.set(row.subarray(h * this.dim, (h + 1) * this.dim), ((b * this.heads + h) * L + p) * this.dim);
          v.set(e.v[p].subarray(h * this.dim, (h + 1) * this.dim), ((b * this.heads + h) * L + p) * this.dim);
        }
      });
    });
    const lengths = seqs.map((s) => this.rows.get(s)!.k.length);
    const shape = [B, this.heads, L, this.dim];
    return referenceDecode(validateDecode(q, { k: Tensor.fromData(k, shape), v: Tensor.fromData(v, shape), lengths })).out;
  }
}

async function generation(backend: 'cpu' | 'webgpu', dtype: 'float16' | 'int8') {
  const Nq = 4;
  const Nkv = 2;
  const D = 16;
  const cache = await PagedKVCache.create({ numPages: 40, pageSize: 8, kvHeads: Nkv, headDim: D, dtype, backend, maxSequences: 8 });
  const mirror = new Mirror(dtype, Nkv, D);
  const gauss = normal(uniform(21));
  const onGpu = backend === 'webgpu';
  const place = async (t: Tensor) => (onGpu ? (await toGpu(t))! : t);
  // three prompts of different lengths, written as a prefill would
  const prompts = [13, 8, 29];
  const seqs: number[] = [];
  for (const n of prompts) {
    const s = cache.addSequence();
    cache.reserve([s], n);
    const k = randomFloats(n * Nkv * D, gauss);
    const v = randomFloats(n * Nkv * D, gauss);
    await cache.write(s, 0, await place(Tensor.fromData(k, [n, Nkv, D])), await place(Tensor.fromData(v, [n, Nkv, D])));
    cache.advance([s], n);
    for (let p = 0; p < n; p++) mirror.add(s, k.subarray(p * Nkv * D, (p + 1) * Nkv * D), v.subarray(p * Nkv * D, (p + 1) * Nkv * D));
    seqs.push(s);
  }
  const step = async (active: number[]) => {
    const B = active.length;
    const q = Tensor.fromData(randomFloats(B * Nq * D, gauss), [B, Nq, 1, D]);
    const k = randomFloats(B * Nkv * D, gauss);
    const v = randomFloats(B * Nkv * D, gauss);
    active.forEach((s, b) => mirror.add(s, k.subarray(b * Nkv * D, (b + 1) * Nkv * D), v.subarray(b * Nkv * D, (b + 1) * Nkv * D)));
    const result = await cache.decode(await place(q), active, { k: await place(Tensor.fromData(k, [B, Nkv, 1, D])), v: await place(Tensor.fromData(v, [B, Nkv, 1, D])) });
    const got = (await toCpu(result.out)).toFloat32();
    expect(checkF32('out', got, mirror.reference(q, active), dtype === 'int8' ? 1e-4 : 2e-5)).toBeUndefined();
  };
  for (let i = 0; i < 4; i++) await step(seqs);
  // the second sequence forks (beam search) in the middle of a page; both branches go on
  const forked = cache.fork(seqs[1]);
  mirror.fork(seqs[1], forked);
  const before = cache.freePages;
  await step([seqs[1], forked, seqs[2]]);
  expect(cache.freePages).toBeLessThan(before); // the shared partial page was copied for one branch
  for (let i = 0; i < 5; i++) await step([forked, seqs[0], seqs[1]]);
  // the first sequence leaves; a new one joins and reuses its pages
  cache.free(seqs[0]);
  const joined = cache.addSequence();
  cache.reserve([joined], 3);
  const k = randomFloats(3 * Nkv * D, gauss);
  const v = randomFloats(3 * Nkv * D, gauss);
  await cache.write(joined, 0, await place(Tensor.fromData(k, [3, Nkv, D])), await place(Tensor.fromData(v, [3, Nkv, D])));
  cache.advance([joined], 3);
  for (let p = 0; p < 3; p++) mirror.add(joined, k.subarray(p * Nkv * D, (p + 1) * Nkv * D), v.subarray(p * Nkv * D, (p + 1) * Nkv * D));
  for (let i = 0; i < 3; i++) await step([seqs[2], joined, forked, seqs[1]]);
  cache.dispose();
}

describe('PagedKVCache generations', () => {
  it('prefill, decode, fork and join on the CPU (int8 pages)', async () => {
    await generation('cpu', 'int8');
  });
  it.skipIf(webgpu.skip !== undefined)('prefill, decode, fork and join on WebGPU (float16 pages, appends in the kernel)', async () => {
    await generation('webgpu', 'float16');
  });
});
