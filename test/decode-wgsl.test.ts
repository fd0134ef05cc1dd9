// The decode kernels as a GPU runs them (loads unrolled 4 deep; llvmpipe runs them without
// unrolling, to keep its compile time down), compiled by Tint through Dawn's null backend for
// every storage dtype and mode, so nothing only the H200 runs is first compiled there. Plus the
// plan's choices on H200-like limits, and the combine and merge kernels.
import { describe, expect, it } from 'vitest';
import { type DecodeShape, buildCombine, buildMerge, buildSplitKv, planDecode, splitKvSharedBytes } from '../dist/ops/decode/webgpu/index.js';
import { tintErrors } from './tint.js';

const h200 = { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupSizeX: 1024, maxStorageBuffersPerShaderStage: 16, maxComputeWorkgroupsPerDimension: 65535 };
const base: DecodeShape = {
  dimQK: 128, dimV: 128, group: 4, headsKv: 8, batch: 1, tokens: 1, maxKeys: 32768, cache: 'float16', io: 'float32',
  paged: false, sharedKV: false, append: false, rope: false, softcap: false, alibi: false, lse: false,
};
const SHAPES: Record<string, Partial<DecodeShape>> = {
  'f16 llama-8b 32K': {},
  'f32 qwen2-0.5b 1K (7 rows)': { cache: 'float32', dimQK: 64, dimV: 64, group: 7, headsKv: 2, maxKeys: 1024 },
  'f16 paged, append, RoPE (the runner)': { paged: true, append: true, rope: true },
  'bf16 BSND-like, softcap, ALiBi, LSE': { cache: 'bfloat16', softcap: true, alibi: true, lse: true },
  'int8 paged append, 16-byte loads': { cache: 'int8', paged: true, append: true, group: 2 },
  'int8 speculative: 16 rows of 4 tokens x 4 heads, q f16': { cache: 'int8', tokens: 4, io: 'float16', append: true },
  'MLA 128 heads 576/512 f16': { dimQK: 576, dimV: 512, group: 128, headsKv: 1, sharedKV: true },
  'MLA 16 heads 576/512 int8 paged append': { dimQK: 576, dimV: 512, group: 16, headsKv: 1, sharedKV: true, cache: 'int8', paged: true, append: true },
  'one split (direct output), f16 q': { maxKeys: 64, io: 'float16', headsKv: 32 },
};

describe('decode kernels compiled for the GPU (Tint, null backend)', () => {
  it('every mode and dtype compiles unrolled, within the H200\'s workgroup memory', () => {
    const sources: Record<string, string> = {};
    for (const [name, shape] of Object.entries(SHAPES)) {
      const plan = planDecode({ ...base, ...shape }, h200);
      if (typeof plan === 'string') throw new Error(`${name}: ${plan}`);
      expect(plan.kernel.unroll).toBe(4);
      expect(splitKvSharedBytes(plan.kernel)).toBeLessThanOrEqual(h200.maxComputeWorkgroupStorageSize);
      sources[`${name} (split-KV)`] = buildSplitKv(plan.kernel);
      if (plan.combine) sources[`${name} (combine)`] = buildCombine({ dimV: plan.kernel.dimV, io: plan.kernel.io, lse: shape.lse ?? false });
    }
    sources['merge f16 BSND'] = buildMerge({ io: 'float16', bsnd: true });
    const errors = tintErrors(sources, 'the decode kernels');
    if (!errors) return;
    for (const [label, list] of Object.entries(errors)) expect(list, label).toEqual([]);
  });
});
