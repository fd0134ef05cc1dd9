// The flash-tier chooser (ONNX Runtime's CanApplyFlashAttention pattern): tiers are tried best
// first by measurement (docs/GPU-NOTES.md, BENCHMARKS.md): subgroup-matrix f16, then the portable
// f32 tier, then the subgroup f16 tier — measured slower than the portable tier on the H200
// (5-7 vs 8-12 TFLOP/s), so it runs only when forced until it beats it; each says why it cannot take a problem on this adapter, and the next one is used. The
// portable f32 tier takes everything the device's limits allow, so a problem is never run by a
// tier that does not implement all of its options.
//
// FUSEDATTN_WEBGPU_TIER=sgmatrix|subgroup|portable forces a tier (an error, naming the reason, when it
// cannot run the problem). Autotuning: see autotune.ts.
import { webgpuTierSetting } from '../../../../core/config.js';
import { UnsupportedError } from '../../../../core/errors.js';
import type { AttentionProblem } from '../../problem.js';
import type { AttentionResult } from '../../backend.js';
import { flashUnsupported, runFlash } from '../portable/flash.js';
import type { GpuRuntime } from '../../../../engines/webgpu/runtime.js';
import { softcapAsOption } from '../../mods/softcap-part.js';
import { tunedConfig } from './autotune.js';
import { forcedConfig, runSgMatrix, sgMatrixAdapterUnsupported, sgMatrixProblemUnsupported } from './sgmatrix.js';
import { runSubgroup, subgroupAdapterUnsupported, subgroupProblemUnsupported } from './subgroup.js';

export type TierName = 'sgmatrix' | 'subgroup' | 'portable';

export interface FlashTier {
  readonly name: TierName;
  /** Why this tier cannot run `p` on `runtime`'s adapter, or undefined. */
  unsupported(p: AttentionProblem, runtime: GpuRuntime): string | undefined;
  run(runtime: GpuRuntime, p: AttentionProblem): Promise<AttentionResult>;
}

export const SG_MATRIX_TIER: FlashTier = {
  name: 'sgmatrix',
  unsupported: (p, runtime) => sgMatrixAdapterUnsupported(runtime) ?? sgMatrixProblemUnsupported(p, runtime),
  run: async (runtime, call) => {
    // softcap() as a score function runs as the option's lines here (with the function's rule)
    const p = softcapAsOption(call);
    return runSgMatrix(runtime, p, forcedConfig(p, runtime) ?? await tunedConfig(runtime, p));
  },
};

export const SUBGROUP_TIER: FlashTier = {
  name: 'subgroup',
  unsupported: (p, runtime) => subgroupAdapterUnsupported(runtime) ?? subgroupProblemUnsupported(p, runtime),
  run: (runtime, p) => runSubgroup(runtime, p),
};

export const PORTABLE_TIER: FlashTier = {
  name: 'portable',
  unsupported: (p, runtime) => flashUnsupported(p, runtime.limits),
  run: (runtime, p) => runFlash(runtime, p),
};

/** Best first. */
export const FLASH_TIERS: readonly FlashTier[] = [SG_MATRIX_TIER, PORTABLE_TIER, SUBGROUP_TIER];

export interface TierChoice {
  tier: FlashTier;
  /** Why each better tier was passed over, e.g. { sgmatrix: 'boolean masks are not implemented' }. */
  skipped: Partial<Record<TierName, string>>;
}

function forcedTier(): TierName | undefined {
  return webgpuTierSetting();
}

/** The tier that runs `p`, or UnsupportedError listing why each tier refused. */
export function chooseFlashTier(p: AttentionProblem, runtime: GpuRuntime, forced: TierName | undefined = forcedTier()): TierChoice {
  const skipped: Partial<Record<TierName, string>> = {};
  if (forced !== undefined) {
    const tier = FLASH_TIERS.find((t) => t.name === forced);
    if (!tier) {
      throw new UnsupportedError('FUSEDATTN_WEBGPU_TIER', `FUSEDATTN_WEBGPU_TIER must be one of ${FLASH_TIERS.map((t) => t.name).join(', ')}, got "${forced}"`);
    }
    const reason = tier.unsupported(p, runtime);
    if (reason) throw new UnsupportedError('FUSEDATTN_WEBGPU_TIER', `WebGPU tier ${forced} (forced by FUSEDATTN_WEBGPU_TIER) cannot run this attention: ${reason}`);
    return { tier, skipped };
  }
  for (const tier of FLASH_TIERS) {
    const reason = tier.unsupported(p, runtime);
    if (reason === undefined) return { tier, skipped };
    skipped[tier.name] = reason;
  }
  const why = Object.entries(skipped).map(([name, reason]) => `${name}: ${reason}`).join('; ');
  throw new UnsupportedError('options.backend', `no WebGPU tier can run this attention (${why})`);
}

/** Runs `p` on the best tier that can take it. */
export async function runBestTier(runtime: GpuRuntime, p: AttentionProblem): Promise<AttentionResult> {
  const { tier } = chooseFlashTier(p, runtime);
  const result = await tier.run(runtime, p);
  return { ...result, stats: { launches: 0, intermediateBytes: 0, ...result.stats, backend: 'webgpu', tier: tier.name, threads: 1 } };
}
