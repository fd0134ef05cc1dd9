// Seeded random block weights and inputs, shared by the block tests, the benchmark and the CLI.
// Weights are scaled by 1/sqrt(fan-in) so activations keep unit size through the projections and
// softmax scores stay in a realistic range (not saturated, not flat).
import { floatsToHalf } from '../core/dtype.js';
import { normal, randomFloats, uniform } from '../testing/random.js';
import type { AttentionBlockConfig, AttentionBlockWeights } from './config.js';

export interface RandomBlockOptions {
  /** Q/K/V biases (Qwen2). Default true. */
  qkvBias?: boolean;
  /** O bias. Default false. */
  oBias?: boolean;
  /** Weight dtype. Default float32. */
  dtype?: 'float32' | 'float16';
}

export function randomBlockWeights(config: AttentionBlockConfig, seed: number, options: RandomBlockOptions = {}): AttentionBlockWeights {
  const H = config.hidden;
  const Nkv = config.kvHeads ?? config.heads;
  const D = config.headDim ?? H / config.heads;
  const qd = config.heads * D;
  const kvd = Nkv * D;
  const next = normal(uniform(seed));
  const f16 = options.dtype === 'float16';
  const make = (n: number, scale: number) => {
    const x = randomFloats(n, next, scale);
    return f16 ? floatsToHalf(x) : x;
  };
  const w: AttentionBlockWeights = {
    q: make(qd * H, 1 / Math.sqrt(H)),
    k: make(kvd * H, 1 / Math.sqrt(H)),
    v: make(kvd * H, 1 / Math.sqrt(H)),
    o: make(H * qd, 1 / Math.sqrt(qd)),
  };
  if (options.qkvBias ?? true) {
    w.qBias = make(qd, 0.5);
    w.kBias = make(kvd, 0.5);
    w.vBias = make(kvd, 0.5);
  }
  if (options.oBias) w.oBias = make(H, 0.1);
  return w;
}

/** Hidden states [rows, H], unit normal. */
export function randomHidden(rows: number, hidden: number, seed: number): Float32Array {
  return randomFloats(rows * hidden, normal(uniform(seed)));
}
