// The decode kernels as a GPU runs them (loads unrolled 4 deep; llvmpipe runs them without
// unrolling, to keep its compile time down), compiled by Tint through Dawn's null backend for
// every storage dtype and mode, so nothing only the H200 runs is first compiled there. Plus the
// plan's choices on H200-like limits, and the combine and merge kernels.
import { describe, expect, it } from 'vitest';
import { type DecodeShape, buildCombine, buildMerge, buildSplitKv, pipelinedKey, planDecode, splitKvSharedBytes, splitKvUnsupported } from '../dist/ops/decode/webgpu/index.js';
import { tintErrors } from './tint.js';
import { buildPipelinedSplitKv, pipelinedLayout, pipelinedSharedBytes, pipelinedUnsupported } from '../dist/ops/decode/webgpu/split-kv-pipelined.wgsl.js';
import { buildDecodeAppend } from '../dist/ops/decode/webgpu/append.wgsl.js';
import { SEPARATE_APPEND_KEYS } from '../dist/ops/decode/webgpu/plan.js';
import { ACCESS_HELPERS } from '../dist/ops/decode/webgpu/access.wgsl.js';
import { toHalfBits } from '../dist/index.js';
import { acquireDevice } from '../dist/engines/webgpu/device.js';
import { backendsHere } from './helpers.js';
import { runKernel } from './webgpu-helpers.js';

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
    // the score phase with several threads per key (FUSEDATTN_DECODE_KEY_LANES): the plan takes the
    // largest that fits the chunking, and the kernel compiles unrolled
    process.env.FUSEDATTN_DECODE_KEY_LANES = '8';
    try {
      for (const [name, shape, lanes] of [['f16 llama-8b 32K', {}, 8], ['MLA 16 heads 576/512 int8 paged append', SHAPES['MLA 16 heads 576/512 int8 paged append'], 8], ['f32 qwen2-0.5b 1K (7 rows)', SHAPES['f32 qwen2-0.5b 1K (7 rows)'], 8]] as const) {
        const plan = planDecode({ ...base, ...shape }, h200);
        if (typeof plan === 'string') throw new Error(`${name}: ${plan}`);
        expect(plan.kernel.keyLanes, name).toBe(lanes);
        expect(splitKvSharedBytes(plan.kernel)).toBeLessThanOrEqual(h200.maxComputeWorkgroupStorageSize);
        sources[`${name}, ${lanes} threads per key (split-KV)`] = buildSplitKv(plan.kernel);
      }
    } finally {
      delete process.env.FUSEDATTN_DECODE_KEY_LANES;
    }
    // the default: 4 lanes on hardware (the H200 sweeps), 1 on a software adapter; shared weights on
    const plain = planDecode(base, h200) as { kernel: { keyLanes?: number; sharedWeights?: boolean; laneReduce?: string } };
    expect(plain.kernel.keyLanes).toBe(4);
    expect(plain.kernel.sharedWeights).toBe(true);
    expect(plain.kernel.laneReduce).toBeUndefined();
    expect((planDecode(base, h200, undefined, { software: true }) as { kernel: { keyLanes?: number } }).kernel.keyLanes).toBe(1);
    // with subgroups of 32 the lanes' sums go through shuffles: every mode compiles that way too
    process.env.FUSEDATTN_DECODE_SUBGROUP_LANES = '1';
    expect((planDecode(base, h200, undefined, { subgroupSize: 0 }) as { kernel: { laneReduce?: string } }).kernel.laneReduce).toBeUndefined();
    for (const [name, shape] of Object.entries(SHAPES)) {
      const plan = planDecode({ ...base, ...shape }, h200, undefined, { subgroupSize: 32 });
      if (typeof plan === 'string') throw new Error(`${name}: ${plan}`);
      if ((plan.kernel.keyLanes ?? 1) > 1) expect(plan.kernel.laneReduce, name).toBe('subgroup');
      expect(splitKvSharedBytes(plan.kernel)).toBeLessThanOrEqual(h200.maxComputeWorkgroupStorageSize);
      sources[`${name}, subgroup lanes (split-KV)`] = buildSplitKv(plan.kernel);
      const sixteen = { ...plan.kernel, keyLanes: 16, laneReduce: 'subgroup' as const };
      if (!splitKvUnsupported(sixteen)) sources[`${name}, 16 subgroup lanes (split-KV)`] = buildSplitKv(sixteen);
    }
    delete process.env.FUSEDATTN_DECODE_SUBGROUP_LANES;
    expect((planDecode(base, h200, undefined, { subgroupSize: 32 }) as { kernel: { laneReduce?: string } }).kernel.laneReduce).toBeUndefined();
    // the softmax weights once per (row, key slice), alone and with key lanes
    process.env.FUSEDATTN_DECODE_SHARED_WEIGHTS = '1';
    try {
      for (const [name, shape] of [['f16 llama-8b 32K', {}], ['MLA 16 heads 576/512 int8 paged append', SHAPES['MLA 16 heads 576/512 int8 paged append']], ['f32 qwen2-0.5b 1K (7 rows)', SHAPES['f32 qwen2-0.5b 1K (7 rows)']]] as const) {
        const plan = planDecode({ ...base, ...shape }, h200);
        if (typeof plan === 'string') throw new Error(`${name}: ${plan}`);
        expect(plan.kernel.sharedWeights, name).toBe(true);
        expect(splitKvSharedBytes(plan.kernel)).toBeLessThanOrEqual(h200.maxComputeWorkgroupStorageSize);
        sources[`${name}, shared weights (split-KV)`] = buildSplitKv(plan.kernel);
        sources[`${name}, shared weights, 4 threads per key (split-KV)`] = buildSplitKv({ ...plan.kernel, keyLanes: 4 });
      }
    } finally {
      delete process.env.FUSEDATTN_DECODE_SHARED_WEIGHTS;
    }
    // the pipelined kernel wherever the plan takes it (no append, RoPE or latent cache), with the
    // combine for each value width, and its layout on llama-8b (4 lanes x 4 words per key, tiles of 32)
    for (const [name, shape] of Object.entries({ ...SHAPES, 'int8 ALiBi softcap LSE 4 tokens': { cache: 'int8', alibi: true, softcap: true, lse: true, tokens: 4 }, 'f32 paged D 256': { cache: 'float32', paged: true, dimQK: 256, dimV: 256 } } as Record<string, Partial<DecodeShape>>)) {
      const plan = planDecode({ ...base, ...shape }, h200);
      if (typeof plan === 'string') throw new Error(`${name}: ${plan}`);
      // steps that append take it too, their append (and RoPE) in a dispatch of its own first; int8
      // caches (in words of 8) except where they append (the general kernel's own append, not yet timed)
      const applies = !shape.sharedKV && !(shape.cache === 'int8' && shape.append) && (shape.dimQK ?? base.dimQK) === (shape.dimV ?? base.dimV);
      expect(plan.pipelined !== undefined, name).toBe(applies);
      if (plan.pipelined && shape.cache === 'int8') expect(plan.pipelined.kernel.chunk, name).toBe(8);
      if (!plan.pipelined) continue;
      // by default at head dims of 128+: the base shape's llama-8b
      expect(plan.pipelined.append !== undefined, name).toBe(shape.append === true);
      if (plan.pipelined.append) sources[`${name} (append first)`] = buildDecodeAppend(plan.pipelined.append);
      expect(pipelinedSharedBytes(plan.pipelined.kernel)).toBeLessThanOrEqual(h200.maxComputeWorkgroupStorageSize);
      sources[`${name} (pipelined)`] = buildPipelinedSplitKv(plan.pipelined.kernel);
      sources[`${name} (combine, Dv ${plan.pipelined.kernel.dimV})`] = buildCombine({ dimV: plan.pipelined.kernel.dimV, io: plan.pipelined.kernel.io, lse: true });
    }
    // the append kernel for the dtypes the default plans leave to the general kernel (int8), and without RoPE
    sources['append int8 paged RoPE'] = buildDecodeAppend({ dim: 128, cache: 'int8', io: 'float32', paged: true, rope: true, chunk: 16 });
    sources['append bf16, q f16, no RoPE'] = buildDecodeAppend({ dim: 64, cache: 'bfloat16', io: 'float16', paged: false, rope: false, chunk: 8 });
    {
      // at head dim 64 a step that appends stays on the general kernel below 32K keys unless asked; at 128 at any length
      const runner = { ...base, paged: true, append: true, rope: true };
      const short = planDecode({ ...runner, maxKeys: 1024 }, h200);
      const small = planDecode({ ...runner, dimQK: 64, dimV: 64, maxKeys: SEPARATE_APPEND_KEYS - 1 }, h200);
      if (typeof short === 'string' || typeof small === 'string') throw new Error('no plan');
      expect(short.pipelined?.append).toBeTruthy();
      expect(small.pipelined).toBeUndefined();
      const long = planDecode({ ...runner, dimQK: 64, dimV: 64, maxKeys: SEPARATE_APPEND_KEYS }, h200);
      expect(typeof long !== 'string' && long.pipelined?.append).toBeTruthy();
      process.env.FUSEDATTN_DECODE_SEPARATE_APPEND = '0';
      try {
        const never = planDecode({ ...runner, maxKeys: 1024 }, h200);
        expect(typeof never !== 'string' && never.pipelined).toBeFalsy();
      } finally {
        delete process.env.FUSEDATTN_DECODE_SEPARATE_APPEND;
      }
      process.env.FUSEDATTN_DECODE_SEPARATE_APPEND = '1';
      try {
        const asked = planDecode({ ...runner, dimQK: 64, dimV: 64, maxKeys: SEPARATE_APPEND_KEYS - 1 }, h200);
        expect(typeof asked !== 'string' && asked.pipelined?.append).toBeTruthy();
      } finally {
        delete process.env.FUSEDATTN_DECODE_SEPARATE_APPEND;
      }
    }
    const llama = planDecode(base, h200);
    if (typeof llama === 'string' || !llama.pipelined) throw new Error('llama-8b: no pipelined plan');
    expect(pipelinedLayout(llama.pipelined.kernel)).toMatchObject({ T: 4, TK: 32, NKS: 8, VK: 4, R: 4 });
    expect(llama.pipelined.grid).toEqual([8, 1, 64]);
    // int8 caches on the pipelined kernel (FUSEDATTN_DECODE_PIPELINED=2: its steps that append too) in
    // words of 8 elements (the default: vec2<u32> words, twice the value threads per key) and of 16
    // (FUSEDATTN_DECODE_PIPE_CHUNK=16, the kernel's own default word: no option set)
    process.env.FUSEDATTN_DECODE_PIPELINED = '2';
    try {
      const int8Shapes: Record<string, Partial<DecodeShape>> = {
        'int8 llama-8b 32K': { cache: 'int8' },
        'int8 llama-8b 4K, 2 words per thread': { cache: 'int8', maxKeys: 4096 },
        'int8 paged, ALiBi, softcap, LSE, 4 tokens, q f16': { cache: 'int8', paged: true, alibi: true, softcap: true, lse: true, tokens: 4, io: 'float16' },
        'int8 one split (direct), GQA 4/1, D 64': { cache: 'int8', maxKeys: 64, headsKv: 1, dimQK: 64, dimV: 64, lse: true },
        'int8 paged append RoPE (append first)': { cache: 'int8', paged: true, append: true, rope: true },
      };
      for (const chunk of [undefined, '8', '16'] as const) {
        if (chunk) process.env.FUSEDATTN_DECODE_PIPE_CHUNK = chunk;
        else delete process.env.FUSEDATTN_DECODE_PIPE_CHUNK;
        for (const [name, shape] of Object.entries(int8Shapes)) {
          if (name.includes('2 words')) process.env.FUSEDATTN_DECODE_PIPE_WORDS = '2';
          const plan = planDecode({ ...base, ...shape }, h200);
          delete process.env.FUSEDATTN_DECODE_PIPE_WORDS;
          if (typeof plan === 'string' || !plan.pipelined) throw new Error(`${name}: no pipelined plan`);
          const k = plan.pipelined.kernel;
          // the option only where it differs from the kernel's 16-byte word
          const eight = chunk !== '16';
          expect(k.chunk, name).toBe(eight ? 8 : undefined);
          expect(pipelinedLayout(k).E, name).toBe(eight ? 8 : 16);
          expect(pipelinedKey(plan).pipelined?.endsWith('/E8'), name).toBe(eight);
          if (plan.pipelined.append) {
            expect(plan.pipelined.append.chunk, `${name}: the append stores the attention's words`).toBe(pipelinedLayout(k).E);
            sources[`${name}, chunk ${chunk ?? 'default'} (append first)`] = buildDecodeAppend(plan.pipelined.append);
          }
          expect(pipelinedSharedBytes(k)).toBeLessThanOrEqual(h200.maxComputeWorkgroupStorageSize);
          const wgsl = buildPipelinedSplitKv(k);
          expect(wgsl).toContain(`var<storage, read> keys: array<${eight ? 'vec2<u32>' : 'vec4<u32>'}>;`);
          sources[`${name}, chunk ${chunk ?? 'default'} (pipelined)`] = wgsl;
        }
      }
      // llama-8b in words of 8: the float16 cache's layout (4 lanes x 4 words per key, tiles of 32)
      process.env.FUSEDATTN_DECODE_PIPE_CHUNK = '8';
      const eight = planDecode({ ...base, cache: 'int8' }, h200);
      if (typeof eight === 'string' || !eight.pipelined) throw new Error('int8 llama-8b: no pipelined plan');
      expect(pipelinedLayout(eight.pipelined.kernel)).toMatchObject({ E: 8, CQ: 16, CV: 16, T: 4, TK: 32, NKS: 8, VK: 4, R: 4 });
      // a word size the dtype does not take leaves the default (float16 8, float32 4)
      process.env.FUSEDATTN_DECODE_PIPE_CHUNK = '16';
      for (const cache of ['float16', 'bfloat16', 'float32'] as const) {
        const p = planDecode({ ...base, cache }, h200);
        if (typeof p === 'string' || !p.pipelined) throw new Error(`${cache}: no pipelined plan`);
        expect(p.pipelined.kernel.chunk, cache).toBeUndefined();
        expect(pipelinedLayout(p.pipelined.kernel).E, cache).toBe(cache === 'float32' ? 4 : 8);
      }
      process.env.FUSEDATTN_DECODE_PIPE_CHUNK = '12';
      expect(() => planDecode({ ...base, cache: 'int8' }, h200)).toThrow(/FUSEDATTN_DECODE_PIPE_CHUNK/);
    } finally {
      delete process.env.FUSEDATTN_DECODE_PIPELINED;
      delete process.env.FUSEDATTN_DECODE_PIPE_CHUNK;
      delete process.env.FUSEDATTN_DECODE_PIPE_WORDS;
    }
    // the options refuse words a dtype does not take
    const llamaKernel = llama.pipelined.kernel;
    expect(pipelinedUnsupported({ ...llamaKernel, chunk: 16 })).toMatch(/float16 cache takes words of 8 elements, got chunk 16/);
    expect(pipelinedUnsupported({ ...llamaKernel, cache: 'int8', chunk: 4 })).toMatch(/int8 cache takes words of 16 or 8 elements/);
    expect(pipelinedUnsupported({ ...llamaKernel, cache: 'float32', chunk: 8 })).toMatch(/float32 cache takes words of 4 elements/);
    expect(pipelinedUnsupported({ ...llamaKernel, cache: 'int8', chunk: 8 })).toBeUndefined();
    expect(buildPipelinedSplitKv({ ...llamaKernel, chunk: 8 }), 'chunk 8 on float16 is its default word').toBe(buildPipelinedSplitKv(llamaKernel));
    sources['combine Dv 1024 (several quads per thread)'] = buildCombine({ dimV: 1024, io: 'float16', lse: true });
    sources['merge f16 BSND'] = buildMerge({ io: 'float16', bsnd: true });
    const errors = tintErrors(sources, 'the decode kernels');
    if (!errors) return;
    for (const [label, list] of Object.entries(errors)) expect(list, label).toEqual([]);
  });
});

