// The unfused block on WebGPU, done the traditional way (as HF transformers' eager attention runs
// on a GPU), one kernel per step:
//   q/k/v projections (3 GEMMs) + 3 bias adds -> transposes to [B, N, S, D] (3) -> RoPE on q and k (2)
//   -> with a cache: append k/v (2) and gather all positions (2) -> repeat-KV for GQA (2)
//   -> scores = q kᵀ (1) -> scale + causal mask (1) -> softmax (1) -> P v (1) -> transpose back (1)
//   -> O projection (1) (+ bias add).
// Qwen-7B shapes (q/k/v biases, MHA, no cache): 17 dispatches. Every intermediate is a real buffer,
// the scores [B, Nq, S, L] included.
import { runMatmul } from '../../ops/gemm/webgpu/index.js';
import type { MatmulOptions } from '../../ops/gemm/webgpu/index.js';
import { type GpuRuntime, defineKernel } from '../../engines/webgpu/runtime.js';
import type { BlockSpec } from '../config.js';
import type { BlockCall } from '../shape.js';
import type { GemmTier, GpuLinear, SgmatKernelChoice } from '../../ops/gemm/webgpu/index.js';
import { queueLinear } from '../../ops/gemm/webgpu/index.js';
import type { BoundCall } from './io.js';
import {
  BIAS_ADD_PARAMS, COPY4D_PARAMS, ROPE_PARAMS, SCALE_MASK_PARAMS, SOFTMAX_ROWS_PARAMS,
  buildBiasAdd, buildCopy4d, buildRopeBnsd, buildScaleMask, buildSoftmaxRows, flatGrid, rowGrid,
} from './unfused.wgsl.js';

export interface UnfusedWeights {
  q: GpuLinear;
  k: GpuLinear;
  v: GpuLinear;
  o: GpuLinear;
  qBias?: GPUBuffer;
  kBias?: GPUBuffer;
  vBias?: GPUBuffer;
  oBias?: GPUBuffer;
  owned: GPUBuffer[];
}

const biasAddKernel = defineKernel<Record<string, never>>('bias-add', buildBiasAdd);
const copyKernel = defineKernel<Record<string, never>>('copy4d', buildCopy4d);
const ropeKernel = defineKernel<Record<string, never>>('rope', buildRopeBnsd);
const scaleMaskKernel = defineKernel<Record<string, never>>('scale-mask', buildScaleMask);
const softmaxKernel = defineKernel<Record<string, never>>('softmax', buildSoftmaxRows);

type Binding = GPUBuffer | GPUBufferBinding;
type Strides = [number, number, number, number];

const F32: MatmulOptions = { a: 'float32', b: 'float32', out: 'float32', transposeB: false, splitK: false, ragged: false };

