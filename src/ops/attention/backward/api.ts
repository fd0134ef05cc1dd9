// attentionBackward(), naiveAttentionBackward() and attentionWithGrad(): the public entry points of
// the backward. Validation first (the forward's typed errors plus the backward's own), then the
// backend chosen by options.backend and where the inputs live.
import type { Tensor, TensorInput } from '../../../core/tensor.js';
import { ValueError } from '../../../core/errors.js';
import { attention } from '../api.js';
import type { AttentionResult } from '../backend.js';
import { chooseBackwardBackend } from './registry.js';
import type { AttentionBackwardOptions, AttentionGrads } from './options.js';
import { validateAttentionBackward } from './validate.js';

/**
 * Gradients of attention (FlashAttention-2's backward: D = rowsum(dO ∘ O), P recomputed from the
 * LSE, dK/dV per key block over the query blocks, dQ per query block over the key blocks; no Sq×Sk
 * buffer, deterministic).
 *
 * Shapes (layout BNSD; the others as in attention()):
 *   q [B, Nq, Sq, Dq], k [B, Nkv, Sk, Dq], v [B, Nkv, Sk, Dv], out and dOut [B, Nq, Sq, Dv],
 *   lse [B, Nq, Sq] float32 (TND: [Nq, T]) -> dq, dk, dv in the shapes of q, k, v (dk, dv summed over
 *   the query heads of each GQA group), dqRope / dkRope for the MLA split form, dBias (biasGrad) in
 *   the bias's shape, summed over its broadcast dimensions.
 * `options` are the forward call's (the same causal, window, mask, bias, softcap, dropout seed...):
 * `out` and `lse` must come from that call (attention(..., { returnLse: true })).
 */
export async function attentionBackward(q: TensorInput, k: TensorInput, v: TensorInput, out: TensorInput, dOut: TensorInput, lse: TensorInput,
  options: AttentionBackwardOptions = {}): Promise<AttentionGrads> {
  const problem = validateAttentionBackward(q, k, v, out, dOut, lse, options);
  const context = { device: options.device };
  const backend = await chooseBackwardBackend(problem, options.backend ?? 'auto', context);
  return backend.run(problem, context);
}

/**
 * The same gradients computed the unfused way (P, dP and dS materialised as Sq×Sk matrices, then
 * the matmuls): slower and O(Sq·Sk) memory, the baseline for benchmarks, as naiveAttention() is.
 */
export async function naiveAttentionBackward(q: TensorInput, k: TensorInput, v: TensorInput, out: TensorInput, dOut: TensorInput, lse: TensorInput,
  options: AttentionBackwardOptions = {}): Promise<AttentionGrads> {
  const problem = validateAttentionBackward(q, k, v, out, dOut, lse, options);
  const context = { device: options.device };
  const backend = await chooseBackwardBackend(problem, options.backend ?? 'auto', context);
  return backend.runNaive(problem, context);
}

export interface AttentionWithGrad extends AttentionResult {
  /** The forward's LSE, kept for the backward (valid until backward() or release() is called). */
  lse: Tensor;
  /**
   * The gradients for `dOut` (shape of out). May be called once; it releases what the forward kept
   * (on the GPU, the LSE buffer it allocated).
   */
  backward(dOut: TensorInput): Promise<AttentionGrads>;
  /** Drops what the forward kept without computing gradients (e.g. an evaluation pass). */
  release(): void;
}

/**
 * The forward with what its backward needs kept (as autograd would): `{ out, lse, backward(dOut) }`.
 * Options as attention()'s plus `biasGrad` and `sinkGrad`; dropout uses the same mask in both directions.
 */
export async function attentionWithGrad(q: TensorInput, k: TensorInput, v: TensorInput, options: AttentionBackwardOptions = {}): Promise<AttentionWithGrad> {
  const { biasGrad, sinkGrad, ...forwardOptions } = options;
  // validate the backward-only options up front, before any forward work
  if (biasGrad !== undefined && typeof biasGrad !== 'boolean') throw new ValueError('options.biasGrad', `options.biasGrad must be a boolean, got ${String(biasGrad)}`);
  if (biasGrad && forwardOptions.bias === undefined) throw new ValueError('options.biasGrad', 'options.biasGrad asks for dBias, but no options.bias was given');
  if (sinkGrad !== undefined && typeof sinkGrad !== 'boolean') throw new ValueError('options.sinkGrad', `options.sinkGrad must be a boolean, got ${String(sinkGrad)}`);
  if (sinkGrad && forwardOptions.sink === undefined) throw new ValueError('options.sinkGrad', 'options.sinkGrad asks for dSink, but no options.sink was given');
  const forward = await attention(q, k, v, { ...forwardOptions, returnLse: true });
  const lse = forward.lse as Tensor;
  let state: 'held' | 'used' | 'released' = 'held';
  const release = () => {
    if (state !== 'held') return;
    state = 'released';
    lse.gpu?.buffer.destroy();
  };
  return {
    ...forward,
    lse,
    async backward(dOut: TensorInput): Promise<AttentionGrads> {
      if (state !== 'held') {
        throw new ValueError('backward', `backward() may be called once per attentionWithGrad() call; it was already ${state === 'used' ? 'called' : 'released'}`);
      }
      // bad dOut throws here, before the held state is given up
      validateAttentionBackward(q, k, v, forward.out, dOut, lse, { ...forwardOptions, biasGrad, sinkGrad });
      state = 'used';
      try {
        return await attentionBackward(q, k, v, forward.out, dOut, lse, { ...forwardOptions, biasGrad, sinkGrad });
      } finally {
        lse.gpu?.buffer.destroy();
      }
    },
    release,
  };
}
