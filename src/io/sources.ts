// Where a model's files come from: a local folder (Node, Bun, Deno), a URL (fetch, with range
// requests so a safetensors tensor is read when it is needed and never the whole shard twice),
// File / Blob objects (an <input type="file" multiple> or a drop), or bytes already in memory.
// Everything downstream (config.json, tokenizer.json, safetensors shards) reads through ModelFiles.
import { platform } from '#platform';
import { ValueError, show } from '../core/errors.js';

/** Where a safetensors file's bytes come from: a file on disk, or bytes in memory (tests, browsers). */
export interface ByteSource {
  /** File path or label, used in every error message. */
  readonly name: string;
  size(): Promise<number>;
  /** Exactly `length` bytes from `offset` into a fresh buffer. */
  read(offset: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** One file's contents: bytes, a Blob / File, or a URL (string or URL object) to fetch. */
export type ModelFileInput = Blob | ArrayBuffer | ArrayBufferView | string | URL;

/**
 * A model: a folder path (Node, Bun, Deno) or a URL of the folder (a string with http(s): is a URL
 * everywhere; in a browser every string is a URL, relative to the page); File objects (FileList,
 * array) named as in the folder; or a map of file name -> ModelFileInput.
 */
export type ModelSource = string | URL | ArrayLike<File> | Iterable<File> | Map<string, ModelFileInput> | Record<string, ModelFileInput>;

export interface LoadProgress {
  /** The file being read (config.json, model-00001-of-00002.safetensors, ...). */
  file: string;
  /** Bytes of this file read so far. */
  loaded: number;
  /** The file's size, once known. */
  total: number | undefined;
}

export interface SourceOptions {
  /** Called as bytes arrive (URL) or are read (files, blobs). */
  onProgress?: (progress: LoadProgress) => void;
  /** fetch to use for URLs (default globalThis.fetch). */
  fetch?: typeof fetch;
  /** Extra fetch options for URLs (headers such as Authorization, credentials, signal). */
  requestInit?: RequestInit;
}

/** The files of one model, by name. */
export interface ModelFiles {
  /** The folder, URL or "files" for messages. */
  readonly origin: string;
  /** A reader of the file, or undefined when the model has no such file. */
  open(name: string): Promise<ByteSource | undefined>;
  /** The file as text, or undefined when absent. */
  readText(name: string): Promise<string | undefined>;
}

const URL_SCHEME = /^(https?|blob|data|file):/i;

function isFileLike(x: unknown): x is File {
  return typeof Blob !== 'undefined' && x instanceof Blob && typeof (x as File).name === 'string';
}

/** Turns any ModelSource into ModelFiles; throws ValueError for a source it cannot read here. */
export function modelFiles(source: ModelSource, options: SourceOptions = {}): ModelFiles {
  if (typeof source === 'string' || source instanceof URL) {
    const text = String(source);
    if (source instanceof URL || URL_SCHEME.test(text) || !platform.fs) {
      const url = source instanceof URL ? source : new URL(text, baseUrl());
      if (url.protocol === 'file:' && platform.fs) return folderFiles(decodeURIComponent(url.pathname));
      return urlFiles(url, options);
    }
    return folderFiles(text);
  }
  const entries = new Map<string, ModelFileInput>();
  if (source instanceof Map) for (const [k, v] of source) entries.set(k, v);
  else if (isIterableOfFiles(source)) {
    for (const file of Array.from(source as ArrayLike<File>)) {
      if (!isFileLike(file)) throw new ValueError('source', `model files must be File objects (with a name), got ${show(file)}`);
      // a folder picked with <input webkitdirectory> names files "folder/config.json"
      entries.set(file.name.split('/').pop() as string, file);
    }
  } else if (typeof source === 'object' && source !== null) {
    for (const [k, v] of Object.entries(source)) entries.set(k, v);
  } else throw new ValueError('source', `a model source is a folder path, a URL, File objects or a {name: bytes | Blob | URL} map; got ${show(source)}`);
  return mapFiles(entries, options);
}

function isIterableOfFiles(x: unknown): boolean {
  if (typeof x !== 'object' || x === null) return false;
  if (typeof FileList !== 'undefined' && x instanceof FileList) return true;
  return Array.isArray(x) || (typeof (x as { length?: unknown }).length === 'number' && !(x instanceof Map) && Object.getPrototypeOf(x) !== Object.prototype);
}

function baseUrl(): string {
  const loc = (globalThis as { location?: { href?: string } }).location;
  return loc?.href ?? 'file:///';
}

// ------------------------------------------------------------------ local folder

function folderFiles(dir: string): ModelFiles {
  const fs = platform.fs;
  if (!fs) throw new ValueError('source', `${dir}: a folder path needs a file system (Node, Bun, Deno); in a browser pass a URL, File objects or ArrayBuffers`);
  const kind = fs.kind(dir);
  const inFolder = async (name: string, mustExist: boolean) => {
    const k = await kind;
    // a missing folder: config.json and the tokenizer read as absent (the caller names the file it
    // needed); the weights say that the folder does not exist
    if (k === undefined) {
      if (mustExist) throw new ValueError('source', `${dir} does not exist (expected a model folder)`);
      return undefined;
    }
    // a path to the .safetensors file itself: that file is the model's weights
    if (k === 'file') return name === 'model.safetensors' && dir.endsWith('.safetensors') ? dir : undefined;
    const path = fs.join(dir, name);
    return (await fs.kind(path)) === 'file' ? path : undefined;
  };
  return {
    origin: dir,
    open: async (name) => {
      const path = await inFolder(name, true);
      return path === undefined ? undefined : fs.open(path);
    },
    readText: async (name) => {
      const path = await inFolder(name, false);
      return path === undefined ? undefined : fs.readText(path);
    },
  };
}

// ------------------------------------------------------------------ in-memory files and blobs

function mapFiles(entries: Map<string, ModelFileInput>, options: SourceOptions): ModelFiles {
  const names = [...entries.keys()];
  const origin = `files [${names.slice(0, 4).join(', ')}${names.length > 4 ? ', …' : ''}]`;
  const open = async (name: string): Promise<ByteSource | undefined> => {
    const input = entries.get(name);
    if (input === undefined) return undefined;
    if (typeof input === 'string' || input instanceof URL) return openUrl(new URL(String(input), baseUrl()), name, options);
    if (typeof Blob !== 'undefined' && input instanceof Blob) return blobSource(input, name, options);
    if (input instanceof ArrayBuffer || ArrayBuffer.isView(input)) {
      const bytes = input instanceof ArrayBuffer ? new Uint8Array(input) : new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
      return memorySource(bytes, name, options);
    }
    throw new ValueError(`source[${show(name)}]`, `model file ${show(name)} must be an ArrayBuffer, a typed array, a Blob/File or a URL, got ${show(input)}`);
  };
  return {
    origin,
    open,
    readText: async (name) => {
      const source = await open(name);
      if (!source) return undefined;
      try {
        return new TextDecoder().decode(await source.read(0, await source.size()));
      } finally {
        await source.close();
      }
    },
  };
}

function memorySource(bytes: Uint8Array, name: string, options: SourceOptions): ByteSource {
  let loaded = 0;
  return {
    name,
    size: async () => bytes.byteLength,
    read: async (offset, length) => {
      if (offset + length > bytes.byteLength) throw new ValueError(name, `${name}: read past the end (${offset + length} > ${bytes.byteLength} bytes)`);
      loaded += length;
      options.onProgress?.({ file: name, loaded: Math.min(loaded, bytes.byteLength), total: bytes.byteLength });
      return bytes.slice(offset, offset + length);
    },
    close: async () => {},
  };
}

function blobSource(blob: Blob, name: string, options: SourceOptions): ByteSource {
  let loaded = 0;
  return {
    name,
    size: async () => blob.size,
    read: async (offset, length) => {
      if (offset + length > blob.size) throw new ValueError(name, `${name}: read past the end (${offset + length} > ${blob.size} bytes)`);
      const bytes = new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer());
      loaded += length;
      options.onProgress?.({ file: name, loaded: Math.min(loaded, blob.size), total: blob.size });
      return bytes;
    },
    close: async () => {},
  };
}

// ------------------------------------------------------------------ URLs

function urlFiles(base: URL, options: SourceOptions): ModelFiles {
  // the folder URL: "https://host/models/tiny" and ".../tiny/" both name the folder, unless the
  // URL is the .safetensors file itself
  const single = /\.safetensors$/i.test(base.pathname);
  const folder = single ? base : new URL(base.href.endsWith('/') ? base.href : `${base.href}/`);
  const fileUrl = (name: string) => (single ? (name === 'model.safetensors' ? base : undefined) : new URL(name, folder));
  return {
    origin: base.href,
    open: async (name) => {
      const url = fileUrl(name);
      return url && openUrl(url, name, options);
    },
    readText: async (name) => {
      const url = fileUrl(name);
      if (!url) return undefined;
      const response = await doFetch(url, options, {});
      if (response.status === 404 || response.status === 410) return undefined;
      if (!response.ok) throw new ValueError('source', `${url.href}: HTTP ${response.status} ${response.statusText}`);
      return new TextDecoder().decode(await readBody(response, name, options, undefined));
    },
  };
}

async function doFetch(url: URL, options: SourceOptions, headers: Record<string, string>): Promise<Response> {
  const f = options.fetch ?? globalThis.fetch;
  if (typeof f !== 'function') throw new ValueError('source', `${url.href}: no fetch() in this runtime to load a model from a URL`);
  const init = options.requestInit ?? {};
  try {
    return await f(url, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), ...headers } });
  } catch (e) {
    throw new ValueError('source', `${url.href}: fetch failed (${(e as Error).message})`);
  }
}

