// Where the fast (float16) tiers cannot keep the non-finite rule (README "Failure behaviour") and
// the portable tier runs the call instead: their P·V is a matrix product over whole key tiles, in
// which a key of weight 0 still multiplies its value (0·NaN = NaN would reach rows that do not see
// that key), and their scores are scaled in plain float32 (log2 units), not relative to max(1, |scale|).
import { firstNonFinite } from '../../../../core/finite.js';
import type { AttentionProblem } from '../../problem.js';

/**
 * Largest |scale| these tiers take: float16 inputs give |q·k| <= D·65504² < 1.2e12 (D <= 256), so
 * scale·q·k·log2(e) stays below float32's 3.4e38 up to here.
 */
export const FAST_TIER_MAX_SCALE = 1e20;

/** Why a fast tier would not follow the non-finite rule on `p`, or undefined. */
export function nonFiniteUnsupported(p: AttentionProblem): string | undefined {
  if (Math.abs(p.scale) > FAST_TIER_MAX_SCALE) return `|scale| ${p.scale} > ${FAST_TIER_MAX_SCALE} could overflow its float32 scores`;
  // CPU-resident v only: GPU-resident inputs cannot be scanned without a readback (README says so)
  const v = p.v.tensor;
  if (v.data && firstNonFinite(v.data as ArrayLike<number>, v.dtype) >= 0) {
    return 'value holds NaN or ±Inf, which its tiled P·V would spread to rows that give that key a weight of 0';
  }
  return undefined;
}