// The cache's float16 stores round as the host does (toHalfBits: nearest even), bit for bit, on the
// adapter here: WGSL leaves pack2x16float's rounding to the implementation (the H200's differed).

const gpu = (await backendsHere()).find((b) => b.name === 'webgpu')!;
describe.skipIf(gpu.skip !== undefined)('float16 stores of the decode kernels', () => {
  it('f16_bits rounds to nearest even like the host, subnormals, ties, overflow, inf and NaN included', async () => {
    const values: number[] = [0, -0, 1, -1, 65504, 65519.99, 65520, -65520, 1e-8, 2.98e-8, 5.96e-8, 6.1e-5, 6.09e-5, 1e-5, -3e-7, Infinity, -Infinity, NaN, 3.4e38, 1e-40];
    // exact ties between neighbouring halves (normal and subnormal), and their neighbours
    for (const h of [0x3c00, 0x3c01, 0x0001, 0x0002, 0x03ff, 0x7bfe, 0x1234]) {
      const a = halfValue(h);
      const b = halfValue(h + 1);
      const mid = Math.fround((a + b) / 2);
      values.push(mid, Math.fround(mid * (1 + 2 ** -23)), Math.fround(mid * (1 - 2 ** -23)));
    }
    let seed = 7;
    for (let i = 0; i < 2000; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      values.push(Math.fround(((seed / 2 ** 32) - 0.5) * 2 ** ((seed % 40) - 20)));
    }
    const n = values.length;
    const wgsl = `${ACCESS_HELPERS}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < ${n}u) { y[g.x] = f16_bits(x[g.x]); }
}`;
    const device = (await acquireDevice()).device;
    const [, out] = await runKernel(device, wgsl, [{ read: Float32Array.from(values) }, { write: n }], [Math.ceil(n / 64)]);
    const got = new Uint32Array(out.buffer, out.byteOffset, n);
    const wrong: string[] = [];
    const f32 = Float32Array.from(values);
    for (let i = 0; i < n; i++) {
      const want = toHalfBits(f32[i]);
      // a GPU may flush float32 subnormal inputs to zero (the sign stays): both are right for 1e-40
      const flushed = Math.abs(f32[i]) < 2 ** -126 && f32[i] !== 0 && got[i] === (want & 0x8000);
      if (got[i] !== want && !flushed) wrong.push(`${f32[i]}: got 0x${got[i].toString(16)}, host 0x${want.toString(16)}`);
    }
    expect(wrong.slice(0, 10)).toEqual([]);
  });
});

