// Issue 14's kernels off the GPU: the general tensor-core GEMM (the ceiling study's builder) and the
// wide (32-row) tensor-core flash kernel compile with Tint (Dawn's null backend), fit the H200's
// 48 KiB, keep every workgroup variable a multiple of 16 bytes, and refuse what they cannot build.
// Their numbers are checked on the GPU (bench/ceiling/gemm-sweep.mjs, bench/gpu/check-tiers.mjs).
import { describe, expect, it } from 'vitest';
import { validateAttention } from '../dist/index.js';
import { SUITE, makeCase } from '../dist/testing/index.js';
import {
  TENSORCORE_GEMM_BASE, buildTensorCoreGemm, tensorCoreGemmGeometry, tensorCoreGemmProblem, type TensorCoreGemmOptions,
} from '../dist/ops/gemm/webgpu/gemm-tensorcore.wgsl.js';
import { DEFAULT_TENSORCORE_TILE, tensorCoreLinearOptions, tensorCoreLinearProblem } from '../dist/ops/gemm/webgpu/linear-tensorcore.js';
import { buildFlashSgMatrixWide, wideOptionsProblem, wideWorkgroupBytes } from '../dist/ops/attention/webgpu/tiers/flash-sgmatrix-wide-wgsl.js';
import { SG_MATRIX_CONFIGS, SG_MATRIX_OCCUPANCY_CONFIGS, fittingConfig, kernelOptionsOf, tierOptionsProblem, tierWorkgroupBytes } from '../dist/ops/attention/webgpu/tiers/sgmatrix.js';
import { buildFlashSgMatrix } from '../dist/ops/attention/webgpu/tiers/flash-sgmatrix-wgsl.js';
import { tintErrors } from './tint.js';

const B = TENSORCORE_GEMM_BASE;
const GEMMS: Record<string, TensorCoreGemmOptions> = {
  base: B,
  'f32 A, f32 out, f32 bias, no vec out': { ...B, a: 'float32', out: 'float32', bias: 'float32', vecOut: false },
  '16x8x16, blocked, nn, raster 8': { ...B, shape: '16x8x16', fragN: 8, layout: 'blocked', b: 'nn', raster: 8 },
  'blocked nt, two stages, K 16': { ...B, layout: 'blocked', stages: 2, k: 16 },
  'dense, u32 loads, no prefetch, f16 bias': { ...B, layout: 'dense', load: 'u32', prefetch: false, bias: 'float16' },
  'direct operands, f16 accumulators stored directly': { ...B, operands: 'direct', edges: false, prefetch: false, accumulate: 'f16', epilogue: 'direct', sgM: 2, sgN: 2 },
  'direct epilogue f32': { ...B, out: 'float32', epilogue: 'direct', edges: false },
  'scratch in the tiles, 128x128 K 32 (20 KiB)': { ...B, sgM: 4, sgN: 2, fragM: 2, fragN: 4, scratchInTiles: true },
  'scratch in the tiles across A and B, K 16, f32 out, f16 bias': { ...B, sgM: 4, sgN: 2, fragM: 2, fragN: 4, k: 16, scratchInTiles: true, out: 'float32', bias: 'float16' },
  'scratch in the tiles, scalar output': { ...B, scratchInTiles: true, vecOut: false, stages: 2, k: 16 },
};

const problemOf = (c: Parameters<typeof makeCase>[0]) => {
  const { q, k, v, options } = makeCase(c, 1);
  return validateAttention(q, k, v, options);
};
const WIDE = SG_MATRIX_CONFIGS.filter((c) => c.rowsPerSubgroup === 32);
const ATTENTION = [
  problemOf({ dtype: 'float16', batch: 1, headsQ: 2, seqQ: 97, seqK: 97, dimQK: 64 }),
  problemOf({ dtype: 'float16', batch: 1, headsQ: 4, headsKv: 2, seqQ: 70, seqK: 90, dimQK: 128, causal: true, returnLse: true }),
  problemOf({ dtype: 'float16', batch: 2, headsQ: 2, seqQ: 60, seqK: 77, dimQK: 64, softcap: 3, alibi: true, returnLse: true }),
];

