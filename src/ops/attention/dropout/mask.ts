// attentionDropoutMask(): the keep mask a call with `options.dropout` applies, as a tensor, so a
// test (or a PyTorch check) can apply the very same mask (flash_attn's return_attn_probs plays this
// role). It depends only on the shapes and dropout.{seed, offset, p}: the same bits whatever the
// backend, tier or tiling.
import { ValueError } from '../../../core/errors.js';
import { Tensor, type TensorInput } from '../../../core/tensor.js';
import type { AttentionOptions } from '../options.js';
import { validateAttention } from '../validate.js';
import { dropoutRow } from './philox.js';

/**
 * The dropout keep mask of attention(q, k, v, options): bool [B, Nq, Sq, Sk] (1 = kept, its weight
 * scaled by 1 / keepProb; 0 = dropped). TND: Sq / Sk are the longest sequence's, positions past a
 * sequence's lengths are 0. Needs options.dropout with p > 0. Window, mask and bias do not change
 * it (hidden pairs have weight 0 either way).
 */
export function attentionDropoutMask(q: TensorInput, k: TensorInput, v: TensorInput, options: AttentionOptions): Tensor {
  const p = validateAttention(q, k, v, options);
  if (!p.dropout) throw new ValueError('options.dropout', 'attentionDropoutMask needs options.dropout with p > 0');
  const mask = new Uint8Array(p.batch * p.headsQ * p.seqQ * p.seqK);
  const row = new Float32Array(p.seqK);
  for (let b = 0; b < p.batch; b++) {
    for (let h = 0; h < p.headsQ; h++) {
      for (let i = 0; i < p.seqLensQ[b]; i++) {
        const sk = p.seqLensK[b];
        dropoutRow(p.dropout, p.headsQ, b, h, i, 0, sk, row);
        const at = ((b * p.headsQ + h) * p.seqQ + i) * p.seqK;
        for (let j = 0; j < sk; j++) mask[at + j] = row[j] !== 0 ? 1 : 0;
      }
    }
  }
  return Tensor.fromData(mask, [p.batch, p.headsQ, p.seqQ, p.seqK], 'bool');
}
