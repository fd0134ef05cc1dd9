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

function checkOptions(options: SamplingOptions): Required<SamplingOptions> {
  const { topK = 0, temperature = 0, seed = 0 } = options;
  if (!Number.isInteger(topK) || topK < 0) throw new ValueError('topK', `topK must be an integer >= 0 (0 = no limit), got ${show(topK)}`);
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
    throw new ValueError('temperature', `temperature must be a finite number >= 0 (0 = greedy), got ${show(temperature)}`);
  }
  if (!Number.isInteger(seed)) throw new ValueError('seed', `seed must be an integer, got ${show(seed)}`);
  return { topK, temperature, seed };
}

/** Picks one of the candidates (largest first) with softmax(value / temperature) weights. */
function weightedPick(values: ArrayLike<number>, ids: ArrayLike<number>, temperature: number, random: () => number): number {
  const max = values[0];
  const weights = Array.from({ length: ids.length }, (_, i) => Math.exp((values[i] - max) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let r = random() * total;
  for (let i = 0; i < ids.length; i++) {
    r -= weights[i];
    if (r < 0) return ids[i];
  }
  return ids[ids.length - 1];
}

/** A sampler for these options (validated here, naming the option). */
export function createSampler(options: SamplingOptions = {}): Sampler {
  const { topK, temperature, seed } = checkOptions(options);
  if (temperature === 0 || topK === 1) return argmax;
  const random = uniform(seed);
  return (logits) => {
    const k = topK === 0 ? logits.length : Math.min(topK, logits.length);
    const top = topIndices(logits, k);
    return weightedPick(top.map((i) => logits[i]), top, temperature, random);
  };
}

/**
 * The same sampling from the k largest logits only (largest first, ties: lower id first), for
 * backends that find them where the logits are (the GPU): `k` candidates are needed (0: this
 * sampler needs every logit). Given the same logits it picks what createSampler() picks.
 */
export interface CandidateSampler {
  readonly k: number;
  pick(values: ArrayLike<number>, ids: ArrayLike<number>): number;
}

export function createCandidateSampler(options: SamplingOptions = {}): CandidateSampler {
  const { topK, temperature, seed } = checkOptions(options);
  if (temperature === 0 || topK === 1) return { k: 1, pick: (_, ids) => ids[0] };
  const random = uniform(seed);
  return { k: topK, pick: (values, ids) => weightedPick(values, ids, temperature, random) };
}

/** The k largest values of one row, largest first, and their ids. */
export interface TopCandidates {
  values: Float32Array;
  ids: Int32Array;
}

/**
 * Merges per-chunk candidate lists (the GPU top-k kernel's output, [rows, chunks, 2k + 1] u32:
 * k value bits, k ids (0xffffffff: none), NaN count) into each row's k largest. Throws ValueError
 * when any logit was NaN, as the CPU path does.
 */
export function mergeCandidates(raw: Uint32Array, rows: number, chunks: number, k: number, want = k): TopCandidates[] {
  const floats = new Float32Array(raw.buffer, raw.byteOffset, raw.length);
  const stride = 2 * k + 1;
  const out: TopCandidates[] = [];
  for (let r = 0; r < rows; r++) {
    const list: Array<{ v: number; id: number }> = [];
    const seen = new Set<number>();
    for (let c = 0; c < chunks; c++) {
      const base = (r * chunks + c) * stride;
      if (raw[base + 2 * k] > 0) throw new ValueError('logits', `the model produced ${raw[base + 2 * k]} NaN logits (row ${r}); the weights may hold NaN/Inf or overflow`);
      for (let i = 0; i < k; i++) {
        const id = raw[base + k + i];
        if (id === 0xffffffff || seen.has(id)) continue;
        seen.add(id);
        list.push({ v: floats[base + i], id });
      }
    }
    list.sort((a, b) => (b.v - a.v) || (a.id - b.id));
    const top = list.slice(0, want);
    out.push({ values: Float32Array.from(top, (t) => t.v), ids: Int32Array.from(top, (t) => t.id) });
  }
  return out;
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
