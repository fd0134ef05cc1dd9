// attention(): the public entry point. Validation first (typed errors, no work done), then the
// backend chosen by options.backend and where the inputs live.
import type { TensorInput } from '../../core/tensor.js';
import type { AttentionResult } from './backend.js';
import { chooseBackend } from './registry.js';
import type { AttentionOptions } from './options.js';
import { validateAttention } from './validate.js';

/**
 * Exact attention softmax(scale * q kᵀ (+ bias) masked) v, computed FlashAttention-style (K/V in
 * tiles, online softmax, no Sq×Sk matrix in memory).
 *
 * Shapes (layout BNSD; see README "Layouts" for the others):
 *   q [B, Nq, Sq, Dq], k [B, Nkv, Sk, Dq], v [B, Nkv, Sk, Dv] -> out [B, Nq, Sq, Dv], lse [B, Nq, Sq].
 * Nq must be a multiple of Nkv (GQA/MQA); Dv may differ from Dq (MLA). With Sq != Sk, `causal: true`
 * aligns to the bottom-right: query i sees key j iff j <= i + Sk - Sq.
 */
export async function attention(q: TensorInput, k: TensorInput, v: TensorInput, options: AttentionOptions = {}): Promise<AttentionResult> {
  const problem = validateAttention(q, k, v, options);
  const context = { device: options.device };
  const backend = await chooseBackend(problem, options.backend ?? 'auto', context);
  return backend.run(problem, context);
}

/**
 * The same attention computed the unfused three-step way (QKᵀ into an Sq×Sk buffer, softmax,
 * P·V). Slower and O(Sq·Sk) memory: it exists as the baseline for demos and benchmarks.
 */
export async function naiveAttention(q: TensorInput, k: TensorInput, v: TensorInput, options: AttentionOptions = {}): Promise<AttentionResult> {
  const problem = validateAttention(q, k, v, options);
  const context = { device: options.device };
  const backend = await chooseBackend(problem, options.backend ?? 'auto', context);
  return backend.runNaive(problem, context);
}
