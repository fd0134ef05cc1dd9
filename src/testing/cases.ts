// Declarative attention test cases (llama.cpp test-backend-ops style): a case is a plain object
// whose name lists its values; the same objects run as correctness tests on every backend, as
// benchmarks, and in `fusedattn verify`.
import { floatsToHalf } from '../core/dtype.js';
import { Tensor, type Layout } from '../core/tensor.js';
import { physicalShape } from '../ops/attention/index.js';
import type { AttentionOptions, CausalAlign } from '../ops/attention/index.js';
import { normal, randomFloats, uniform } from './random.js';

export interface AttentionCase {
  layout?: Layout;
  dtype?: 'float32' | 'float16';
  batch: number;
  headsQ: number;
  headsKv?: number;
  /** Fixed layouts: one length for every sequence. TND: ignored when seqLensQ is given. */
  seqQ: number;
  seqK: number;
  /** TND only: per-sequence lengths. */
  seqLensQ?: number[];
  seqLensK?: number[];
  dimQK: number;
  dimV?: number;
  /** MLA split form: RoPE head dim (qRope/kRope inputs). */
  dimRope?: number;
  causal?: boolean | CausalAlign;
  window?: [number, number];
  preTokens?: number;
  nextTokens?: number;
  softcap?: number;
  scale?: number;
  /** Boolean mask: random keep/drop, rectangular dropped blocks, or blocks plus fully masked rows. */
  mask?: 'random' | 'blocks' | 'full-rows';
  /** Mask/bias shape: full [B, Nq, Sq, Sk], per batch [B, 1, Sq, Sk] (default), [Sq, Sk], or per key [B, 1, 1, Sk] (padding). */
  maskShape?: 'full' | 'batch' | '2d' | 'keys';
  /** Additive bias: random normal, or random with blocks of -Infinity. */
  bias?: 'random' | 'neg-inf-blocks';
  alibi?: boolean;
  /** Dropout probability p (seeded from the case seed). */
  dropout?: number;
  returnLse?: boolean;
}

export function caseName(c: AttentionCase): string {
  const parts = [
    c.layout ?? 'BNSD',
    c.dtype === 'float16' ? 'f16' : 'f32',
    `B${c.batch}`,
    `Nq${c.headsQ}/${c.headsKv ?? c.headsQ}`,
    c.seqLensQ ? `Sq[${c.seqLensQ}] Sk[${c.seqLensK}]` : `Sq${c.seqQ} Sk${c.seqK}`,
    `D${c.dimQK}${c.dimRope ? `+${c.dimRope}` : ''}/${c.dimV ?? c.dimQK}`,
  ];
  if (c.causal) parts.push(`causal=${c.causal === true ? 'bottom-right' : c.causal}`);
  if (c.window) parts.push(`window=${c.window}`);
  if (c.preTokens !== undefined || c.nextTokens !== undefined) parts.push(`pre/next=${c.preTokens}/${c.nextTokens}`);
  if (c.softcap) parts.push(`softcap=${c.softcap}`);
  if (c.scale !== undefined) parts.push(`scale=${c.scale}`);
  if (c.mask) parts.push(`mask=${c.mask}${c.maskShape ? `:${c.maskShape}` : ''}`);
  if (c.bias) parts.push(`bias=${c.bias}${c.maskShape ? `:${c.maskShape}` : ''}`);
  if (c.alibi) parts.push('alibi');
  if (c.dropout) parts.push(`dropout=${c.dropout}`);
  if (c.returnLse) parts.push('lse');
  return parts.join(' ');
}

export interface CaseInputs {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  options: AttentionOptions;
}