/** Reads a response body, reporting progress; `expect` bytes when known. */
async function readBody(response: Response, name: string, options: SourceOptions, progress: { loaded: number; total: number | undefined } | undefined, expect?: number): Promise<Uint8Array> {
  const length = expect ?? (Number(response.headers.get('Content-Length')) || undefined);
  const state = progress ?? { loaded: 0, total: length };
  if (!response.body) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    state.loaded += bytes.byteLength;
    options.onProgress?.({ file: name, loaded: state.loaded, total: state.total });
    return bytes;
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.byteLength;
    state.loaded += value.byteLength;
    options.onProgress?.({ file: name, loaded: state.loaded, total: state.total });
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(received);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * A ByteSource over a URL: the first request asks for byte 0 with a Range header; a 206 answer
 * gives the size and every later read is a range request; a server that ignores ranges (200) sends
 * the whole file once, which is then read from memory. undefined for 404.
 */
async function openUrl(url: URL, name: string, options: SourceOptions): Promise<ByteSource | undefined> {
  const first = await doFetch(url, options, { Range: 'bytes=0-0' });
  if (first.status === 404 || first.status === 410) return undefined;
  const progress = { loaded: 0, total: undefined as number | undefined };
  if (first.status === 200) {
    progress.total = Number(first.headers.get('Content-Length')) || undefined;
    const bytes = await readBody(first, name, options, progress);
    return { ...memorySource(bytes, name, {}), name: url.href };
  }
  if (first.status !== 206) throw new ValueError('source', `${url.href}: HTTP ${first.status} ${first.statusText}`);
  await first.arrayBuffer();
  const range = /\/(\d+)\s*$/.exec(first.headers.get('Content-Range') ?? '');
  if (!range) throw new ValueError('source', `${url.href}: a 206 answer without the file size in Content-Range (${show(first.headers.get('Content-Range'))})`);
  const size = Number(range[1]);
  progress.total = size;
  return {
    name: url.href,
    size: async () => size,
    read: async (offset, length) => {
      if (offset + length > size) throw new ValueError(name, `${url.href}: read past the end (${offset + length} > ${size} bytes)`);
      if (length === 0) return new Uint8Array(0);
      const response = await doFetch(url, options, { Range: `bytes=${offset}-${offset + length - 1}` });
      if (response.status !== 206) throw new ValueError('source', `${url.href}: range request for bytes ${offset}-${offset + length - 1} answered HTTP ${response.status}`);
      const bytes = await readBody(response, name, options, progress, length);
      if (bytes.byteLength !== length) throw new ValueError('source', `${url.href}: wanted ${length} bytes from ${offset}, got ${bytes.byteLength}`);
      return bytes;
    },
    close: async () => {},
  };
}
