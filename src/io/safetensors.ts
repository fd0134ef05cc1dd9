// safetensors: the weight format of Hugging Face model folders.
//   [u64 little-endian N][N bytes of JSON header][data]
// The header maps each tensor name to { dtype, shape, data_offsets: [begin, end] } (offsets relative
// to the start of the data) plus an optional "__metadata__" map of strings. We read the header once
// and then each tensor's bytes on demand with positioned reads, so a model never sits in memory twice
// (file bytes + converted values): the nearest thing to a memory map that works in Node and a browser.
// Sharded models add `model.safetensors.index.json` ({ weight_map: { name: "shard file" } }).
import { platform } from '#platform';
import { floatsToHalf, halfToFloats } from '../core/dtype.js';
import { ShapeError, UnsupportedError, ValueError, show } from '../core/errors.js';
import { type ByteSource, type ModelFiles, type ModelSource, type SourceOptions, modelFiles } from './sources.js';

/** Element types we convert from. Others (I8, F64, ...) are listed in headers but refused on read. */
export type StoredDType = 'F32' | 'F16' | 'BF16';
const ELEMENT_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};
/** The format's own limit on the header, which also keeps a corrupt length from allocating gigabytes. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export type { ByteSource } from './sources.js';

/** One tensor of a file: element type, shape, and where its bytes are (absolute file offsets). */
export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly byteOffset: number;
  readonly byteLength: number;
  /** The file (shard) holding it. */
  readonly file: string;
}

/** float32 values, or float16 as raw bits, like Tensor data. */
export type ReadAs = 'float32' | 'float16';
export type ReadResult<T extends ReadAs> = T extends 'float16' ? Uint16Array : Float32Array;

/** A set of named tensors: one safetensors file, or every shard of a model. */
export interface TensorStore {
  /** The file or folder, for messages. */
  readonly origin: string;
  names(): string[];
  entry(name: string): SafetensorsEntry | undefined;
  read<T extends ReadAs>(name: string, as: T): Promise<ReadResult<T>>;
  close(): Promise<void>;
}

/** A ByteSource over a local file (Node, Bun, Deno), opened on the first read. */
export function fileSource(path: string): ByteSource {
  if (!platform.fs) throw new ValueError(path, `${path}: reading a local file needs Node, Bun or Deno; in a browser pass a URL, a File or an ArrayBuffer`);
  const file = platform.fs.open(path);
  return {
    name: path,
    size: () => file.size(),
    read: async (offset, length) => {
      try {
        return await file.read(offset, length);
      } catch (e) {
        if (e instanceof RangeError) throw new ValueError(path, e.message);
        throw e;
      }
    },
    close: () => file.close(),
  };
}

/** A ByteSource over bytes already in memory. */
export function bytesSource(bytes: Uint8Array, name = 'safetensors bytes'): ByteSource {
  return {
    name,
    size: async () => bytes.byteLength,
    read: async (offset, length) => {
      if (offset + length > bytes.byteLength) throw new ValueError(name, `${name}: read past the end (${offset + length} > ${bytes.byteLength} bytes)`);
      return bytes.slice(offset, offset + length);
    },
    close: async () => {},
  };
}

/** One safetensors file with its header parsed and checked against the file size. */
export class SafetensorsFile implements TensorStore {
  readonly origin: string;
  readonly metadata: Readonly<Record<string, string>>;
  private readonly entries: Map<string, SafetensorsEntry>;
  private readonly source: ByteSource;

  private constructor(source: ByteSource, entries: Map<string, SafetensorsEntry>, metadata: Record<string, string>) {
    this.source = source;
    this.origin = source.name;
    this.entries = entries;
    this.metadata = metadata;
  }

  /** Reads and validates the header. Throws ValueError naming the file (and tensor) when malformed. */
  static async open(input: string | ByteSource): Promise<SafetensorsFile> {
    const source = typeof input === 'string' ? fileSource(input) : input;
    try {
      const name = source.name;
      const size = await source.size();
      if (size < 8) throw new ValueError(name, `${name} is not a safetensors file: ${size} bytes, shorter than the 8-byte header length`);
      const lengthBytes = await source.read(0, 8);
      const headerLength = Number(new DataView(lengthBytes.buffer).getBigUint64(0, true));
      if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > size) {
        throw new ValueError(name, `${name} is not a safetensors file: header length ${headerLength} does not fit (file is ${size} bytes, limit ${MAX_HEADER_BYTES})`);
      }
      const text = new TextDecoder().decode(await source.read(8, headerLength));
      let header: unknown;
      try {
        header = JSON.parse(text);
      } catch (e) {
        throw new ValueError(name, `${name}: header is not valid JSON (${(e as Error).message})`);
      }
      if (header === null || typeof header !== 'object' || Array.isArray(header)) {
        throw new ValueError(name, `${name}: header must be a JSON object, got ${show(header)}`);
      }
      const dataStart = 8 + headerLength;
      const entries = new Map<string, SafetensorsEntry>();
      let metadata: Record<string, string> = {};
      for (const [key, value] of Object.entries(header as Record<string, unknown>)) {
        if (key === '__metadata__') metadata = parseMetadata(name, value);
        else entries.set(key, parseEntry(name, key, value, dataStart, size));
      }
      checkDisjoint(name, entries);
      return new SafetensorsFile(source, entries, metadata);
    } catch (e) {
      await source.close();
      throw e;
    }
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  entry(name: string): SafetensorsEntry | undefined {
    return this.entries.get(name);
  }

