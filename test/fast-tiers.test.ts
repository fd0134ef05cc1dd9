// The fast WebGPU tiers without a GPU: their WGSL compiles (Tint through Dawn's null backend, which
// offers f16, subgroups and subgroup matrices), workgroup variables keep the 16-byte rule, the
// chooser falls back with a reason, and the autotuner's keys and store behave. On a machine whose
// adapter has subgroup matrices (the GPU machine) the f16 suite also runs on the tensor-core tier.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UnsupportedError, validateAttention } from '../dist/index.js';
import { SUITE, caseName, makeCase } from '../dist/testing/index.js';
import { buildFlashSgMatrix, sgMatrixOptionsProblem, sgMatrixWorkgroupBytes, type SgMatrixKernelOptions } from '../dist/ops/attention/webgpu/tiers/flash-sgmatrix-wgsl.js';
import { SG_MATRIX_CONFIGS, kernelOptionsOf, sgMatrixAdapterUnsupported, sgMatrixProblemUnsupported, type TierDevice } from '../dist/ops/attention/webgpu/tiers/sgmatrix.js';
import { chooseFlashTier } from '../dist/ops/attention/webgpu/tiers/index.js';
import { buildFlashSubgroup, subgroupWorkgroupBytes, type SubgroupKernelOptions } from '../dist/ops/attention/webgpu/tiers/flash-subgroup-wgsl.js';
import { lengthClass, tuneKey, recordTuned, clearAutotuneCache, tunedConfig } from '../dist/ops/attention/webgpu/tiers/autotune.js';
import { setAutotuneMode, autotuneMode } from '../dist/ops/attention/webgpu/tiers/autotune-mode.js';
import { checkCase } from './helpers.js';
import { tintErrors } from './tint.js';

const BASE: SgMatrixKernelOptions = {
  dimQK: 128, dimRope: 0, dimV: 128, subgroups: 4, blockKeys: 32, headsPerTile: 1, sharedKV: false, vectorLoads: true,
  rescaleThreshold: 8, causalOrWindow: true, softcap: false, alibi: false, returnLse: true, rowPad: 8, smemVec4: true, prefetch: true, unrolled: true,
};

const VARIANTS: SgMatrixKernelOptions[] = [
  BASE,
  { ...BASE, prefetch: false, smemVec4: false, sharedKV: true, blockKeys: 64 },
  { ...BASE, dimQK: 59, dimV: 111, vectorLoads: false, prefetch: false, smemVec4: false, softcap: true, alibi: true, causalOrWindow: false },
  { ...BASE, dimQK: 192, dimV: 128, returnLse: false },
  { ...BASE, dimQK: 128, dimRope: 64, headsPerTile: 2 },
  { ...BASE, subgroups: 2, blockKeys: 16, dimQK: 64, dimV: 64 },
  { ...BASE, unrolled: false, alibi: true, softcap: true },
];

/** Bytes of each `var<workgroup>` declaration of a WGSL source (f16 2, f32/u32/atomic 4, vec4<u32> 16). */
function workgroupVariableBytes(wgsl: string): Array<[string, number]> {
  const sizes: Array<[string, number]> = [];
  for (const m of wgsl.matchAll(/var<workgroup>\s+(\w+)\s*:\s*([^;]+);/g)) {
    const type = m[2].trim();
    const arr = /^array<(.+),\s*(\d+)>$/.exec(type);
    const elem = arr ? arr[1].trim() : type;
    const count = arr ? Number(arr[2]) : 1;
    const bytes = elem === 'f16' ? 2 : elem.startsWith('vec4<') ? (elem.includes('f16') ? 8 : 16) : elem.startsWith('vec2<') ? 8 : 4;
    sizes.push([m[1], bytes * count]);
  }
  return sizes;
}

