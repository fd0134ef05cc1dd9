// Rotary position embedding as Qwen2/Llama apply it ("rotate half", not interleaved): for head
// dim D and pair i < D/2, with angle a = position * invFreq[i],
//   x'[i]       = x[i] cos a - x[i + D/2] sin a
//   x'[i + D/2] = x[i + D/2] cos a + x[i] sin a
// and cos/sin multiplied by `attentionScale` (1 except for YaRN). The frequencies follow the
// config's rope_theta and rope_scaling the way transformers computes them; angles are computed in
// float64 (transformers uses float32, which is less accurate at large positions).
import { type RopeTable, cosSinTable } from '../block/rope.js';
import type { ModelConfig } from './config.js';

export interface RopeFrequencies {
  /** D/2 inverse frequencies. */
  readonly invFreq: Float64Array;
  readonly attentionScale: number;
}

/**
 * Inverse frequencies for a forward pass whose last position is `seqLen - 1`. Only dynamic NTK
 * scaling depends on `seqLen` (it enlarges the base past max_position_embeddings, as transformers
 * does; keys already in a KV cache keep the rotation they were stored with, as there too).
 */
export function ropeFrequencies(config: ModelConfig, seqLen: number): RopeFrequencies {
  const dim = config.headDim;
  const half = dim / 2;
  const s = config.ropeScaling;
  let base = config.ropeTheta;
  if (s?.type === 'dynamic' && seqLen > config.maxPositionEmbeddings) {
    base *= ((s.factor * seqLen) / config.maxPositionEmbeddings - (s.factor - 1)) ** (dim / (dim - 2));
  }
  const invFreq = new Float64Array(half);
  for (let i = 0; i < half; i++) invFreq[i] = 1 / base ** ((2 * i) / dim);
  if (!s || s.type === 'dynamic') return { invFreq, attentionScale: 1 };

  if (s.type === 'linear') {
    for (let i = 0; i < half; i++) invFreq[i] /= s.factor;
    return { invFreq, attentionScale: 1 };
  }
  if (s.type === 'llama3') {
    // long wavelengths are interpolated by `factor`, short ones kept, the band between blended
    const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositions / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const f = invFreq[i];
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) invFreq[i] = f / s.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        invFreq[i] = (1 - smooth) * (f / s.factor) + smooth * f;
      }
    }
    return { invFreq, attentionScale: 1 };
  }
  // YaRN: interpolate low frequencies, extrapolate high ones, linear ramp between the dims that
  // complete beta_fast and beta_slow rotations over the original context
  const correctionDim = (rotations: number) =>
    (dim * Math.log(s.originalMaxPositions / (rotations * 2 * Math.PI))) / (2 * Math.log(config.ropeTheta));
  let low = correctionDim(s.betaFast);
  let high = correctionDim(s.betaSlow);
  if (s.truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  for (let i = 0; i < half; i++) {
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
    const extrapolation = 1 - ramp;
    const f = invFreq[i];
    invFreq[i] = (f / s.factor) * (1 - extrapolation) + f * extrapolation;
  }
  return { invFreq, attentionScale: s.attentionFactor };
}

export type { RopeTable };

/** The table a forward pass over positions [start, start + count) uses. */
export function ropeTable(config: ModelConfig, start: number, count: number): RopeTable {
  const { invFreq, attentionScale } = ropeFrequencies(config, start + count);
  return cosSinTable(invFreq, attentionScale, start, count);
}

/** One row per position in `positions` (row b = positions[b]), each as a one-token step there uses it. */
export function ropeRows(config: ModelConfig, positions: ArrayLike<number>): RopeTable {
  const half = config.headDim / 2;
  const cos = new Float32Array(positions.length * half);
  const sin = new Float32Array(positions.length * half);
  for (let b = 0; b < positions.length; b++) {
    const row = ropeTable(config, positions[b], 1);
    cos.set(row.cos, b * half);
    sin.set(row.sin, b * half);
  }
  return { start: 0, count: positions.length, half, cos, sin };
}

/**
 * Rows for positions 0 .. count - 1, row p as a one-token step at position p uses it (the table
 * the GPU decode kernels read by position when sequences of a batch sit at different positions).
 */
export function positionTable(config: ModelConfig, count: number): RopeTable {
  if (config.ropeScaling?.type !== 'dynamic') return ropeTable(config, 0, count);
  return ropeRows(config, Array.from({ length: count }, (_, p) => p));
}
