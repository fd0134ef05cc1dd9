// linearAttention() and performerAttention(): validation first (typed errors, no work done), then
// the backend chosen as attention() chooses it (GPU tensors: WebGPU; 'auto': WebGPU on a hardware
// adapter, else the CPU).
import { UnsupportedError } from '../../core/errors.js';
import type { TensorInput } from '../../core/tensor.js';
import type { AttentionResult } from '../attention/backend.js';
import { autoBackend } from '../attention/registry.js';
import { type ApproxProblem, type LinearAttentionOptions, type PerformerOptions, validateApprox } from './problem.js';

async function run(p: ApproxProblem, options: { backend?: string; device?: GPUDevice }): Promise<AttentionResult> {
  const onGpu = p.base.q.tensor.location === 'webgpu';
  if (onGpu && options.backend === 'cpu') throw new UnsupportedError('options.backend', 'backend "cpu" cannot read GPU tensors; read them back first or use backend "webgpu"');
  const choice = options.backend ?? 'auto';
  const gpu = onGpu || choice === 'webgpu' || (choice === 'auto' && (await autoBackend({ device: options.device })) === 'webgpu');
  if (gpu) return (await import('./webgpu/index.js')).runApproxGpu(p, options.device);
  return (await import('./cpu/index.js')).runApproxCpu(p);
}

/**
 * Linear attention (Katharopoulos et al.): out_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ / φ(q_i)ᵀ Σ_j φ(k_j), in
 * O(N) time and memory. Shapes as attention() (q [B, Nq, Sq, D], k [B, Nkv, Sk, D], v [B, Nkv, Sk, Dv]
 * in BNSD; GQA); `causal` sums j <= i + Sk - Sq only, in the chunked form. φ: 'elu+1' (default),
 * 'relu', or featureMap(({ x, d, b, h }) => ...).
 */
export function linearAttention(q: TensorInput, k: TensorInput, v: TensorInput, options: LinearAttentionOptions = {}): Promise<AttentionResult> {
  return run(validateApprox('linear', q, k, v, options), options);
}

/**
 * Performer (Choromanski et al.): softmax(scale·q kᵀ) v approximated with M positive orthogonal
 * random features (FAVOR+), φ(x) ∝ exp(ωᵀx' − |x'|²/2), x' = sqrt(scale)·x. The projection is drawn
 * from `seed` (and `draw`) on the host, so CPU and GPU use the same one and results repeat.
 */
export function performerAttention(q: TensorInput, k: TensorInput, v: TensorInput, options: PerformerOptions = {}): Promise<AttentionResult> {
  return run(validateApprox('performer', q, k, v, options), options);
}
