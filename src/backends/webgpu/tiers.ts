// The flash-attention tiers of the WebGPU backend, best first. A tier says why it cannot run a
// problem on a runtime (a feature, a limit, an option it lacks) and the chooser falls back to the
// next one, never running a tier that would be wrong (ONNX Runtime's CanApplyFlashAttention
// pattern). Faster tiers (subgroup-matrix f16, subgroups + f16: issue 3) go before 'portable',
// which runs everywhere. FUSEDATTN_WEBGPU_TIER=<name> forces one tier (for tests and benchmarks).
import { UnsupportedError } from '../../core/errors.js';
import type { AttentionProblem } from '../../attention/problem.js';
import type { AttentionResult } from '../backend.js';
import { flashUnsupported, runFlash } from './portable/flash.js';
import type { GpuRuntime } from './runtime.js';

export interface FlashTier {
  readonly name: string;
  /** Why this tier cannot run `p` on this runtime's device, or undefined when it can. */
  unsupported(p: AttentionProblem, runtime: Pick<GpuRuntime, 'limits' | 'features'>): string | undefined;
  run(runtime: GpuRuntime, p: AttentionProblem): Promise<AttentionResult>;
}

export const portableTier: FlashTier = {
  name: 'portable',
  unsupported: (p, runtime) => flashUnsupported(p, runtime.limits),
  run: (runtime, p) => runFlash(runtime, p),
};

/** Best first; other tiers insert themselves before 'portable' with registerTier(). */
export const FLASH_TIERS: FlashTier[] = [portableTier];

/** Adds a tier in front of `before` (default: in front of 'portable'). */
export function registerTier(tier: FlashTier, before = 'portable'): void {
  const at = FLASH_TIERS.findIndex((t) => t.name === before);
  FLASH_TIERS.splice(at < 0 ? 0 : at, 0, tier);
}

/** The tier that runs `p`, or the reasons every tier gave (UnsupportedError). */
export function chooseTier(p: AttentionProblem, runtime: Pick<GpuRuntime, 'limits' | 'features'>): FlashTier {
  const forced = globalThis.process?.env?.FUSEDATTN_WEBGPU_TIER;
  const candidates = forced ? FLASH_TIERS.filter((t) => t.name === forced) : FLASH_TIERS;
  if (forced && candidates.length === 0) {
    throw new UnsupportedError('FUSEDATTN_WEBGPU_TIER', `FUSEDATTN_WEBGPU_TIER=${forced} names no tier (known: ${FLASH_TIERS.map((t) => t.name).join(', ')})`);
  }
  const reasons: string[] = [];
  for (const tier of candidates) {
    const reason = tier.unsupported(p, runtime);
    if (reason === undefined) return tier;
    reasons.push(`${tier.name}: ${reason}`);
  }
  throw new UnsupportedError('options.backend', `WebGPU cannot run this attention: ${reasons.join('; ')}`);
}

/** Why no tier can run `p` (undefined when one can): for AttentionBackend.unsupported(). */
export function tiersUnsupported(p: AttentionProblem, runtime: Pick<GpuRuntime, 'limits' | 'features'>): string | undefined {
  try {
    chooseTier(p, runtime);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}
