// The block's WGSL without a GPU: every kernel variant compiles with Tint through Dawn's null
// backend (which offers f16, subgroups and subgroup matrices, so the tensor-core GEMM is checked
// here too, though it can only run on the GPU machine), and the subgroup-matrix tiles keep the
// 16-byte alignment NVIDIA's matrix loads need.
import { describe, expect, it } from 'vitest';
import { buildBlockAttention, buildBlockCombine, BLOCK_ATTENTION_TILES } from '../dist/block/webgpu/attention.wgsl.js';
import { SGMAT_TILE, buildSgmatGemm } from '../dist/block/webgpu/gemm-sgmat.wgsl.js';
import { buildBiasAdd, buildCopy4d, buildRopeBnsd, buildScaleMask, buildSoftmaxRows } from '../dist/block/webgpu/unfused.wgsl.js';

async function nullDevice(): Promise<GPUDevice | undefined> {
  try {
    const { create } = (await import('webgpu')) as { create(flags: string[]): GPU };
    const adapter = await create(['backend=null', 'enable-dawn-features=allow_unsafe_apis']).requestAdapter();
    return await adapter?.requestDevice({ requiredFeatures: ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'] as GPUFeatureName[] });
  } catch (e) {
    console.warn(`\n!!! SKIPPING WGSL compile checks of the block: Dawn's null backend is unavailable (${(e as Error).message})\n`);
    return undefined;
  }
}

const KERNELS: Array<[string, string]> = [
  ...(['none', 'float32', 'float16'] as const).flatMap((bias) => (['builtin', 'invocation'] as const).map((subgroupIndex): [string, string] =>
    [`sgmat gemm bias=${bias} ${subgroupIndex}`, buildSgmatGemm({ bias, subgroupIndex })])),
  ...[64, 128, 24].flatMap((headDim) => [false, true].flatMap((cache) => [false, true].map((split): [string, string] =>
    [`attention D${headDim} cache=${cache} split=${split}`, buildBlockAttention({ headDim, cache, split, tile: BLOCK_ATTENTION_TILES[1] })]))),
  ['combine', buildBlockCombine({ headDim: 128 })],
  ['bias add', buildBiasAdd()],
  ['copy4d', buildCopy4d()],
  ['rope', buildRopeBnsd()],
  ['scale mask', buildScaleMask()],
  ['softmax', buildSoftmaxRows()],
];

describe('block WGSL', () => {
  it('every kernel variant compiles (Tint via Dawn\'s null backend)', async () => {
    const device = await nullDevice();
    if (!device) return;
    for (const [name, code] of KERNELS) {
      const module = device.createShaderModule({ code });
      const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error');
      expect(errors.map((m) => `${m.lineNum}: ${m.message}`), name).toEqual([]);
    }
  });

  it('subgroup-matrix tiles: 16-byte aligned workgroup arrays and matrix offsets', () => {
    const wgsl = buildSgmatGemm({ bias: 'float32', subgroupIndex: 'builtin' });
    for (const [, type, count] of wgsl.matchAll(/var<workgroup> \w+: array<(f16|f32), (\d+)>/g)) {
      expect((Number(count) * (type === 'f16' ? 2 : 4)) % 16).toBe(0);
    }
    // row stride of the staged f16 tiles (halves) and the k step: both whole 16-byte units
    const lds = SGMAT_TILE.k + 8;
    expect((lds * 2) % 16).toBe(0);
    expect((16 * 2) % 16).toBe(0);
    expect(SGMAT_TILE.threads % SGMAT_TILE.subgroupSize).toBe(0);
  });
});
