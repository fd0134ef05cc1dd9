// validateAttentionBackward(): the forward's validation (validateAttention, the same typed errors
// for q, k, v and every option) plus the backward's own checks: out / dOut match the forward's
// output (shape, dtype, device), lse is the forward's float32 LSE, biasGrad has a bias to derive,
// sinkGrad per-head sink logits.
import { DTypeError, ShapeError, ValueError, show } from '../../../core/errors.js';
import { type Tensor, type TensorInput, toTensor } from '../../../core/tensor.js';
import { checkSameLocation, validateAttention } from '../validate.js';
import type { AttentionBackwardOptions } from './options.js';
import type { BackwardProblem } from './problem.js';
import { sinkGradLayout } from './sink.js';

export function validateAttentionBackward(q: TensorInput, k: TensorInput, v: TensorInput, out: TensorInput, dOut: TensorInput, lse: TensorInput,
  options: AttentionBackwardOptions = {}): BackwardProblem {
  if (options === null || typeof options !== 'object') {
    throw new ValueError('options', `options must be an object, got ${show(options)}`);
  }
  const { biasGrad = false, sinkGrad = false, ...forwardOptions } = options;
  if (typeof biasGrad !== 'boolean') throw new ValueError('options.biasGrad', `options.biasGrad must be a boolean, got ${show(biasGrad)}`);
  if (typeof sinkGrad !== 'boolean') throw new ValueError('options.sinkGrad', `options.sinkGrad must be a boolean, got ${show(sinkGrad)}`);
  const forward = validateAttention(q, k, v, forwardOptions);
  if (biasGrad && !forward.bias) throw new ValueError('options.biasGrad', 'options.biasGrad asks for dBias, but no options.bias was given');
  if (sinkGrad) {
    const layout = sinkGradLayout(forward);
    if (typeof layout === 'string') throw new ValueError('options.sinkGrad', layout);
  }
  const outputLike = (input: TensorInput, name: string): Tensor => {
    const t = toTensor(input, name, ['float32', 'float16']);
    if (show(t.shape) !== show(forward.outShape)) {
      throw new ShapeError(name, `Input '${name}' is expected to have the forward output's shape ${show(forward.outShape)} (layout ${forward.layout}, head dim Dv ${forward.dimV}), got ${show(t.shape)}`);
    }
    if (t.dtype !== forward.dtype) throw new DTypeError(name, `${name} must have the dtype of query (${forward.dtype}), got ${t.dtype}`);
    return t;
  };
  const outT = outputLike(out, 'out');
  const dOutT = outputLike(dOut, 'dOut');
  const lseT = toTensor(lse, 'lse', ['float32']);
  if (show(lseT.shape) !== show(forward.lseShape)) {
    throw new ShapeError('lse', `Input 'lse' is expected to have the forward LSE's shape ${show(forward.lseShape)} (${forward.layout === 'TND' ? '[Nq, T]' : '[B, Nq, Sq]'}), got ${show(lseT.shape)}`);
  }
  checkSameLocation([['query', forward.q.tensor], ['out', outT], ['dOut', dOutT], ['lse', lseT]]);
  if (options.checkFinite) {
    for (const [name, t] of [['out', outT], ['dOut', dOutT]] as const) {
      const values = t.toFloat32();
      const bad = values.findIndex((x) => !Number.isFinite(x));
      if (bad >= 0) throw new ValueError(name, `${name} holds a non-finite value at flat index ${bad}: ${values[bad]}`);
    }
    const l = lseT.toFloat32();
    // -inf is the LSE of a fully masked row; NaN and +inf are never valid
    const bad = l.findIndex((x) => Number.isNaN(x) || x === Infinity);
    if (bad >= 0) throw new ValueError('lse', `lse holds ${l[bad]} at flat index ${bad} (only finite values and -Infinity, for fully masked rows, are valid)`);
  }
  return { forward, out: outT, dOut: dOutT, lse: lseT, biasGrad, sinkGrad };
}
