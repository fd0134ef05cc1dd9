// Tiny random models for the runner tests, written to temporary folders by the tests themselves,
// and a tiny byte-level BPE tokenizer.json in the style of Qwen2's.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { checkF32 } from '../dist/testing/index.js';
import { type RandomTensor, type StoredDType, configFrom, randomWeights, tinyConfigJson, writeModelFolder } from '../dist/model/index.js';

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `fusedattn-${prefix}-`));
}

export interface TinyModel {
  dir: string;
  configJson: Record<string, unknown>;
  tensors: Record<string, RandomTensor>;
}

/** Writes a tiny random model folder; `overrides` change config.json fields. */
export async function writeTinyModel(overrides: Record<string, unknown> = {}, options: { dtype?: StoredDType; shards?: number; seed?: number; tokenizer?: boolean } = {}): Promise<TinyModel> {
  const configJson = tinyConfigJson(overrides);
  const tensors = randomWeights(configFrom(configJson), options.seed ?? 1);
  const dir = await tempDir('model');
  const extraFiles = options.tokenizer ? { 'tokenizer.json': tinyTokenizerJson(), 'tokenizer_config.json': { eos_token: '<|endoftext|>' } } : undefined;
  await writeModelFolder(dir, configJson, tensors, { dtype: options.dtype, shards: options.shards, extraFiles });
  return { dir, configJson, tensors };
}

/** Asserts float32 logits match the float64 reference (src/testing/compare.ts rule, rtol 1e-5). */
export function expectClose(what: string, got: ArrayLike<number>, ref: ArrayLike<number>, rtol = 1e-5): void {
  expect(got.length).toBe(ref.length);
  expect(checkF32(what, got, ref, rtol) ?? '').toBe('');
}

/** GPT-2 / Qwen2 byte-to-printable-character map used by byte-level BPE. */
function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let i = 33; i <= 126; i++) printable.push(i);
  for (let i = 161; i <= 172; i++) printable.push(i);
  for (let i = 174; i <= 255; i++) printable.push(i);
  const chars: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) chars[b] = printable.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  return chars;
}

/**
 * A byte-level BPE tokenizer.json shaped like Qwen2's (split regex, ByteLevel pre-tokenizer and
 * decoder): ids 0-255 are the bytes, then a few merges, then <|endoftext|>. 263 tokens in all.
 */
export function tinyTokenizerJson(): object {
  const chars = bytesToUnicode();
  const vocab: Record<string, number> = {};
  chars.forEach((c, b) => (vocab[c] = b));
  const merges = [['h', 'e'], ['l', 'l'], ['he', 'll'], ['Ġ', 'w'], ['o', 'r'], ['Ġw', 'or']];
  for (const [a, b] of merges) vocab[a + b] = Object.keys(vocab).length;
  const eos = Object.keys(vocab).length;
  vocab['<|endoftext|>'] = eos;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: eos, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: 'Isolated', invert: false },
        byteLevel,
      ],
    },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: merges.map(([a, b]) => `${a} ${b}`) },
  };
}

export const TINY_TOKENIZER_VOCAB = 263;
