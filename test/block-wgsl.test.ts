// The block's WGSL without a GPU: every kernel variant compiles with Tint through Dawn's null
// backend (which offers f16, subgroups and subgroup matrices, so the tensor-core GEMM is checked
// here too, though it can only run on the GPU machine), and the subgroup-matrix tiles keep the
// 16-byte alignment NVIDIA's matrix loads need.
import { describe, expect, it } from 'vitest';
import { buildBlockAttention, buildBlockCombine, BLOCK_ATTENTION_ROWS_TILES, BLOCK_ATTENTION_TILES } from '../dist/block/webgpu/attention.wgsl.js';
import { SGMAT_TILE, buildSgmatGemm } from '../dist/ops/gemm/webgpu/gemm-sgmat.wgsl.js';
import { buildBiasAdd, buildCopy4d, buildRopeBnsd, buildScaleMask, buildSoftmaxRows } from '../dist/block/webgpu/unfused.wgsl.js';
import { SGMAT_TILES, buildSgmatTiledGemm, sgmatTileProblem, tileGeometry } from '../dist/ops/gemm/webgpu/gemm-sgmat-tiled.wgsl.js';
import { sgMatrixBlockOptions } from '../dist/ops/attention/webgpu/packed-qkv.js';
import { buildFlashSgMatrix, sgMatrixWorkgroupBytes } from '../dist/ops/attention/webgpu/tiers/flash-sgmatrix-wgsl.js';
import { SG_MATRIX_CONFIGS } from '../dist/ops/attention/webgpu/tiers/sgmatrix.js';
import { buildFlash } from '../dist/ops/attention/webgpu/portable/flash.wgsl.js';
import { tintErrors } from './tint.js';

const dims = (headDim: number, group: number) => ({ hidden: 64, heads: group, kvHeads: 1, headDim, group, qkvWidth: (group + 2) * headDim, scale: 1, rope: {}, maxPositions: 16 });
/** The tensor-core flash kernel with the block source, for a head dim, cache or not, the first two configurations that have one (Q in passes has none). */
const FLASH_BLOCK: Array<[string, string]> = [64, 128].flatMap((headDim) => [false, true].flatMap((cache) => SG_MATRIX_CONFIGS.filter((c) => !c.qPasses).slice(0, 2).map((config, i): [string, string] => {
  const o = sgMatrixBlockOptions(dims(headDim, 7), cache, config);
  if (typeof o === 'string') throw new Error(o);
  return [`flash sgmatrix block D${headDim} cache=${cache} config ${i}`, buildFlashSgMatrix(o)];
})));
const portableBlock = (headDim: number, cache: boolean, quadLoads: boolean): string => buildFlash({
  mask: false, bias: 'none', alibi: false, softcap: false, windowed: true, dtype: 'float32', dimQK: headDim, dimRope: 0, dimV: headDim,
  tile: { threads: 64, rows: 16, keys: 16 }, returnLse: false, quadLoads, block: { cache },
});
const GEMM_COMBOS = [['float32', 'float16', 'float32', true], ['float16', 'float32', 'none', true], ['float32', 'float32', 'float16', false], ['float16', 'float16', 'none', false]] as const;

const KERNELS: Array<[string, string]> = [
  ...(['none', 'float32', 'float16'] as const).flatMap((bias) => (['builtin', 'invocation'] as const).flatMap((subgroupIndex) => [false, true].map((vec): [string, string] =>
    [`sgmat gemm bias=${bias} ${subgroupIndex} vec=${vec}`, buildSgmatGemm({ bias, subgroupIndex, vec })]))),
  ...[64, 128, 20].flatMap((headDim) => [false, true].flatMap((cache) => [false, true].flatMap((split) => [BLOCK_ATTENTION_TILES[0], BLOCK_ATTENTION_ROWS_TILES[1]].map((tile): [string, string] =>
    [`attention D${headDim} cache=${cache} split=${split} ${tile.kind}`, buildBlockAttention({ headDim, cache, split, tile })])))),
  ['combine', buildBlockCombine({ headDim: 128 })],
  ...SGMAT_TILES.flatMap((tile, t) => GEMM_COMBOS.map(([a, out, bias, vecOut]): [string, string] =>
    [`tiled gemm tile ${t} x ${a} y ${out} bias ${bias} vecOut ${vecOut}`, buildSgmatTiledGemm({ a, out, bias, tile, vecOut })])),
  ...FLASH_BLOCK,
  ...[[64, true, true], [64, false, true], [20, true, false], [12, false, false]].map(([headDim, cache, quads]): [string, string] =>
    [`flash portable block D${headDim} cache=${cache} quads=${quads}`, portableBlock(headDim as number, cache as boolean, quads as boolean)]),
  ['bias add', buildBiasAdd()],
  ['copy4d', buildCopy4d()],
  ['rope', buildRopeBnsd()],
  ['scale mask', buildScaleMask()],
  ['softmax', buildSoftmaxRows()],
];

