// NumPy .npy files, in memory (no node:fs here, so browser bundles can use it too).
// Format (numpy.lib.format): the magic "\x93NUMPY", a major and a minor version byte, the header
// length (uint16 LE in v1, uint32 LE in v2/v3), then a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and ended by '\n' so the data starts on a 64-byte boundary, then the raw
// elements. v3 differs from v2 only in allowing UTF-8 in the header.
// We read and write the little-endian, C-order arrays that attention needs; anything else gets a
// typed error naming the file, the value found and what we accept, so a user knows what to convert.
import { DTypeError, UnsupportedError, ValueError, show } from '../core/errors.js';
import { parsePythonLiteral, type PyValue } from './pyliteral.js';

/** Element types we read and write. float16 travels as raw half bits (Uint16Array), as in Tensor. */
export type NpyDType = 'float32' | 'float16' | 'bool' | 'uint8' | 'int32' | 'int64';

export interface NpyStorageOf {
  float32: Float32Array;
  float16: Uint16Array;
  bool: Uint8Array;
  uint8: Uint8Array;
  int32: Int32Array;
  int64: BigInt64Array;
}

export interface NpyArray<T extends NpyDType = NpyDType> {
  dtype: T;
  /** Row-major (C order) dimensions; [] for a 0-d array. */
  shape: number[];
  data: NpyStorageOf[T];
}

/** numpy `descr` of each dtype, as numpy itself writes it. */
const DESCR: Record<NpyDType, string> = {
  float32: '<f4',
  float16: '<f2',
  bool: '|b1',
  uint8: '|u1',
  int32: '<i4',
  int64: '<i8',
};

const ITEM_SIZE: Record<NpyDType, number> = { float32: 4, float16: 2, bool: 1, uint8: 1, int32: 4, int64: 8 };

