// The block benchmark's check of its own output (issue 8: a wrong float16 decode path was timed
// and published). Every timed path's output of the timed case is compared with the float64 module
// (reference.ts) on the rows a float64 reference can afford at benchmark sizes:
//   - prefill (no cache): the first CHECK_ROWS positions of the first and the last sequence (causal,
//     so those rows need only their own sequence's first positions: the projections run at the
//     timed hidden size, the attention over at most CHECK_ROWS keys);
//   - decode (seq 1 after a cache): every sequence's new row, attending over the whole cache.
// Rule: the block's float32 rule (BLOCK_RTOL of max |out|); on the tensor-core GEMM tier, which
// rounds activations to float16, FlashAttention's rule: 2 x the error of the float64 module with
// those activations rounded + the float32 term.
import { checkF32, checkLowPrecision, compare } from '../testing/compare.js';
import type { BlockSpec } from './config.js';
import { referenceBlock } from './reference.js';

/** Three chained float32 GEMMs + attention against float64 (test/block.test.ts uses the same). */
export const BLOCK_RTOL = 3e-5;
/** Positions per checked sequence of a prefill case. */
export const CHECK_ROWS = 4;

export interface BlockCheckCase {
  spec: BlockSpec;
  batch: number;
  seq: number;
  cached: number;
  /** Hidden states [B, S, H] (BSH) of the timed calls: randomHidden(B * S, H, xSeed). */
  x: Float32Array;
  xSeed: number;
  /** The cache the timed calls read, [capacity, B, Nkv * D] each (decode). */
  cache?: { keys: Float32Array; values: Float32Array };
  /** The GEMMs round activations to float16 (the tensor-core tier). */
  lowPrecision: boolean;
}

export interface BlockCheck {
  /** Undefined when `out` ([B, S, H], BSH) matches; else what differs. */
  check(out: Float32Array): string | undefined;
  /** The rows checked, in words. */
  readonly what: string;
}

/** References per weights and row set, shared by the tiers and batch sizes of one run. */
const memo = new WeakMap<object, Map<string, { ref: Float64Array; ref16?: Float64Array }>>();

export function blockCheck(c: BlockCheckCase): BlockCheck {
  const { spec, batch: B, seq: S } = c;
  const H = spec.hidden;
  const reference = (key: string, x: Float32Array, batch: number, seq: number, start: number, cache?: { keys: Float32Array; values: Float32Array }) => {
    const byWeights = memo.get(spec.weights) ?? new Map();
    memo.set(spec.weights, byWeights);
    let entry = byWeights.get(key);
    const input = { x, layout: 'BSH' as const, batch, seq, start, cacheKeys: cache?.keys, cacheValues: cache?.values };
    if (!entry) byWeights.set(key, (entry = { ref: referenceBlock(spec, input).out }));
    if (c.lowPrecision && !entry.ref16) entry.ref16 = referenceBlock(spec, input, { activations: 'float16' }).out;
    return entry;
  };
  // (got rows, their reference) pairs
  let parts: Array<{ rows: number[]; ref: Float64Array; ref16?: Float64Array }>;
  let what: string;
  if (c.cached > 0) {
    // decode: all B new rows against the whole cache (keys differ by B, so no sharing)
    const ref = reference(`decode seed ${c.xSeed} B${B} S${S} cache ${c.cached}`, c.x, B, S, c.cached, c.cache);
    parts = [{ rows: Array.from({ length: B * S }, (_, r) => r), ...ref }];
    what = `all ${B * S} rows after a cache of ${c.cached}`;
  } else {
    const R = Math.min(S, CHECK_ROWS);
    const sequences = [...new Set([0, B - 1])];
    parts = sequences.map((b) => {
      // rows of x are one seeded stream, so sequence b's first rows are rows b * S ...
      const x = c.x.subarray(b * S * H, (b * S + R) * H);
      return { rows: Array.from({ length: R }, (_, s) => b * S + s), ...reference(`prefill seed ${c.xSeed} rows ${b * S}+${R}`, x, 1, R, 0) };
    });
    what = `positions 0-${R - 1} of sequence${sequences.length > 1 ? `s ${sequences.join(' and ')}` : ' 0'}`;
  }
  return {
    what,
    check(out) {
      const failures: string[] = [];
      for (const p of parts) {
        const got = new Float32Array(p.rows.length * H);
        p.rows.forEach((r, i) => got.set(out.subarray(r * H, (r + 1) * H), i * H));
        const label = `rows ${p.rows[0]}..${p.rows.at(-1)}`;
        const atol = BLOCK_RTOL * Math.max(1, compare(p.ref, p.ref).maxAbsRef);
        const failure = c.lowPrecision ? checkLowPrecision(label, got, p.ref16!, p.ref, atol) : checkF32(label, got, p.ref, BLOCK_RTOL);
        if (failure) failures.push(failure);
      }
      return failures.length ? failures.join('; ') : undefined;
    },
  };
}
