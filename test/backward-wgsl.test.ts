// The backward's WGSL without a GPU: every kernel builder's variants compile (Tint via Dawn's null
// backend: tiles too big for llvmpipe's workgroup memory, that the GPU machine picks, included) and
// declare exactly the workgroup memory the host accounts for.
import { describe, expect, it } from 'vitest';
import { backwardWorkgroupBytes, buildBackwardKv, buildBackwardPre, buildBackwardQ, buildCastHalf, checkBackwardTile, type KvKernelOptions } from '../dist/ops/attention/backward/webgpu/portable.wgsl.js';
import { buildDscores, buildGroupSum } from '../dist/ops/attention/backward/webgpu/naive.wgsl.js';
import { tintErrors } from './tint.js';

const BASE: KvKernelOptions = {
  mask: false, bias: 'none', alibi: false, softcap: false, windowed: false,
  dtype: 'float32', dimQK: 64, dimRope: 0, dimV: 64, tile: { threads: 128, keys: 16, rows: 16 }, dropout: false,
};
const FOLD_ALL = { rowsBroadcast: false, keysBroadcast: false, foldBatch: true, foldHeads: true, foldKeys: false };
const KV_VARIANTS: KvKernelOptions[] = [
  BASE,
  { ...BASE, tile: { threads: 256, keys: 32, rows: 32 }, dimQK: 128, dimV: 128, dtype: 'float16', windowed: true },
  { ...BASE, dimQK: 59, dimV: 111, softcap: true, alibi: true, mask: true, bias: 'float32', dropout: true, biasGrad: FOLD_ALL },
  { ...BASE, dimQK: 128, dimRope: 64, dimV: 128, tile: { threads: 64, keys: 8, rows: 8 }, bias: 'float16', biasGrad: { ...FOLD_ALL, rowsBroadcast: true, keysBroadcast: true, foldKeys: true } },
  { ...BASE, tile: { threads: 16, keys: 4, rows: 4 }, dimQK: 192, dimV: 128, windowed: true, dropout: true },
];

function workgroupBytes(wgsl: string): number {
  let total = 0;
  for (const m of wgsl.matchAll(/var<workgroup>\s+\w+\s*:\s*array<([^,]+(?:<[^>]+>)?),\s*(\d+)>;/g)) {
    const elem = m[1].trim();
    total += (elem.startsWith('vec4') ? 16 : elem.startsWith('vec2') ? 8 : 4) * Number(m[2]);
  }
  return total;
}

describe('backward WGSL builders', () => {
  it('declare the workgroup memory the host accounts for', () => {
    for (const o of KV_VARIANTS) {
      expect(workgroupBytes(buildBackwardKv(o)), JSON.stringify(o)).toBe(backwardWorkgroupBytes('kv', o, o.biasGrad !== undefined));
      const q = { ...o, biasGrad: undefined, tile: { threads: o.tile.threads, rows: o.tile.keys, keys: o.tile.rows } };
      expect(workgroupBytes(buildBackwardQ(q)), JSON.stringify(q)).toBe(backwardWorkgroupBytes('q', q));
    }
  });

  it('reject tiles they cannot build, with the reason', () => {
    expect(checkBackwardTile('kv', { threads: 100, keys: 16, rows: 16 })).toMatch(/multiple of tile.keys/);
    expect(checkBackwardTile('q', { threads: 128, rows: 16, keys: 4 })).toMatch(/multiple of the threads per row/);
    expect(() => buildBackwardKv({ ...BASE, tile: { threads: 128, keys: 16, rows: 4 } })).toThrow(/threads per key/);
  });

  it('compile (Tint, via Dawn\'s null backend)', () => {
    const sources: Record<string, string> = {
      'pre f32': buildBackwardPre({ dtype: 'float32', dimV: 64 }),
      'pre f16 odd': buildBackwardPre({ dtype: 'float16', dimV: 111 }),
      'dscores': buildDscores({ dropout: false }),
      'dscores dropout': buildDscores({ dropout: true }),
      'group sum': buildGroupSum(),
      'cast': buildCastHalf(),
    };
    KV_VARIANTS.forEach((o, i) => {
      sources[`kv ${i} ${JSON.stringify(o)}`] = buildBackwardKv(o);
      const q = { ...o, biasGrad: undefined, tile: { threads: o.tile.threads, rows: o.tile.keys, keys: o.tile.rows } };
      sources[`q ${i} ${JSON.stringify(q)}`] = buildBackwardQ(q);
    });
    const errors = tintErrors(sources, 'the backward kernels');
    if (errors) for (const [label, list] of Object.entries(errors)) expect(list, label).toEqual([]);
  });
});