describe('general tensor-core GEMM (ceiling study builder)', () => {
  it('compiles with Tint every option family the study sweeps', () => {
    const errors = tintErrors(Object.fromEntries(Object.entries(GEMMS).map(([k, o]) => [k, buildTensorCoreGemm(o)])), 'the tensor-core GEMM');
    if (!errors) return;
    for (const [name, list] of Object.entries(errors)) expect(list, name).toEqual([]);
  });
  it('fits 48 KiB with the study\'s tiles, workgroup arrays in whole 16-byte units, and refuses what it cannot build', () => {
    for (const o of Object.values(GEMMS)) {
      const g = tensorCoreGemmGeometry(o);
      expect(g.bytes).toBeLessThanOrEqual(49152);
      expect(g.tileBytes % 16).toBe(0);
      expect(g.scratchBytes % 16).toBe(0);
    }
    expect(tensorCoreGemmProblem({ ...B, k: 24 })).toMatch(/multiple of 16/);
    expect(tensorCoreGemmProblem({ ...B, operands: 'direct' })).toMatch(/no edges/);
    expect(tensorCoreGemmProblem({ ...B, epilogue: 'direct' })).toMatch(/accumulator type/);
    expect(tensorCoreGemmProblem({ ...B, stages: 2, prefetch: false })).toMatch(/prefetch/);
    expect(tensorCoreGemmProblem({ ...B, sgM: 8, sgN: 8 })).toMatch(/invocations/);
    // the epilogue's scratch in the staging tiles: no scratch variable, so 128x128 at K 32 is 20 KiB
    // (two workgroups per H200 SM) instead of 30; it must fit the tiles and needs f32 accumulators
    const small = tensorCoreGemmGeometry({ ...B, sgM: 4, sgN: 2, fragM: 2, fragN: 4, scratchInTiles: true });
    expect([small.bytes, small.scratchInA, small.scratchInB]).toEqual([20480, 8, 0]);
    const split = tensorCoreGemmGeometry({ ...B, sgM: 4, sgN: 2, fragM: 2, fragN: 4, k: 16, scratchInTiles: true });
    expect([split.bytes, split.scratchInA, split.scratchInB]).toEqual([12288, 4, 4]);
    expect(tensorCoreGemmProblem({ ...B, sgM: 1, sgN: 1, fragM: 1, fragN: 1, k: 16, scratchInTiles: true })).toMatch(/do not fit/);
    expect(tensorCoreGemmProblem({ ...B, scratchInTiles: true, accumulate: 'f16' })).toMatch(/f32 accumulators/);
  });
  it('as a linear layer: edges checked only where a dimension does not divide the tile; limits enforced', () => {
    const limits = { limits: { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024 } } as never;
    const even = { rows: 1024, outDim: 4096, inDim: 4096, xDType: 'float16' as const, outDType: 'float16' as const };
    expect(tensorCoreLinearOptions(even, DEFAULT_TENSORCORE_TILE).edges).toBe(false);
    expect(tensorCoreLinearOptions({ ...even, rows: 77 }, DEFAULT_TENSORCORE_TILE).edges).toBe(true);
    expect(tensorCoreLinearOptions({ ...even, bias: true, biasDType: 'float16' }, DEFAULT_TENSORCORE_TILE).bias).toBe('float16');
    expect(tensorCoreLinearProblem(limits, even, DEFAULT_TENSORCORE_TILE)).toBeUndefined();
    expect(tensorCoreLinearProblem(limits, { ...even, inDim: 4092 }, DEFAULT_TENSORCORE_TILE)).toMatch(/multiple of 8/);
    expect(tensorCoreLinearProblem(limits, even, { ...DEFAULT_TENSORCORE_TILE, k: 128 })).toMatch(/workgroup memory/);
  });
});