function halfValue(h: number): number {
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  return exp === 0 ? mant * 2 ** -24 : (1 + mant / 1024) * 2 ** (exp - 15);
}

// The tensor-core MLA decode kernel (issue 15) cannot run on llvmpipe (no subgroup matrices):
// compiled here through the null backend; bench/gpu/mla-decode.sh checks its values on the GPU.
describe('MLA tensor-core decode kernel (Tint, null backend)', async () => {
  const { buildMlaDecode, effectivePlan, mlaDecodeSharedBytes, mlaDecodeUnsupported } = await import('../dist/ops/decode/webgpu/index.js');
  const { MLA_KEY_BATCH, MLA_VALUE_BATCH, MLA_STAGE, MLA_CHAINS } = await import('../dist/ops/decode/webgpu/plan.js');
  it('compiles for contiguous and paged, shared and separate caches, within 48 KiB; the plan takes it by default and not when FUSEDATTN_DECODE_MLA=0', () => {
    const kernels = {
      'MLA 576/512 shared, 16 heads': { dimQK: 576, dimV: 512, group: 16, paged: false, sharedKV: true },
      'MLA 576/512 shared, paged, 128 heads': { dimQK: 576, dimV: 512, group: 128, paged: true, sharedKV: true },
      'separate V 192/128, 64 heads': { dimQK: 192, dimV: 128, group: 64, paged: false, sharedKV: false },
      // the load batches of the sweeps (bench/gpu/mla-decode.sh): one at a time, and the widest
      'MLA 576/512 shared, one load at a time': { dimQK: 576, dimV: 512, group: 16, paged: false, sharedKV: true, keyBatch: 1, valueBatch: 1 },
      'MLA 576/512 paged, 12 K loads, 4 V chunks': { dimQK: 576, dimV: 512, group: 32, paged: true, sharedKV: true, keyBatch: 12, valueBatch: 4 },
      'separate V 192/128, 5 K loads asked (4 taken), 2 V chunks': { dimQK: 192, dimV: 128, group: 16, paged: false, sharedKV: false, keyBatch: 5, valueBatch: 2 },
      // staged through workgroup memory
      'staged MLA 576/512 shared, 16 heads': { dimQK: 576, dimV: 512, group: 16, paged: false, sharedKV: true, stage: true },
      'staged MLA 576/512 paged, 128 heads': { dimQK: 576, dimV: 512, group: 128, paged: true, sharedKV: true, stage: true },
      'staged separate V 192/128': { dimQK: 192, dimV: 128, group: 64, paged: false, sharedKV: false, stage: true },
      'staged two slabs ahead, 576/512 paged': { dimQK: 576, dimV: 512, group: 16, paged: true, sharedKV: true, stage: true, stageDepth: 2 },
      'staged two slabs ahead, separate V 192/128': { dimQK: 192, dimV: 128, group: 16, paged: false, sharedKV: false, stage: true, stageDepth: 2 },
      'staged, Q in words, 576/512': { dimQK: 576, dimV: 512, group: 16, paged: false, sharedKV: true, stage: true, qWords: true },
      'staged, two score chains, 576/512 paged': { dimQK: 576, dimV: 512, group: 16, paged: true, sharedKV: true, stage: true, qWords: true, kChains: 2 },
      'staged, two score chains, separate V 192/128': { dimQK: 192, dimV: 128, group: 16, paged: false, sharedKV: false, stage: true, kChains: 2 },
      'direct, Q in words, separate V 192/128': { dimQK: 192, dimV: 128, group: 16, paged: false, sharedKV: false, qWords: true },
      // grouped-query decode on tensor cores (FUSEDATTN_DECODE_MLA=2): 4 or 7 live rows of 16
      'GQA llama-8b 128/128, group 4, the defaults': { dimQK: 128, dimV: 128, group: 4, paged: false, sharedKV: false, stage: true, qWords: true, kChains: 2 },
      'GQA qwen2-0.5b 64/64, group 7, paged': { dimQK: 64, dimV: 64, group: 7, paged: true, sharedKV: false, stage: true, qWords: true, kChains: 2 },
      'GQA whole tiles llama-8b 128/128, one chain': { dimQK: 128, dimV: 128, group: 4, paged: false, sharedKV: false, stage: true, qWords: true, kChains: 1, wholeTile: true },
      'GQA whole tiles qwen2-0.5b 64/64 paged, two chains': { dimQK: 64, dimV: 64, group: 7, paged: true, sharedKV: false, stage: true, qWords: true, kChains: 2, wholeTile: true },
      'GQA compact whole tiles llama-8b 128/128': { dimQK: 128, dimV: 128, group: 4, paged: false, sharedKV: false, stage: true, qWords: true, kChains: 1, wholeTile: true, compact: true },
      'GQA compact whole tiles qwen2-0.5b 64/64 paged': { dimQK: 64, dimV: 64, group: 7, paged: true, sharedKV: false, stage: true, qWords: true, kChains: 1, wholeTile: true, compact: true },
    };
    const sources: Record<string, string> = {};
    for (const [name, o] of Object.entries(kernels)) {
      expect(mlaDecodeUnsupported(o), name).toBeUndefined();
      expect(mlaDecodeSharedBytes(o)).toBeLessThanOrEqual(49152);
      sources[name] = buildMlaDecode(o);
    }
    expect(mlaDecodeUnsupported({ dimQK: 576, dimV: 500, group: 16, paged: false, sharedKV: true })).toMatch(/multiple of 64/);
    const mla: DecodeShape = { ...base, dimQK: 576, dimV: 512, group: 16, headsKv: 1, sharedKV: true, io: 'float16' };
    const device = { subgroupMatrix: true };
    const on = planDecode(mla, h200, undefined, device);
    if (typeof on === 'string') throw new Error(on);
    expect(on.mla?.grid).toEqual([1, 1, 128]);
    process.env.FUSEDATTN_DECODE_MLA = '0';
    try {
      const off = planDecode(mla, h200, undefined, device);
      if (typeof off === 'string') throw new Error(off);
      expect(off.mla).toBeUndefined();
    } finally {
      delete process.env.FUSEDATTN_DECODE_MLA;
    }
    {
      // per call: aligned rows and no finite left window keep it; a sliding window sends the call to split-KV
      const rows = { off: 0, spos: 576, sp: 576 * 4096, sh: 576 * 4096 };
      const qRows = { off: 0, sb: 576 * 16, sh: 576, si: 576 };
      const call = { q: qRows, keys: rows, pageSize: 0, window: { left: Infinity, right: 0, align: 'bottom-right' as const } };
      expect(effectivePlan(on, call as never).mla).toBeDefined();
      // 16-byte Q loads only for q rows at multiples of 8 halves
      expect(effectivePlan(on, call as never).mla?.kernel.qWords).toBe(true);
      expect(effectivePlan(on, { ...call, q: { ...qRows, off: 4 } } as never).mla?.kernel.qWords).toBe(false);
      expect(effectivePlan(on, { ...call, window: { ...call.window, left: 127 } } as never).mla).toBeUndefined();
      expect(effectivePlan(on, { ...call, keys: { ...rows, off: 4 } } as never).mla).toBeUndefined();
      const none = planDecode(mla, h200, undefined, {});
      expect(typeof none !== 'string' && none.mla).toBeFalsy();
      const f32 = planDecode({ ...mla, io: 'float32' }, h200, undefined, device);
      expect(typeof f32 !== 'string' && f32.mla).toBeFalsy();
    }
    {
      // grouped-query shapes: tensor cores from 7 rows per KV head (llama-8b's 4 stay SIMT); compact
      // whole tiles where they fit, slab steps for MLA's 576
      const gqa = (group: number, dim: number, maxKeys: number, tokens = 1) => {
        const plan = planDecode({ ...base, dimQK: dim, dimV: dim, group, headsKv: 2, tokens, maxKeys, io: 'float16' }, h200, undefined, device);
        if (typeof plan === 'string') throw new Error(plan);
        return plan.mla?.kernel;
      };
      expect(gqa(7, 64, 32768)).toMatchObject({ wholeTile: true, compact: true, kChains: 1 });
      expect(gqa(7, 128, 16384)).toMatchObject({ wholeTile: true, compact: true, kChains: 1 });
      // the compact form fits two workgroups in the H200's ~56 KiB per SM
      expect(mlaDecodeSharedBytes(gqa(7, 128, 16384)!)).toBeLessThanOrEqual(24 * 1024);
      // q rows not in 16-byte words: the full whole-tile layout (compact stages Q in words)
      const planned = planDecode({ ...base, dimQK: 64, dimV: 64, group: 7, headsKv: 2, maxKeys: 4096, io: 'float16' }, h200, undefined, device);
      if (typeof planned === 'string') throw new Error(planned);
      const rows64 = { off: 0, spos: 64, sp: 64 * 4096, sh: 64 * 4096 };
      const call64 = { q: { off: 4, sb: 64 * 7, sh: 64, si: 64 }, keys: rows64, pageSize: 0, window: { left: Infinity, right: 0, align: 'bottom-right' as const } };
      const unaligned = effectivePlan(planned, call64 as never).mla?.kernel;
      expect(unaligned).toMatchObject({ qWords: false, compact: false, wholeTile: true });
      expect(mlaDecodeUnsupported(unaligned!)).toBeUndefined();
      expect(gqa(7, 128, 32768)).toMatchObject({ wholeTile: true, compact: true });
      expect(gqa(7, 128, 32768, 2)).toMatchObject({ wholeTile: true });
      expect(gqa(4, 128, 1024)).toBeUndefined();
      expect(gqa(4, 128, 4096, 2)).toMatchObject({ wholeTile: true });
      expect(gqa(4, 128, 32768, 4)).toMatchObject({ wholeTile: true });
      expect(on.mla?.kernel.wholeTile).toBeFalsy();
    }
    // the batches are what the source issues: 12 loads named before the first multiply, 5 asked of 12 chunks gives 4
    const wide = sources['MLA 576/512 paged, 12 K loads, 4 V chunks'];
    expect(wide.indexOf('let km11 =')).toBeGreaterThan(0);
    expect(wide.indexOf('let km11 =')).toBeLessThan(wide.indexOf('km0, s)'));
    expect(wide).toContain('let vm3_7 =');
    const four = sources['separate V 192/128, 5 K loads asked (4 taken), 2 V chunks'];
    expect(four).toContain('let km3 =');
    expect(four).not.toContain('let km4 =');
    expect(sources['MLA 576/512 shared, one load at a time']).not.toContain('let km1 =');
    expect(on.mla?.kernel.keyBatch).toBe(MLA_KEY_BATCH);
    expect(on.mla?.kernel.valueBatch).toBe(MLA_VALUE_BATCH);
    expect(on.mla?.kernel.stage).toBe(MLA_STAGE === 1);
    expect(on.mla?.kernel.kChains).toBe(MLA_CHAINS);
    // the staged form: no tail staging, 16-byte cache words; two slabs ahead name a second register set
    const staged = sources['staged MLA 576/512 shared, 16 heads'];
    expect(staged).toContain('var<storage, read> keys: array<vec4<u32>>');
    expect(staged).not.toContain('var<workgroup> Tail');
    expect(staged).not.toContain('w1_0');
    expect(sources['staged two slabs ahead, 576/512 paged']).toContain('w1_8 = key_word(');
    const errors = tintErrors(sources, 'the MLA decode kernel');
    if (!errors) return;
    for (const [label, list] of Object.entries(errors)) expect(list, label).toEqual([]);
  });
});