describe('subgroup-matrix kernel builder', () => {
  it('every workgroup variable is a multiple of 16 bytes (misaligned matrix loads read the wrong bytes on NVIDIA)', () => {
    for (const o of VARIANTS) {
      const sizes = workgroupVariableBytes(buildFlashSgMatrix(o));
      expect(sizes.length).toBeGreaterThan(3);
      for (const [name, bytes] of sizes) expect(bytes % 16, `${name} in ${JSON.stringify(o)}`).toBe(0);
      expect(sizes.reduce((a, [, b]) => a + b, 0)).toBe(sgMatrixWorkgroupBytes(o));
    }
  });

  it('rejects options it cannot build, with the reason', () => {
    expect(sgMatrixOptionsProblem({ ...BASE, blockKeys: 24 })).toMatch(/multiple of 16/);
    expect(sgMatrixOptionsProblem({ ...BASE, headsPerTile: 3 })).toMatch(/divide subgroups/);
    expect(sgMatrixOptionsProblem({ ...BASE, sharedKV: true })).toMatch(/prefetch needs/);
    expect(() => buildFlashSgMatrix({ ...BASE, dimQK: 60, vectorLoads: true, prefetch: false })).toThrow(/multiples of 8/);
  });

  it('the WGSL compiles (Tint, via Dawn\'s null backend)', () => {
    const errors = tintErrors(Object.fromEntries(VARIANTS.map((o) => [JSON.stringify(o), buildFlashSgMatrix(o)])), 'the subgroup-matrix tier');
    if (errors) for (const [label, list] of Object.entries(errors)) expect(list, label).toEqual([]);
  });
});

const SUBGROUP_VARIANTS: SubgroupKernelOptions[] = [
  { dimQK: 128, dimRope: 0, dimV: 128, subgroupSize: 32, subgroups: 4, rows: 8, causalOrWindow: true, softcap: false, alibi: false, returnLse: true },
  { dimQK: 59, dimRope: 0, dimV: 111, subgroupSize: 16, subgroups: 4, rows: 8, causalOrWindow: false, softcap: true, alibi: true, returnLse: false },
  { dimQK: 128, dimRope: 64, dimV: 128, subgroupSize: 64, subgroups: 2, rows: 8, causalOrWindow: true, softcap: false, alibi: false, returnLse: true },
];

describe('subgroup kernel builder', () => {
  it('keeps workgroup variables at multiples of 16 bytes and compiles (null backend)', () => {
    for (const o of SUBGROUP_VARIANTS) {
      const sizes = workgroupVariableBytes(buildFlashSubgroup(o));
      for (const [name, bytes] of sizes) expect(bytes % 16, `${name} in ${JSON.stringify(o)}`).toBe(0);
      expect(sizes.reduce((a, [, b]) => a + b, 0)).toBe(subgroupWorkgroupBytes(o));
    }
    const errors = tintErrors(Object.fromEntries(SUBGROUP_VARIANTS.map((o) => [JSON.stringify(o), buildFlashSubgroup(o)])), 'the subgroup tier');
    if (errors) for (const [label, list] of Object.entries(errors)) expect(list, label).toEqual([]);
  });
});

const H200_LIKE: TierDevice = {
  features: new Set(['shader-f16', 'subgroups', 'timestamp-query', 'chromium-experimental-subgroup-matrix']),
  limits: { maxComputeWorkgroupStorageSize: 49152, maxStorageBuffersPerShaderStage: 10, maxStorageBufferBindingSize: 2 ** 31, maxComputeWorkgroupsPerDimension: 65535, minStorageBufferOffsetAlignment: 256 },
  adapter: { subgroupMinSize: 32, subgroupMaxSize: 32, subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 }] },
};
const problemOf = (c: Parameters<typeof makeCase>[0]) => {
  const { q, k, v, options } = makeCase(c, 7);
  return validateAttention(q, k, v, options);
};

