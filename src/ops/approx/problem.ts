// Approximate attention (seed 004): linear attention with a feature map φ and Performer (FAVOR+),
// as one normalised problem. Shape legend as attention(): B batch, Nq / Nkv heads, Sq / Sk lengths,
// D head dim of q and k, Dv of v, F features (D for an elementwise φ, M for Performer).
//
//   out_i = Σ_j φ(q_i)·φ(k_j) v_j / Σ_j φ(q_i)·φ(k_j)      over every key j (non-causal), or
//   j <= i + Sk - Sq (causal, aligned bottom-right as attention()'s causal)
//
// computed as φ(Q)(φ(K)ᵀ[V | 1]) in O(N·F·Dv): non-causal in one pass, causal in chunks (attention
// inside a chunk, a running state across chunks, as flash-linear-attention's chunk form). A row
// whose normaliser is 0 (relu of a negative row, no visible key) outputs 0.
import { UnsupportedError, ValueError, show } from '../../core/errors.js';
import type { TensorInput } from '../../core/tensor.js';
import type { AttentionProblem } from '../attention/problem.js';
import type { BackendChoice } from '../attention/options.js';
import { validateAttention } from '../attention/validate.js';
import { type ModsPlan, planMods } from '../attention/mods/plan.js';
import { type FeatureMap, type FeatureMapChoice, cachedProjection, resolveFeatureMap } from './features.js';

export interface ApproxCommonOptions {
  /** Layout of q, k, v and the output (BNSD default; BSND, BSH, SBH; not TND). */
  layout?: 'BNSD' | 'BSND' | 'BSH' | 'SBH';
  heads?: number;
  kvHeads?: number;
  /** Each query sees keys up to its diagonal (bottom-right aligned when Sq != Sk). */
  causal?: boolean;
  /** Query rows per chunk of the causal form. Default 64. */
  chunkSize?: number;
  backend?: BackendChoice;
  device?: GPUDevice;
}

export interface LinearAttentionOptions extends ApproxCommonOptions {
  /** φ: 'elu+1' (default), 'relu', or featureMap(({ x, d, b, h }) => ...). */
  featureMap?: FeatureMapChoice;
}

export interface PerformerOptions extends ApproxCommonOptions {
  /** Random features M. Default 256. */
  features?: number;
  /** Seed of the projection (every backend draws the same one). Default 0. */
  seed?: number;
  /** Which draw of the seed (Performer's feature redrawing: a new draw, a new projection). Default 0. */
  draw?: number;
  /** softmax(scale · q·k) is approximated. Default 1/sqrt(D). */
  scale?: number;
  /** A projection [M, D] of your own instead of the seeded one (float32, row-major). */
  projection?: Float32Array;
}

export interface ApproxProblem {
  readonly kind: 'linear' | 'performer';
  /** Sizes, strides and tensors, as attention() normalises them. */
  readonly base: AttentionProblem;
  readonly causal: boolean;
  readonly chunk: number;
  /** Features per row: D (elementwise φ) or M (Performer). */
  readonly features: number;
  /** Linear: the feature map, lowered (its programs are part of the kernels' options). */
  readonly map: FeatureMap | undefined;
  readonly mapPlan: ModsPlan | undefined;
  /** Performer: the projection [M, D] and sqrt(scale), applied to q and k before it. */
  readonly projection: Float32Array | undefined;
  readonly scaleSqrt: number;
}

const COMMON = ['layout', 'heads', 'kvHeads', 'causal', 'chunkSize', 'backend', 'device'];
const NAMES = { linear: [...COMMON, 'featureMap'], performer: [...COMMON, 'features', 'seed', 'draw', 'scale', 'projection'] };

export function validateApprox(kind: 'linear' | 'performer', q: TensorInput, k: TensorInput, v: TensorInput, options: LinearAttentionOptions & PerformerOptions): ApproxProblem {
  const fn = kind === 'linear' ? 'linearAttention' : 'performerAttention';
  if (options === null || typeof options !== 'object') throw new ValueError('options', `${fn}: options must be an object, got ${show(options)}`);
  for (const key of Object.keys(options)) {
    if (!NAMES[kind].includes(key)) throw new ValueError(`options.${key}`, `options.${key} is not a ${fn} option (known: ${NAMES[kind].join(', ')})`);
  }
  if ((options.layout as string) === 'TND') throw new UnsupportedError('options.layout', `${fn} takes fixed-length layouts (BNSD, BSND, BSH, SBH), got TND`);
  const base = validateAttention(q, k, v, { layout: options.layout, heads: options.heads, kvHeads: options.kvHeads, backend: options.backend, device: options.device });
  if (base.layout === 'TND') throw new UnsupportedError('options.layout', `${fn} takes fixed-length layouts (BNSD, BSND, BSH, SBH), got TND`);
  const causal = options.causal ?? false;
  if (typeof causal !== 'boolean') throw new ValueError('options.causal', `options.causal must be a boolean, got ${show(causal)}`);
  const chunk = options.chunkSize ?? 64;
  if (!Number.isInteger(chunk) || chunk < 1 || chunk > 1024) throw new ValueError('options.chunkSize', `options.chunkSize must be an integer in [1, 1024], got ${show(chunk)}`);
  if (kind === 'linear') {
    const map = resolveFeatureMap(options.featureMap);
    return { kind, base, causal, chunk, features: base.dimQK, map, mapPlan: planMods({ scoreMod: map.mod }), projection: undefined, scaleSqrt: 1 };
  }
  const scale = options.scale ?? 1 / Math.sqrt(base.dimQK);
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale <= 0) throw new ValueError('options.scale', `options.scale must be a finite number > 0, got ${show(scale)}`);
  let projection: Float32Array;
  if (options.projection !== undefined) {
    if (!(options.projection instanceof Float32Array) || options.projection.length === 0 || options.projection.length % base.dimQK !== 0) {
      throw new ValueError('options.projection', `options.projection must be a Float32Array of M x D = M x ${base.dimQK} values, got ${show(options.projection)}`);
    }
    if (options.features !== undefined && options.features * base.dimQK !== options.projection.length) {
      throw new ValueError('options.features', `options.features (${options.features}) disagrees with the projection's ${options.projection.length / base.dimQK} rows`);
    }
    projection = options.projection;
  } else {
    projection = cachedProjection(options.features ?? 256, base.dimQK, options.seed ?? 0, options.draw ?? 0);
  }
  return { kind, base, causal, chunk, features: projection.length / base.dimQK, map: undefined, mapPlan: undefined, projection, scaleSqrt: Math.sqrt(scale) };
}
