// A generator of corrupted and hostile inputs for the file readers (README "Failure behaviour"):
// .npy files, safetensors files and config.json objects, each either crafted to hit one check
// (huge sizes, overlapping offsets, wrong types, truncation) or a valid file with seeded random
// bytes flipped. A reader given one must return normally or throw a FusedAttnError with a short
// message: never another exception, never a crash, never an allocation sized from a corrupt
// field. Shared by test/hostile.test.ts and bench/faults.mjs.
import { encodeNpy } from '../io/npy.js';
import { encodeSafetensors } from '../io/safetensors.js';
import { tinyConfigJson } from '../model/random.js';
import { uniform } from './random.js';

export interface HostileFile {
  name: string;
  bytes: Uint8Array;
}

const text = (s: string) => new TextEncoder().encode(s);

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** A .npy v1 file with this header dict text and these data bytes. */
export function npyWithHeader(header: string, data: Uint8Array = new Uint8Array(0), version = 1): Uint8Array {
  const pad = 64 - ((10 + header.length + 1) % 64);
  const dict = text(`${header}${' '.repeat(pad % 64)}\n`);
  const prefix = new Uint8Array(10);
  prefix.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  new DataView(prefix.buffer).setUint16(8, dict.byteLength, true);
  return concat(prefix, dict, data);
}

function flipped(bytes: Uint8Array, random: () => number, flips: number, from = 0): Uint8Array {
  const out = bytes.slice();
  for (let i = 0; i < flips; i++) out[from + Math.floor(random() * (out.length - from))] ^= 1 << Math.floor(random() * 8);
  return out;
}

/** Crafted and randomly corrupted .npy files. */
export function hostileNpyFiles(seed: number, randomCount = 40): HostileFile[] {
  const random = uniform(seed);
  const valid = encodeNpy({ dtype: 'float32', shape: [2, 3, 4], data: Float32Array.from({ length: 24 }, (_, i) => i) });
  const f4 = new Uint8Array(new Float32Array(6).buffer);
  const crafted: HostileFile[] = [
    { name: 'empty', bytes: new Uint8Array(0) },
    { name: 'magic only', bytes: valid.slice(0, 6) },
    { name: 'truncated header', bytes: valid.slice(0, 30) },
    { name: 'truncated data', bytes: valid.slice(0, valid.length - 5) },
    { name: 'trailing bytes', bytes: concat(valid, new Uint8Array(7)) },
    { name: 'version 9', bytes: npyWithHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", f4, 9) },
    { name: 'header length past the file', bytes: (() => { const b = valid.slice(0, 64); new DataView(b.buffer).setUint16(8, 65535, true); return b; })() },
    { name: 'shape of 2^50 elements', bytes: npyWithHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1125899906842624,), }", f4) },
    { name: 'shape product overflows', bytes: npyWithHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", f4) },
    { name: 'negative dimension', bytes: npyWithHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (-6,), }", f4) },
    { name: 'float dimension', bytes: npyWithHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1.5,), }", f4) },
    { name: 'float64', bytes: npyWithHeader("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", new Uint8Array(24)) },
    { name: 'big-endian', bytes: npyWithHeader("{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }", f4) },
    { name: 'fortran order', bytes: npyWithHeader("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f4) },
    { name: 'object dtype', bytes: npyWithHeader("{'descr': '|O', 'fortran_order': False, 'shape': (6,), }", f4) },
    { name: 'missing shape', bytes: npyWithHeader("{'descr': '<f4', 'fortran_order': False, }", f4) },
    { name: 'not a dict', bytes: npyWithHeader('[1, 2, 3]', f4) },
    { name: 'unterminated literal', bytes: npyWithHeader("{'descr': '<f4', 'shape': (6,", f4) },
    { name: 'deeply nested literal', bytes: npyWithHeader(`{'descr': ${'('.repeat(5000)}${')'.repeat(5000)}}`, f4) },
    { name: 'huge string in header', bytes: npyWithHeader(`{'descr': '${'x'.repeat(60000)}', 'fortran_order': False, 'shape': (6,), }`, f4) },
    { name: 'data shorter than shape', bytes: npyWithHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1000,), }", f4) },
  ];
  const randomised = Array.from({ length: randomCount }, (_, i) => ({ name: `random flips ${i}`, bytes: flipped(valid, random, 1 + Math.floor(random() * 6), i % 2 === 0 ? 0 : 64) }));
  return [...crafted, ...randomised];
}

function safetensorsWithHeader(header: unknown, data: Uint8Array, lengthOverride?: bigint): Uint8Array {
  const json = text(typeof header === 'string' ? header : JSON.stringify(header));
  const head = new Uint8Array(8);
  new DataView(head.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.byteLength), true);
  return concat(head, json, data);
}

