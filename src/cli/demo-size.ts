// How long a sequence the demo can afford here. The naive way costs O(S²) time and memory (it
// materialises the S×S scores), so we time both ways at growing lengths until a run takes a
// noticeable part of the budget, then extrapolate with time ∝ S² and intermediates ∝ S².
// Short runs carry fixed overheads, which makes the extrapolation err on the short side; longer
// runs fall out of cache, which makes it err on the long side (seen: +20% at 2.75x the length on a
// 2-core CPU), so we aim at 80% of the budget.
import { freemem } from 'node:os';
import { attention, naiveAttention } from '../ops/attention/index.js';
import type { AttentionOptions, BackendName } from '../ops/attention/index.js';
import type { DemoRunner, Inputs } from './demo-runner.js';
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
export async function timeBoth(runner: DemoRunner, shape: DemoShape, seqLen: number, seed: number): Promise<Timing> {
  const placed = runner.place(makeInputs(shape, seqLen, seed));
  try {
    const options = demoOptions(shape, runner.backend);
    const fused = await runner.time(attention, placed, options);
    const naive = await runner.time(naiveAttention, placed, options);
    return { seqLen, fusedMs: fused.runs[0], naiveMs: naive.runs[0], naiveBytes: naive.result.stats?.intermediateBytes ?? 0 };
  } finally {
    runner.free(placed);
  }
}

export interface SizeLimits {
  /** Seconds the fused + naive runs may take together. */
  budgetSeconds: number;
  maxSeqLen: number;
  /** Bytes the naive intermediates may take (CPU: part of free memory; GPU: one storage binding). */
  maxIntermediateBytes: number;
  /** Bytes one input tensor may take (GPU: one storage binding). */
  maxInputBytes: number;
}

export function defaultLimits(runner: DemoRunner, budgetSeconds: number): SizeLimits {
  const cpu = runner.backend === 'cpu';
  return {
    budgetSeconds,
    maxSeqLen: 16384,
    maxIntermediateBytes: cpu ? 0.4 * freemem() : runner.bindingLimit,
    maxInputBytes: cpu ? Infinity : runner.bindingLimit,
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

export async function chooseSeqLen(runner: DemoRunner, shape: DemoShape, limits: SizeLimits, seed: number, onTiming: (t: Timing) => void): Promise<SizeChoice> {
  // the budget covers every timed repeat of the main step
  const budgetMs = (limits.budgetSeconds * 1000) / runner.repeats;
  const timings: Timing[] = [];
  let seqLen = 256;
  let last: Timing;
  while (true) {
    last = await timeBoth(runner, shape, seqLen, seed);
    timings.push(last);
    onTiming(last);
    const next = seqLen * 2;
    const grownBytes = last.naiveBytes * 4;
    if (last.fusedMs + last.naiveMs > budgetMs / 16 || next > limits.maxSeqLen || grownBytes > limits.maxIntermediateBytes) break;
    seqLen = next;
  }
  const byTime = last.seqLen * Math.sqrt((0.8 * budgetMs) / Math.max(last.fusedMs + last.naiveMs, 1e-3));
  const byMemory = last.naiveBytes > 0 ? last.seqLen * Math.sqrt(limits.maxIntermediateBytes / last.naiveBytes) : Infinity;
  const byInputs = Math.min(
    (last.seqLen * 0.25 * freemem()) / inputBytes(shape, last.seqLen),
    limits.maxInputBytes / (shape.batch * Math.max(shape.heads, shape.kvHeads) * shape.headDim * 4),
  );
  const bounds: Array<[SizeChoice['boundBy'], number]> = [
    ['time', byTime],
    ['memory', Math.min(byMemory, byInputs)],
    ['maximum', limits.maxSeqLen],
  ];
  const [boundBy, length] = bounds.reduce((a, b) => (b[1] < a[1] ? b : a));
  return { seqLen: Math.max(STEP, Math.floor(length / STEP) * STEP), boundBy, timings };
}
