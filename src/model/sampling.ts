// Choosing the next token from logits: greedy (argmax), or top-k with temperature from a seeded
// generator so that a run can be repeated exactly.
import { ValueError, show } from '../core/errors.js';
import { uniform } from '../testing/random.js';

export interface SamplingOptions {
  /** Keep the k most likely tokens; 0, 1 or absent with temperature 0: greedy. */
  topK?: number;
  /** Divides the logits before the softmax; 0 or absent: greedy. */
  temperature?: number;
  /** Seed of the sampler's random numbers (default 0). */
  seed?: number;
}

export type Sampler = (logits: Float32Array) => number;

/** Index of the largest logit (the lowest index among ties). */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** A sampler for these options (validated here, naming the option). */
export function createSampler(options: SamplingOptions = {}): Sampler {
  const { topK = 0, temperature = 0, seed = 0 } = options;
  if (!Number.isInteger(topK) || topK < 0) throw new ValueError('topK', `topK must be an integer >= 0 (0 = no limit), got ${show(topK)}`);
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
    throw new ValueError('temperature', `temperature must be a finite number >= 0 (0 = greedy), got ${show(temperature)}`);
  }
  if (!Number.isInteger(seed)) throw new ValueError('seed', `seed must be an integer, got ${show(seed)}`);
  if (temperature === 0 || topK === 1) return argmax;
  const random = uniform(seed);
  return (logits) => {
    const k = topK === 0 ? logits.length : Math.min(topK, logits.length);
    const top = topIndices(logits, k);
    const max = logits[top[0]];
    const weights = top.map((i) => Math.exp((logits[i] - max) / temperature));
    const total = weights.reduce((a, b) => a + b, 0);
    let r = random() * total;
    for (let i = 0; i < top.length; i++) {
      r -= weights[i];
      if (r < 0) return top[i];
    }
    return top[top.length - 1];
  };
}

/** Indices of the k largest values, largest first (ties: lower index first). */
export function topIndices(values: ArrayLike<number>, k: number): number[] {
  // a sorted list of k candidates: O(n k) worst case but O(n) for the usual small k
  const top: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isNaN(v)) throw new ValueError('logits', `logits hold NaN at index ${i}`);
    if (top.length === k && v <= values[top[k - 1]]) continue;
    let at = top.length < k ? top.length : k - 1;
    while (at > 0 && values[top[at - 1]] < v) at--;
    top.splice(at, 0, i);
    if (top.length > k) top.pop();
  }
  return top;
}