describe('tier chooser', () => {
  const f16 = problemOf({ dtype: 'float16', batch: 1, headsQ: 4, headsKv: 2, seqQ: 40, seqK: 50, dimQK: 64, causal: true });
  it('takes f16 problems on an adapter with f16 16x16x16 subgroup matrices', () => {
    expect(sgMatrixAdapterUnsupported(H200_LIKE)).toBeUndefined();
    expect(sgMatrixProblemUnsupported(f16, H200_LIKE)).toBeUndefined();
  });
  it('says why it refuses an adapter', () => {
    expect(sgMatrixAdapterUnsupported({ ...H200_LIKE, features: new Set(['shader-f16']) })).toMatch(/lacks the "subgroups" feature/);
    expect(sgMatrixAdapterUnsupported({ ...H200_LIKE, adapter: { ...H200_LIKE.adapter, subgroupMatrixConfigs: [] } })).toMatch(/no f16 16x16x16/);
    expect(sgMatrixAdapterUnsupported({ ...H200_LIKE, adapter: { ...H200_LIKE.adapter, subgroupMinSize: 16 } })).toMatch(/subgroups of 32/);
  });
  it('says why it refuses a problem (the portable tier then runs it)', () => {
    expect(sgMatrixProblemUnsupported(problemOf({ batch: 1, headsQ: 1, seqQ: 8, seqK: 8, dimQK: 16 }), H200_LIKE)).toMatch(/float16 inputs only/);
    // masks and bias run on the tier through its score hook (issue 13)
    expect(sgMatrixProblemUnsupported(problemOf({ dtype: 'float16', batch: 1, headsQ: 1, seqQ: 8, seqK: 8, dimQK: 16, mask: 'random' }), H200_LIKE)).toBeUndefined();
    expect(sgMatrixProblemUnsupported(problemOf({ dtype: 'float16', batch: 1, headsQ: 1, seqQ: 8, seqK: 8, dimQK: 16, bias: 'random' }), H200_LIKE)).toBeUndefined();
    expect(sgMatrixProblemUnsupported(problemOf({ dtype: 'float16', batch: 1, headsQ: 1, seqQ: 8, seqK: 8, dimQK: 288 }), H200_LIKE)).toMatch(/head dims up to 256/);
  });
  it('without matrices runs the portable tier (measured faster than the subgroup tier), the subgroup tier when forced', () => {
    const runtime = { ...H200_LIKE, adapter: { ...H200_LIKE.adapter, subgroupMatrixConfigs: [] }, limits: { ...H200_LIKE.limits, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256, maxBufferSize: 2 ** 31 } };
    const choice = chooseFlashTier(f16, runtime as never, undefined);
    expect(choice.tier.name).toBe('portable');
    expect(choice.skipped.sgmatrix).toMatch(/no f16 16x16x16/);
    expect(chooseFlashTier(f16, runtime as never, 'subgroup').tier.name).toBe('subgroup');
    const varying = { ...runtime, adapter: { ...runtime.adapter, subgroupMinSize: 8, subgroupMaxSize: 32 } };
    expect(() => chooseFlashTier(f16, varying as never, 'subgroup')).toThrow(/one fixed subgroup size/);
  });
  it('falls back to the portable tier, recording why, and honours a forced tier', () => {
    const runtime = { ...H200_LIKE, features: new Set<string>(), limits: { ...H200_LIKE.limits, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256, maxBufferSize: 2 ** 31 } };
    const choice = chooseFlashTier(f16, runtime as never, undefined);
    expect(choice.tier.name).toBe('portable');
    expect(choice.skipped.sgmatrix).toMatch(/lacks the "shader-f16" feature/);
    expect(() => chooseFlashTier(f16, runtime as never, 'sgmatrix')).toThrow(UnsupportedError);
    expect(() => chooseFlashTier(f16, runtime as never, 'fastest' as never)).toThrow(/must be one of sgmatrix, portable, subgroup/);
  });
  it('switches off what the problem rules out (vector loads on unaligned strides, prefetch without them)', () => {
    const odd = problemOf({ dtype: 'float16', batch: 1, headsQ: 2, seqQ: 9, seqK: 9, dimQK: 59, dimV: 111 });
    const o = kernelOptionsOf(odd, SG_MATRIX_CONFIGS[0]);
    expect(o.vectorLoads).toBe(false);
    expect(o.prefetch).toBe(false);
    expect(sgMatrixOptionsProblem(o)).toBeUndefined();
    const aligned = kernelOptionsOf(f16, SG_MATRIX_CONFIGS[0]);
    expect(aligned.vectorLoads).toBe(true);
    expect(kernelOptionsOf(f16, SG_MATRIX_CONFIGS[0], [4, 0, 0, 0, 0]).vectorLoads).toBe(false); // GPU tensor at an odd element base
    expect(kernelOptionsOf(f16, { ...SG_MATRIX_CONFIGS[0], headsPerTile: 4 }).headsPerTile).toBe(2); // GQA group of 2
  });
});

