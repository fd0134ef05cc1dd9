// The backward's declarative cases and pass rules, shared by the tests, the benchmarks and anyone
// checking a backend's gradients. Pass rules against the float64 reference backward:
// - float32 inputs: max |g - ref| <= 1e-4 · max |ref| for every gradient (issue 10; a gradient that is
//   0 in exact arithmetic is measured against 1e-2 of the call's largest one);
// - float16 inputs: max |g - ref| <= 2 · max |naive16 - ref| + 1e-5 · max |ref|, where naive16 is the
//   unfused backward rounded to float16 at each step (FlashAttention's rule);
// - never NaN, every asked gradient present with its input's shape and dtype.
import { floatsToHalf } from '../core/dtype.js';
import { show } from '../core/errors.js';
import { Tensor } from '../core/tensor.js';
import { type AttentionGrads, type AttentionProblem, type ReferenceGrads, referenceGradients, sinkGradLayout } from '../ops/attention/index.js';
import { type AttentionCase, type CaseInputs, makeCase } from './cases.js';
import { compare } from './compare.js';
import { normal, randomFloats, uniform } from './random.js';

export interface GradCase extends AttentionCase {
  /** Ask for dBias (needs `bias`). */
  biasGrad?: boolean;
  /** Too slow for llvmpipe in the suite's budget: CPU only there. */
  cpuOnly?: boolean;
  /** For the GPU machine's tensor-core tier: skipped on software WebGPU adapters (llvmpipe), where the portable tier's float16 path is covered by the cases above. */
  hardwareGpu?: boolean;
}

