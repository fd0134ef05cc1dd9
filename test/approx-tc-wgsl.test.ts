// Linear attention's products on tensor cores (issue 13) off the GPU: every product the host
// dispatches (approx/webgpu/tier.ts) at every candidate tile compiles with Tint through Dawn's null
// backend and keeps its workgroup memory within
// the H200's 48 KiB in whole 16-byte units. Its numbers are checked on the GPU (bench/gpu/linear-tc.sh).
import { describe, expect, it } from 'vitest';
import { SGMAT_MATMUL_TILES, sgmatMatmulSize } from '../dist/ops/gemm/webgpu/matmul-sgmat.wgsl.js';
import { APPROX_PRODUCTS, approxSgmatKernel, approxSgmatOptions, approxSgmatTile, approxTier } from '../dist/ops/approx/webgpu/tier.js';
import { tintErrors } from './tint.js';


describe('linear attention products on subgroup matrices', () => {
  it('compile with Tint, for every product and tile', () => {
    // compile only: the null adapter's pipelines need workgroups of a multiple of its 128-wide
    // subgroups and take 16 KiB of workgroup memory, so the H200's pipelines cannot be built there
    const sources: Record<string, string> = {};
    for (const product of APPROX_PRODUCTS) {
      for (const [t, tile] of SGMAT_MATMUL_TILES.entries()) sources[`${product} tile ${t}`] = approxSgmatKernel.build(approxSgmatOptions(product, tile));
    }
    // float16 φ and [V | 1] (FUSEDATTN_APPROX_HALF_FEATURES): f16 operands in memory
    for (const [t, tile] of SGMAT_MATMUL_TILES.entries()) {
      for (const product of ['state', 'num'] as const) sources[`${product} tile ${t}, f16 features`] = approxSgmatKernel.build(approxSgmatOptions(product, tile, true));
    }
    expect(() => approxSgmatOptions('split', SGMAT_MATMUL_TILES[0], true)).toThrow(/non-causal/);
    expect(sources['scores tile 0']).toContain('select(value, 0.0, n > m)'); // the causal epilogue
    const errors = tintErrors(sources, 'the linear attention tensor-core products');
    if (!errors) return;
    for (const [name, list] of Object.entries(errors)) expect(list, name).toEqual([]);
  });

  it('fit 48 KiB of workgroup memory in whole 16-byte arrays', () => {
    for (const tile of SGMAT_MATMUL_TILES) {
      const { m, n } = sgmatMatmulSize(tile);
      const arrays = [m * (32 + 8) * 2, 32 * (n + 8) * 2, m * n * 4];
      for (const bytes of arrays) expect(bytes % 16).toBe(0);
      expect(arrays.reduce((x, y) => x + y, 0)).toBeLessThanOrEqual(49152);
    }
  });

  it('are forced by FUSEDATTN_APPROX_TIER (auto takes the fused kernels for float16 on subgroup matrices, else portable)', () => {
    const good = {
      features: new Set(['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix']),
      limits: {} as never,
      adapter: { subgroupMinSize: 32, subgroupMaxSize: 32, subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 }] },
    };
    const bare = { ...good, features: new Set<string>() };
    expect(approxTier('float16', good)).toBe('fused'); // auto: the fused kernels for float16 on subgroup matrices (tier.ts)
    expect(approxTier('float32', good)).toBe('portable');
    expect(approxTier('float16', bare)).toBe('portable');
    const saved = process.env.FUSEDATTN_APPROX_TIER;
    try {
      process.env.FUSEDATTN_APPROX_TIER = 'portable';
      expect(approxTier('float16', good)).toBe('portable');
      process.env.FUSEDATTN_APPROX_TIER = 'tensorcore';
      expect(approxTier('float32', good)).toBe('tensorcore');
      expect(() => approxTier('float16', bare)).toThrow(/FUSEDATTN_APPROX_TIER.*lacks the "shader-f16"/);
      process.env.FUSEDATTN_APPROX_TIER = 'fast';
      expect(() => approxTier('float16', good)).toThrow(/FUSEDATTN_APPROX_TIER/);
      expect(approxSgmatTile()).toEqual(SGMAT_MATMUL_TILES[0]);
      process.env.FUSEDATTN_APPROX_SGMAT_TILE = '1';
      expect(approxSgmatTile()).toEqual(SGMAT_MATMUL_TILES[1]);
      process.env.FUSEDATTN_APPROX_SGMAT_TILE = String(SGMAT_MATMUL_TILES.length);
      expect(() => approxSgmatTile()).toThrow(/FUSEDATTN_APPROX_SGMAT_TILE/);
    } finally {
      if (saved === undefined) delete process.env.FUSEDATTN_APPROX_TIER;
      else process.env.FUSEDATTN_APPROX_TIER = saved;
      delete process.env.FUSEDATTN_APPROX_SGMAT_TILE;
    }
  });
});