const ACCEPTED = "little-endian float32 '<f4', float16 '<f2', bool '|b1', uint8 '|u1', int32 '<i4' or int64 '<i8'";

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
/** numpy aligns the data to 64 bytes (since 1.9; older files used 16, which we also read). */
const ALIGN = 64;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Parses the bytes of a .npy file. `name` (usually the path) goes into every error message. */
export function parseNpy(bytes: Uint8Array, name = 'array'): NpyArray {
  checkHost(name);
  if (bytes.length < 10 || MAGIC.some((m, i) => bytes[i] !== m)) {
    throw new ValueError(name, `${name} is not a .npy file: it does not start with the magic "\\x93NUMPY"`);
  }
  const major = bytes[6];
  const minor = bytes[7];
  if (major < 1 || major > 3) {
    throw new UnsupportedError(name, `${name}: .npy format version ${major}.${minor} is not supported; expected 1.0, 2.0 or 3.0`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lengthBytes = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lengthBytes) throw new ValueError(name, `${name} is truncated inside its header`);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const dataStart = 8 + lengthBytes + headerLength;
  if (dataStart > bytes.length) {
    throw new ValueError(name, `${name} is truncated: its header claims ${headerLength} bytes but the file has ${bytes.length - 8 - lengthBytes} after the length field`);
  }
  const headerBytes = bytes.subarray(8 + lengthBytes, dataStart);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(headerBytes);
  const { dtype, fortranOrder, shape } = readHeader(header, name);

  const count = shape.reduce((a, b) => a * b, 1);
  if (fortranOrder && shape.filter((d) => d > 1).length > 1) {
    // With at most one dimension above 1, Fortran and C order store the same bytes.
    throw new UnsupportedError(name, `${name} is stored in Fortran order (fortran_order: True) with shape ${show(shape)}; expected C order: save np.ascontiguousarray(x)`);
  }
  const byteLength = count * ITEM_SIZE[dtype];
  if (dataStart + byteLength > bytes.length) {
    throw new ValueError(name, `${name} is truncated: shape ${show(shape)} of ${dtype} needs ${byteLength} data bytes, the file has ${bytes.length - dataStart}`);
  }
  // Typed arrays need aligned offsets; copy only when the bytes happen not to be aligned.
  let data = bytes.subarray(dataStart, dataStart + byteLength);
  if ((data.byteOffset % ITEM_SIZE[dtype]) !== 0) data = data.slice();
  return { dtype, shape, data: storage(dtype, data.buffer, data.byteOffset, count) } as NpyArray;
}

/** Encodes an array as a .npy file (version 1.0, or 2.0 when the header needs it). */
export function encodeNpy(array: NpyArray, name = 'array'): Uint8Array {
  checkHost(name);
  const { dtype, shape, data } = array;
  if (!(dtype in DESCR)) throw new DTypeError(name, `${name}: cannot write dtype ${show(dtype)} to .npy; expected one of ${Object.keys(DESCR).join(', ')}`);
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new ValueError(name, `${name}: shape must be an array of non-negative integers, got ${show(shape)}`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  const expected = storage(dtype, new ArrayBuffer(0), 0, 0).constructor;
  if (!(data instanceof expected) || data.length !== count) {
    throw new ValueError(name, `${name}: ${dtype} data of shape ${show(shape)} must be a ${expected.name} of ${count} elements, got ${data?.constructor?.name} of ${(data as { length?: number })?.length}`);
  }
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let dict = `{'descr': '${DESCR[dtype]}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  let major = 1;
  let prefix = 10;
  if (dict.length + 1 + prefix > 0xffff) {
    major = 2;
    prefix = 12;
  }
  const padded = Math.ceil((prefix + dict.length + 1) / ALIGN) * ALIGN;
  dict = dict.padEnd(padded - prefix - 1, ' ') + '\n';
  const headerLength = dict.length;
  const out = new Uint8Array(prefix + headerLength + data.byteLength);
  out.set(MAGIC, 0);
  out[6] = major;
  out[7] = 0;
  const view = new DataView(out.buffer);
  if (major === 1) view.setUint16(8, headerLength, true);
  else view.setUint32(8, headerLength, true);
  for (let i = 0; i < dict.length; i++) out[prefix + i] = dict.charCodeAt(i); // ASCII
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), prefix + headerLength);
  return out;
}

function checkHost(name: string): void {
  if (!LITTLE_ENDIAN_HOST) {
    throw new UnsupportedError(name, `${name}: .npy I/O needs a little-endian host; this one is big-endian`);
  }
}

function storage(dtype: NpyDType, buffer: ArrayBufferLike, byteOffset: number, count: number): NpyStorageOf[NpyDType] {
  switch (dtype) {
    case 'float32': return new Float32Array(buffer, byteOffset, count);
    case 'float16': return new Uint16Array(buffer, byteOffset, count);
    case 'bool':
    case 'uint8': return new Uint8Array(buffer, byteOffset, count);
    case 'int32': return new Int32Array(buffer, byteOffset, count);
    case 'int64': return new BigInt64Array(buffer, byteOffset, count);
  }
}

function readHeader(header: string, name: string): { dtype: NpyDType; fortranOrder: boolean; shape: number[] } {
  let dict: PyValue;
  try {
    dict = parsePythonLiteral(header.trimEnd());
  } catch (e) {
    throw new ValueError(name, `${name} has a malformed .npy header (${(e as Error).message}): ${show(header.trim())}`);
  }
  if (!(dict instanceof Map)) {
    throw new ValueError(name, `${name} has a malformed .npy header: expected a dict, got ${show(header.trim())}`);
  }
  const entries = dict;
  for (const key of ['descr', 'fortran_order', 'shape']) {
    if (!entries.has(key)) throw new ValueError(name, `${name} has a malformed .npy header: key '${key}' is missing in ${show(header.trim())}`);
  }
  const descr = entries.get('descr');
  if (typeof descr !== 'string') {
    throw new DTypeError(name, `${name} holds a structured dtype ${show(header.trim())}; expected ${ACCEPTED}`);
  }
  const fortranOrder = entries.get('fortran_order');
  if (typeof fortranOrder !== 'boolean') {
    throw new ValueError(name, `${name} has a malformed .npy header: fortran_order must be True or False, got ${show(fortranOrder)}`);
  }
  const shape = entries.get('shape');
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 0)) {
    throw new ValueError(name, `${name} has a malformed .npy header: shape must be a tuple of non-negative integers, got ${show(shape)}`);
  }
  return { dtype: dtypeOf(descr, name), fortranOrder, shape: shape as number[] };
}

/** Maps a numpy type string ('<f4', '|b1', '>i8'...) to our dtype, or throws naming what it is. */
function dtypeOf(descr: string, name: string): NpyDType {
  const match = /^([<>|=]?)([a-zA-Z])(\d+)$/.exec(descr);
  if (!match) throw new DTypeError(name, `${name} has dtype ${show(descr)}; expected ${ACCEPTED}`);
  const [, order, kind, sizeText] = match;
  const size = Number(sizeText);
  const key = `${kind}${size}`;
  const found: Record<string, NpyDType> = { f4: 'float32', f2: 'float16', b1: 'bool', u1: 'uint8', i4: 'int32', i8: 'int64' };
  const dtype = found[key];
  if (!dtype) {
    const known: Record<string, string> = { f8: 'float64', i2: 'int16', i1: 'int8', u2: 'uint16', u4: 'uint32', u8: 'uint64', c8: 'complex64', c16: 'complex128' };
    const what = known[key] ? ` (${known[key]})` : '';
    throw new DTypeError(name, `${name} has dtype ${show(descr)}${what}; expected ${ACCEPTED}: convert with x.astype(np.float32)`);
  }
  // '=' means the writer's native order, which numpy never writes to files; treat it like '<' would
  // be a guess, so only the explicit orders are accepted (1-byte types have no byte order).
  if (size > 1 && order !== '<') {
    const why = order === '>' ? 'big-endian' : `byte order ${show(order || '(none)')}`;
    throw new DTypeError(name, `${name} has dtype ${show(descr)} (${why} ${dtype}); expected ${ACCEPTED}: convert with x.astype('<${kind}${size}')`);
  }
  return dtype;
}
