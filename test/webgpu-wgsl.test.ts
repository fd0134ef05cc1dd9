// WebGPU pieces that need no GPU: generated WGSL (file snapshots under test/__snapshots__/, so a
// change to a kernel shows up as a readable diff), cache keys, uniform layouts, tile choice and
// the limit reasons the portable tier gives.
import { describe, expect, it } from 'vitest';
import { validateAttention } from '../dist/index.js';
import { makeCase } from '../dist/testing/index.js';
import { stableKey } from '../dist/engines/webgpu/stable-key.js';
import { UniformLayout } from '../dist/engines/webgpu/uniforms.js';
import { sizeClass } from '../dist/engines/webgpu/buffers.js';
import { buildFlash, flashWorkgroupBytes, type FlashOptions } from '../dist/ops/attention/webgpu/portable/flash.wgsl.js';
import { FLASH_TILES, chooseTile, flashUnsupported, type FlashLimits } from '../dist/ops/attention/webgpu/portable/flash.js';
import { buildMatmul } from '../dist/ops/gemm/webgpu/matmul.wgsl.js';
import { buildScores, naiveUnsupported } from '../dist/ops/attention/webgpu/naive/naive.js';
import { buildSoftmax } from '../dist/ops/attention/webgpu/naive/softmax.wgsl.js';

const plain: FlashOptions = {
  dtype: 'float32', dimQK: 64, dimRope: 0, dimV: 64, tile: { threads: 64, rows: 16, keys: 32 }, returnLse: false,
  mask: false, bias: 'none', alibi: false, softcap: false, windowed: false, quadLoads: false,
};
const everything: FlashOptions = {
  dtype: 'float16', dimQK: 48, dimRope: 16, dimV: 37, tile: { threads: 64, rows: 16, keys: 16 }, returnLse: true,
  mask: true, bias: 'float16', alibi: true, softcap: true, windowed: true, quadLoads: false,
};

/** Limits of Mesa llvmpipe through Dawn's OpenGL ES backend (what CI has). */
const LLVMPIPE: FlashLimits = {
  maxComputeWorkgroupStorageSize: 32768,
  maxComputeInvocationsPerWorkgroup: 1024,
  maxComputeWorkgroupSizeX: 1024,
  maxComputeWorkgroupsPerDimension: 65535,
  maxStorageBuffersPerShaderStage: 16,
  maxStorageBufferBindingSize: 134217728,
  maxBufferSize: 2147483648,
  minStorageBufferOffsetAlignment: 256,
};

const problem = (c: Parameters<typeof makeCase>[0]) => {
  const { q, k, v, options } = makeCase(c, 1);
  return validateAttention(q, k, v, options);
};

describe('generated WGSL', () => {
  it('flash kernel, plain f32', async () => {
    await expect(buildFlash(plain)).toMatchFileSnapshot('./__snapshots__/flash-f32-plain.wgsl');
  });
  it('flash kernel, f16 storage with every option, odd Dv (atomic float16 output)', async () => {
    const wgsl = buildFlash(everything);
    await expect(wgsl).toMatchFileSnapshot('./__snapshots__/flash-f16-all-options.wgsl');
    for (const piece of ['unpack2x16float', 'atomicOr', 'qr_at', 'kr_at', 'mask_at', 'bias_at', 'tanh', 'lse_buf', 'sp.win_left']) {
      expect(wgsl, piece).toContain(piece);
    }
    expect(wgsl).not.toContain('enable f16'); // the portable tier needs no shader-f16
  });
  it('flash kernel reading q, k, v and the RoPE parts by quads (f16: two u32 words per quad)', async () => {
    const wgsl = buildFlash({ ...everything, dimV: 36, quadLoads: true });
    await expect(wgsl).toMatchFileSnapshot('./__snapshots__/flash-f16-quads.wgsl');
    expect(wgsl).toContain('var<storage, read> kr_buf: array<vec2<u32>>;');
    expect(() => buildFlash({ ...everything, quadLoads: true })).toThrow(/multiples of 4/); // Dv 37
  });
  it('options only add what they use', () => {
    const wgsl = buildFlash(plain);
    for (const piece of ['unpack2x16float', 'atomic', 'qr_buf', 'mask_buf', 'bias_buf', 'tanh', 'lse_buf', 'sp.win_left']) {
      expect(wgsl, piece).not.toContain(piece);
    }
  });
  it('naive path: scores (matmul + score epilogue), softmax, P·V', async () => {
    const scores = buildScores({
      matmul: { a: 'float32', b: 'float32', out: 'float32', transposeB: true, splitK: true, ragged: true },
      score: { mask: true, bias: 'float32', alibi: true, softcap: true, windowed: true },
    });
    await expect(scores).toMatchFileSnapshot('./__snapshots__/naive-scores.wgsl');
    await expect(buildSoftmax({ returnLse: true })).toMatchFileSnapshot('./__snapshots__/naive-softmax.wgsl');
    await expect(buildMatmul({ a: 'float32', b: 'float16', out: 'float16', transposeB: false, splitK: false, ragged: true }))
      .toMatchFileSnapshot('./__snapshots__/matmul-f16-out-ragged.wgsl');
  });
  it('builders are pure: same options, same text', () => {
    expect(buildFlash({ ...everything })).toBe(buildFlash(everything));
  });
});