export const BACKWARD_SUITE: readonly GradCase[] = [
  // odd sizes, both causal alignments, Sq != Sk both ways
  { batch: 1, headsQ: 2, seqQ: 97, seqK: 97, dimQK: 64 },
  { batch: 1, headsQ: 1, seqQ: 1, seqK: 97, dimQK: 59, causal: true },
  { batch: 1, headsQ: 2, seqQ: 97, seqK: 33, dimQK: 111, causal: true },
  { batch: 1, headsQ: 2, seqQ: 65, seqK: 97, dimQK: 40, causal: 'top-left' },
  { batch: 1, headsQ: 1, seqQ: 1025, seqK: 1025, dimQK: 64, causal: true, cpuOnly: true },
  // layouts, GQA / MQA, varlen with empty sequences
  { layout: 'BSND', batch: 2, headsQ: 4, headsKv: 2, seqQ: 50, seqK: 70, dimQK: 32, causal: true },
  { layout: 'SBH', batch: 2, headsQ: 3, headsKv: 1, seqQ: 21, seqK: 44, dimQK: 48 },
  { layout: 'TND', batch: 3, headsQ: 2, seqQ: 0, seqK: 0, seqLensQ: [1, 0, 40], seqLensK: [1, 50, 33], dimQK: 32, causal: true },
  // MLA: Dq != Dv, and the split RoPE form
  { batch: 1, headsQ: 2, seqQ: 70, seqK: 97, dimQK: 192, dimV: 128, causal: true },
  { layout: 'BSND', batch: 1, headsQ: 2, headsKv: 1, seqQ: 40, seqK: 60, dimQK: 128, dimRope: 64, dimV: 128, causal: true },
  // windows, CANN tokens, softcap
  { batch: 1, headsQ: 2, seqQ: 80, seqK: 130, dimQK: 32, window: [32, 8] },
  { batch: 1, headsQ: 2, seqQ: 64, seqK: 64, dimQK: 32, preTokens: 5, nextTokens: -2 },
  { batch: 2, headsQ: 2, seqQ: 60, seqK: 77, dimQK: 40, softcap: 3, scale: 0.9 },
  // |scale| > 1: scores kept in units of the scale, as the forward keeps them
  { batch: 1, headsQ: 2, seqQ: 40, seqK: 50, dimQK: 16, scale: 3, softcap: 5, causal: true, bias: 'random', maskShape: 'batch', biasGrad: true, alibi: true },
  // masks with -inf blocks and fully masked rows, biases with dBias (broadcast: folded), ALiBi
  { batch: 2, headsQ: 2, seqQ: 45, seqK: 97, dimQK: 32, mask: 'full-rows', maskShape: 'full' },
  { batch: 2, headsQ: 2, seqQ: 50, seqK: 70, dimQK: 32, bias: 'neg-inf-blocks', maskShape: 'full', biasGrad: true },
  { batch: 2, headsQ: 4, headsKv: 2, seqQ: 40, seqK: 60, dimQK: 16, bias: 'random', maskShape: 'batch', biasGrad: true, alibi: true, causal: true },
  { batch: 2, headsQ: 2, seqQ: 33, seqK: 70, dimQK: 16, bias: 'random', maskShape: '2d', biasGrad: true },
  { batch: 1, headsQ: 2, seqQ: 50, seqK: 50, dimQK: 32, alibi: true, mask: 'blocks', bias: 'random', softcap: 5, biasGrad: true },
  // 8 or more (batch, kv head) pairs: one or two key slices per pair on the CPU (backward/cpu/slices.ts)
  { layout: 'BSND', batch: 2, headsQ: 8, headsKv: 4, seqQ: 40, seqK: 70, dimQK: 32, dimRope: 8, dimV: 24, causal: true, softcap: 4 },
  { batch: 4, headsQ: 2, seqQ: 33, seqK: 50, dimQK: 16, bias: 'random', maskShape: 'full', biasGrad: true, window: [8, 8] },
  // dropout
  { batch: 1, headsQ: 2, headsKv: 1, seqQ: 97, seqK: 80, dimQK: 64, causal: true, dropout: 0.2 },
  { layout: 'TND', batch: 3, headsQ: 2, seqQ: 0, seqK: 0, seqLensQ: [33, 0, 20], seqLensK: [40, 5, 20], dimQK: 16, dropout: 0.5 },
  // float16 inputs
  { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 97, seqK: 97, dimQK: 64, causal: true },
  { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 65, seqK: 65, dimQK: 192, dimV: 128, causal: true, mask: 'full-rows', dropout: 0.1 },
  // float16 without masks or biases: what the tensor-core tier takes on the GPU machine
  { dtype: 'float16', batch: 1, headsQ: 4, headsKv: 2, seqQ: 97, seqK: 80, dimQK: 64, causal: true, dropout: 0.2, hardwareGpu: true },
  { dtype: 'float16', layout: 'BSND', batch: 1, headsQ: 2, seqQ: 70, seqK: 97, dimQK: 128, dimRope: 64, dimV: 128, causal: true, hardwareGpu: true },
  { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 50, seqK: 77, dimQK: 40, softcap: 3, alibi: true, hardwareGpu: true },
  { dtype: 'float16', layout: 'TND', batch: 3, headsQ: 2, seqQ: 0, seqK: 0, seqLensQ: [20, 0, 33], seqLensK: [40, 5, 33], dimQK: 59, window: [16, 4], hardwareGpu: true },
  // float16 masks, biases and dBias on the tensor-core tier: fully masked rows; a bias shared by
  // the KV heads (dBias folded over them), by the batch and heads, per key (padding: rows summed)
  { dtype: 'float16', batch: 2, headsQ: 4, headsKv: 2, seqQ: 70, seqK: 97, dimQK: 64, causal: true, mask: 'full-rows', maskShape: 'full', hardwareGpu: true },
  { dtype: 'float16', batch: 2, headsQ: 4, headsKv: 2, seqQ: 65, seqK: 80, dimQK: 128, bias: 'neg-inf-blocks', biasGrad: true, alibi: true, hardwareGpu: true },
  { dtype: 'float16', batch: 2, headsQ: 2, seqQ: 50, seqK: 77, dimQK: 40, bias: 'random', maskShape: '2d', biasGrad: true, softcap: 3, causal: true, hardwareGpu: true },
  { dtype: 'float16', batch: 2, headsQ: 4, headsKv: 2, seqQ: 97, seqK: 65, dimQK: 128, bias: 'random', maskShape: 'keys', biasGrad: true, mask: 'random', hardwareGpu: true },
  { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 90, seqK: 90, dimQK: 192, dimV: 128, bias: 'random', maskShape: 'full', biasGrad: true, dropout: 0.1, causal: true, hardwareGpu: true },
  // a [Sq, Sk] bias shared by a batch of 3 and GQA heads: the tensor-core dBias in partial planes
  // (6 folded pairs; the group's query heads add into one element)
  { dtype: 'float16', batch: 3, headsQ: 4, headsKv: 2, seqQ: 61, seqK: 83, dimQK: 64, bias: 'random', maskShape: '2d', biasGrad: true, causal: true, hardwareGpu: true },
];