export async function queueUnfused(
  rt: GpuRuntime, spec: BlockSpec, tier: GemmTier, w: UnfusedWeights, call: BlockCall, bound: BoundCall,
  positions: GPUBuffer, rope: { buffer: GPUBuffer; rows: number }, gemmKernel?: SgmatKernelChoice,
): Promise<void> {
  const { heads: Nq, kvHeads: Nkv, headDim: D, group, hidden: H } = spec;
  const { batch: B, seq: S, rows } = call;
  const cached = bound.keys !== undefined && bound.values !== undefined;
  const L = cached ? call.start + S : S;
  const qd = Nq * D;
  const kvd = Nkv * D;
  const [biasAdd, copy, ropePipe, scaleMask, softmax] = await Promise.all(
    [biasAddKernel, copyKernel, ropeKernel, scaleMaskKernel, softmaxKernel].map((k) => rt.pipeline(k, {})),
  );
  const temps: GPUBuffer[] = [];
  const temp = (floats: number, label: string) => {
    const b = rt.acquire(Math.max(4, floats * 4), 'intermediate', label);
    temps.push(b);
    return b;
  };

  const addBias = (x: GPUBuffer, bias: GPUBuffer | undefined, cols: number, label: string) => {
    if (!bias) return;
    const count = rows * cols;
    rt.dispatch({
      label,
      pipeline: biasAdd,
      bindGroups: [rt.bindGroup(biasAdd, 0, { 0: rt.uniform(BIAS_ADD_PARAMS.pack({ count, cols }), 'bias params'), 1: x, 2: bias })],
      workgroups: flatGrid(count),
    });
  };
  const copy4d = (label: string, dims: Strides, src: Binding, srcOff: number, srcStrides: Strides, dst: Binding, dstOff: number, dstStrides: Strides, srcDiv1 = 1) => {
    const count = dims[0] * dims[1] * dims[2] * dims[3];
    const params = COPY4D_PARAMS.pack({ dims, src_strides: srcStrides, dst_strides: dstStrides, src_off: srcOff, dst_off: dstOff, src_div1: srcDiv1, count });
    rt.dispatch({ label, pipeline: copy, bindGroups: [rt.bindGroup(copy, 0, { 0: rt.uniform(params, 'copy params'), 1: src, 2: dst })], workgroups: flatGrid(count) });
  };
  const contiguous = (n: number, s: number): Strides => [n * s * D, s * D, D, 1];
  // (b, h, s, d) of a [rows, heads*D] activation in the call's row order
  const rowMajor = (width: number): Strides => [call.rowStrideB * width, D, call.rowStrideS * width, 1];

  try {
    // 1. projections and bias adds
    const q = temp(rows * qd, 'q');
    const k = temp(rows * kvd, 'k');
    const v = temp(rows * kvd, 'v');
    const x = { x: bound.x.binding, xOffset: bound.x.elementBase, rows };
    await queueLinear(rt, tier, w.q, { ...x, out: q, label: 'q-proj' }, gemmKernel);
    addBias(q, w.qBias, qd, 'q-bias');
    await queueLinear(rt, tier, w.k, { ...x, out: k, label: 'k-proj' }, gemmKernel);
    addBias(k, w.kBias, kvd, 'k-bias');
    await queueLinear(rt, tier, w.v, { ...x, out: v, label: 'v-proj' }, gemmKernel);
    addBias(v, w.vBias, kvd, 'v-bias');

    // 2. [rows, N*D] -> [B, N, S, D]
    const qT = temp(rows * qd, 'q transposed');
    const kT = temp(rows * kvd, 'k transposed');
    const vT = temp(rows * kvd, 'v transposed');
    copy4d('q-transpose', [B, Nq, S, D], q, 0, rowMajor(qd), qT, 0, contiguous(Nq, S));
    copy4d('k-transpose', [B, Nkv, S, D], k, 0, rowMajor(kvd), kT, 0, contiguous(Nkv, S));
    copy4d('v-transpose', [B, Nkv, S, D], v, 0, rowMajor(kvd), vT, 0, contiguous(Nkv, S));

    // 3. RoPE on q and k
    for (const [label, t, n] of [['q-rope', qT, Nq], ['k-rope', kT, Nkv]] as const) {
      const count = B * n * S * (D / 2);
      const params = ROPE_PARAMS.pack({ count, seq: S, half: D / 2, rope_rows: rope.rows });
      rt.dispatch({ label, pipeline: ropePipe, bindGroups: [rt.bindGroup(ropePipe, 0, { 0: rt.uniform(params, 'rope params'), 1: t, 2: rope.buffer, 3: positions })], workgroups: flatGrid(count) });
    }

    // 4. KV cache: append the new positions, then gather every position as [B, Nkv, L, D]
    let keys = kT;
    let values = vT;
    if (cached) {
      const cacheStrides: Strides = [kvd, D, B * kvd, 1];
      const at = call.start * B * kvd;
      copy4d('k-cache-append', [B, Nkv, S, D], kT, 0, contiguous(Nkv, S), bound.keys!.binding, bound.keys!.elementBase + at, cacheStrides);
      copy4d('v-cache-append', [B, Nkv, S, D], vT, 0, contiguous(Nkv, S), bound.values!.binding, bound.values!.elementBase + at, cacheStrides);
      keys = temp(B * Nkv * L * D, 'k all positions');
      values = temp(B * Nkv * L * D, 'v all positions');
      copy4d('k-cache-gather', [B, Nkv, L, D], bound.keys!.binding, bound.keys!.elementBase, cacheStrides, keys, 0, contiguous(Nkv, L));
      copy4d('v-cache-gather', [B, Nkv, L, D], bound.values!.binding, bound.values!.elementBase, cacheStrides, values, 0, contiguous(Nkv, L));
    }

    // 5. repeat-KV: every query head gets its own copy of its KV head
    if (group > 1) {
      const kR = temp(B * Nq * L * D, 'k repeated');
      const vR = temp(B * Nq * L * D, 'v repeated');
      copy4d('k-repeat', [B, Nq, L, D], keys, 0, contiguous(Nkv, L), kR, 0, contiguous(Nq, L), group);
      copy4d('v-repeat', [B, Nq, L, D], values, 0, contiguous(Nkv, L), vR, 0, contiguous(Nq, L), group);
      keys = kR;
      values = vR;
    }

    // 6. scores = q kᵀ [B, Nq, S, L], scale + mask, softmax, P v
    const scores = temp(B * Nq * S * L, 'scores');
    const sStrides: Strides = [Nq * S * L, S * L, L, 1];
    await runMatmul(rt, {
      label: 'qk-matmul', options: { ...F32, transposeB: true },
      a: { binding: qT, offset: 0, strides: contiguous(Nq, S) },
      b: { binding: keys, offset: 0, strides: contiguous(Nq, L) },
      c: { binding: scores, offset: 0, strides: sStrides },
      m: S, n: L, k: D, outer: B, inner: Nq,
    });
    const count = B * Nq * S * L;
    rt.dispatch({
      label: 'scale-mask',
      pipeline: scaleMask,
      bindGroups: [rt.bindGroup(scaleMask, 0, { 0: rt.uniform(SCALE_MASK_PARAMS.pack({ count, seq: S, keys: L, cached: cached ? 1 : 0, scale: spec.scale }), 'mask params'), 1: scores, 2: positions })],
      workgroups: flatGrid(count),
    });
    rt.dispatch({
      label: 'softmax',
      pipeline: softmax,
      bindGroups: [rt.bindGroup(softmax, 0, { 0: rt.uniform(SOFTMAX_ROWS_PARAMS.pack({ rows: B * Nq * S, cols: L }), 'softmax params'), 1: scores })],
      workgroups: rowGrid(B * Nq * S),
    });
    const pv = temp(B * Nq * S * D, 'p v');
    await runMatmul(rt, {
      label: 'pv-matmul', options: F32,
      a: { binding: scores, offset: 0, strides: sStrides },
      b: { binding: values, offset: 0, strides: contiguous(Nq, L) },
      c: { binding: pv, offset: 0, strides: contiguous(Nq, S) },
      m: S, n: D, k: L, outer: B, inner: Nq,
    });

    // 7. back to [rows, Nq*D], O projection
    const attn = temp(rows * qd, 'attention output');
    copy4d('out-transpose', [B, Nq, S, D], pv, 0, contiguous(Nq, S), attn, 0, rowMajor(qd));
    await queueLinear(rt, tier, w.o, { x: attn, rows, out: bound.out, label: 'o-proj' }, gemmKernel);
    if (w.oBias) {
      const n = rows * H;
      rt.dispatch({
        label: 'o-bias',
        pipeline: biasAdd,
        bindGroups: [rt.bindGroup(biasAdd, 0, { 0: rt.uniform(BIAS_ADD_PARAMS.pack({ count: n, cols: H }), 'bias params'), 1: bound.out, 2: w.oBias })],
        workgroups: flatGrid(n),
      });
    }
  } finally {
    for (const t of temps) rt.release(t);
  }
}
