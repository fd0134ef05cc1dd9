// Bad input gets a typed error naming the argument, the expected and the received value, thrown
// before any work (validateAttention runs first in attention(); these call attention() itself).
import { describe, expect, it } from 'vitest';
import { DTypeError, ShapeError, Tensor, UnsupportedError, ValueError, attention, type AttentionOptions } from '../dist/index.js';

const t = (shape: number[], fill = 0.5) => Tensor.fromData(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill), shape);
const q = t([1, 2, 4, 8]);
const k = t([1, 2, 6, 8]);
const v = t([1, 2, 6, 8]);

async function rejects(args: [unknown, unknown, unknown, AttentionOptions?], cls: Function, argument: string, text: RegExp) {
  const call = attention(...(args as [Tensor, Tensor, Tensor, AttentionOptions?]));
  await expect(call).rejects.toBeInstanceOf(cls);
  await expect(call).rejects.toMatchObject({ argument });
  await expect(call).rejects.toThrow(text);
}

describe('bad input', () => {
  it('wrong rank names the input, the layout and the received rank', async () => {
    await rejects([t([2, 4, 8]), k, v], ShapeError, 'query', /'query' is expected to have 4 dimensions for layout BNSD.*got 3/);
    await rejects([q, k, v, { layout: 'TND' }], ShapeError, 'query', /3 dimensions for layout TND.*got 4/);
  });
  it('mismatched batch, heads, lengths and head dims', async () => {
    await rejects([q, t([2, 2, 6, 8]), v], ShapeError, 'key', /key batch must equal query batch \(1\), got 2/);
    await rejects([q, k, t([1, 1, 6, 8])], ShapeError, 'value', /value heads must equal key heads \(2\), got 1/);
    await rejects([q, k, t([1, 2, 5, 8])], ShapeError, 'value', /value length must equal key length \(6\), got 5/);
    await rejects([q, t([1, 2, 6, 7]), v], ShapeError, 'key', /key head dim must equal query head dim \(8\), got 7/);
  });
  it('query heads not a multiple of key/value heads', async () => {
    await rejects([t([1, 3, 4, 8]), k, v], ShapeError, 'key', /query heads \(3\) must be a multiple of key\/value heads.*got 2/);
  });
  it('dtypes', async () => {
    await rejects([{ data: new Float64Array(64), shape: [1, 2, 4, 8] }, k, v], DTypeError, 'query.data', /Float64Array/);
    const half = Tensor.fromData(new Uint16Array(96), [1, 2, 6, 8], 'float16');
    await rejects([q, half, v], DTypeError, 'key', /share a dtype, got float32, float16, float32/);
    await rejects([q, k, v, { mask: t([4, 6]) }], DTypeError, 'mask', /mask must have dtype bool or uint8, got float32/);
  });
  it('data length disagrees with shape', async () => {
    await rejects([{ data: new Float32Array(10), shape: [1, 2, 4, 8] }, k, v], ShapeError, 'query', /has 10 elements but shape \[1, 2, 4, 8\] needs 64/);
  });
  it('mask and bias not broadcastable', async () => {
    const mask = Tensor.fromData(new Uint8Array(4 * 5), [4, 5], 'bool');
    await rejects([q, k, v, { mask }], ShapeError, 'mask', /not broadcastable to \[B, Nq, Sq, Sk\] = \[1, 2, 4, 6\]: its key length dimension is 5, expected 1 or 6/);
    await rejects([q, k, v, { bias: t([3, 4, 6]) }], ShapeError, 'bias', /its heads dimension is 3, expected 1 or 2/);
    await rejects([q, k, v, { bias: t([1, 1, 1, 1, 6]) }], ShapeError, 'bias', /1 to 4 dimensions/);
  });
  it('window mixed ambiguously with top-left causal, malformed windows', async () => {
    await rejects([q, k, v, { causal: 'top-left', window: [4, 0] }], ValueError, 'options.window', /ambiguous/);
    await rejects([q, k, v, { window: [4, -2] as [number, number] }], ValueError, 'options.window', /integers >= -1.*got \[4, -2\]/);
    await rejects([q, k, v, { window: [1, 1], preTokens: 3 }], ValueError, 'options.window', /give one/);
    await rejects([q, k, v, { preTokens: 2, nextTokens: -5 }], ValueError, 'options.nextTokens', /no key is visible/);
    await rejects([q, k, v, { causal: 'diagonal' as never }], ValueError, 'options.causal', /got "diagonal"/);
  });
  it('scale, softcap and unknown options', async () => {
    await rejects([q, k, v, { scale: NaN }], ValueError, 'options.scale', /finite number, got NaN/);
    await rejects([q, k, v, { softcap: -1 }], ValueError, 'options.softcap', />= 0.*got -1/);
    await rejects([q, k, v, { casual: true } as AttentionOptions], ValueError, 'options.casual', /not an attention option/);
    await rejects([q, k, v, { backend: 'cuda' as never }], ValueError, 'options.backend', /got "cuda"/);
  });
  it('cu_seqlens: required, increasing, matching the total', async () => {
    const qt = t([7, 2, 8]);
    const kt = t([9, 2, 8]);
    await rejects([qt, kt, kt, { layout: 'TND' }], ValueError, 'options.cuSeqlensQ', /required for layout TND/);
    await rejects([qt, kt, kt, { layout: 'TND', cuSeqlensQ: [0, 5, 3, 7], cuSeqlensK: [0, 3, 6, 9] }], ValueError, 'options.cuSeqlensQ', /non-decreasing, got 5 then 3 at index 2/);
    await rejects([qt, kt, kt, { layout: 'TND', cuSeqlensQ: [0, 3, 6], cuSeqlensK: [0, 3, 9] }], ValueError, 'options.cuSeqlensQ', /end at the total token count 7, got 6/);
    await rejects([qt, kt, kt, { layout: 'TND', cuSeqlensQ: [1, 7], cuSeqlensK: [0, 9] }], ValueError, 'options.cuSeqlensQ', /start at 0, got 1/);
    await rejects([qt, kt, kt, { layout: 'TND', cuSeqlensQ: [0, 7], cuSeqlensK: [0, 4, 9] }], ShapeError, 'options.cuSeqlensK', /length of cuSeqlensQ \(2/);
    await rejects([q, k, v, { cuSeqlensQ: [0, 4] }], ValueError, 'options.cuSeqlensQ', /only to layout TND/);
  });
  it('packed layouts need heads that divide the hidden size', async () => {
    const h = t([1, 4, 16]);
    await rejects([h, h, h, { layout: 'BSH' }], ValueError, 'options.heads', /required for layout BSH/);
    await rejects([h, h, h, { layout: 'BSH', heads: 3 }], ShapeError, 'query', /hidden size 16 is not divisible by options.heads = 3/);
  });
  it('MLA split form needs both parts with matching shapes', async () => {
    await rejects([q, k, v, { qRope: t([1, 2, 4, 4]) }], ValueError, 'kRope', /go together/);
    await rejects([q, k, v, { qRope: t([1, 2, 4, 4]), kRope: t([1, 2, 6, 2]) }], ShapeError, 'kRope', /kRope head dim must equal qRope head dim \(4\), got 2/);
    await rejects([q, k, v, { qRope: t([1, 2, 5, 4]), kRope: t([1, 2, 6, 4]) }], ShapeError, 'qRope', /qRope seq must equal query seq \(4\), got 5/);
  });
  it('alibi slopes shape', async () => {
    await rejects([q, k, v, { alibiSlopes: [0.5, 0.25, 0.1] }], ShapeError, 'alibiSlopes', /\[Nq\] = \[2\].*got \[3\]/);
  });
  it('non-finite inputs are flagged when asked, with their position', async () => {
    const bad = t([1, 2, 6, 8]);
    (bad.data as Float32Array)[13] = NaN;
    await rejects([q, k, bad, { checkFinite: true }], ValueError, 'value', /non-finite value at flat index 13: NaN/);
  });
  it('GPU tensors refused by the CPU backend with a clear reason', async () => {
    const fakeGpu = Tensor.fromGpuBuffer({ device: {} as GPUDevice, buffer: { size: 1 << 20 } as GPUBuffer, byteOffset: 0 }, [1, 2, 4, 8], 'float32');
    const kg = Tensor.fromGpuBuffer({ device: fakeGpu.gpu!.device, buffer: { size: 1 << 20 } as GPUBuffer, byteOffset: 0 }, [1, 2, 6, 8], 'float32');
    await rejects([fakeGpu, kg, kg, { backend: 'cpu' }], UnsupportedError, 'options.backend', /cannot read GPU tensors/);
    await rejects([fakeGpu, k, v], UnsupportedError, 'key', /all tensors of one call must share a device/);
  });
});
