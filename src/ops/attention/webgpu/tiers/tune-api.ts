// Public entry points of the autotuner: tune a shape class now (e.g. at start-up, before serving),
// and choose when tuning may happen. See autotune.ts for the modes and where winners are stored.
// GPU code is imported on first use only, like the backends themselves.
import type { TensorInput } from '../../../../core/tensor.js';
import type { AttentionOptions } from '../../options.js';
import type { TuneResult } from './autotune.js';

export { setAutotuneMode, autotuneMode, type AutotuneMode } from './autotune-mode.js';
export type { TuneResult, TuneTrial } from './autotune.js';

/**
 * Times the tensor-core tier's candidate configurations on these inputs (standing for their class:
 * adapter, dtype, head dims, mask kind, length class, GQA) and stores the winner, so later calls of
 * that class use it. Throws UnsupportedError when the call would not run on the tensor-core tier.
 */
export async function tuneAttention(q: TensorInput, k: TensorInput, v: TensorInput, options: AttentionOptions = {}): Promise<TuneResult & { key: string }> {
  const [{ validateAttention }, { getRuntime }, { autotune, tuneKey, recordTuned }, { chooseFlashTier }, { UnsupportedError }] = await Promise.all([
    import('../../validate.js'),
    import('../../../../engines/webgpu/runtime.js'),
    import('./autotune.js'),
    import('./index.js'),
    import('../../../../core/errors.js'),
  ]);
  const problem = validateAttention(q, k, v, options);
  const runtime = await getRuntime(options.device ?? problem.q.tensor.gpu?.device);
  const { tier, skipped } = chooseFlashTier(problem, runtime);
  if (tier.name !== 'sgmatrix') {
    throw new UnsupportedError('options', `nothing to tune: this call runs on the ${tier.name} tier (sgmatrix: ${skipped.sgmatrix ?? 'forced off'})`);
  }
  const result = await autotune(runtime, problem);
  const key = tuneKey(runtime, problem);
  await recordTuned(key, result);
  return { ...result, key };
}

/** Forgets the tuned winners held by this process (the cache file is rewritten by the next tuning). */
export async function clearAutotuneCache(): Promise<void> {
  (await import('./autotune.js')).clearAutotuneCache();
}
