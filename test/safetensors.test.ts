// safetensors: round trips through our writer and reader (F32, F16, BF16; one file, bytes in
// memory, sharded folders), and clear typed errors for broken files naming the file and tensor.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ShapeError, UnsupportedError, ValueError, fromHalfBits, toHalfBits } from '../dist/index.js';
import {
  SafetensorsFile, bf16ToFloats, bytesSource, encodeSafetensors, floatsToBf16, openSafetensors, writeModelFolder, writeSafetensors,
} from '../dist/model/index.js';
import { normal, randomFloats, uniform } from '../dist/testing/index.js';

const values = randomFloats(6 * 7, normal(uniform(5)));
const small = Float32Array.of(0, -1.5, 3.140625, 1e-3, 65504, -2e-8);

async function roundTrip(dtype: 'F32' | 'F16' | 'BF16') {
  const bytes = encodeSafetensors({ a: { dtype, shape: [6, 7], data: values }, b: { dtype, shape: [2, 3], data: small } }, { format: 'pt' });
  return SafetensorsFile.open(bytesSource(bytes, 'mem.safetensors'));
}

const header = (json: string, extra = 0) => {
  const text = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + text.length + extra);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(text, 8);
  return out;
};

describe('safetensors read/write', () => {
  it('F32 round trip is exact, with shapes and metadata', async () => {
    const f = await roundTrip('F32');
    expect(f.names()).toEqual(['a', 'b']);
    expect(f.entry('a')).toMatchObject({ dtype: 'F32', shape: [6, 7], byteLength: 6 * 7 * 4 });
    expect(f.metadata).toEqual({ format: 'pt' });
    expect(await f.read('a', 'float32')).toEqual(values);
    // data starts 8-byte aligned, as the format recommends
    expect((f.entry('a')!.byteOffset - 8) % 8).toBe(0);
  });

  it('F16 stores round-to-nearest halves; reads as float32 or as half bits', async () => {
    const f = await roundTrip('F16');
    const asFloat = await f.read('a', 'float32');
    const asHalf = await f.read('a', 'float16');
    for (let i = 0; i < values.length; i++) {
      expect(asHalf[i]).toBe(toHalfBits(values[i]));
      expect(asFloat[i]).toBe(fromHalfBits(toHalfBits(values[i])));
    }
    expect(Array.from(await f.read('b', 'float32')).slice(0, 3)).toEqual([0, -1.5, 3.140625]);
  });

  it('BF16 keeps the top 16 bits with round-to-nearest-even', async () => {
    // ties go to even; 65504 needs more than bf16's 8 significant bits and rounds up to 2^16
    expect(Array.from(bf16ToFloats(floatsToBf16([1 + 2 ** -8, 1 + 3 * 2 ** -8, -2, 65504])))).toEqual([1, 1 + 2 ** -6, -2, 65536]);
    expect(Number.isNaN(bf16ToFloats(floatsToBf16([NaN]))[0])).toBe(true);
    const f = await roundTrip('BF16');
    const got = await f.read('a', 'float32');
    for (let i = 0; i < values.length; i++) {
      expect(Math.abs(got[i] - values[i])).toBeLessThanOrEqual(Math.abs(values[i]) * 2 ** -8);
      expect(got[i]).toBe(bf16ToFloats(floatsToBf16([values[i]]))[0]);
    }
    // bf16 -> half bits goes through float32
    expect((await f.read('b', 'float16'))[1]).toBe(toHalfBits(-1.5));
  });

  it('files on disk and sharded folders with model.safetensors.index.json', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fusedattn-st-'));
    await writeSafetensors(join(dir, 'one.safetensors'), { x: { dtype: 'F32', shape: [42], data: values } });
    const one = await openSafetensors(join(dir, 'one.safetensors'));
    expect(await one.read('x', 'float32')).toEqual(values);
    await one.close();

    const tensors = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`t${i}`, { shape: [i + 1, 3], data: values.slice(i, i + 3 * (i + 1)) }]));
    await writeModelFolder(join(dir, 'sharded'), { model_type: 'qwen2' }, tensors, { dtype: 'F32', shards: 3 });
    const store = await openSafetensors(join(dir, 'sharded'));
    expect(store.names().sort()).toEqual(['t0', 't1', 't2', 't3', 't4']);
    expect(new Set(store.names().map((n) => store.entry(n)!.file)).size).toBe(3);
    for (const [name, t] of Object.entries(tensors)) expect(await store.read(name, 'float32')).toEqual(t.data);
    await store.close();
  });
});

describe('safetensors bad files', () => {
  const open = (bytes: Uint8Array) => SafetensorsFile.open(bytesSource(bytes, 'bad.safetensors'));

  it('too short, header length past the end, header not JSON', async () => {
    await expect(open(new Uint8Array(5))).rejects.toThrow(/bad.safetensors is not a safetensors file: 5 bytes/);
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
    await expect(open(huge)).rejects.toThrow(/header length 1099511627776 does not fit/);
    await expect(open(header('{"a": '))).rejects.toThrow(ValueError);
    await expect(open(header('{"a": '))).rejects.toThrow(/bad.safetensors: header is not valid JSON/);
    await expect(open(header('[1]'))).rejects.toThrow(/header must be a JSON object/);
  });

  it('a tensor with an unknown dtype, a wrong byte count or data past the end names the tensor', async () => {
    await expect(open(header('{"w": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}', 8))).rejects.toThrow(/tensor "w" has unknown dtype "F33"/);
    const wrongSize = open(header('{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}', 8));
    await expect(wrongSize).rejects.toBeInstanceOf(ShapeError);
    await expect(open(header('{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}', 8))).rejects.toThrow(/tensor "w" holds 8 bytes but shape \[3\] of F32 needs 12/);
    await expect(open(header('{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}', 8))).rejects.toThrow(/tensor "w" ends at byte .*past the end of the file.*truncated/);
    await expect(open(header('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}', 8))).rejects.toThrow(/data_offsets must be \[begin, end\]/);
  });

  it('integer tensors are listed but refused on read with UnsupportedError', async () => {
    const f = await open(header('{"ids": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}}', 8));
    expect(f.entry('ids')!.dtype).toBe('I32');
    await expect(f.read('ids', 'float32')).rejects.toBeInstanceOf(UnsupportedError);
    await expect(f.read('ids', 'float32')).rejects.toThrow(/bad.safetensors: tensor "ids" has dtype I32; only F32, F16 and BF16/);
    await expect(f.read('nope', 'float32')).rejects.toThrow(/has no tensor "nope"/);
  });

  it('folders: missing weights, a broken index, an index naming the wrong shard', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fusedattn-st-bad-'));
    await expect(openSafetensors(join(dir, 'missing'))).rejects.toThrow(/missing does not exist/);
    await expect(openSafetensors(dir)).rejects.toThrow(/holds neither model.safetensors nor model.safetensors.index.json/);
    await writeFile(join(dir, 'model.safetensors.index.json'), '{"weight_map": 3}');
    await expect(openSafetensors(dir)).rejects.toThrow(/must have a "weight_map" object/);
    await writeSafetensors(join(dir, 'a.safetensors'), { x: { dtype: 'F32', shape: [1], data: Float32Array.of(1) } });
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'a.safetensors', y: 'a.safetensors' } }));
    await expect(openSafetensors(dir)).rejects.toThrow(/puts tensor "y" in a.safetensors, which does not hold it/);
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: '../a.safetensors' } }));
    await expect(openSafetensors(dir)).rejects.toThrow(/must be a file name in the folder/);
  });
});
