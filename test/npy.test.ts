// .npy reading and writing: files written by NumPy itself (bytes captured once from numpy 2.4's
// np.save / np.lib.format.write_array, embedded below so the tests need no numpy), hand-built
// headers for the cases numpy rarely writes, typed errors for what we refuse, and round trips.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DTypeError, Tensor, UnsupportedError, ValueError, encodeNpy, npyToTensor, parseNpy, tensorToNpy, type NpyArray } from '../dist/index.js';
import { readNpyFile, writeNpyFile } from '../dist/io/npy-file.js';

const fromBase64 = (text: string) => new Uint8Array(Buffer.from(text, 'base64'));

/** Real numpy output. */
const NUMPY = {
  // np.arange(6, dtype='<f4').reshape(2, 3) / 4
  f32: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDMpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAACAPgAAAD8AAEA/AACAPwAAoD8=',
  // np.array([1.5, -2, 65504, inf], dtype='<f2')
  f16: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGYyJywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDQsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAPgDA/3sAfA==',
  // np.array([[True, False, True]])
  b1: 'k05VTVBZAQB2AHsnZGVzY3InOiAnfGIxJywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDEsIDMpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoBAAE=',
  // np.array([0, 3, 7], dtype='<i8')
  i8: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGk4JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDMsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAAAAAAMAAAAAAAAABwAAAAAAAAA=',
  // write_array(np.array([0.5], '<f4'), version=(2, 0)) and (3, 0)
  f32v2: 'k05VTVBZAgB0AAAAeydkZXNjcic6ICc8ZjQnLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMSwpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAA/',
  f32v3: 'k05VTVBZAwB0AAAAeydkZXNjcic6ICc8ZjQnLCAnZm9ydHJhbl9vcmRlcic6IEZhbHNlLCAnc2hhcGUnOiAoMSwpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAA/',
  // np.float32(2.5) (0-d) and np.zeros((0, 3), np.float32)
  scalar: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKCksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAACBA',
  empty: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDAsIDMpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAo=',
  // np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3)) and np.arange(3, dtype='>f4')
  fortran: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBUcnVlLCAnc2hhcGUnOiAoMiwgMyksIH0gICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAABAQAAAgD8AAIBAAAAAQAAAoEA=',
  bigEndian: 'k05VTVBZAQB2AHsnZGVzY3InOiAnPmY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDMsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAP4AAAEAAAAA=',
};

/** Builds a .npy file by hand: any version, any header text, any data bytes. */
function handBuilt(header: string, data: ArrayBufferView = new Uint8Array(0), major = 1, align = 64): Uint8Array {
  const prefix = major === 1 ? 10 : 12;
  const headerBytes = new TextEncoder().encode(header);
  const total = Math.ceil((prefix + headerBytes.length + 1) / align) * align;
  const padded = new Uint8Array(total - prefix).fill(0x20);
  padded.set(headerBytes);
  padded[padded.length - 1] = 0x0a;
  const out = new Uint8Array(total + data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
  const view = new DataView(out.buffer);
  if (major === 1) view.setUint16(8, padded.length, true);
  else view.setUint32(8, padded.length, true);
  out.set(padded, prefix);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), total);
  return out;
}

function expectError(fn: () => unknown, cls: Function, text: RegExp) {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(cls);
  expect((error as Error).message).toMatch(text);
}

describe('reading numpy output', () => {
  it('float32 2-D, float16, bool, int64', () => {
    const f32 = parseNpy(fromBase64(NUMPY.f32));
    expect(f32.dtype).toBe('float32');
    expect(f32.shape).toEqual([2, 3]);
    expect(Array.from(f32.data as Float32Array)).toEqual([0, 0.25, 0.5, 0.75, 1, 1.25]);

    const f16 = npyToTensor(parseNpy(fromBase64(NUMPY.f16)));
    expect(f16.dtype).toBe('float16');
    expect(Array.from(f16.toFloat32())).toEqual([1.5, -2, 65504, Infinity]);

    const b1 = parseNpy(fromBase64(NUMPY.b1));
    expect(b1.dtype).toBe('bool');
    expect(b1.shape).toEqual([1, 3]);
    expect(Array.from(b1.data as Uint8Array)).toEqual([1, 0, 1]);

    const i8 = parseNpy(fromBase64(NUMPY.i8));
    expect(i8.dtype).toBe('int64');
    expect(Array.from(i8.data as BigInt64Array)).toEqual([0n, 3n, 7n]);
  });

  it('format versions 2.0 and 3.0, 0-d and empty arrays', () => {
    for (const text of [NUMPY.f32v2, NUMPY.f32v3]) {
      const a = parseNpy(fromBase64(text));
      expect(a.shape).toEqual([1]);
      expect(Array.from(a.data as Float32Array)).toEqual([0.5]);
    }
    const scalar = parseNpy(fromBase64(NUMPY.scalar));
    expect(scalar.shape).toEqual([]);
    expect(Array.from(scalar.data as Float32Array)).toEqual([2.5]);
    const empty = parseNpy(fromBase64(NUMPY.empty));
    expect(empty.shape).toEqual([0, 3]);
    expect(empty.data.length).toBe(0);
  });

  it('writes byte-for-byte what np.save writes', () => {
    for (const key of ['f32', 'f16', 'b1', 'i8', 'scalar', 'empty'] as const) {
      const bytes = fromBase64(NUMPY[key]);
      expect(Buffer.from(encodeNpy(parseNpy(bytes))).toString('base64'), key).toBe(NUMPY[key]);
    }
  });
});

