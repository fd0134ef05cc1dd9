// The `dropout` option of attention() and attentionBackward(), and its validation into a
// DropoutSpec (philox.ts). p = 0 (or keepProb = 1) resolves to no dropout at all: no kernel
// changes, no cost.
import { ValueError, show } from '../../../core/errors.js';
import type { DropoutSpec } from './philox.js';

/**
 * Dropout on the attention weights (after softmax, before P·V), as in training:
 * `{ p, seed, offset? }` (PyTorch / flash_attn's dropout_p) or `{ keepProb, seed, offset? }` (CANN).
 * The same seed and offset give the same mask in the forward and the backward, on every backend.
 */
export interface DropoutOptions {
  /** Probability of dropping a weight, 0 <= p < 1. */
  p?: number;
  /** CANN's spelling: 1 - p, 0 < keepProb <= 1. Give p or keepProb, not both. */
  keepProb?: number;
  /** 64-bit seed: an integer number in [0, 2^53) or a bigint in [0, 2^64). */
  seed: number | bigint;
  /** Philox counter offset, an integer in [0, 2^32) (default 0): advance it per call for fresh masks under one seed. */
  offset?: number;
}

const TWO_32 = 2 ** 32;

/** The spec of a dropout option, undefined when absent or p = 0; typed errors name the field. */
export function resolveDropout(option: DropoutOptions | undefined): DropoutSpec | undefined {
  if (option === undefined) return undefined;
  if (option === null || typeof option !== 'object') {
    throw new ValueError('options.dropout', `options.dropout must be { p, seed, offset? } or { keepProb, seed, offset? }, got ${show(option)}`);
  }
  for (const key of Object.keys(option)) {
    if (!['p', 'keepProb', 'seed', 'offset'].includes(key)) {
      throw new ValueError(`options.dropout.${key}`, `options.dropout.${key} is not a dropout field (known: p, keepProb, seed, offset)`);
    }
  }
  const { p: pIn, keepProb } = option;
  if (pIn !== undefined && keepProb !== undefined) {
    throw new ValueError('options.dropout.keepProb', `give options.dropout.p or options.dropout.keepProb (= 1 - p), not both; got p ${show(pIn)} and keepProb ${show(keepProb)}`);
  }
  if (pIn === undefined && keepProb === undefined) {
    throw new ValueError('options.dropout.p', 'options.dropout needs p (drop probability) or keepProb (1 - p), got neither');
  }
  let p: number;
  if (pIn !== undefined) {
    if (typeof pIn !== 'number' || !Number.isFinite(pIn) || pIn < 0 || pIn >= 1) {
      throw new ValueError('options.dropout.p', `options.dropout.p must be a number with 0 <= p < 1, got ${show(pIn)}`);
    }
    p = pIn;
  } else {
    if (typeof keepProb !== 'number' || !Number.isFinite(keepProb) || keepProb <= 0 || keepProb > 1) {
      throw new ValueError('options.dropout.keepProb', `options.dropout.keepProb must be a number with 0 < keepProb <= 1, got ${show(keepProb)}`);
    }
    p = 1 - keepProb;
  }
  const [seedLo, seedHi] = seedWords(option.seed);
  const offset = option.offset ?? 0;
  if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < 0 || offset >= TWO_32) {
    throw new ValueError('options.dropout.offset', `options.dropout.offset must be an integer in [0, 2^32), got ${show(offset)}`);
  }
  if (p === 0) return undefined;
  return {
    p,
    keepProb: 1 - p,
    seedLo,
    seedHi,
    offset,
    threshold: Math.min(65535, Math.round(p * 65536)),
    scale: 1 / (1 - p),
  };
}

function seedWords(seed: unknown): [number, number] {
  if (typeof seed === 'bigint') {
    if (seed < 0n || seed >= 1n << 64n) throw new ValueError('options.dropout.seed', `options.dropout.seed must be in [0, 2^64), got ${seed}`);
    return [Number(seed & 0xffffffffn), Number(seed >> 32n)];
  }
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0) {
    throw new ValueError('options.dropout.seed', `options.dropout.seed must be an integer in [0, 2^53) or a bigint, got ${show(seed)}`);
  }
  return [seed % TWO_32, Math.floor(seed / TWO_32)];
}