/** Crafted and randomly corrupted safetensors files. */
export function hostileSafetensorsFiles(seed: number, randomCount = 40): HostileFile[] {
  const random = uniform(seed);
  const valid = encodeSafetensors({
    a: { dtype: 'F32', shape: [2, 3], data: new Float32Array(6).fill(1) },
    b: { dtype: 'F16', shape: [4], data: new Float32Array(4).fill(2) },
  }, { format: 'pt' });
  const data = new Uint8Array(32);
  const entry = (offsets: unknown, shape: unknown = [2, 2], dtype: unknown = 'F32') => ({ dtype, shape, data_offsets: offsets });
  const crafted: HostileFile[] = [
    { name: 'empty', bytes: new Uint8Array(0) },
    { name: 'header length 2^63', bytes: safetensorsWithHeader({}, data, 2n ** 63n) },
    { name: 'header length past the file', bytes: safetensorsWithHeader({}, data, 4096n) },
    { name: 'header not JSON', bytes: safetensorsWithHeader('{"a": ', data) },
    { name: 'header invalid UTF-8', bytes: concat(safetensorsWithHeader('{}', new Uint8Array(0)).slice(0, 8), new Uint8Array([0xff, 0xfe])) },
    { name: 'header an array', bytes: safetensorsWithHeader([1, 2], data) },
    { name: 'overlapping tensors', bytes: safetensorsWithHeader({ a: entry([0, 16]), b: entry([8, 24]) }, data) },
    { name: 'tensor past the end', bytes: safetensorsWithHeader({ a: entry([16, 32 + 16]) , b: entry([0, 16]) }, data) },
    { name: 'offsets reversed', bytes: safetensorsWithHeader({ a: entry([16, 0]) }, data) },
    { name: 'offsets not integers', bytes: safetensorsWithHeader({ a: entry([0.5, 16.5]) }, data) },
    { name: 'offsets beyond 2^53', bytes: safetensorsWithHeader({ a: entry([0, 2 ** 60]) }, data) },
    { name: 'bytes do not match shape', bytes: safetensorsWithHeader({ a: entry([0, 12]) }, data) },
    { name: 'shape of 2^60 elements', bytes: safetensorsWithHeader({ a: entry([0, 16], [2 ** 30, 2 ** 30]) }, data) },
    { name: 'negative dimension', bytes: safetensorsWithHeader({ a: entry([0, 16], [-2, -2]) }, data) },
    { name: 'unknown dtype', bytes: safetensorsWithHeader({ a: entry([0, 16], [2, 2], 'F128') }, data) },
    { name: 'tensor not an object', bytes: safetensorsWithHeader({ a: 7 }, data) },
    { name: 'metadata of numbers', bytes: safetensorsWithHeader({ __metadata__: { format: 3 }, a: entry([0, 16]) }, data) },
    { name: 'hundred-dimensional shape', bytes: safetensorsWithHeader({ a: entry([0, 4], new Array(100).fill(1)) }, data) },
    { name: 'truncated', bytes: valid.slice(0, valid.length - 3) },
  ];
  const randomised = Array.from({ length: randomCount }, (_, i) => ({ name: `random flips ${i}`, bytes: flipped(valid, random, 1 + Math.floor(random() * 6)) }));
  return [...crafted, ...randomised];
}

export interface HostileConfig {
  name: string;
  json: Record<string, unknown>;
}

/** config.json objects that must be refused (or accepted) before anything is sized from them. */
export function hostileConfigs(): HostileConfig[] {
  const base = tinyConfigJson();
  const change = (name: string, fields: Record<string, unknown>): HostileConfig => ({ name, json: { ...base, ...fields } });
  return [
    change('a billion layers', { num_hidden_layers: 1_000_000_000 }),
    change('more layers than the weights hold', { num_hidden_layers: (base.num_hidden_layers as number) + 1 }),
    change('hidden size 2^40', { hidden_size: 2 ** 40 }),
    change('vocab of 10^12', { vocab_size: 1e12 }),
    change('intermediate size 2^31', { intermediate_size: 2 ** 31 }),
    change('heads 0', { num_attention_heads: 0 }),
    change('kv heads not dividing heads', { num_key_value_heads: 3 }),
    change('head dim odd', { head_dim: 7 }),
    change('head dim 2^20', { head_dim: 2 ** 20 }),
    change('max positions 2^40', { max_position_embeddings: 2 ** 40 }),
    change('layers as a string', { num_hidden_layers: '2' }),
    change('layers fractional', { num_hidden_layers: 1.5 }),
    change('layers negative', { num_hidden_layers: -1 }),
    change('rms eps negative', { rms_norm_eps: -1 }),
    change('rope theta a list', { rope_theta: [10000] }),
    change('rope scaling garbage', { rope_scaling: { rope_type: 'llama3', factor: 'big' } }),
    change('eos id past the vocab', { eos_token_id: 10 ** 9 }),
    change('a million eos ids', { eos_token_id: Array.from({ length: 1 << 20 }, () => 1) }),
    change('unknown model type', { model_type: 'gpt5', architectures: ['Gpt5ForCausalLM'] }),
    change('shapes disagree with the weights', { intermediate_size: (base.intermediate_size as number) + 2 }),
    change('lm_head expected but absent', { tie_word_embeddings: false }),
  ];
}