describe('hand-built headers', () => {
  it('accepts double quotes, Python 2 longs, 16-byte alignment, odd spacing and key order', () => {
    const data = Int32Array.from([1, -2, 3, 4, 5, 6]);
    const a = parseNpy(handBuilt(`{"shape":(2L,3L),"fortran_order":False,"descr":"<i4"}`, data, 1, 16));
    expect(a.dtype).toBe('int32');
    expect(a.shape).toEqual([2, 3]);
    expect(Array.from(a.data as Int32Array)).toEqual([1, -2, 3, 4, 5, 6]);
    const u8 = parseNpy(handBuilt(`{ 'descr' : '|u1' , 'fortran_order' : False , 'shape' : ( 4 , ) }`, Uint8Array.from([0, 1, 254, 255]), 2));
    expect(u8.dtype).toBe('uint8');
    expect(Array.from(u8.data as Uint8Array)).toEqual([0, 1, 254, 255]);
  });

  it('reads data that is not aligned in memory', () => {
    const file = handBuilt(`{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }`, Float32Array.from([1.5, -3]));
    const shifted = new Uint8Array(file.length + 1);
    shifted.set(file, 1);
    const a = parseNpy(shifted.subarray(1));
    expect(Array.from(a.data as Float32Array)).toEqual([1.5, -3]);
  });

  it('accepts fortran_order True when it stores the same bytes as C order', () => {
    const a = parseNpy(handBuilt(`{'descr': '<f4', 'fortran_order': True, 'shape': (1, 3, 1), }`, Float32Array.from([1, 2, 3])));
    expect(Array.from(a.data as Float32Array)).toEqual([1, 2, 3]);
  });
});

describe('typed errors naming the file', () => {
  it('Fortran order', () => {
    expectError(() => parseNpy(fromBase64(NUMPY.fortran), 'k.npy'), UnsupportedError, /^k\.npy is stored in Fortran order .*shape \[2, 3\].*ascontiguousarray/);
  });
  it('big-endian and other dtypes', () => {
    expectError(() => parseNpy(fromBase64(NUMPY.bigEndian), 'q.npy'), DTypeError, /^q\.npy has dtype ">f4" \(big-endian float32\); expected little-endian float32/);
    const f8 = handBuilt(`{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }`, new Float64Array(1));
    expectError(() => parseNpy(f8, 'v.npy'), DTypeError, /^v\.npy has dtype "<f8" \(float64\); expected .*astype\(np\.float32\)/);
    const structured = handBuilt(`{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }`, new Uint8Array(8));
    expectError(() => parseNpy(structured, 's.npy'), DTypeError, /^s\.npy holds a structured dtype/);
    const object = handBuilt(`{'descr': '|O', 'fortran_order': False, 'shape': (1,), }`, new Uint8Array(8));
    expectError(() => parseNpy(object, 'o.npy'), DTypeError, /^o\.npy has dtype "\|O"/);
  });
  it('not a .npy file, unknown versions, malformed or truncated headers and data', () => {
    expectError(() => parseNpy(new TextEncoder().encode('PK\x03\x04 a zip, maybe an .npz'), 'x.npz'), ValueError, /^x\.npz is not a \.npy file/);
    const v9 = handBuilt(`{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }`, new Float32Array(1));
    v9[6] = 9;
    expectError(() => parseNpy(v9, 'a.npy'), UnsupportedError, /version 9\.0 is not supported/);
    expectError(() => parseNpy(handBuilt(`{'descr': '<f4', 'shape': (1,), }`), 'a.npy'), ValueError, /key 'fortran_order' is missing/);
    expectError(() => parseNpy(handBuilt(`{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }`), 'a.npy'), ValueError, /shape must be a tuple of non-negative integers/);
    expectError(() => parseNpy(handBuilt(`{'descr': '<f4', 'fortran_order': False, 'shape': (2,`), 'a.npy'), ValueError, /malformed \.npy header/);
    const short = handBuilt(`{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }`, new Float32Array(3));
    expectError(() => parseNpy(short, 'a.npy'), ValueError, /^a\.npy is truncated: shape \[4\] of float32 needs 16 data bytes, the file has 12/);
    expectError(() => parseNpy(fromBase64(NUMPY.f32).subarray(0, 40), 'a.npy'), ValueError, /^a\.npy is truncated: its header claims 118 bytes/);
  });
  it('missing files and int64 where a Tensor is wanted', () => {
    expectError(() => readNpyFile('/nonexistent/q.npy'), ValueError, /^cannot read \/nonexistent\/q\.npy: no such file or directory$/);
    expectError(() => npyToTensor(parseNpy(fromBase64(NUMPY.i8)), 'mask.npy'), DTypeError, /^mask\.npy has dtype int64/);
  });
  it('writing data that disagrees with its shape or dtype', () => {
    expectError(() => encodeNpy({ dtype: 'float32', shape: [2, 2], data: new Float32Array(3) }, 'o.npy'), ValueError, /must be a Float32Array of 4 elements, got Float32Array of 3/);
    expectError(() => encodeNpy({ dtype: 'int32', shape: [2], data: new Float32Array(2) } as unknown as NpyArray, 'o.npy'), ValueError, /must be a Int32Array/);
    expectError(() => encodeNpy({ dtype: 'float64', shape: [1], data: new Float64Array(1) } as unknown as NpyArray, 'o.npy'), DTypeError, /cannot write dtype "float64"/);
  });
});

