// The backward's WGSL without a GPU: every kernel builder's variants compile (Tint via Dawn's null
// backend: tiles too big for llvmpipe's workgroup memory, that the GPU machine picks, included) and
// declare exactly the workgroup memory the host accounts for.
import { describe, expect, it } from 'vitest';
import { backwardWorkgroupBytes, buildBackwardKv, buildBackwardPre, buildBackwardQ, buildCastHalf, checkBackwardTile, type KvKernelOptions } from '../dist/ops/attention/backward/webgpu/portable.wgsl.js';
import { buildDscores, buildGroupSum } from '../dist/ops/attention/backward/webgpu/naive.wgsl.js';
import { backwardModsKernel, planMods } from '../dist/ops/attention/mods/plan.js';
import { capture, causal, maskMod, scoreMod } from '../dist/index.js';
import { tintErrors } from './tint.js';

// score and mask functions as the backward compiles them: a captured table, min/max/select/exp
// in the score function (its derivative, score_mod_grad, beside it), a mask reading a tensor
const table = capture(new Float32Array(18), [9, 2], 'table');
const ids = capture(new Int32Array(64), undefined, 'ids');
const MODS = backwardModsKernel(planMods({
  scoreMod: scoreMod(({ score, h, q, kv }) => kv.gt(q).select(score.mul(0.5).max(-1), score.tanh().exp()).add(table.at(kv.sub(q).add(4), h))),
  maskMod: causal().and(maskMod(({ q, kv }) => ids.at(q).eq(ids.at(kv)))),
}))!;

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
  { ...BASE, dimQK: 59, dimV: 40, softcap: true, bias: 'float32', biasGrad: FOLD_ALL, windowed: true, mods: MODS },
  { ...BASE, dimQK: 32, dimV: 32, mods: backwardModsKernel(planMods({ maskMod: causal() })) },
  // a block mask: tiles looked up in its status table (empty ones skipped, full ones unmasked)
  { ...BASE, dimQK: 40, dimV: 40, mask: true, windowed: true, mods: MODS, blockTable: true, biasGrad: undefined },
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

  it('with score / mask functions and a block mask: the generated kv kernel (snapshot, for review)', async () => {
    const o = KV_VARIANTS.find((x) => x.blockTable && x.mods?.scoreGrad)!;
    const wgsl = buildBackwardKv(o);
    for (const fn of ['fn score_mod(', 'fn score_mod_grad(', 'fn mask_mod(', 'fn score_mod_slope(', 'fn block_status(', 'fn final_score_unmasked(']) expect(wgsl).toContain(fn);
    await expect(wgsl).toMatchFileSnapshot('./__snapshots__/backward-kv-mods.wgsl');
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

describe('tensor-core backward WGSL builders', async () => {
  const { buildSgBackwardKv, buildSgBackwardQ, sgBackwardWorkgroupBytes } = await import('../dist/ops/attention/backward/webgpu/sgmatrix.wgsl.js');
  const { sgBackwardUnsupported, fittingBackwardConfig } = await import('../dist/ops/attention/backward/webgpu/sgmatrix.js');
  const { validateAttentionBackward, Tensor } = await import('../dist/index.js');
  const { makeCase } = await import('../dist/testing/index.js');
  type SgOptions = Parameters<typeof buildSgBackwardKv>[0];
  const SG: SgOptions = { dimQK: 128, dimRope: 0, dimV: 128, subgroups: 2, block: 32, causalOrWindow: true, softcap: false, alibi: false, dropout: false };
  const KV: SgOptions[] = [SG, { ...SG, vectorLoads: true }, { ...SG, block: 16, subgroups: 4 }, { ...SG, dimQK: 59, dimV: 111, softcap: true, alibi: true, dropout: true, block: 16 },
    { ...SG, dimQK: 128, dimRope: 64, subgroups: 1, vectorLoads: true },
    // issue-10 variants: K/V in left matrices, one P buffer (D 64/128, odd dims, MLA split form)
    { ...SG, singleP: true, vectorLoads: true }, { ...SG, hoist: true, singleP: true, vectorLoads: true }, { ...SG, hoist: true, subgroups: 4, vectorLoads: true },
    { ...SG, hoist: true, singleP: true, subgroups: 8, block: 16, dimQK: 64, dimV: 64 }, { ...SG, hoist: true, singleP: true, dimQK: 59, dimV: 111, softcap: true, alibi: true, dropout: true, block: 16 },
    { ...SG, hoist: true, singleP: true, dimQK: 128, dimRope: 64, subgroups: 4, block: 16, vectorLoads: true }];
  const Q: SgOptions[] = [{ ...SG, subgroups: 4, block: 16 }, { ...SG, block: 64, vectorLoads: true }, { ...SG, dimQK: 192, dimV: 128, dropout: true, softcap: true, alibi: true, causalOrWindow: false },
    { ...SG, dimQK: 128, dimRope: 64, block: 32, subgroups: 8, vectorLoads: true },
    { ...SG, subgroups: 4, block: 16, reverse: true, vectorLoads: true }, { ...SG, dimQK: 59, dimV: 111, subgroups: 8, block: 16, reverse: true }];

  it('keep every workgroup variable a multiple of 16 bytes, as the host counts them', () => {
    const sizes = (wgsl: string) => [...wgsl.matchAll(/var<workgroup>\s+\w+\s*:\s*([^;]+);/g)].map((m) => {
      const arr = /^array<(.+),\s*(\d+)>$/.exec(m[1].trim());
      const elem = arr ? arr[1].trim() : m[1].trim();
      return (elem === 'f16' ? 2 : elem.startsWith('vec4') ? 16 : elem.startsWith('vec2') ? 8 : 4) * (arr ? Number(arr[2]) : 1);
    });
    for (const [kind, list, build] of [['kv', KV, buildSgBackwardKv], ['q', Q, buildSgBackwardQ]] as const) {
      for (const o of list) {
        const s = sizes(build(o));
        for (const bytes of s) expect(bytes % 16, `${kind} ${JSON.stringify(o)}`).toBe(0);
        expect(s.reduce((a, b) => a + b, 0)).toBe(sgBackwardWorkgroupBytes(kind, o));
      }
    }
  });

  it('compile (Tint, via Dawn\'s null backend)', () => {
    const sources: Record<string, string> = {};
    KV.forEach((o) => { sources[`kv ${JSON.stringify(o)}`] = buildSgBackwardKv(o); });
    Q.forEach((o) => { sources[`q ${JSON.stringify(o)}`] = buildSgBackwardQ(o); });
    const errors = tintErrors(sources, 'the tensor-core backward kernels');
    if (errors) for (const [label, list] of Object.entries(errors)) expect(list, label).toEqual([]);
  });

  it('the tier takes f16 problems without mask or bias, and says why it refuses the others', async () => {
    const h200 = {
      features: new Set(['shader-f16', 'subgroups', 'timestamp-query', 'chromium-experimental-subgroup-matrix']),
      limits: { maxComputeWorkgroupStorageSize: 49152, maxStorageBuffersPerShaderStage: 16, maxStorageBufferBindingSize: 2 ** 31, maxComputeWorkgroupsPerDimension: 65535, minStorageBufferOffsetAlignment: 256 },
      adapter: { subgroupMinSize: 32, subgroupMaxSize: 32, subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 }] },
    };
    /** A backward problem of case `c` (out, dOut and lse of the right shapes; their values do not matter here). */
    const bp = (c: Parameters<typeof makeCase>[0], extra: Record<string, unknown> = {}) => {
      const { q, k, v, options } = makeCase(c, 1);
      Object.assign(options, extra);
      const outShape = [c.batch, c.headsQ, c.seqQ, c.dimV ?? c.dimQK];
      const size = outShape.reduce((a, b) => a * b, 1);
      const out = c.dtype === 'float16' ? Tensor.fromData(new Uint16Array(size), outShape, 'float16') : Tensor.fromData(new Float32Array(size), outShape);
      const lse = Tensor.fromData(new Float32Array(c.batch * c.headsQ * c.seqQ), [c.batch, c.headsQ, c.seqQ]);
      return validateAttentionBackward(q, k, v, out, out, lse, options);
    };
    const f16 = { dtype: 'float16' as const, batch: 1, headsQ: 4, headsKv: 2, seqQ: 64, seqK: 64, dimQK: 128, causal: true };
    expect(sgBackwardUnsupported(bp(f16), h200)).toBeUndefined();
    expect(fittingBackwardConfig(bp(f16), h200)).toBeDefined();
    expect(sgBackwardUnsupported(bp({ ...f16, dimQK: 192, dimV: 128 }), h200)).toBeUndefined();
    expect(sgBackwardUnsupported(bp({ ...f16, dtype: 'float32' }), h200)).toMatch(/float16 inputs only/);
    expect(sgBackwardUnsupported(bp({ ...f16, mask: 'random' }), h200)).toMatch(/masks/);
    expect(sgBackwardUnsupported(bp({ ...f16, bias: 'random' }), h200)).toMatch(/bias/);
    expect(sgBackwardUnsupported(bp(f16), { ...h200, features: new Set(['shader-f16']) })).toMatch(/lacks/);
    // sinks need nothing of the tier (the LSE holds them); score and mask functions go to portable
    expect(sgBackwardUnsupported(bp(f16, { sink: [0, 1, 2, 3] }), h200)).toBeUndefined();
    expect(sgBackwardUnsupported(bp(f16, { scoreMod: scoreMod(({ score }) => score.tanh()) }), h200)).toMatch(/score and mask functions/);
    expect(sgBackwardUnsupported(bp(f16, { maskMod: causal() }), h200)).toMatch(/score and mask functions/);

    // the chooser falls through to the portable tier and records why
    const { chooseBackwardTier } = await import('../dist/ops/attention/backward/webgpu/tiers.js');
    const runtime = { ...h200, limits: { ...h200.limits, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupSizeX: 1024 } };
    const choice = chooseBackwardTier(bp(f16, { maskMod: causal() }), runtime as never, undefined);
    expect(choice.tier.name).toBe('portable');
    expect(choice.skipped.sgmatrix).toMatch(/score and mask functions/);
    const { backwardFallback } = await import('../dist/ops/attention/backward/webgpu/tiers.js');
    expect(backwardFallback(choice, runtime as never)).toMatch(/^sgmatrix: score and mask functions/);
    // an adapter without the tier's features: portable is simply the best it has, no fallback
    const plain = { ...runtime, features: new Set(['shader-f16']) };
    expect(backwardFallback(chooseBackwardTier(bp(f16, { maskMod: causal() }), plain as never, undefined), plain as never)).toBeUndefined();
  });
});
