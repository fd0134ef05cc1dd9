// The attention module of a Qwen2/Llama decoder layer, as one object (issue 4). Shape legend used
// in every block file:
//   B  batch        S  new tokens per sequence        H  hidden size
//   Nq / Nkv  query / key-value heads (Nq a multiple of Nkv: GQA, MQA)        D  head dim
//   L  positions attended (start + S)        W  packed QKV row width = (Nq + 2 Nkv) D
// Weights keep the PyTorch Linear layout [out, in]: y = x Wᵀ + b.
//
// validateBlock() turns the raw config + weights into a BlockSpec or throws a typed error naming
// the field, the expected and the received value, before anything is uploaded or computed.
import { DTypeError, ShapeError, ValueError, show } from '../core/errors.js';
import { type RopeConfig, checkRope } from './rope.js';

export interface AttentionBlockConfig {
  /** H. */
  hidden: number;
  /** Nq. */
  heads: number;
  /** Nkv (default: heads). */
  kvHeads?: number;
  /** D (default: hidden / heads). Must be even (RoPE rotates pairs (i, i + D/2)). */
  headDim?: number;
  /** RoPE: theta, scaling or explicit inverse frequencies. Default theta 10000, no scaling. */
  rope?: RopeConfig;
  /**
   * Positions the block's RoPE table covers (start + S must stay below). Default 4096. The model
   * runner passes per-step tables instead (see module.ts).
   */
  maxPositions?: number;
  /** Softmax scale (default 1/sqrt(D)). */
  scale?: number;
}

/** A weight: float32 values or float16 bits, in PyTorch Linear layout [out, in]. */
export type WeightData = Float32Array | Uint16Array;

export interface AttentionBlockWeights {
  /** [Nq D, H] */
  q: WeightData;
  /** [Nkv D, H] */
  k: WeightData;
  /** [Nkv D, H] */
  v: WeightData;
  /** [H, Nq D] */
  o: WeightData;
  /** Biases (Qwen2 has q/k/v biases; Llama none): [Nq D], [Nkv D], [Nkv D], [H]. */
  qBias?: WeightData;
  kBias?: WeightData;
  vBias?: WeightData;
  oBias?: WeightData;
}

/** The sizes and constants of a block, without its weights (what the kernels need). */
export type BlockDims = Pick<BlockSpec, 'hidden' | 'heads' | 'kvHeads' | 'headDim' | 'group' | 'qkvWidth' | 'scale' | 'rope' | 'maxPositions'>;

/** The validated block: sizes, and the weights as float32 (float16 bits kept for GPU upload). */
export interface BlockSpec {
  readonly hidden: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  /** Nq / Nkv. */
  readonly group: number;
  /** W = (Nq + 2 Nkv) D, the packed QKV width. */
  readonly qkvWidth: number;
  readonly scale: number;
  readonly rope: RopeConfig;
  readonly maxPositions: number;
  readonly weights: AttentionBlockWeights;
  /** dtype the weights were given in (all the same). */
  readonly weightDType: 'float32' | 'float16';
  readonly hasQkvBias: boolean;
  readonly hasOBias: boolean;
}

const CONFIG_KEYS = new Set(['hidden', 'heads', 'kvHeads', 'headDim', 'rope', 'maxPositions', 'scale']);

function positiveInt(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new ValueError(name, `${name} must be a positive integer, got ${show(value)}`);
  }
  return value;
}

export function validateBlock(config: AttentionBlockConfig, weights: AttentionBlockWeights): BlockSpec {
  if (config === null || typeof config !== 'object') throw new ValueError('config', `config must be an object, got ${show(config)}`);
  for (const key of Object.keys(config)) {
    if (!CONFIG_KEYS.has(key)) throw new ValueError(`config.${key}`, `config.${key} is not an attention block option (known: ${[...CONFIG_KEYS].join(', ')})`);
  }
  const hidden = positiveInt(config.hidden, 'config.hidden');
  const heads = positiveInt(config.heads, 'config.heads');
  const kvHeads = positiveInt(config.kvHeads ?? heads, 'config.kvHeads');
  if (heads % kvHeads !== 0) {
    throw new ValueError('config.kvHeads', `config.heads (${heads}) must be a multiple of config.kvHeads (GQA/MQA), got ${kvHeads}`);
  }
  if (config.headDim === undefined && hidden % heads !== 0) {
    throw new ValueError('config.headDim', `config.headDim is required when hidden (${hidden}) is not a multiple of heads (${heads})`);
  }
  const headDim = positiveInt(config.headDim ?? hidden / heads, 'config.headDim');
  if (headDim % 2 !== 0) throw new ValueError('config.headDim', `config.headDim must be even (RoPE rotates pairs (i, i + D/2)), got ${headDim}`);
  const maxPositions = positiveInt(config.maxPositions ?? 4096, 'config.maxPositions');
  const scale = config.scale ?? 1 / Math.sqrt(headDim);
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale <= 0) {
    throw new ValueError('config.scale', `config.scale must be a positive finite number, got ${show(scale)}`);
  }
  const rope = config.rope ?? {};
  checkRope(rope, headDim);

  if (weights === null || typeof weights !== 'object') throw new ValueError('weights', `weights must be an object {q, k, v, o, ...}, got ${show(weights)}`);
  const qd = heads * headDim;
  const kvd = kvHeads * headDim;
  const expected: Array<[keyof AttentionBlockWeights, number, string, boolean]> = [
    ['q', qd * hidden, `[${qd}, ${hidden}]`, true],
    ['k', kvd * hidden, `[${kvd}, ${hidden}]`, true],
    ['v', kvd * hidden, `[${kvd}, ${hidden}]`, true],
    ['o', hidden * qd, `[${hidden}, ${qd}]`, true],
    ['qBias', qd, `[${qd}]`, false],
    ['kBias', kvd, `[${kvd}]`, false],
    ['vBias', kvd, `[${kvd}]`, false],
    ['oBias', hidden, `[${hidden}]`, false],
  ];
  let weightDType: 'float32' | 'float16' | undefined;
  for (const [name, length, shape, required] of expected) {
    const w = weights[name];
    if (w === undefined) {
      if (required) throw new ShapeError(`weights.${name}`, `weights.${name} is required (shape ${shape})`);
      continue;
    }
    const dtype = w instanceof Float32Array ? 'float32' : w instanceof Uint16Array ? 'float16' : undefined;
    if (!dtype) throw new DTypeError(`weights.${name}`, `weights.${name} must be a Float32Array or a Uint16Array of float16 bits, got ${show(w)}`);
    weightDType ??= dtype;
    if (dtype !== weightDType) throw new DTypeError(`weights.${name}`, `every weight must have the same dtype (${weightDType}), weights.${name} is ${dtype}`);
    if (w.length !== length) throw new ShapeError(`weights.${name}`, `weights.${name} must hold ${length} elements (shape ${shape}), got ${w.length}`);
  }
  for (const key of Object.keys(weights)) {
    if (!expected.some(([name]) => name === key)) throw new ValueError(`weights.${key}`, `weights.${key} is not a block weight (known: q, k, v, o, qBias, kBias, vBias, oBias)`);
  }
  return {
    hidden,
    heads,
    kvHeads,
    headDim,
    group: heads / kvHeads,
    qkvWidth: (heads + 2 * kvHeads) * headDim,
    scale,
    rope,
    maxPositions,
    weights,
    weightDType: weightDType ?? 'float32',
    hasQkvBias: weights.qBias !== undefined || weights.kBias !== undefined || weights.vBias !== undefined,
    hasOBias: weights.oBias !== undefined,
  };
}