describe('round trips', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fusedattn-npy-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const arrays: NpyArray[] = [
    { dtype: 'float32', shape: [2, 3, 5], data: Float32Array.from({ length: 30 }, (_, i) => Math.sin(i) * 1e3) },
    { dtype: 'float32', shape: [3], data: Float32Array.from([NaN, -Infinity, -0]) },
    { dtype: 'float16', shape: [4, 1], data: Uint16Array.from([0x3c00, 0x8001, 0x7bff, 0xfc00]) },
    { dtype: 'bool', shape: [2, 2], data: Uint8Array.from([1, 0, 0, 1]) },
    { dtype: 'uint8', shape: [3], data: Uint8Array.from([0, 128, 255]) },
    { dtype: 'int32', shape: [2], data: Int32Array.from([-(2 ** 31), 2 ** 31 - 1]) },
    { dtype: 'int64', shape: [2], data: BigInt64Array.from([-(2n ** 63n), 2n ** 62n]) },
    { dtype: 'float32', shape: [], data: Float32Array.from([7]) },
    { dtype: 'float32', shape: [0, 4], data: new Float32Array(0) },
  ];

  it('every dtype, through bytes and through files; the data starts on a 64-byte boundary', () => {
    arrays.forEach((a, n) => {
      const bytes = encodeNpy(a);
      const headerEnd = bytes.indexOf(0x0a) + 1;
      expect(headerEnd % 64).toBe(0);
      expect(bytes.length).toBe(headerEnd + a.data.byteLength);
      const path = join(dir, `a${n}.npy`);
      writeNpyFile(path, a);
      for (const back of [parseNpy(bytes), readNpyFile(path)]) {
        expect(back.dtype).toBe(a.dtype);
        expect(back.shape).toEqual(a.shape);
        expect(back.data.constructor).toBe(a.data.constructor);
        expect(Array.from(back.data as ArrayLike<number>)).toEqual(Array.from(a.data as ArrayLike<number>));
      }
    });
  });

  it('headers too long for version 1.0 are written as version 2.0', () => {
    const shape = new Array(22000).fill(1);
    const bytes = encodeNpy({ dtype: 'float32', shape, data: Float32Array.from([3]) });
    expect(bytes[6]).toBe(2);
    const back = parseNpy(bytes);
    expect(back.shape.length).toBe(22000);
    expect(Array.from(back.data as Float32Array)).toEqual([3]);
  });

  it('Tensors: to .npy and back, float16 bits preserved', () => {
    const t = Tensor.fromData(Uint16Array.from([0x3c00, 0x4000, 0xc000, 0x0001, 0x7c00, 0x3555]), [2, 3], 'float16');
    const path = join(dir, 't.npy');
    writeNpyFile(path, tensorToNpy(t));
    const back = npyToTensor(readNpyFile(path));
    expect(back.dtype).toBe('float16');
    expect(back.shape).toEqual([2, 3]);
    expect(Array.from(back.data as Uint16Array)).toEqual(Array.from(t.data as Uint16Array));
    writeFileSync(join(dir, 'junk.npy'), 'not numpy');
    expectError(() => readNpyFile(join(dir, 'junk.npy')), ValueError, /junk\.npy is not a \.npy file/);
  });
});