export interface GradCaseInputs extends CaseInputs {
  /** dL/dout, in the output's shape and the inputs' dtype. */
  dOut: Tensor;
  /** Its values as float32 (what the reference reads). */
  dOutValues: Float32Array;
}

/** Seeded inputs of a gradient case: the forward's (makeCase) plus a random output gradient. */
export function makeGradCase(c: GradCase, seed: number, outShape: readonly number[]): GradCaseInputs {
  const inputs = makeCase(c, seed);
  const n = outShape.reduce((a, b) => a * b, 1);
  let values = randomFloats(n, normal(uniform(seed * 7919 + 13)));
  let dOut: Tensor;
  if (c.dtype === 'float16') {
    const bits = floatsToHalf(values);
    dOut = Tensor.fromData(bits, outShape, 'float16');
    values = Tensor.fromData(bits, outShape, 'float16').toFloat32();
  } else dOut = Tensor.fromData(values, outShape);
  return { ...inputs, dOut, dOutValues: values };
}

const NAMES = ['dq', 'dk', 'dv', 'dqRope', 'dkRope', 'dBias', 'dSink'] as const;

export interface GradCheckOutcome {
  failures: string[];
  /** max |g - ref| / max |ref| per gradient. */
  relErrors: Partial<Record<(typeof NAMES)[number], number>>;
}

/**
 * Checks `grads` of problem `p` for the output gradient `dOut` against the float64 reference
 * (dSink too when `sinkGrad`: float32 in the sink logits' shape).
 */
export function checkGradients(p: AttentionProblem, dOut: ArrayLike<number>, grads: AttentionGrads, biasGrad = false, ref?: ReferenceGrads, sinkGrad = false): GradCheckOutcome {
  ref ??= referenceGradients(p, dOut, biasGrad, 'float64', sinkGrad);
  const failures: string[] = [];
  const relErrors: GradCheckOutcome['relErrors'] = {};
  const naive = p.dtype === 'float16' ? referenceGradients(p, dOut, biasGrad, 'float16', sinkGrad) : undefined;
  const sinkLayout = sinkGrad ? sinkGradLayout(p) : undefined;
  const inputs: Record<(typeof NAMES)[number], Pick<Tensor, 'shape' | 'dtype'> | undefined> = {
    dq: p.q.tensor, dk: p.k.tensor, dv: p.v.tensor, dqRope: p.qRope?.tensor, dkRope: p.kRope?.tensor, dBias: biasGrad ? p.bias?.tensor : undefined,
    dSink: typeof sinkLayout === 'object' ? { shape: sinkLayout.shape, dtype: 'float32' } : undefined,
  };
  // the call's largest reference gradient: a gradient that is exactly 0 in exact arithmetic (dBias of a
  // bias broadcast along keys: softmax ignores a per-row shift) is judged against it, scaled by 1e-2
  let largest = 0;
  for (const name of NAMES) for (const x of ref[name] ?? []) largest = Math.max(largest, Math.abs(x));
  for (const name of NAMES) {
    const want = ref[name];
    const got = grads[name];
    if (!want) {
      if (got) failures.push(`${name} returned but not asked for`);
      continue;
    }
    if (!got) {
      failures.push(`${name} missing`);
      continue;
    }
    const input = inputs[name]!;
    if (show(got.shape) !== show(input.shape)) failures.push(`${name} shape ${show(got.shape)}, expected ${show(input.shape)}`);
    if (got.dtype !== input.dtype) failures.push(`${name} dtype ${got.dtype}, expected ${input.dtype}`);
    if (got.size !== want.length) continue;
    const values = got.toFloat32();
    const c = compare(values, want);
    relErrors[name] = c.relError;
    if (c.badIndex >= 0) {
      failures.push(`${name}: bad value ${values[c.badIndex]} at ${c.badIndex} (reference ${want[c.badIndex]})`);
      continue;
    }
    const scale = Math.max(c.maxAbsRef, 1e-2 * largest);
    const limit = naive ? 2 * compare(naive[name]!, want).maxAbsError + 1e-5 * scale : 1e-4 * scale;
    if (c.maxAbsError > limit) {
      failures.push(`${name}: max abs error ${c.maxAbsError.toExponential(3)} > ${limit.toExponential(3)} (max |ref| ${c.maxAbsRef.toExponential(3)}${naive ? ', 2 x naive float16' : ', 1e-4 relative'})`);
    }
  }
  return { failures, relErrors };
}