describe('wide tensor-core flash kernel (32 query rows per subgroup)', () => {
  it('is an autotuner candidate that fits 48 KiB for D 64 and D 128 and compiles with Tint', () => {
    expect(WIDE.length).toBeGreaterThan(0);
    const sources: Record<string, string> = {};
    for (const [pi, p] of ATTENTION.entries()) {
      for (const [ci, c] of WIDE.entries()) {
        const o = kernelOptionsOf(p, c);
        if (tierOptionsProblem(o) || tierWorkgroupBytes(o) > 49152) continue;
        sources[`problem ${pi} config ${ci}`] = buildFlashSgMatrixWide(o as never);
      }
    }
    expect(Object.keys(sources).some((k) => k.startsWith('problem 0'))).toBe(true); // D 64
    expect(Object.keys(sources).some((k) => k.startsWith('problem 1'))).toBe(true); // D 128, causal GQA
    const errors = tintErrors(sources, 'the wide flash kernel');
    if (!errors) return;
    for (const [name, list] of Object.entries(errors)) expect(list, name).toEqual([]);
  });
  it('refuses options it does not implement (block source, MLA split, unknown options), so the 16-row kernel runs them', () => {
    const o = { ...kernelOptionsOf(ATTENTION[0], WIDE[0]), rowFrags: 2 as const };
    expect(wideOptionsProblem(o)).toBeUndefined();
    expect(wideWorkgroupBytes(o) % 16).toBe(0);
    expect(wideOptionsProblem({ ...o, dimRope: 64 })).toMatch(/MLA/);
    expect(wideOptionsProblem({ ...o, block: { cache: false } } as never)).toMatch(/block source/);
    expect(wideOptionsProblem({ ...o, someFutureMask: true } as never)).toMatch(/does not implement option someFutureMask/);
  });
});

describe('tensor-core flash kernel with Q staged in passes (the occupancy configurations)', () => {
  // the default (session 15's winner) and the other occupancy configurations, in session 15's order
  const Q_PASSES = [SG_MATRIX_CONFIGS[0], ...SG_MATRIX_OCCUPANCY_CONFIGS];
  const MLA = problemOf({ dtype: 'float16', layout: 'BSND', batch: 1, headsQ: 4, headsKv: 1, seqQ: 70, seqK: 97, dimQK: 128, dimRope: 64, dimV: 128, causal: true, returnLse: true });
  const ODD = problemOf({ dtype: 'float16', batch: 1, headsQ: 2, seqQ: 33, seqK: 40, dimQK: 72 });
  it('compiles with Tint for D 64, D 128 GQA causal, the MLA split form and an odd head dim, and fits 2-4 workgroups per H200 SM', () => {
    const sources: Record<string, string> = {};
    for (const [pi, p] of [...ATTENTION, MLA, ODD].entries()) {
      for (const [ci, c] of Q_PASSES.entries()) {
        const o = kernelOptionsOf(p, c);
        expect(o.qPasses, `problem ${pi} config ${ci}`).toBe(true);
        expect(tierOptionsProblem(o)).toBeUndefined();
        sources[`problem ${pi} config ${ci}`] = buildFlashSgMatrix(o as never);
      }
    }
    // D 128, 16-key blocks: 16.5 KiB with Q in two passes (25.0 KiB staging all 64 rows at once)
    const d128 = kernelOptionsOf(ATTENTION[1], Q_PASSES[0]);
    expect(tierWorkgroupBytes(d128)).toBe(16928);
    expect(tierWorkgroupBytes({ ...d128, qPasses: false } as never)).toBe(25632);
    expect(sources['problem 1 config 0']).toContain('Q in 2 passes of 2 subgroups');
    expect(sources['problem 1 config 3']).toContain('Q in 4 passes of 2 subgroups');
    // the default since session 15, except where the H200 has not checked it yet (masks, biases, functions)
    const device = { features: new Set<string>(), limits: { maxComputeWorkgroupStorageSize: 49152 }, adapter: { subgroupMatrixConfigs: [] } } as never;
    expect(fittingConfig(ATTENTION[1], device)?.qPasses).toBe(true);
    const masked = SUITE.find((c) => c.mask)!;
    expect(fittingConfig(problemOf({ ...masked, dtype: 'float16' }), device)?.qPasses).toBeUndefined();
    const errors = tintErrors(sources, 'the flash kernel with Q in passes');
    if (!errors) return;
    for (const [name, list] of Object.entries(errors)) expect(list, name).toEqual([]);
  });
});
