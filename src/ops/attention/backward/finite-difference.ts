// Central finite differences of the float64 forward reference: the independent check of the
// reference backward (and so of every backend's gradients). For the loss L = Σ dOut ∘ out, each
// input element x gets (L(x + h) - L(x - h)) / (x₊ - x₋), where x₊ / x₋ are the float32 values
// actually stored (the forward reads float32 inputs), so the quotient has no rounding bias; the
// truncation error is O(h²·L'''). Small cases only: two forward passes per input element.
import { UnsupportedError } from '../../../core/errors.js';
import { Tensor, type TensorInput, toTensor } from '../../../core/tensor.js';
import type { AttentionOptions } from '../options.js';
import { referenceAttention } from '../reference.js';
import { validateAttention } from '../validate.js';
import type { ReferenceGrads } from './reference.js';

export interface FiniteDifferenceOptions {
  /** Step (default 2^-12). */
  step?: number;
  /** Also differentiate the bias (dBias). */
  biasGrad?: boolean;
  /** Also differentiate per-head sink logits (dSink). */
  sinkGrad?: boolean;
}

/** Finite-difference gradients of Σ dOut ∘ attention(q, k, v, options) in float64, in ReferenceGrads' layout. */
export function finiteDifferenceGradients(q: TensorInput, k: TensorInput, v: TensorInput, options: AttentionOptions, dOut: ArrayLike<number>, fd: FiniteDifferenceOptions = {}): ReferenceGrads {
  const step = fd.step ?? 2 ** -12;
  // private float32 copies, perturbed in place (the reference reads the tensors' data directly)
  const copy = (input: TensorInput | undefined, name: string): Tensor | undefined => {
    if (input === undefined) return undefined;
    const t = toTensor(input, name, ['float32', 'float16']);
    if (t.dtype !== 'float32') throw new UnsupportedError(name, `finite differences need float32 inputs, got ${name} as ${t.dtype}`);
    return Tensor.fromData(Float32Array.from(t.toFloat32()), t.shape, 'float32', t.layout);
  };
  const inputs = {
    q: copy(q, 'query')!,
    k: copy(k, 'key')!,
    v: copy(v, 'value')!,
    qRope: copy(options.qRope, 'qRope'),
    kRope: copy(options.kRope, 'kRope'),
    bias: fd.biasGrad ? copy(options.bias, 'bias') : undefined,
  };
  const problem = validateAttention(inputs.q, inputs.k, inputs.v, {
    ...options,
    qRope: inputs.qRope ?? options.qRope,
    kRope: inputs.kRope ?? options.kRope,
    bias: inputs.bias ?? options.bias,
    returnLse: false,
  });
  const loss = () => {
    const out = referenceAttention(problem).out;
    let sum = 0;
    for (let n = 0; n < out.length; n++) sum += dOut[n] * out[n];
    return sum;
  };
  const differentiate = (t: { data?: unknown } | undefined): Float64Array | undefined => {
    if (!t) return undefined;
    const x = t.data as Float32Array;
    const grad = new Float64Array(x.length);
    for (let n = 0; n < x.length; n++) {
      const x0 = x[n];
      if (!Number.isFinite(x0)) continue; // a -inf bias element has no gradient
      x[n] = x0 + step;
      const up = x[n];
      const lossUp = loss();
      x[n] = x0 - step;
      const down = x[n];
      const lossDown = loss();
      x[n] = x0;
      grad[n] = (lossUp - lossDown) / (up - down);
    }
    return grad;
  };
  return {
    dq: differentiate(inputs.q)!,
    dk: differentiate(inputs.k)!,
    dv: differentiate(inputs.v)!,
    dqRope: differentiate(inputs.qRope),
    dkRope: differentiate(inputs.kRope),
    dBias: differentiate(inputs.bias),
    // the problem's own captured copy of the logits, which the reference reads
    dSink: fd.sinkGrad ? differentiate(problem.mods?.sinkMod?.root.tensor) : undefined,
  };
}