  /** Reads one tensor converted to float32 values or float16 bits. */
  async read<T extends ReadAs>(name: string, as: T): Promise<ReadResult<T>> {
    const entry = this.entries.get(name);
    if (!entry) throw new ValueError(name, `${this.origin} has no tensor ${show(name)}`);
    const bytes = await this.source.read(entry.byteOffset, entry.byteLength);
    return convert(bytes, entry, as) as ReadResult<T>;
  }

  close(): Promise<void> {
    return this.source.close();
  }
}

function parseEntry(file: string, name: string, value: unknown, dataStart: number, fileSize: number): SafetensorsEntry {
  const where = `${file}: tensor ${show(name)}`;
  const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (v === null || typeof v !== 'object') throw new ValueError(name, `${where} must be an object {dtype, shape, data_offsets}, got ${show(value)}`);
  if (typeof v.dtype !== 'string' || !(v.dtype in ELEMENT_BYTES)) {
    throw new ValueError(name, `${where} has unknown dtype ${show(v.dtype)} (known: ${Object.keys(ELEMENT_BYTES).join(', ')})`);
  }
  const shape = v.shape;
  if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new ShapeError(name, `${where} shape must be a list of at most 8 non-negative integers, got ${show(shape)}`);
  }
  const offsets = v.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[1] < offsets[0]) {
    throw new ValueError(name, `${where} data_offsets must be [begin, end] with 0 <= begin <= end, got ${show(offsets)}`);
  }
  const numel = (shape as number[]).reduce((a, b) => a * b, 1);
  const byteLength = offsets[1] - offsets[0];
  if (byteLength !== numel * ELEMENT_BYTES[v.dtype]) {
    throw new ShapeError(name, `${where} holds ${byteLength} bytes but shape ${show(shape)} of ${v.dtype} needs ${numel * ELEMENT_BYTES[v.dtype]}`);
  }
  if (dataStart + offsets[1] > fileSize) {
    throw new ValueError(name, `${where} ends at byte ${dataStart + offsets[1]}, past the end of the file (${fileSize} bytes): truncated file?`);
  }
  return { name, dtype: v.dtype, shape, byteOffset: dataStart + offsets[0], byteLength, file };
}

/** `__metadata__`: a map of strings (the format says so; anything else is a corrupt header). */
function parseMetadata(file: string, value: unknown): Record<string, string> {
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw new ValueError('__metadata__', `${file}: __metadata__ must be an object of strings, got ${show(value)}`);
  }
  return value as Record<string, string>;
}

/** Tensors' byte ranges may not overlap (Hugging Face's reader refuses such files too). */
function checkDisjoint(file: string, entries: Map<string, SafetensorsEntry>): void {
  const ranges = [...entries.values()].filter((e) => e.byteLength > 0).sort((a, b) => a.byteOffset - b.byteOffset);
  for (let i = 1; i < ranges.length; i++) {
    const [before, after] = [ranges[i - 1], ranges[i]];
    if (after.byteOffset < before.byteOffset + before.byteLength) {
      throw new ValueError(after.name, `${file}: tensors ${show(before.name)} and ${show(after.name)} overlap (bytes ${before.byteOffset}..${before.byteOffset + before.byteLength} and ${after.byteOffset}..${after.byteOffset + after.byteLength})`);
    }
  }
}

function convert(bytes: Uint8Array, entry: SafetensorsEntry, as: ReadAs): Float32Array | Uint16Array {
  // `bytes` is a fresh buffer starting at offset 0, so typed views over it are aligned
  const n = entry.byteLength / (ELEMENT_BYTES[entry.dtype] ?? 1);
  switch (entry.dtype) {
    case 'F32': {
      const f32 = new Float32Array(bytes.buffer, 0, n);
      return as === 'float32' ? f32 : floatsToHalf(f32);
    }
    case 'F16': {
      const f16 = new Uint16Array(bytes.buffer, 0, n);
      return as === 'float16' ? f16 : halfToFloats(f16);
    }
    case 'BF16': {
      const f32 = bf16ToFloats(new Uint16Array(bytes.buffer, 0, n));
      return as === 'float32' ? f32 : floatsToHalf(f32);
    }
    default:
      throw new UnsupportedError(entry.name, `${entry.file}: tensor ${show(entry.name)} has dtype ${entry.dtype}; only F32, F16 and BF16 weights are supported`);
  }
}

/** bfloat16 bits -> float32 (bf16 is the top half of a float32, so this is exact). */
export function bf16ToFloats(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
  return dst;
}

