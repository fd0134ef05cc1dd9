// The block's WGSL without a GPU: every kernel variant compiles with Tint through Dawn's null
// backend (which offers f16, subgroups and subgroup matrices, so the tensor-core GEMM is checked
// here too, though it can only run on the GPU machine), and the subgroup-matrix tiles keep the
// 16-byte alignment NVIDIA's matrix loads need.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { buildBlockAttention, buildBlockCombine, BLOCK_ATTENTION_ROWS_TILES, BLOCK_ATTENTION_TILES } from '../dist/block/webgpu/attention.wgsl.js';
import { SGMAT_TILE, buildSgmatGemm } from '../dist/block/webgpu/gemm-sgmat.wgsl.js';
import { buildBiasAdd, buildCopy4d, buildRopeBnsd, buildScaleMask, buildSoftmaxRows } from '../dist/block/webgpu/unfused.wgsl.js';

/**
 * Compile errors per module (undefined when the null backend is unavailable). Compiles in child
 * processes: Dawn's null backend sometimes crashes after a few modules, and a crash must not take
 * the test runner down; each new child resumes after the last module reported.
 */
function compileAll(modules: string[]): Array<string[]> | undefined {
  const results: Array<string[] | undefined> = new Array(modules.length).fill(undefined);
  const child = fileURLToPath(new URL('./wgsl-null-compile.mjs', import.meta.url));
  for (let next = 0, attempts = 0; next < modules.length && attempts < 2 * modules.length + 4; attempts++) {
    const r = spawnSync(process.execPath, [child, String(next)], { input: JSON.stringify(modules), encoding: 'utf8', timeout: 60_000 });
    for (const line of r.stdout.split('\n')) {
      if (line.startsWith('unavailable')) return undefined;
      const m = /^(\d+) (ok|error (.*))$/.exec(line);
      if (m) results[Number(m[1])] = m[2] === 'ok' ? [] : JSON.parse(m[3]) as string[];
    }
    while (next < modules.length && results[next] !== undefined) next++;
  }
  return results.map((r) => r ?? ['not compiled: the null backend kept crashing']);
}

const KERNELS: Array<[string, string]> = [
  ...(['none', 'float32', 'float16'] as const).flatMap((bias) => (['builtin', 'invocation'] as const).flatMap((subgroupIndex) => [false, true].map((vec): [string, string] =>
    [`sgmat gemm bias=${bias} ${subgroupIndex} vec=${vec}`, buildSgmatGemm({ bias, subgroupIndex, vec })]))),
  ...[64, 128, 20].flatMap((headDim) => [false, true].flatMap((cache) => [false, true].flatMap((split) => [BLOCK_ATTENTION_TILES[0], BLOCK_ATTENTION_ROWS_TILES[1]].map((tile): [string, string] =>
    [`attention D${headDim} cache=${cache} split=${split} ${tile.kind}`, buildBlockAttention({ headDim, cache, split, tile })])))),
  ['combine', buildBlockCombine({ headDim: 128 })],
  ['bias add', buildBiasAdd()],
  ['copy4d', buildCopy4d()],
  ['rope', buildRopeBnsd()],
  ['scale mask', buildScaleMask()],
  ['softmax', buildSoftmaxRows()],
];

describe('block WGSL', () => {
  it('every kernel variant compiles (Tint via Dawn\'s null backend)', () => {
    const results = compileAll(KERNELS.map(([, code]) => code));
    if (!results) {
      console.warn('\n!!! SKIPPING WGSL compile checks of the block: Dawn\'s null backend is unavailable\n');
      return;
    }
    KERNELS.forEach(([name], i) => expect(results[i], name).toEqual([]));
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
});
