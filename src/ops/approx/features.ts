// Feature maps of the approximate attentions (seed 004): linear attention's elementwise φ (elu+1,
// relu, or any expression written with the score-function builders, compiled like them), and
// Performer's FAVOR+ positive orthogonal random features, drawn on the host from a seeded
// generator so every backend uses the very same projection.
import { ValueError, show } from '../../core/errors.js';
import type { FloatExpr, IntExpr } from '../attention/mods/expr.js';
import { ScoreMod, scoreMod } from '../attention/mods/program.js';

export interface FeatureContext {
  /** The element of q or k being mapped. */
  x: FloatExpr;
  /** Its index in the head dimension. */
  d: IntExpr;
  b: IntExpr;
  h: IntExpr;
}

/**
 * An elementwise feature map φ(x) for linear attention, traced once like a scoreMod (it is
 * compiled into the same WebAssembly and WGSL): `featureMap(({ x }) => x.max(0))`. It should be
 * non-negative, or the normaliser φ(q)·Σφ(k) may vanish.
 */
export class FeatureMap {
  /** @internal the map as a score function of (score = x, kv = d). */
  constructor(readonly mod: ScoreMod, readonly label: string) {}
  toString(): string {
    return `${this.label}: ${this.mod.toString().replace(/\bscore\b/g, 'x').replace(/\bkv\b/g, 'd')}`;
  }
}

export function featureMap(fn: (ctx: FeatureContext) => FloatExpr | number, label = 'featureMap'): FeatureMap {
  if (typeof fn !== 'function') throw new ValueError('featureMap', `featureMap() takes a function of { x, d, b, h }, got ${show(fn)}`);
  return new FeatureMap(scoreMod(({ score, kv, b, h }) => fn({ x: score, d: kv, b, h }), label), label);
}

/** elu(x) + 1 (Katharopoulos et al.): x + 1 for x > 0, e^x otherwise. */
export const ELU_PLUS_ONE = featureMap(({ x }) => x.gt(0).select(x.add(1), x.exp()), 'elu+1');
/** max(x, 0). */
export const RELU = featureMap(({ x }) => x.max(0), 'relu');
/** x: for inputs that are features already (fused-features.ts feeds φ(Q), φ(K) so to the fused kernels). */
export const IDENTITY = featureMap(({ x }) => x, 'identity');

export type FeatureMapChoice = 'elu+1' | 'relu' | FeatureMap;

export function resolveFeatureMap(choice: unknown): FeatureMap {
  if (choice === undefined || choice === 'elu+1') return ELU_PLUS_ONE;
  if (choice === 'relu') return RELU;
  if (choice instanceof FeatureMap) return choice;
  throw new ValueError('options.featureMap', `options.featureMap must be "elu+1", "relu" or a featureMap(...), got ${show(choice)}`);
}

// ---------- Performer (FAVOR+)

/** splitmix32: a small, well-mixed seeded generator; uniform in [0, 1). */
function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
}

function gaussian(rand: () => number): () => number {
  return () => {
    const u = 1 - rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  };
}

/**
 * Performer's projection: M rows of dimension D, blocks of D mutually orthogonal directions
 * (Gram-Schmidt on Gaussian matrices, in float64), each row scaled to the norm of an independent
 * Gaussian vector (so rows are marginally N(0, I), as FAVOR+ requires). `draw` picks a fresh,
 * equally reproducible matrix for the same seed (Performer's feature redrawing).
 */
export function performerProjection(features: number, dim: number, seed = 0, draw = 0): Float32Array {
  if (!Number.isInteger(features) || features < 1) throw new ValueError('options.features', `options.features must be a positive integer, got ${show(features)}`);
  if (!Number.isInteger(seed) || !Number.isInteger(draw)) throw new ValueError('options.seed', `options.seed and options.draw must be integers, got ${show(seed)}, ${show(draw)}`);
  const normal = gaussian(generator((Math.imul(seed, 0x27d4eb2d) ^ Math.imul(draw + 1, 0x165667b1)) >>> 0));
  const out = new Float32Array(features * dim);
  const block = new Float64Array(dim * dim);
  for (let first = 0; first < features; first += dim) {
    for (let i = 0; i < dim * dim; i++) block[i] = normal();
    // modified Gram-Schmidt, row by row
    for (let r = 0; r < dim; r++) {
      for (let s = 0; s < r; s++) {
        let dot = 0;
        for (let c = 0; c < dim; c++) dot += block[r * dim + c] * block[s * dim + c];
        for (let c = 0; c < dim; c++) block[r * dim + c] -= dot * block[s * dim + c];
      }
      let norm = 0;
      for (let c = 0; c < dim; c++) norm += block[r * dim + c] ** 2;
      norm = Math.sqrt(norm);
      for (let c = 0; c < dim; c++) block[r * dim + c] /= norm;
    }
    for (let r = 0; r < Math.min(dim, features - first); r++) {
      let length = 0;
      for (let c = 0; c < dim; c++) length += normal() ** 2;
      length = Math.sqrt(length);
      for (let c = 0; c < dim; c++) out[(first + r) * dim + c] = block[r * dim + c] * length;
    }
  }
  return out;
}

/**
 * The projection of (features, dim, seed, draw) for the calls themselves, kept for the last few
 * keys: Gram-Schmidt in float64 costs 3 ms at 256 × 64 on a warm JIT (25–30 ms cold), as much as
 * the GPU work of a short Performer call, and a training or decode loop asks for the same matrix
 * every call. Read-only: the calls upload or stage it, never write it; users get fresh copies from
 * performerProjection().
 */
export function cachedProjection(features: number, dim: number, seed = 0, draw = 0): Float32Array {
  const key = `${features}/${dim}/${seed}/${draw}`;
  let m = PROJECTIONS.get(key);
  if (m) {
    PROJECTIONS.delete(key); // most recent last
  } else {
    m = performerProjection(features, dim, seed, draw);
    if (PROJECTIONS.size >= PROJECTION_CACHE_SIZE) PROJECTIONS.delete(PROJECTIONS.keys().next().value!);
  }
  PROJECTIONS.set(key, m);
  return m;
}

const PROJECTION_CACHE_SIZE = 8;
const PROJECTIONS = new Map<string, Float32Array>();