describe('autotuner bookkeeping', () => {
  const runtime = { adapter: { vendor: 'nvidia', architecture: 'hopper', device: 'h200', description: 'test', backend: 'vulkan', subgroupMatrixConfigs: [] } };
  it('keys a class by adapter, dtype, head dims, mask kind, length class and GQA', () => {
    const a = problemOf({ dtype: 'float16', batch: 1, headsQ: 4, headsKv: 2, seqQ: 40, seqK: 600, dimQK: 64, causal: true });
    const b = problemOf({ dtype: 'float16', batch: 2, headsQ: 4, headsKv: 2, seqQ: 70, seqK: 700, dimQK: 64, causal: true });
    const c = problemOf({ dtype: 'float16', batch: 1, headsQ: 4, seqQ: 40, seqK: 600, dimQK: 64, causal: true });
    expect(tuneKey(runtime as never, a)).toBe(tuneKey(runtime as never, b));
    expect(tuneKey(runtime as never, a)).not.toBe(tuneKey(runtime as never, c));
    expect(tuneKey(runtime as never, a)).toMatch(/float16\|64\+0\/64\|window\|k<=2048\|gqa$/);
    expect([lengthClass(100), lengthClass(4096), lengthClass(100000)]).toEqual(['k<=512', 'k<=8192', 'k>8192']);
  });
  it('modes: env default, override, validation', () => {
    expect(autotuneMode()).toBe(process.env.FUSEDATTN_AUTOTUNE ?? 'cached');
    setAutotuneMode('off');
    expect(autotuneMode()).toBe('off');
    setAutotuneMode(undefined);
    expect(() => setAutotuneMode('sometimes' as never)).toThrow(/must be one of/);
  });
  it('stores a winner in the cache file and uses it for its class', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fusedattn-tune-'));
    process.env.FUSEDATTN_AUTOTUNE_FILE = join(dir, 'autotune.json');
    clearAutotuneCache();
    const p = problemOf({ dtype: 'float16', batch: 1, headsQ: 2, seqQ: 64, seqK: 64, dimQK: 64 });
    const fake = { ...H200_LIKE, adapter: { ...H200_LIKE.adapter, ...runtime.adapter } };
    const winner = SG_MATRIX_CONFIGS[2];
    await recordTuned(tuneKey(fake as never, p), { best: winner, bestMs: 1.5, trials: [] });
    const stored = JSON.parse(readFileSync(process.env.FUSEDATTN_AUTOTUNE_FILE, 'utf8'));
    expect(Object.values(stored)).toEqual([expect.objectContaining({ config: winner, ms: 1.5 })]);
    setAutotuneMode('cached');
    expect(await tunedConfig(fake as never, p)).toEqual(winner);
    setAutotuneMode('off');
    expect(await tunedConfig(fake as never, p)).toEqual(SG_MATRIX_CONFIGS[0]);
    setAutotuneMode(undefined);
    delete process.env.FUSEDATTN_AUTOTUNE_FILE;
  });
});

// On an adapter with subgroup matrices (the GPU machine), the f16 cases of the suite run forced
// onto the tensor-core tier; elsewhere this says loudly that it is skipped.
const { listBackends } = await import('../dist/index.js');
const gpu = (await listBackends()).find((b) => b.name === 'webgpu');
const hasMatrices = Boolean(gpu?.available && /subgroup-matrix/.test(gpu.detail));
if (!hasMatrices) console.warn('\n!!! SKIPPING the tensor-core tier suite: no adapter with chromium-experimental-subgroup-matrix here (runs on the GPU machine)\n');
for (const tier of ['sgmatrix', 'subgroup']) {
  describe.skipIf(!hasMatrices)(`attention on the ${tier} tier`, () => {
    // every suite case the tiers implement, as float16 (layouts, TND, windows, softcap, ALiBi, GQA, MLA;
    // masks and bias on the tensor-core tier)
    const cases = SUITE.filter((c) => tier === 'sgmatrix' || (!c.mask && !c.bias)).map((c) => ({ ...c, dtype: 'float16' as const }));
    for (const [index, c] of cases.entries()) {
      it(caseName(c), async () => {
        process.env.FUSEDATTN_WEBGPU_TIER = tier;
        try {
          await checkCase('webgpu', c, 4321 + index);
        } finally {
          delete process.env.FUSEDATTN_WEBGPU_TIER;
        }
      });
    }
  });
}
