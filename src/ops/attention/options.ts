// The public options of attention(). Shape legend used in every attention file:
//   B  batch            Nq / Nkv  query / key-value heads (Nq a multiple of Nkv: GQA, MQA)
//   Sq / Sk  query / key length (per sequence for TND)      T  total tokens over a TND batch
//   Dq  query/key head dim (NoPE part for the MLA split form)   Dr  RoPE part (split form)   Dv  value head dim
import type { Layout, TensorInput } from '../../core/tensor.js';
import type { BlockMask } from './block-mask/block-mask.js';
import type { MaskMod, ScoreMod, SinkMod } from './mods/program.js';

/**
 * Which diagonal `causal` masks along when Sq != Sk.
 * - `'bottom-right'` (default for `causal: true`, as in FlashAttention >= 2.1): query i sees key j
 *   iff j <= i + Sk - Sq. The last query sees every key, which is what KV-cache decoding needs.
 * - `'top-left'` (PyTorch `is_causal`): query i sees key j iff j <= i.
 */
export type CausalAlign = 'bottom-right' | 'top-left';

export type BackendName = 'cpu' | 'webgpu';
export type BackendChoice = BackendName | 'auto';

export interface AttentionOptions {
  /** Layout of q, k, v (and the output). Default `'BNSD'`. See README "Layouts". */
  layout?: Layout;
  /** Query heads, required for the packed-hidden layouts BSH and SBH. */
  heads?: number;
  /** Key/value heads for BSH/SBH (default: inferred as key hidden size / Dq). */
  kvHeads?: number;
  /** TND only: [B+1] prefix sums of the query lengths (int32 or int64, first 0, last T_q). */
  cuSeqlensQ?: TensorInput | readonly number[];
  /** TND only: [B+1] prefix sums of the key lengths. */
  cuSeqlensK?: TensorInput | readonly number[];

  /** Multiplier of q·k. Default 1/sqrt(Dq + Dr). */
  scale?: number;
  /** Tanh capping of the scaled scores: s -> softcap * tanh(s / softcap). 0 or absent: off. */
  softcap?: number;
  /** `true` means `'bottom-right'`. */
  causal?: boolean | CausalAlign;
  /**
   * Sliding window [left, right] around the bottom-right diagonal: query i sees key j iff
   * i + Sk - Sq - left <= j <= i + Sk - Sq + right; -1 = unbounded on that side. With causal,
   * right is clamped to 0 (as in FlashAttention).
   */
  window?: readonly [number, number];
  /** CANN spelling of window[0] (keys before the bottom-right diagonal); >= 2147483647 = unbounded. */
  preTokens?: number;
  /** CANN spelling of window[1] (keys after the diagonal). */
  nextTokens?: number;
  /** Boolean mask, true/nonzero = keep (PyTorch convention), broadcastable to [B, Nq, Sq, Sk]. */
  mask?: TensorInput;
  /** Additive float bias on the scores (CANN "pse"), broadcastable to [B, Nq, Sq, Sk]. */
  bias?: TensorInput;
  /** ALiBi slopes, [Nq] or [B, Nq] float32: adds -slope * |i + Sk - Sq - j| to each score. */
  alibiSlopes?: TensorInput | Float32Array | readonly number[];
  /**
   * A score function (scoreMod(...) or a built-in such as softcap, alibi, t5RelativeBias) applied to
   * every visible score after softcap, bias and ALiBi. See README "Score and mask functions".
   */
  scoreMod?: ScoreMod;
  /** A mask function (maskMod(...) or a built-in such as causal, documentMask): false hides the pair. */
  maskMod?: MaskMod;
  /** From createBlockMask(): its maskMod, with key blocks it hides skipped and fully visible ones unmasked. */
  blockMask?: BlockMask;
  /** Attention sinks: a sinkMod, or one logit per head ([Nq] or [B, Nq]) joining each row's softmax. */
  sink?: SinkMod | Float32Array | readonly number[] | TensorInput;
  /** MLA split form: RoPE part of the query, same layout as q with head dim Dr. */
  qRope?: TensorInput;
  /** MLA split form: RoPE part of the key, same layout as k with head dim Dr. */
  kRope?: TensorInput;

  /** Also return the natural-log logsumexp of the final scores, float32 [B, Nq, Sq] (TND: [Nq, T]). */
  returnLse?: boolean;
  /** Scan CPU inputs for NaN/Inf first and throw a ValueError naming the first one. */
  checkFinite?: boolean;
  /** `'auto'` (default): WebGPU on a hardware adapter (or `device`), else CPU; software adapters count as none. */
  backend?: BackendChoice;
  /** A GPUDevice of the caller's, used instead of acquiring one. */
  device?: GPUDevice;
}