/** float32 -> bfloat16 bits, round to nearest even (NaN stays NaN). */
export function floatsToBf16(src: ArrayLike<number>, dst = new Uint16Array(src.length)): Uint16Array {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < src.length; i++) {
    f[0] = src[i];
    const x = u[0];
    if ((x & 0x7fffffff) > 0x7f800000) dst[i] = (x >>> 16) | 0x40;
    else dst[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return dst;
}

/**
 * Opens a model's weights from `source` (see ModelSource: a folder or .safetensors path, a URL, File
 * objects or bytes): `model.safetensors`, or the shards named by `model.safetensors.index.json`.
 * Tensors are read when asked for (range requests for URLs).
 */
export async function openSafetensors(source: ModelSource | ModelFiles, options: SourceOptions = {}): Promise<TensorStore> {
  const files = isModelFiles(source) ? source : modelFiles(source, options);
  const indexText = await files.readText('model.safetensors.index.json');
  if (indexText !== undefined) return openSharded(files, indexText);
  const single = await files.open('model.safetensors');
  if (single) return SafetensorsFile.open(single);
  throw new ValueError('source', `${files.origin} holds neither model.safetensors nor model.safetensors.index.json`);
}

function isModelFiles(x: unknown): x is ModelFiles {
  return typeof x === 'object' && x !== null && typeof (x as ModelFiles).open === 'function' && typeof (x as ModelFiles).readText === 'function' && typeof (x as ModelFiles).origin === 'string';
}

async function openSharded(files: ModelFiles, indexText: string): Promise<TensorStore> {
  const folder = files.origin;
  const indexPath = `${folder}/model.safetensors.index.json`;
  let index: { weight_map?: unknown };
  try {
    index = JSON.parse(indexText);
  } catch (e) {
    throw new ValueError(indexPath, `${indexPath} is not valid JSON (${(e as Error).message})`);
  }
  const map = index?.weight_map;
  if (map === null || typeof map !== 'object' || Array.isArray(map)) {
    throw new ValueError(indexPath, `${indexPath} must have a "weight_map" object {tensor: shard file}, got ${show(map)}`);
  }
  const shards = new Map<string, SafetensorsFile>();
  const owner = new Map<string, SafetensorsFile>();
  try {
    for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
      if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\')) {
        throw new ValueError(indexPath, `${indexPath}: weight_map[${show(name)}] must be a file name in the folder, got ${show(shard)}`);
      }
      let file = shards.get(shard);
      if (!file) {
        const bytes = await files.open(shard);
        if (!bytes) throw new ValueError(indexPath, `${indexPath} names shard ${show(shard)}, which ${folder} does not have`);
        file = await SafetensorsFile.open(bytes);
        shards.set(shard, file);
      }
      if (!file.entry(name)) throw new ValueError(name, `${indexPath} puts tensor ${show(name)} in ${shard}, which does not hold it`);
      owner.set(name, file);
    }
  } catch (e) {
    await Promise.all([...shards.values()].map((f) => f.close()));
    throw e;
  }
  return {
    origin: folder,
    names: () => [...owner.keys()],
    entry: (name) => owner.get(name)?.entry(name),
    read: (name, as) => {
      const file = owner.get(name);
      if (!file) throw new ValueError(name, `${folder} has no tensor ${show(name)} (not in ${indexPath})`);
      return file.read(name, as);
    },
    close: async () => {
      await Promise.all([...shards.values()].map((f) => f.close()));
    },
  };
}

/** A tensor to write: float32 values stored as `dtype`. */
export interface TensorToWrite {
  dtype: StoredDType;
  shape: readonly number[];
  data: Float32Array;
}

/** Encodes tensors as safetensors bytes (data in insertion order, header padded to 8 bytes). */
export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== t.data.length) throw new ShapeError(name, `tensor ${show(name)} has ${t.data.length} values but shape ${show(t.shape)} needs ${numel}`);
    let bytes: Uint8Array;
    if (t.dtype === 'F32') bytes = new Uint8Array(Float32Array.from(t.data).buffer);
    else if (t.dtype === 'F16') bytes = new Uint8Array(floatsToHalf(t.data).buffer);
    else if (t.dtype === 'BF16') bytes = new Uint8Array(floatsToBf16(t.data).buffer);
    else throw new UnsupportedError(name, `tensor ${show(name)}: can write F32, F16 or BF16, got ${show(t.dtype)}`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    parts.push(bytes);
    offset += bytes.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // pad with spaces (allowed by the format) so the data starts 8-byte aligned
  const headerBytes = new Uint8Array(json.byteLength + ((8 - (json.byteLength % 8)) % 8)).fill(0x20);
  headerBytes.set(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.byteLength;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Writes tensors to a .safetensors file (Node, Bun, Deno). */
export async function writeSafetensors(path: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Promise<void> {
  if (!platform.fs) throw new ValueError(path, `${path}: writing a file needs Node, Bun or Deno; use encodeSafetensors() for the bytes`);
  await platform.fs.writeFile(path, encodeSafetensors(tensors, metadata));
}
