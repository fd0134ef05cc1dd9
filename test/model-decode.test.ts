// Decode-speed machinery of the runner, checked for exactness: candidate sampling (the k largest
// logits found on the device) against sampling from all logits, the GPU top-k kernel against the
// logits it was given, and recorded/replayed decode steps against running every op, bit for bit,
// across a change of the split count. WebGPU parts run on the adapter here (llvmpipe in CI).
import { describe, expect, it } from 'vitest';
import { createCandidateSampler, createSampler, loadModel, mergeCandidates, topIndices } from '../dist/model/index.js';
import { normal, randomFloats, uniform } from '../dist/testing/index.js';
import { backendsHere } from './helpers.js';
import { writeTinyModel } from './model-helpers.js';

const webgpu = (await backendsHere()).find((b) => b.name === 'webgpu')!;

/** What the GPU kernel writes for these logits: per chunk its k largest (bits), ids, NaN count. */
function chunkCandidates(logits: Float32Array, rows: number, n: number, chunk: number, k: number): Uint32Array {
  const chunks = Math.ceil(n / chunk);
  const out = new Uint32Array(rows * chunks * (2 * k + 1));
  const bits = new Uint32Array(1);
  const f = new Float32Array(bits.buffer);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < chunks; c++) {
      const part = logits.subarray(r * n + c * chunk, r * n + Math.min(n, (c + 1) * chunk));
      const top = topIndices(part, Math.min(k, part.length));
      const base = (r * chunks + c) * (2 * k + 1);
      for (let i = 0; i < k; i++) {
        f[0] = i < top.length ? part[top[i]] : -Infinity;
        out[base + i] = bits[0];
        out[base + k + i] = i < top.length ? c * chunk + top[i] : 0xffffffff;
      }
    }
  }
  return out;
}

describe('candidate sampling', () => {
  it('picks what sampling from every logit picks, greedy and seeded top-k', () => {
    const gauss = normal(uniform(5));
    const n = 1000;
    const logits = randomFloats(3 * n, gauss, 2);
    logits[n + 17] = logits[n + 900] = 50; // a tie: the lower id first
    for (const options of [{}, { topK: 7, temperature: 0.8, seed: 3 }, { topK: 40, temperature: 1.3, seed: 11 }]) {
      const full = createSampler(options);
      const cand = createCandidateSampler(options);
      const merged = mergeCandidates(chunkCandidates(logits, 3, n, 128, cand.k), 3, Math.ceil(n / 128), cand.k);
      for (let step = 0; step < 4; step++) {
        for (let r = 0; r < 3; r++) {
          const row = logits.subarray(r * n, (r + 1) * n);
          expect(Array.from(merged[r].ids)).toEqual(topIndices(row, cand.k));
          expect(cand.pick(merged[r].values, merged[r].ids)).toBe(full(row));
        }
      }
    }
    expect(mergeCandidates(chunkCandidates(logits, 3, n, 128, 1), 3, 8, 1)[1].ids[0]).toBe(17);
  });

  it('refuses NaN logits', () => {
    const raw = chunkCandidates(new Float32Array(10), 1, 10, 16, 2);
    raw[4] = 3;
    expect(() => mergeCandidates(raw, 1, 1, 2)).toThrow(/3 NaN logits/);
  });
});

describe.skipIf(webgpu.skip !== undefined)('decode on WebGPU: top-k on the device, recorded steps', () => {
  it('forwardTop() returns the largest logits of forward(), exactly', async () => {
    const { dir } = await writeTinyModel({ vocab_size: 300 }, { seed: 8 });
    const model = await loadModel(dir, { backend: 'webgpu' });
    const [a, b] = [model.createCache(2, 8), model.createCache(2, 8)];
    const prompt = [[4, 5, 6], [7, 8, 9]];
    await model.forward(prompt, a);
    await model.forward(prompt, b);
    const logits = await model.forward([[10], [11]], a);
    const top = await model.forwardTop([[10], [11]], b, 9);
    for (let r = 0; r < 2; r++) {
      const row = logits.subarray(r * 300, (r + 1) * 300);
      const want = topIndices(row, 9);
      expect(Array.from(top[r].ids)).toEqual(want);
      expect(Array.from(top[r].values)).toEqual(want.map((i) => row[i]));
    }
    expect(model.canTopK(65)).toBe(false);
    await expect(model.forwardTop([[1], [2]], b, 0)).rejects.toThrow(/k must be/);
    model.dispose();
  });

  for (const attention of ['fused', 'unfused'] as const) {
    it(`${attention}: replayed decode steps equal running every op, bit for bit, across split changes`, async () => {
      const saved = process.env.FUSEDATTN_DECODE_WORKGROUP;
      process.env.FUSEDATTN_DECODE_WORKGROUP = '32'; // 32-key tiles: the split count changes at 33, 65, 129 keys
      try {
        const { dir } = await writeTinyModel({ num_hidden_layers: 2 }, { seed: 4 });
        const replayed = await loadModel(dir, { backend: 'webgpu', attention });
        const direct = await loadModel(dir, { backend: 'webgpu', attention, replayDecode: false });
        const [cr, cd] = [replayed.createCache(1, 80), direct.createCache(1, 80)];
        const prompt = [[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3, 3, 8]];
        await replayed.forward(prompt, cr);
        await direct.forward(prompt, cd);
        let token = 1;
        for (let step = 0; step < 45; step++) {
          const a = await replayed.forward([[token]], cr);
          const b = await direct.forward([[token]], cd);
          expect(a).toEqual(b);
          token = topIndices(a, 1)[0];
        }
        const stats = replayed.replayStats()!;
        expect(stats.records).toBeGreaterThanOrEqual(2); // a new split count records anew
        expect(stats.records + stats.replays).toBe(45);
        expect(stats.replays).toBeGreaterThan(35);
        expect(direct.replayStats()!.records).toBe(0);
        replayed.dispose();
        direct.dispose();
      } finally {
        if (saved === undefined) delete process.env.FUSEDATTN_DECODE_WORKGROUP;
        else process.env.FUSEDATTN_DECODE_WORKGROUP = saved;
      }
    });
  }
});
