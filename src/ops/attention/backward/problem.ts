// The normalized backward problem: the forward's AttentionProblem (every option resolved) plus
// the tensors the backward reads (the forward's output and LSE, the output gradient) and what it
// is asked to return. validateAttentionBackward() (validate.ts) makes one or throws.
import type { Tensor } from '../../../core/tensor.js';
import { type AttentionProblem, diagonalOffset } from '../problem.js';

export interface BackwardProblem {
  readonly forward: AttentionProblem;
  /** The forward's output: shape forward.outShape, dtype of q, element (b, h, i, d) at forward.outStrides. */
  readonly out: Tensor;
  /** dL/dout, laid out as out. */
  readonly dOut: Tensor;
  /** The forward's float32 LSE (natural log), shape forward.lseShape, at forward.lseStrides. */
  readonly lse: Tensor;
  /** Whether dBias is returned. */
  readonly biasGrad: boolean;
  /** Whether dSink is returned (the sink's layout: sink.ts). */
  readonly sinkGrad: boolean;
}

/**
 * Inclusive range [lo, hi] of the queries of sequence b that can see at least one key of
 * [j0, j1] through the window (the inverse of keyRange), clipped to [0, Sq_b - 1]; lo > hi: none.
 */
export function queryRange(p: AttentionProblem, b: number, j0: number, j1: number): [number, number] {
  const diag = diagonalOffset(p, b);
  // query i sees key j iff diag + i - left <= j <= diag + i + right
  const lo = p.window.right === Infinity ? 0 : Math.max(0, j0 - diag - p.window.right);
  const hi = p.window.left === Infinity ? p.seqLensQ[b] - 1 : Math.min(p.seqLensQ[b] - 1, j1 - diag + p.window.left);
  return [lo, hi];
}

/**
 * Which axes of the dK/dV work (batch, key/value head, key block) a dBias broadcast folds into
 * one task: when the bias is broadcast along an axis, every index of that axis adds into the same
 * dBias elements, so one task walks them in order (deterministic, no atomics, no extra buffer).
 */
export interface BiasFold {
  batch: boolean;
  kvHeads: boolean;
  keyBlocks: boolean;
}

export function biasFold(p: AttentionProblem, biasGrad: boolean): BiasFold {
  const st = p.bias?.strides;
  if (!biasGrad || !st) return { batch: false, kvHeads: false, keyBlocks: false };
  return { batch: st.b === 0 && p.batch > 1, kvHeads: st.h === 0 && p.headsKv > 1, keyBlocks: st.j === 0 };
}
