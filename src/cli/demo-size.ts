// How long a sequence the demo can afford here. The naive way costs O(S²) time and memory (it
// materialises the S×S scores), so we time both ways at growing lengths until a run takes a
// noticeable part of the budget, then extrapolate with time ∝ S² and intermediates ∝ S².
// Short runs carry fixed overheads, so the extrapolation errs on the short side.
import { freemem } from 'node:os';
import { attention, naiveAttention } from '../attention/api.js';
import type { AttentionOptions, BackendName } from '../attention/options.js';
import { floatsToHalf } from '../core/dtype.js';
import { Tensor } from '../core/tensor.js';
import { normal, randomFloats, uniform } from '../testing/random.js';

export interface DemoShape {
  batch: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  dtype: 'float32' | 'float16';
  causal: boolean;
}

export interface Inputs {
  q: Tensor;
  k: Tensor;
  v: Tensor;
}

/** Seeded standard-normal q, k, v in layout BNSD. */
export function makeInputs(shape: DemoShape, seqLen: number, seed: number): Inputs {
  const gauss = normal(uniform(seed));
  const tensor = (heads: number) => {
    const dims = [shape.batch, heads, seqLen, shape.headDim];
    const values = randomFloats(dims.reduce((a, b) => a * b, 1), gauss);
    return shape.dtype === 'float16' ? Tensor.fromData(floatsToHalf(values), dims, 'float16') : Tensor.fromData(values, dims);
  };
  return { q: tensor(shape.heads), k: tensor(shape.kvHeads), v: tensor(shape.kvHeads) };
}

export function demoOptions(shape: DemoShape, backend: BackendName): AttentionOptions {
  return { backend, causal: shape.causal };
}

/** Bytes of q, k, v and the two outputs at this length (float32 values are generated first). */
export function inputBytes(shape: DemoShape, seqLen: number): number {
  const rows = shape.batch * seqLen * shape.headDim;
  return rows * (3 * shape.heads + 2 * shape.kvHeads) * 4;
}

export interface Timing {
  seqLen: number;
  fusedMs: number;
  naiveMs: number;
  naiveBytes: number;
}

/** Times one fused and one naive call at `seqLen` on fresh inputs. */
export async function timeBoth(shape: DemoShape, backend: BackendName, seqLen: number, seed: number): Promise<Timing> {
  const { q, k, v } = makeInputs(shape, seqLen, seed);
  const options = demoOptions(shape, backend);
  let start = performance.now();
  await attention(q, k, v, options);
  const fusedMs = performance.now() - start;
  start = performance.now();
  const naive = await naiveAttention(q, k, v, options);
  const naiveMs = performance.now() - start;
  return { seqLen, fusedMs, naiveMs, naiveBytes: naive.stats?.intermediateBytes ?? 0 };
}

export interface SizeLimits {
  /** Seconds the fused + naive runs may take together. */
  budgetSeconds: number;
  maxSeqLen: number;
  /** Bytes the naive intermediates may take (CPU: part of free memory; GPU: a fixed guess). */
  maxIntermediateBytes: number;
}

export function defaultLimits(backend: BackendName, budgetSeconds: number): SizeLimits {
  return {
    budgetSeconds,
    maxSeqLen: 16384,
    maxIntermediateBytes: backend === 'cpu' ? 0.4 * freemem() : 4 * 2 ** 30,
  };
}

export interface SizeChoice {
  seqLen: number;
  /** What bounded the length: the time budget, memory, or the maximum. */
  boundBy: 'time' | 'memory' | 'maximum';
  timings: Timing[];
}

/** Lengths are multiples of this (tile-friendly, and a round number to read). */
const STEP = 128;

export async function chooseSeqLen(shape: DemoShape, backend: BackendName, limits: SizeLimits, seed: number, onTiming: (t: Timing) => void): Promise<SizeChoice> {
  const budgetMs = limits.budgetSeconds * 1000;
  const timings: Timing[] = [];
  let seqLen = 256;
  let last: Timing;
  while (true) {
    last = await timeBoth(shape, backend, seqLen, seed);
    timings.push(last);
    onTiming(last);
    const next = seqLen * 2;
    const grownBytes = last.naiveBytes * 4;
    if (last.fusedMs + last.naiveMs > budgetMs / 16 || next > limits.maxSeqLen || grownBytes > limits.maxIntermediateBytes) break;
    seqLen = next;
  }
  const byTime = last.seqLen * Math.sqrt(budgetMs / Math.max(last.fusedMs + last.naiveMs, 1e-3));
  const byMemory = last.naiveBytes > 0 ? last.seqLen * Math.sqrt(limits.maxIntermediateBytes / last.naiveBytes) : Infinity;
  const byInputs = last.seqLen * (0.25 * freemem()) / inputBytes(shape, last.seqLen);
  const bounds: Array<[SizeChoice['boundBy'], number]> = [
    ['time', byTime],
    ['memory', Math.min(byMemory, byInputs)],
    ['maximum', limits.maxSeqLen],
  ];
  const [boundBy, length] = bounds.reduce((a, b) => (b[1] < a[1] ? b : a));
  return { seqLen: Math.max(STEP, Math.floor(length / STEP) * STEP), boundBy, timings };
}
