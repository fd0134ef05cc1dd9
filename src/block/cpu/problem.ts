// An AttentionProblem whose q, k and v are strided views into buffers the block already has (the
// packed QKV rows, the KV cache): the CPU flash kernel then reads them in place, no split and no
// transpose. Causal, bottom-right: query i of Sq sees keys 0 .. i + Sk - Sq (the new tokens come
// last among the keys).
import type { AttentionProblem, StridedView } from '../../ops/attention/index.js';
import { contiguousStrides, physicalShape } from '../../ops/attention/index.js';
import { Tensor } from '../../core/tensor.js';
import type { BlockLayout } from '../shape.js';

export interface ViewSpec {
  data: Float32Array;
  /** Element offset of (0, 0, 0, 0). */
  offset: number;
  strides: { b: number; h: number; s: number; d: number };
}

export interface CausalProblemSpec {
  layout: BlockLayout;
  batch: number;
  headsQ: number;
  headsKv: number;
  seqQ: number;
  seqK: number;
  headDim: number;
  scale: number;
  q: ViewSpec;
  k: ViewSpec;
  v: ViewSpec;
}

export function causalProblem(p: CausalProblemSpec): AttentionProblem {
  const tensors = new Map<Float32Array, Tensor>();
  const view = (v: ViewSpec): StridedView => {
    let tensor = tensors.get(v.data);
    if (!tensor) tensors.set(v.data, (tensor = Tensor.fromData(v.data, [v.data.length], 'float32')));
    return { tensor, offset: v.offset, strides: v.strides };
  };
  const fill = (n: number) => new Int32Array(p.batch).fill(n);
  return {
    layout: p.layout,
    dtype: 'float32',
    batch: p.batch,
    headsQ: p.headsQ,
    headsKv: p.headsKv,
    seqQ: p.seqQ,
    seqK: p.seqK,
    dimQK: p.headDim,
    dimRope: 0,
    dimV: p.headDim,
    varlen: false,
    seqLensQ: fill(p.seqQ),
    seqLensK: fill(p.seqK),
    seqStartsQ: fill(0),
    seqStartsK: fill(0),
    totalQ: p.batch * p.seqQ,
    totalK: p.batch * p.seqK,
    q: view(p.q),
    k: view(p.k),
    v: view(p.v),
    qRope: undefined,
    kRope: undefined,
    outShape: physicalShape(p.layout, p.batch, p.headsQ, p.seqQ, p.headDim),
    outStrides: contiguousStrides(p.layout, p.batch, p.headsQ, p.seqQ, p.headDim),
    lseShape: [p.batch, p.headsQ, p.seqQ],
    lseStrides: { b: p.headsQ * p.seqQ, h: p.seqQ, s: 1 },
    scale: p.scale,
    softcap: 0,
    window: { left: Infinity, right: 0, align: 'bottom-right' },
    mask: undefined,
    bias: undefined,
    alibi: undefined,
    returnLse: false,
  };
}
