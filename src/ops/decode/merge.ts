// mergeAttention(): attention outputs computed over disjoint key ranges, combined by their LSEs
// (the split-KV combine, exposed: the basis of sequence-parallel and ring attention across
// devices, and of cascade attention over a shared prefix, FlashInfer's merge_state):
//   M = max_i lse_i,  w_i = exp(lse_i - M),  out = sum_i w_i out_i / sum_i w_i,  lse = M + log sum_i w_i
// A row no partial saw anything in (every lse -inf) gives 0 and -inf, never NaN.
import { floatsToHalf } from '../../core/dtype.js';
import { DTypeError, ShapeError, UnsupportedError, ValueError, show } from '../../core/errors.js';
import { Tensor, type TensorInput, toTensor } from '../../core/tensor.js';
import type { BackendChoice } from '../attention/options.js';

export interface AttentionPartial {
  /** [B, Nq, Sq, Dv] (layout BNSD) or [B, Sq, Nq, Dv] (BSND), float32 or float16. */
  out: TensorInput;
  /** [B, Nq, Sq] float32 natural-log logsumexp, as attention() / attentionDecode() return it. */
  lse: TensorInput;
}

export interface MergeOptions {
  layout?: 'BNSD' | 'BSND';
  backend?: BackendChoice;
}

export interface MergeProblem {
  readonly layout: 'BNSD' | 'BSND';
  readonly dtype: 'float32' | 'float16';
  readonly outShape: readonly number[];
  readonly lseShape: readonly number[];
  /** B, Nq, Sq, Dv. */
  readonly dims: readonly [number, number, number, number];
  readonly outs: readonly Tensor[];
  readonly lses: readonly Tensor[];
}

export interface MergeResult {
  out: Tensor;
  lse: Tensor;
}

export function validateMerge(partials: readonly AttentionPartial[], options: MergeOptions = {}): MergeProblem {
  if (!Array.isArray(partials) || partials.length === 0) throw new ValueError('partials', `partials must be a non-empty array of { out, lse }, got ${show(partials)}`);
  const layout = options.layout ?? 'BNSD';
  if (layout !== 'BNSD' && layout !== 'BSND') throw new ValueError('options.layout', `options.layout must be "BNSD" or "BSND", got ${show(layout)}`);
  for (const key of Object.keys(options)) {
    if (key !== 'layout' && key !== 'backend') throw new ValueError(`options.${key}`, `options.${key} is not a merge option (known: layout, backend)`);
  }
  const outs: Tensor[] = [];
  const lses: Tensor[] = [];
  partials.forEach((part, n) => {
    if (part === null || typeof part !== 'object') throw new ValueError(`partials[${n}]`, `partials[${n}] must be { out, lse }, got ${show(part)}`);
    outs.push(toTensor(part.out, `partials[${n}].out`, ['float32', 'float16']));
    lses.push(toTensor(part.lse, `partials[${n}].lse`, ['float32']));
  });
  const first = outs[0];
  if (first.rank !== 4) throw new ShapeError('partials[0].out', `partials[0].out must have 4 dimensions (${layout}), got shape ${show(first.shape)}`);
  const [B, a, c, Dv] = first.shape;
  const [Nq, Sq] = layout === 'BNSD' ? [a, c] : [c, a];
  const lseShape = [B, Nq, Sq];
  outs.forEach((o, n) => {
    if (o.dtype !== first.dtype) throw new DTypeError(`partials[${n}].out`, `every partial output must have dtype ${first.dtype}, got ${o.dtype}`);
    if (o.rank !== 4 || o.shape.some((d, i) => d !== first.shape[i])) throw new ShapeError(`partials[${n}].out`, `every partial output must have shape ${show(first.shape)}, got ${show(o.shape)}`);
    const l = lses[n];
    if (l.rank !== 3 || l.shape.some((d, i) => d !== lseShape[i])) throw new ShapeError(`partials[${n}].lse`, `partials[${n}].lse must have shape [B, Nq, Sq] = ${show(lseShape)}, got ${show(l.shape)}`);
    for (const t of [o, l]) {
      if (t.location !== first.location || (t.gpu && first.gpu && t.gpu.device !== first.gpu.device)) {
        throw new UnsupportedError(`partials[${n}]`, `every partial must live where partials[0].out does (${first.location}), got one on ${t.location}`);
      }
    }
  });
  return { layout, dtype: first.dtype as 'float32' | 'float16', outShape: first.shape, lseShape, dims: [B, Nq, Sq, Dv], outs, lses };
}

/** Index in lse [B, Nq, Sq] of output row `row` (the flat row of out in its layout). */
export function lseIndexOfRow(p: MergeProblem, row: number): number {
  if (p.layout === 'BNSD') return row;
  const [, Nq, Sq] = p.dims;
  const h = row % Nq;
  const bi = Math.floor(row / Nq);
  return (Math.floor(bi / Sq) * Nq + h) * Sq + (bi % Sq);
}

/** The merge in float64 (the reference) or float32 (the CPU path), on CPU tensors. */
export function mergeOnHost(p: MergeProblem, precision: 'float64' | 'float32'): { out: Float64Array | Float32Array; lse: Float64Array | Float32Array } {
  const Dv = p.dims[3];
  const rows = p.dims[0] * p.dims[1] * p.dims[2];
  const Arr = precision === 'float64' ? Float64Array : Float32Array;
  const out = new Arr(rows * Dv);
  const lse = new Arr(rows);
  const outs = p.outs.map((t) => t.toFloat32());
  const lses = p.lses.map((t) => t.toFloat32());
  const weights = new Arr(outs.length);
  for (let r = 0; r < rows; r++) {
    const li = lseIndexOfRow(p, r);
    let m = -Infinity;
    for (const l of lses) m = Math.max(m, l[li]);
    if (m === -Infinity) {
      lse[li] = -Infinity;
      continue;
    }
    let total = 0;
    lses.forEach((l, n) => {
      weights[n] = Math.exp(l[li] - m);
      total += weights[n];
    });
    for (let d = 0; d < Dv; d++) {
      let acc = 0;
      outs.forEach((o, n) => {
        if (weights[n] > 0) acc += weights[n] * o[r * Dv + d];
      });
      out[r * Dv + d] = acc / total;
    }
    lse[li] = m + Math.log(total);
  }
  return { out, lse };
}

export function mergeCpu(p: MergeProblem): MergeResult {
  const { out, lse } = mergeOnHost(p, 'float32');
  const o = out as Float32Array;
  return {
    out: p.dtype === 'float16' ? Tensor.fromData(floatsToHalf(o), p.outShape, 'float16') : Tensor.fromData(o, p.outShape, 'float32'),
    lse: Tensor.fromData(lse as Float32Array, p.lseShape, 'float32'),
  };
}
