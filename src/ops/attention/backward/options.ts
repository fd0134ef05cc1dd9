// The public options and results of attentionBackward() / attentionWithGrad(). Shape legend as in
// ../options.ts: B batch, Nq / Nkv heads, Sq / Sk lengths, T total tokens (TND), Dq (+ Dr) / Dv head dims.
import type { Tensor } from '../../../core/tensor.js';
import type { RunStats } from '../backend.js';
import type { AttentionOptions } from '../options.js';

export interface AttentionBackwardOptions extends AttentionOptions {
  /**
   * Also return dBias, the gradient of the additive bias (CANN's dpse), in the bias's own shape and
   * dtype: summed over every dimension the bias broadcasts along. Needs `bias`.
   */
  biasGrad?: boolean;
  /**
   * Also return dSink, the gradient of per-head attention-sink logits (`sink` as an [Nq] or
   * [B, Nq] array or tensor, or attentionSinks()), float32 in the logits' shape. Needs `sink`.
   */
  sinkGrad?: boolean;
}

/** Gradients of the loss with respect to each input, each in its input's shape, layout and dtype. */
export interface AttentionGrads {
  /** dL/dq: shape of q. */
  dq: Tensor;
  /** dL/dk: shape of k; with GQA/MQA summed over the query heads that share each key head. */
  dk: Tensor;
  /** dL/dv: shape of v, summed over the query heads of each group as dk is. */
  dv: Tensor;
  /** MLA split form: dL/dqRope and dL/dkRope (shapes of qRope, kRope). */
  dqRope?: Tensor;
  dkRope?: Tensor;
  /** With biasGrad: dL/dbias in the bias's shape (summed over its broadcast dimensions). */
  dBias?: Tensor;
  /** With sinkGrad: dL/dsink, float32, in the sink logits' shape ([Nq] or [B, Nq]). */
  dSink?: Tensor;
  stats?: RunStats;
}
