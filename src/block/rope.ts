// Rotary position embedding as Qwen2/Llama apply it ("rotate half", not interleaved): for head dim D,
// pair i < D/2 and angle a = position * invFreq[i],
//   x'[i]       = x[i] cos a - x[i + D/2] sin a
//   x'[i + D/2] = x[i + D/2] cos a + x[i] sin a
// with cos/sin multiplied by attentionScale (1 except for YaRN). Angles are computed in float64 and
// the kernels read cos/sin from a table of positions, so no kernel evaluates a large angle in f32.
// The block knows theta and linear scaling; other scalings (llama3, YaRN, dynamic NTK) come as
// explicit inverse frequencies from the model runner's rope code, or as its per-step tables.
import { ValueError, show } from '../core/errors.js';

export interface RopeConfig {
  /** Base of the frequencies (rope_theta). Default 10000. */
  theta?: number;
  /** Linear position interpolation (rope_scaling {type: "linear", factor}). Default 1. */
  factor?: number;
  /** D/2 inverse frequencies, overriding theta and factor (llama3, YaRN...). */
  invFreq?: ArrayLike<number>;
  /** Multiplier of cos and sin (YaRN's attention factor). Default 1. */
  attentionScale?: number;
}

/** cos and sin, [count, D/2] float32 each, for positions start .. start + count - 1. */
export interface RopeTable {
  readonly start: number;
  readonly count: number;
  readonly half: number;
  readonly cos: Float32Array;
  readonly sin: Float32Array;
}

export function checkRope(rope: RopeConfig, headDim: number): void {
  if (rope === null || typeof rope !== 'object') throw new ValueError('config.rope', `config.rope must be an object, got ${show(rope)}`);
  const positive = (v: unknown, name: string) => {
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)) {
      throw new ValueError(`config.rope.${name}`, `config.rope.${name} must be a positive finite number, got ${show(v)}`);
    }
  };
  positive(rope.theta, 'theta');
  positive(rope.factor, 'factor');
  positive(rope.attentionScale, 'attentionScale');
  if (rope.invFreq !== undefined) {
    if (rope.invFreq.length !== headDim / 2) {
      throw new ValueError('config.rope.invFreq', `config.rope.invFreq must hold D/2 = ${headDim / 2} frequencies, got ${rope.invFreq.length}`);
    }
    for (let i = 0; i < rope.invFreq.length; i++) {
      if (!Number.isFinite(rope.invFreq[i])) throw new ValueError('config.rope.invFreq', `config.rope.invFreq[${i}] must be finite, got ${show(rope.invFreq[i])}`);
    }
  }
}

/** The D/2 inverse frequencies of a config. */
export function inverseFrequencies(rope: RopeConfig, headDim: number): Float64Array {
  const half = headDim / 2;
  const out = new Float64Array(half);
  if (rope.invFreq) {
    for (let i = 0; i < half; i++) out[i] = rope.invFreq[i];
    return out;
  }
  const theta = rope.theta ?? 10000;
  const factor = rope.factor ?? 1;
  for (let i = 0; i < half; i++) out[i] = 1 / theta ** ((2 * i) / headDim) / factor;
  return out;
}

/** The cos/sin table of positions [start, start + count). */
export function ropeTable(rope: RopeConfig, headDim: number, start: number, count: number): RopeTable {
  return cosSinTable(inverseFrequencies(rope, headDim), rope.attentionScale ?? 1, start, count);
}

/** cos/sin of position * invFreq (angles in float64), times `scale`, for positions [start, start + count). */
export function cosSinTable(invFreq: ArrayLike<number>, scale: number, start: number, count: number): RopeTable {
  const half = invFreq.length;
  const cos = new Float32Array(count * half);
  const sin = new Float32Array(count * half);
  for (let t = 0; t < count; t++) {
    for (let i = 0; i < half; i++) {
      const angle = (start + t) * invFreq[i];
      cos[t * half + i] = Math.cos(angle) * scale;
      sin[t * half + i] = Math.sin(angle) * scale;
    }
  }
  return { start, count, half, cos, sin };
}

/**
 * Rotates `heads` vectors of D values in place: row r of `rows` (element (r, h, d) at
 * r * rowStride + offset + h * D + d) at table row tableRow(r).
 */
export function rotateRows(
  data: Float32Array, rows: number, rowStride: number, offset: number, heads: number, headDim: number,
  table: RopeTable, tableRow: (r: number) => number,
): void {
  const half = headDim / 2;
  for (let r = 0; r < rows; r++) {
    const t = tableRow(r) * half;
    for (let h = 0; h < heads; h++) {
      const base = r * rowStride + offset + h * headDim;
      for (let i = 0; i < half; i++) {
        const c = table.cos[t + i];
        const s = table.sin[t + i];
        const x1 = data[base + i];
        const x2 = data[base + i + half];
        data[base + i] = x1 * c - x2 * s;
        data[base + i + half] = x2 * c + x1 * s;
      }
    }
  }
}