describe('pipeline cache keys', () => {
  it('do not depend on field order, and drop undefined fields', () => {
    expect(stableKey({ a: 1, b: { c: true, d: 'x' } })).toBe(stableKey({ b: { d: 'x', c: true }, a: 1 }));
    expect(stableKey({ a: 1, b: undefined })).toBe(stableKey({ a: 1 }));
  });
  it('tell different kernels apart', () => {
    const keys = new Set([plain, everything, { ...plain, dimV: 65 }, { ...plain, tile: { ...plain.tile, keys: 16 } }, { ...plain, bias: 'float32' }].map(stableKey));
    expect(keys.size).toBe(5);
    expect(stableKey([Infinity, -0, 0])).toBe('[Infinity,-0,0]');
  });
});

describe('uniform layouts', () => {
  it('follow WGSL alignment and pack little-endian', () => {
    const layout = new UniformLayout('P', { a: 'u32', v: 'vec4u', s: 'f32', i: 'i32', w: 'vec2f' });
    expect(layout.byteSize).toBe(48); // a@0, v@16, s@32, i@36, w@40 -> 48
    expect(layout.wgsl()).toBe('struct P {\n  a: u32,\n  v: vec4<u32>,\n  s: f32,\n  i: i32,\n  w: vec2<f32>,\n}');
    const bytes = new DataView(layout.pack({ a: 7, v: [1, 2, 3, 4], s: 0.5, i: -3, w: [1.5, 2.5] }));
    expect([bytes.getUint32(0, true), bytes.getUint32(16, true), bytes.getUint32(28, true)]).toEqual([7, 1, 4]);
    expect([bytes.getFloat32(32, true), bytes.getInt32(36, true), bytes.getFloat32(44, true)]).toEqual([0.5, -3, 2.5]);
  });
  it('reject values that do not fit', () => {
    const layout = new UniformLayout('P', { a: 'u32', v: 'vec4u' });
    expect(() => layout.pack({ a: -1, v: [0, 0, 0, 0] })).toThrow(/not a u32/);
    expect(() => layout.pack({ a: 1, v: [0, 0] })).toThrow(/expected 4 component/);
  });
});

describe('buffer size classes', () => {
  it('round up to a quarter of the power of two', () => {
    expect([1, 16, 17, 100, 1000, 1024, 1025].map(sizeClass)).toEqual([16, 16, 20, 112, 1024, 1024, 1280]);
  });
});

describe('portable tier limits', () => {
  const p64 = problem({ batch: 1, headsQ: 2, seqQ: 10, seqK: 12, dimQK: 64 });
  it('picks the first tile that fits the workgroup memory', () => {
    expect(chooseTile(p64, LLVMPIPE)).toEqual(FLASH_TILES[0]);
    const mla = problem({ batch: 1, headsQ: 1, seqQ: 4, seqK: 4, dimQK: 192, dimV: 128 });
    const tile = chooseTile(mla, LLVMPIPE)!;
    expect(flashWorkgroupBytes(tile, 192, 128)).toBeLessThanOrEqual(32768);
    expect(chooseTile(mla, { ...LLVMPIPE, maxComputeWorkgroupStorageSize: 16384 })).not.toEqual(tile);
  });
  it('names the workgroup memory limit for huge head dims', () => {
    const huge = problem({ batch: 1, headsQ: 1, seqQ: 2, seqK: 2, dimQK: 4096 });
    expect(flashUnsupported(huge, LLVMPIPE)).toMatch(/Dq 4096 \/ Dv 4096 need at least \d+ bytes of workgroup memory but maxComputeWorkgroupStorageSize is 32768/);
  });
  it('names the storage buffer count, binding size and grid limits', () => {
    const rich = problem({ batch: 1, headsQ: 2, seqQ: 5, seqK: 6, dimQK: 8, dimRope: 4, mask: 'random', bias: 'random', returnLse: true });
    expect(flashUnsupported(rich, { ...LLVMPIPE, maxStorageBuffersPerShaderStage: 8 }))
      .toBe('the portable kernel binds 10 storage buffers for this call but maxStorageBuffersPerShaderStage is 8');
    expect(flashUnsupported(p64, { ...LLVMPIPE, maxStorageBufferBindingSize: 4096 }))
      .toBe('query needs a storage binding of 5120 bytes but maxStorageBufferBindingSize is 4096');
    const long = problem({ batch: 1, headsQ: 1, seqQ: 300, seqK: 3, dimQK: 8 });
    expect(flashUnsupported(long, { ...LLVMPIPE, maxComputeWorkgroupsPerDimension: 4 }))
      .toBe('the grid needs 10 workgroups along query blocks but maxComputeWorkgroupsPerDimension is 4');
    expect(flashUnsupported(p64, LLVMPIPE)).toBeUndefined();
  });
  it('the naive path names the score buffer it would need', () => {
    const p = problem({ batch: 1, headsQ: 2, seqQ: 64, seqK: 64, dimQK: 8 });
    expect(naiveUnsupported(p, { ...LLVMPIPE, maxStorageBufferBindingSize: 16384 }))
      .toBe('the Sq×Sk score buffer needs 32768 bytes but maxStorageBufferBindingSize is 16384');
  });
});