/** Builds seeded random inputs for a case (fresh values for every seed). */
export function makeCase(c: AttentionCase, seed: number): CaseInputs {
  const layout = c.layout ?? 'BNSD';
  const dtype = c.dtype ?? 'float32';
  const rand = uniform(seed);
  const gauss = normal(rand);
  const headsKv = c.headsKv ?? c.headsQ;
  const dimV = c.dimV ?? c.dimQK;
  const varlen = layout === 'TND';
  const lensQ = varlen ? (c.seqLensQ ?? [c.seqQ]) : new Array<number>(c.batch).fill(c.seqQ);
  const lensK = varlen ? (c.seqLensK ?? [c.seqK]) : new Array<number>(c.batch).fill(c.seqK);
  const batch = lensQ.length;
  const seqQ = Math.max(...lensQ);
  const seqK = Math.max(...lensK);
  const totalQ = lensQ.reduce((a, b) => a + b, 0);
  const totalK = lensK.reduce((a, b) => a + b, 0);

  const tensor = (heads: number, seq: number, dim: number) => {
    const shape = physicalShape(layout, batch, heads, seq, dim);
    const values = randomFloats(shape.reduce((a, b) => a * b, 1), gauss);
    return dtype === 'float16' ? Tensor.fromData(floatsToHalf(values), shape, 'float16') : Tensor.fromData(values, shape);
  };
  const q = tensor(c.headsQ, varlen ? totalQ : seqQ, c.dimQK);
  const k = tensor(headsKv, varlen ? totalK : seqK, c.dimQK);
  const v = tensor(headsKv, varlen ? totalK : seqK, dimV);

  const options: AttentionOptions = { layout };
  if (layout === 'BSH' || layout === 'SBH') {
    options.heads = c.headsQ;
    options.kvHeads = headsKv;
  }
  if (varlen) {
    options.cuSeqlensQ = prefixSums(lensQ);
    options.cuSeqlensK = prefixSums(lensK);
  }
  if (c.dimRope) {
    options.qRope = tensor(c.headsQ, varlen ? totalQ : seqQ, c.dimRope);
    options.kRope = tensor(headsKv, varlen ? totalK : seqK, c.dimRope);
  }
  if (c.causal !== undefined) options.causal = c.causal;
  if (c.window) options.window = c.window;
  if (c.preTokens !== undefined) options.preTokens = c.preTokens;
  if (c.nextTokens !== undefined) options.nextTokens = c.nextTokens;
  if (c.softcap) options.softcap = c.softcap;
  if (c.scale !== undefined) options.scale = c.scale;
  if (c.returnLse) options.returnLse = true;
  if (c.dropout) options.dropout = { p: c.dropout, seed: 0x5eed + seed, offset: seed % 7 };
  const maskShape = broadcastShape(c.maskShape ?? 'batch', batch, c.headsQ, seqQ, seqK);
  if (c.mask) options.mask = Tensor.fromData(makeMask(c.mask, maskShape, rand), maskShape, 'bool');
  if (c.bias) {
    const values = randomFloats(maskShape.reduce((a, b) => a * b, 1), gauss);
    if (c.bias === 'neg-inf-blocks') {
      const keep = makeMask('blocks', maskShape, rand);
      for (let i = 0; i < values.length; i++) if (!keep[i]) values[i] = -Infinity;
    }
    options.bias = Tensor.fromData(values, maskShape);
  }
  if (c.alibi) {
    // geometric slopes as in the ALiBi paper, per query head
    options.alibiSlopes = Float32Array.from({ length: c.headsQ }, (_, h) => 2 ** (-8 * (h + 1) / c.headsQ));
  }
  return { q, k, v, options };
}

function prefixSums(lens: number[]): number[] {
  const cu = [0];
  for (const n of lens) cu.push(cu[cu.length - 1] + n);
  return cu;
}

function broadcastShape(kind: 'full' | 'batch' | '2d' | 'keys', batch: number, heads: number, sq: number, sk: number): number[] {
  if (kind === 'full') return [batch, heads, sq, sk];
  if (kind === 'batch') return [batch, 1, sq, sk];
  if (kind === 'keys') return [batch, 1, 1, sk];
  return [sq, sk];
}

/**
 * A keep-mask over the last two dims [Sq, Sk] of `shape` (leading dims vary too).
 * 'blocks' drops 16x16 blocks with probability 1/3, so whole tiles can be skipped;
 * 'full-rows' additionally drops every key of one query row in four.
 */
function makeMask(kind: 'random' | 'blocks' | 'full-rows', shape: number[], rand: () => number): Uint8Array {
  const sk = shape[shape.length - 1];
  const sq = shape[shape.length - 2];
  const planes = shape.slice(0, -2).reduce((a, b) => a * b, 1);
  const mask = new Uint8Array(planes * sq * sk);
  const block = 16;
  for (let p = 0; p < planes; p++) {
    const dropBlock: boolean[] = [];
    const bi = Math.ceil(sq / block);
    const bj = Math.ceil(sk / block);
    for (let i = 0; i < bi * bj; i++) dropBlock.push(rand() < 1 / 3);
    for (let i = 0; i < sq; i++) {
      const dropRow = kind === 'full-rows' && rand() < 0.25;
      for (let j = 0; j < sk; j++) {
        let keep: boolean;
        if (kind === 'random') keep = rand() < 0.7;
        else keep = !dropBlock[Math.floor(i / block) * bj + Math.floor(j / block)] && !dropRow;
        mask[(p * sq + i) * sk + j] = keep ? 1 : 0;
      }
    }
  }
  return mask;
}
