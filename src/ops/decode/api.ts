// attentionDecode() and mergeAttention(): the public entry points of the decode op. Validation
// first (typed errors, no work done), then the backend: GPU tensors run on WebGPU; CPU tensors on
// options.backend ('auto': WebGPU on a hardware adapter or a passed device, else the CPU).
import { UnsupportedError } from '../../core/errors.js';
import type { TensorInput } from '../../core/tensor.js';
import type { AttentionResult } from '../attention/backend.js';
import type { BackendChoice, BackendName } from '../attention/options.js';
import { autoBackend } from '../attention/registry.js';
import type { DecodeCache, DecodeOptions } from './options.js';
import { validateDecode } from './validate.js';
import { runDecodeCpu } from './cpu/decode.js';
import { type AttentionPartial, type MergeOptions, type MergeResult, mergeCpu, validateMerge } from './merge.js';

/**
 * Attention of a few new query rows per sequence against a KV cache, split over the keys so a long
 * cache fills the GPU (flash decoding), reading each K/V row once for all query heads of its group.
 *
 * Shapes (layout BNSD; BSND swaps N and Sq):
 *   q [B, Nq, Sq, Dq] with Sq <= 16
 *   cache contiguous: k [B, Nkv, C, Dq], v [B, Nkv, C, Dv], lengths [B]
 *         paged:      k [NP, Nkv, P, Dq], v [NP, Nkv, P, Dv], blockTable [B, MP] int32, lengths [B]
 *         shared latent (MLA): v omitted, valueDim = Dv, values = k[..., :Dv]
 *   -> out [B, Nq, Sq, Dv] (dtype of q), lse [B, Nq, Sq] float32 with returnLse.
 * Sequence b sees keys 0 .. K_b - 1, K_b = lengths[b] (+ Sq when options.append writes Sq new
 * rows at lengths[b] .. first). With causal, new row i sees key j iff j <= i + K_b - Sq.
 * With `append`, the cache tensors are written (the kernel stores the new rows); the output and
 * the cache live where the inputs do.
 */
export async function attentionDecode(q: TensorInput, cache: DecodeCache, options: DecodeOptions = {}): Promise<AttentionResult> {
  const problem = validateDecode(q, cache, options);
  const name = await backendFor(problem.q.location === 'webgpu', options.backend ?? 'auto', options.device);
  if (name === 'cpu') return runDecodeCpu(problem);
  const { runDecodeWebGpu } = await import('./webgpu/run.js');
  return runDecodeWebGpu(problem, options.device);
}

/**
 * Combines attention outputs over disjoint key ranges by their LSEs into the attention over the
 * union: out = sum_i e^(lse_i - M) out_i / sum_i e^(lse_i - M), lse = M + log sum_i e^(lse_i - M).
 * Partials: [{ out [B, Nq, Sq, Dv], lse [B, Nq, Sq] }, ...], all CPU or all on one GPU.
 */
export async function mergeAttention(partials: readonly AttentionPartial[], options: MergeOptions = {}): Promise<MergeResult> {
  const problem = validateMerge(partials, options);
  const name = await backendFor(problem.outs[0].location === 'webgpu', options.backend ?? 'auto', undefined);
  if (name === 'cpu') return mergeCpu(problem);
  const { runMergeWebGpu } = await import('./webgpu/merge.js');
  return runMergeWebGpu(problem);
}

async function backendFor(onGpu: boolean, choice: BackendChoice, device: GPUDevice | undefined): Promise<BackendName> {
  if (onGpu && choice === 'cpu') throw new UnsupportedError('options.backend', 'backend "cpu" cannot read GPU tensors; read them back first or use backend "webgpu"');
  if (onGpu || choice === 'webgpu') return 'webgpu';
  if (choice === 'cpu') return 'cpu';
  return autoBackend({ device });
}
