// The normalized attention problem: what validate() makes of (q, k, v, options), and the only
// thing backends and the reference read. Layouts, broadcasting, causal alignment, CANN's
// pre/next tokens and the MLA split form are all resolved here into strides and numbers.
import type { KeyWindow } from './key-window.js';
import type { Tensor, Layout } from '../../core/tensor.js';
import type { Strides4 } from './layout.js';
import type { BlockMask } from './block-mask/block-mask.js';
import type { ModsPlan } from './mods/plan.js';
import type { DropoutSpec } from './dropout/philox.js';

/** One attention input seen as [b, h, s, d] through element strides. */
export interface StridedView {
  readonly tensor: Tensor;
  /** Element offset of (0, 0, 0, 0) inside the tensor's storage. */
  readonly offset: number;
  readonly strides: Strides4;
}

/** A mask or bias broadcast to [B, Nq, Sq, Sk]: stride 0 on broadcast dimensions. */
export interface BroadcastView {
  readonly tensor: Tensor;
  /** Element strides for (batch, query head, query position, key position). */
  readonly strides: { readonly b: number; readonly h: number; readonly i: number; readonly j: number };
}

/** ALiBi slopes: slope of (b, h) is tensor[b * strideB + h]. */
export interface AlibiView {
  readonly tensor: Tensor;
  readonly strideB: number;
}

export type { KeyWindow } from './key-window.js';

export interface AttentionProblem {
  readonly layout: Layout;
  /** Element type of q, k, v and the output. */
  readonly dtype: 'float32' | 'float16';
  readonly batch: number;
  readonly headsQ: number;
  readonly headsKv: number;
  /** Largest query / key length over the batch. */
  readonly seqQ: number;
  readonly seqK: number;
  readonly dimQK: number;
  /** Head dim of the RoPE part in the MLA split form, 0 without it. */
  readonly dimRope: number;
  readonly dimV: number;
  /** True for TND with cu_seqlens. */
  readonly varlen: boolean;
  readonly seqLensQ: Int32Array;
  readonly seqLensK: Int32Array;
  /** First row of each sequence (cu_seqlens[b] for TND, else 0). */
  readonly seqStartsQ: Int32Array;
  readonly seqStartsK: Int32Array;
  /** Total query / key rows: T for TND, else B * S. */
  readonly totalQ: number;
  readonly totalK: number;

  readonly q: StridedView;
  readonly k: StridedView;
  readonly v: StridedView;
  readonly qRope: StridedView | undefined;
  readonly kRope: StridedView | undefined;

  /** Output: same layout as q with Dv; contiguous. */
  readonly outShape: readonly number[];
  readonly outStrides: Strides4;
  /** LSE: [B, Nq, Sq] or [Nq, T] for TND; element (b, h, i) at b*b + h*h + (seqStart + i)*s. */
  readonly lseShape: readonly number[];
  readonly lseStrides: { readonly b: number; readonly h: number; readonly s: number };

  readonly scale: number;
  /** 0 = off. */
  readonly softcap: number;
  /**
   * 'function': the softcap stands for a softcap() score function (the tensor-core tier's
   * mods/softcap-part.ts softcapAsOption), so a function's rule on its input applies: a NaN or
   * +inf scaled score poisons a visible pair's row, -inf hides the pair (the option caps ±inf).
   */
  readonly softcapRule?: 'function';
  readonly window: KeyWindow;
  readonly mask: BroadcastView | undefined;
  readonly bias: BroadcastView | undefined;
  readonly alibi: AlibiView | undefined;
  /** Score/mask/sink functions (ops/attention/mods), lowered; undefined without any. */
  readonly mods?: ModsPlan;
  /** Block-sparse structure of mods.maskMod (createBlockMask), when given. */
  readonly blockMask?: BlockMask;
  /** Dropout on the attention weights, undefined when off (p = 0). */
  readonly dropout?: DropoutSpec;
  readonly returnLse: boolean;
}

/** The diagonal offset of sequence b: Sk_b - Sq_b for bottom-right alignment, 0 for top-left. */
export function diagonalOffset(p: AttentionProblem, b: number): number {
  return p.window.align === 'bottom-right' ? p.seqLensK[b] - p.seqLensQ[b] : 0;
}

/**
 * Inclusive key range [lo, hi] that the window lets query i of sequence b see, clipped to
 * [0, Sk_b - 1]; lo > hi means none. Masks and biases can still hide keys inside it.
 */
export function keyRange(p: AttentionProblem, b: number, i: number): [number, number] {
  const diag = diagonalOffset(p, b) + i;
  const lo = Math.max(0, p.window.left === Infinity ? 0 : diag - p.window.left);
  const hi = Math.min(p.seqLensK[b] - 1, p.window.right === Infinity ? Infinity : diag + p.window.right);
  return [lo, hi];
}

/** Element index of (b, h, s, d) in a strided view. */
export function viewIndex(view: StridedView, seqStarts: Int32Array, b: number, h: number, s: number, d: number): number {
  const st = view.strides;
  return view.offset + b * st.b + (seqStarts[b] + s) * st.s + h * st.h + d * st.d;
}

/** Query-key pairs the window leaves visible, summed over the batch (masks not counted). */
export function visiblePairs(p: AttentionProblem): number {
  let pairs = 0;
  for (let b = 0; b < p.batch; b++) {
    for (let i = 0; i < p.seqLensQ[b]; i++) {
      const [lo, hi] = keyRange(p, b, i);
      if (hi >= lo) pairs += hi - lo + 1;
    }
  }
  return pairs * p.headsQ;
}

/**
 * The units scores are kept in: u = s / beta with beta = max(1, |scale|), so u = alpha·q·k with
 * |alpha| <= 1 never overflows where q·k does not, whatever the (float32-finite) scale, and the
 * softmax weights are exp(beta·(u - max u)). For |scale| <= 1 this is the plain s (beta = 1). With
 * a softcap the scores are bounded by it and natural units serve (beta = 1): in units of a huge
 * beta the capped scores and the bias would sit near float32's subnormals, which GPUs flush to 0.
 */
export function scoreUnits(scale: number, softcap = 0): { alpha: number; beta: number } {
  const beta = softcap > 0 ? 1 : Math.max(1, Math.abs(scale));
  return { alpha: scale / beta, beta };
}
