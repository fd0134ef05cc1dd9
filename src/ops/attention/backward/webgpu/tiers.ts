// The backward's tier chooser, as the forward's (ops/attention/webgpu/tiers/index.ts): tiers best
// first (tensor cores, then portable), each with unsupported(problem, runtime) giving a reason;
// FUSEDATTN_WEBGPU_TIER forces one (a tier name the backward does not have, e.g. subgroup, is ignored).
import { webgpuTierSetting } from '../../../../core/config.js';
import { UnsupportedError } from '../../../../core/errors.js';
import type { GpuRuntime } from '../../../../engines/webgpu/runtime.js';
import type { AttentionGrads } from '../options.js';
import type { BackwardProblem } from '../problem.js';
import { portableBackwardUnsupported, runBackwardPlan, runPortableBackward } from './portable.js';
import { sgBackwardPlan, sgBackwardUnsupported } from './sgmatrix.js';
import { sgMatrixAdapterUnsupported } from '../../webgpu/tiers/sgmatrix.js';
import { tunedBackwardConfig } from './autotune.js';
import { tiledConfigs, tiledPlan } from './tiled.js';

export type BackwardTierName = 'sgmatrix' | 'portable';

export interface BackwardTier {
  readonly name: BackwardTierName;
  unsupported(bp: BackwardProblem, runtime: GpuRuntime): string | undefined;
  run(runtime: GpuRuntime, bp: BackwardProblem): Promise<AttentionGrads>;
}

export const PORTABLE_BACKWARD: BackwardTier = {
  name: 'portable',
  unsupported: (bp, runtime) => portableBackwardUnsupported(bp, runtime.limits),
  // the register-tiled kernels where they fit and no dBias is asked, else the classic ones
  run: async (runtime, bp) => {
    const tiled = tiledConfigs(bp, runtime.limits);
    return tiled ? runBackwardPlan(runtime, bp, await tiledPlan(runtime, bp, tiled)) : runPortableBackward(runtime, bp);
  },
};

/** Tensor cores (subgroup matrices, f16), with the configuration the autotune mode gives. */
export const SG_MATRIX_BACKWARD: BackwardTier = {
  name: 'sgmatrix',
  unsupported: (bp, runtime) => sgBackwardUnsupported(bp, runtime),
  run: async (runtime, bp) => runBackwardPlan(runtime, bp, await sgBackwardPlan(runtime, bp, await tunedBackwardConfig(runtime, bp))),
};

/** Best first. */
export const BACKWARD_TIERS: BackwardTier[] = [SG_MATRIX_BACKWARD, PORTABLE_BACKWARD];

export interface BackwardTierChoice {
  tier: BackwardTier;
  skipped: Partial<Record<BackwardTierName, string>>;
}

export function chooseBackwardTier(bp: BackwardProblem, runtime: GpuRuntime, forced: string | undefined = webgpuTierSetting()): BackwardTierChoice {
  const skipped: Partial<Record<BackwardTierName, string>> = {};
  const forcedTier = forced ? BACKWARD_TIERS.find((t) => t.name === forced) : undefined;
  if (forcedTier) {
    const reason = forcedTier.unsupported(bp, runtime);
    if (reason) throw new UnsupportedError('FUSEDATTN_WEBGPU_TIER', `WebGPU backward tier ${forced} (forced by FUSEDATTN_WEBGPU_TIER) cannot run this attention backward: ${reason}`);
    return { tier: forcedTier, skipped };
  }
  for (const tier of BACKWARD_TIERS) {
    const reason = tier.unsupported(bp, runtime);
    if (reason === undefined) return { tier, skipped };
    skipped[tier.name] = reason;
  }
  const why = Object.entries(skipped).map(([name, reason]) => `${name}: ${reason}`).join('; ');
  throw new UnsupportedError('options.backend', `no WebGPU tier can run this attention backward (${why})`);
}

/**
 * Why the call runs on a slower tier than the adapter offers (RunStats.fallback): the reasons of
 * the better tiers that the adapter has but that declined this problem (a score function on the
 * tensor-core tier, say); undefined when none did. A tier the adapter lacks is no fallback.
 */
export function backwardFallback(choice: BackwardTierChoice, runtime: GpuRuntime): string | undefined {
  const declined = Object.entries(choice.skipped).filter(([name]) => name !== 'sgmatrix' || sgMatrixAdapterUnsupported(runtime) === undefined);
  return declined.length ? declined.map(([name, reason]) => `${name}: ${reason}`).join('; ') : undefined;
}