describe('block WGSL', () => {
  it('every kernel variant compiles (Tint via Dawn\'s null backend)', () => {
    const errors = tintErrors(Object.fromEntries(KERNELS), 'the block');
    if (!errors) return;
    for (const [name] of KERNELS) expect(errors[name], name).toEqual([]);
  });

  it('subgroup-matrix tiles: 16-byte aligned workgroup arrays and matrix offsets', () => {
    const wgsl = buildSgmatGemm({ bias: 'float32', subgroupIndex: 'builtin', vec: true });
    for (const [, type, count] of wgsl.matchAll(/var<workgroup> \w+: array<(f16|f32), (\d+)>/g)) {
      expect((Number(count) * (type === 'f16' ? 2 : 4)) % 16).toBe(0);
    }
    // row stride of the staged f16 tiles (halves) and the k step: both whole 16-byte units
    const lds = SGMAT_TILE.k + 8;
    expect((lds * 2) % 16).toBe(0);
    expect((16 * 2) % 16).toBe(0);
    expect(SGMAT_TILE.threads % SGMAT_TILE.subgroupSize).toBe(0);
  });

  it('tiled GEMM tiles: valid, within 48 KiB, every workgroup array a whole number of 16-byte units', () => {
    for (const tile of SGMAT_TILES) {
      expect(sgmatTileProblem(tile)).toBeUndefined();
      const g = tileGeometry(tile);
      expect(g.bytes).toBeLessThanOrEqual(49152);
      const wgsl = buildSgmatTiledGemm({ a: 'float32', out: 'float16', bias: 'float32', tile, vecOut: true });
      let declared = 0;
      for (const [, type, count] of wgsl.matchAll(/var<workgroup> \w+: array<(vec4<u32>|f32), (\d+)>/g)) {
        const bytes = Number(count) * (type === 'f32' ? 4 : 16);
        expect(bytes % 16).toBe(0);
        declared += bytes;
      }
      expect(declared).toBe(g.bytes);
      // staged rows are 16-byte multiples apart (matrix loads need 16-byte aligned rows)
      expect((g.lds * 2) % 16).toBe(0);
    }
    expect(sgmatTileProblem({ sgM: 2, sgN: 2, fragM: 1, fragN: 1, k: 24, stages: 2 })).toMatch(/multiple of 16/);
  });

  it('tensor-core flash with the block source: fits 48 KiB, refuses what it cannot read', () => {
    for (const [, wgsl] of FLASH_BLOCK) expect(wgsl).toContain('fn ropeChunkF32');
    for (const config of SG_MATRIX_CONFIGS.filter((c) => c.smemVec4)) {
      const o = sgMatrixBlockOptions(dims(128, 1), true, config);
      if (typeof o !== 'string' && sgMatrixWorkgroupBytes(o) <= 49152) expect(buildFlashSgMatrix(o)).toContain('KC[kat]');
    }
    expect(sgMatrixBlockOptions(dims(120, 1), false, SG_MATRIX_CONFIGS[1])).toMatch(/multiple of 16|multiples of 8/);
    expect(sgMatrixBlockOptions(dims(128, 1), false, SG_MATRIX_CONFIGS[0])).toMatch(/Q in passes/);
    expect(sgMatrixBlockOptions(dims(64, 1), false, SG_MATRIX_CONFIGS.find((c) => !c.smemVec4)!)).toMatch(/smemVec4/);
  });
});
