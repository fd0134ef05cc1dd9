// The unfused WebGPU backward, the baseline the fused one is measured against (as the naive
// forward is): P and dP materialised as [B, Nq, Sq, Sk] float32 buffers, then the matmuls.
//   1. S = scale·QKᵀ with the score epilogue, softmax in place -> P   (the naive forward's kernels)
//   2. dP = dO·Vᵀ                                                     (strided matmul)
//   3. dP ∘= Z, dS = P (dP - rowsum(P ∘ dP)), P ∘= Z                  (dscores, per row)
//   4. dV = (P∘Z)ᵀ·dO, dQ = scale·dS·K, dK = scale·dSᵀ·Q (+ rope parts) (strided matmuls, Aᵀ by strides)
//   5. GQA: per-query-head dK / dV partials summed over each group
// softcap, dBias, score functions and sinks are left to the fused path (this is a baseline): it
// says so and refuses. Mask functions and block masks run in the scores epilogue, as in the forward.
import { floatsToHalf } from '../../../../core/dtype.js';
import { UnsupportedError } from '../../../../core/errors.js';
import { Tensor } from '../../../../core/tensor.js';
import { type Operand, operandOf, releaseOperands } from '../../../../engines/webgpu/operands.js';
import { type GpuRuntime, defineKernel } from '../../../../engines/webgpu/runtime.js';
import { dispatchMatmul, matmulKernel, type MatrixOperand } from '../../../gemm/webgpu/matmul.js';
import type { MatmulOptions } from '../../../gemm/webgpu/matmul.wgsl.js';
import { dropoutParams } from '../../dropout/philox.wgsl.js';
import { gpuMods, modDataBinding } from '../../mods/webgpu.js';
import { type StridedView, scoreUnits } from '../../problem.js';
import { scoreOptionsOf, scoreParamsOf, sequenceTable } from '../../webgpu/attention-io.js';
import { EPILOGUE, naiveUnsupported, scoresKernel, softmaxKernel } from '../../webgpu/naive/naive.js';
import { SOFTMAX_BINDINGS, SOFTMAX_PARAMS } from '../../webgpu/naive/softmax.wgsl.js';
import type { AttentionGrads } from '../options.js';
import type { BackwardProblem } from '../problem.js';
import { DSCORES_BINDINGS, DSCORES_PARAMS, GROUP_SUM_BINDINGS, GROUP_SUM_PARAMS, buildDscores, buildGroupSum } from './naive.wgsl.js';
import { castHalfKernel } from './portable.js';

export const dscoresKernel = defineKernel<{ dropout: boolean }>('attention-backward-dscores', buildDscores);
export const groupSumKernel = defineKernel<{ kind: 'group-sum' }>('attention-backward-group-sum', buildGroupSum);

type NaiveLimits = Parameters<typeof naiveUnsupported>[1];

export function naiveBackwardUnsupported(bp: BackwardProblem, limits: NaiveLimits & Pick<GPUSupportedLimits, 'maxComputeWorkgroupsPerDimension'>): string | undefined {
  const p = bp.forward;
  if (p.softcap > 0) return 'softcap is not implemented in the unfused baseline (the fused backward takes it)';
  if (bp.biasGrad) return 'dBias is not implemented in the unfused baseline (the fused backward returns it)';
  if (p.mods?.scoreMod || p.mods?.sinkMod) return 'score functions and sinks are not implemented in the unfused baseline (mask functions and block masks are; the fused backward takes them all)';
  const forward = naiveUnsupported({ ...p, dropout: undefined }, limits);
  if (forward) return forward;
  if (p.seqK > limits.maxComputeWorkgroupsPerDimension) return `the group sum needs ${p.seqK} workgroups along keys but maxComputeWorkgroupsPerDimension is ${limits.maxComputeWorkgroupsPerDimension}`;
  return undefined;
}

export async function runNaiveBackward(runtime: GpuRuntime, bp: BackwardProblem): Promise<AttentionGrads> {
  const reason = naiveBackwardUnsupported(bp, runtime.limits);
  if (reason) throw new UnsupportedError('options.backend', `WebGPU unfused backward: ${reason}`);
  const p = bp.forward;
  const rope = p.dimRope > 0;
  const group = p.headsQ / p.headsKv;
  const f32 = (a: 'float32' | 'float16', b: 'float32' | 'float16', transposeB: boolean): MatmulOptions => ({ a, b, out: 'float32', transposeB, splitK: false, ragged: true });
  const scoreOptions = { matmul: { a: p.dtype, b: p.dtype, out: 'float32' as const, transposeB: true, splitK: rope, ragged: true }, score: scoreOptionsOf(p) };
  const [scores, softmax, dscores, groupSum, mmQK, mmF32In] = await Promise.all([
    runtime.pipeline(scoresKernel, scoreOptions),
    runtime.pipeline(softmaxKernel, { returnLse: false, dropout: false }),
    runtime.pipeline(dscoresKernel, { dropout: p.dropout !== undefined }),
    runtime.pipeline(groupSumKernel, { kind: 'group-sum' }),
    runtime.pipeline(matmulKernel, f32(p.dtype, p.dtype, true)),
    runtime.pipeline(matmulKernel, f32('float32', p.dtype, false)),
  ]);
  const onGpu = p.q.tensor.gpu !== undefined;
  const cast = onGpu && p.dtype === 'float16' ? await runtime.pipeline(castHalfKernel, { kind: 'f32-to-f16' }) : undefined;
  const dispatchesBefore = runtime.counters.dispatches;
  const meter = runtime.meter();
  const bound: Array<Operand | undefined> = [];
  const pooled: GPUBuffer[] = [];
  const created: GPUBuffer[] = [];
  const bind = (t: Tensor | undefined, name: string) => {
    const o = t ? operandOf(runtime, t, name) : undefined;
    bound.push(o);
    return o;
  };
  const scratch = (bytes: number, label: string) => {
    const b = runtime.acquire(Math.max(16, bytes), 'intermediate', label);
    pooled.push(b);
    return b;
  };
  try {
    const q = bind(p.q.tensor, 'query')!;
    const k = bind(p.k.tensor, 'key')!;
    const v = bind(p.v.tensor, 'value')!;
    const qr = bind(p.qRope?.tensor, 'qRope');
    const kr = bind(p.kRope?.tensor, 'kRope');
    const dOut = bind(bp.dOut, 'dOut')!;
    const mask = bind(p.mask?.tensor, 'mask');
    const bias = bind(p.bias?.tensor, 'bias');
    const meta = runtime.uploadTransient(sequenceTable(p), 'sequences');
    const nb = p.batch;
    const zeros = new Int32Array(nb);
    const table = (rowsA: Int32Array, rowsB: Int32Array, rowsC: Int32Array, lenM: Int32Array, lenB: Int32Array) => {
      const t = new Uint32Array(5 * nb);
      [rowsA, rowsB, rowsC, lenM, lenB].forEach((part, i) => t.set(part, i * nb));
      return runtime.uploadTransient(t, 'ragged table');
    };
    const sBytes = 4 * p.batch * p.headsQ * p.seqQ * p.seqK;
    const probs = scratch(sBytes, 'unfused backward P');
    const grads = scratch(sBytes, 'unfused backward dP / dS');
    const sStrides = [p.headsQ * p.seqQ * p.seqK, p.seqQ * p.seqK, p.seqK, 1] as const;
    const sT = [sStrides[0], sStrides[1], 1, p.seqK] as const; // the same buffer read as its transpose
    const op = (sv: StridedView, o: Operand): MatrixOperand => ({ binding: o.binding, offset: sv.offset + o.elementBase, strides: [sv.strides.b, sv.strides.h, sv.strides.s, sv.strides.d] });
    const dOutOp: MatrixOperand = { binding: dOut.binding, offset: dOut.elementBase, strides: [p.outStrides.b, p.outStrides.h, p.outStrides.s, p.outStrides.d] };
    const result = (sv: StridedView, label: string) => {
      const bytes = Math.max(16, 4 * sv.tensor.size);
      const b = onGpu && p.dtype === 'float32' ? runtime.createBuffer(bytes, label) : scratch(bytes, label);
      if (onGpu && p.dtype === 'float32') created.push(b);
      runtime.clear(b);
      return b;
    };
    const out = { dq: result(p.q, 'dq'), dk: result(p.k, 'dk'), dv: result(p.v, 'dv'), dqRope: p.qRope ? result(p.qRope, 'dqRope') : undefined, dkRope: p.kRope ? result(p.kRope, 'dkRope') : undefined };
    const viewOf = (sv: StridedView, buffer: GPUBuffer): MatrixOperand => ({ binding: buffer, offset: 0, strides: [sv.strides.b, sv.strides.h, sv.strides.s, sv.strides.d] });
    // GQA: partials per query head [B, Nq, Sk, D], summed per group afterwards
    const partial = (dim: number, label: string): MatrixOperand => ({
      binding: scratch(4 * p.batch * p.headsQ * p.seqK * dim, label), offset: 0, strides: [p.headsQ * p.seqK * dim, p.seqK * dim, dim, 1],
    });
    if (p.seqQ > 0 && p.seqK > 0) {
      // 1. P
      const epilogue: Record<number, GPUBuffer | GPUBufferBinding> = { [EPILOGUE.scoreParams]: runtime.uniform(scoreParamsOf(p, mask, bias), 'score params'), [EPILOGUE.meta]: meta };
      if (mask) epilogue[EPILOGUE.mask] = mask.binding;
      if (bias) epilogue[EPILOGUE.bias] = bias.binding;
      // mask functions: whole rows, no block structure, only the captured tensors
      const modData = modDataBinding(runtime, p, gpuMods(p, undefined), undefined, undefined);
      if (modData) epilogue[EPILOGUE.modData] = modData;
      const qkTable = table(p.seqStartsQ, p.seqStartsK, zeros, p.seqLensQ, p.seqLensK);
      dispatchMatmul(runtime, scores, {
        label: 'unfused-backward-scores', options: scoreOptions.matmul,
        a: op(p.q, q), b: op(p.k, k), c: { binding: probs, offset: 0, strides: sStrides },
        a2: rope ? op(p.qRope!, qr!) : undefined, b2: rope ? op(p.kRope!, kr!) : undefined,
        m: p.seqQ, n: p.seqK, k: p.dimQK, k2: p.dimRope, outer: nb, inner: p.headsQ, bGroup: group, ragged: qkTable,
      }, epilogue);
      runtime.dispatch({
        label: 'unfused-backward-softmax', pipeline: softmax, workgroups: [p.seqQ, p.headsQ, nb],
        bindGroups: [runtime.bindGroup(softmax, 0, {
          [SOFTMAX_BINDINGS.params]: runtime.uniform(SOFTMAX_PARAMS.pack({ s_strides: [sStrides[0], sStrides[1], sStrides[2], 0], lse_strides: [0, 0, 0, 0], batch: nb, beta: scoreUnits(p.scale).beta }), 'softmax params'),
          [SOFTMAX_BINDINGS.meta]: meta, [SOFTMAX_BINDINGS.scores]: probs,
        })],
      });
      // 2. dP = dO·Vᵀ
      dispatchMatmul(runtime, mmQK, {
        label: 'unfused-backward-dp', options: f32(p.dtype, p.dtype, true),
        a: dOutOp, b: op(p.v, v), c: { binding: grads, offset: 0, strides: sStrides },
        m: p.seqQ, n: p.seqK, k: p.dimV, outer: nb, inner: p.headsQ, bGroup: group, ragged: qkTable,
      });
      // 3. dS (and P∘Z)
      const dsEntries: Record<number, GPUBuffer> = {
        [DSCORES_BINDINGS.params]: runtime.uniform(DSCORES_PARAMS.pack({ s_strides: [sStrides[0], sStrides[1], sStrides[2], 0], batch: nb }), 'dscores params'),
        [DSCORES_BINDINGS.meta]: meta, [DSCORES_BINDINGS.probs]: probs, [DSCORES_BINDINGS.grads]: grads,
      };
      if (p.dropout) dsEntries[DSCORES_BINDINGS.dropout] = runtime.uniform(dropoutParams(p.dropout, p.headsQ), 'dropout params');
      runtime.dispatch({ label: 'unfused-backward-dscores', pipeline: dscores, workgroups: [p.seqQ, p.headsQ, nb], bindGroups: [runtime.bindGroup(dscores, 0, dsEntries)] });
      // 4. the matmuls into the gradients (A transposed through its strides)
      const keysTable = (startsC: Int32Array) => table(zeros, p.seqStartsQ, startsC, p.seqLensK, p.seqLensQ);
      const toKeys = (label: string, a: MatrixOperand, bOp: MatrixOperand, target: MatrixOperand, dim: number, alpha: number, startsC: Int32Array) => dispatchMatmul(runtime, mmF32In, {
        label, options: f32('float32', p.dtype, false), a, b: bOp, c: target, m: p.seqK, n: dim, k: p.seqQ, outer: nb, inner: p.headsQ, alpha, ragged: keysTable(startsC),
      });
      const keyGradient = (name: 'dk' | 'dv' | 'dkRope', sv: StridedView, a: MatrixOperand, bOp: MatrixOperand, dim: number, alpha: number) => {
        const buffer = out[name]!;
        if (group === 1) {
          toKeys(`unfused-backward-${name}`, a, bOp, viewOf(sv, buffer), dim, alpha, p.seqStartsK);
          return;
        }
        const part = partial(dim, `unfused backward ${name} partials`);
        toKeys(`unfused-backward-${name}`, a, bOp, part, dim, alpha, zeros);
        runtime.dispatch({
          label: 'unfused-backward-group-sum', pipeline: groupSum, workgroups: [Math.ceil(dim / 64), p.seqK, nb * p.headsKv],
          bindGroups: [runtime.bindGroup(groupSum, 0, {
            [GROUP_SUM_BINDINGS.params]: runtime.uniform(GROUP_SUM_PARAMS.pack({
              src_strides: part.strides, dst_strides: [sv.strides.b, sv.strides.h, sv.strides.s, sv.strides.d], batch: nb, heads_kv: p.headsKv, group, dim, rows: p.seqK,
            }), 'group sum params'),
            [GROUP_SUM_BINDINGS.meta]: meta, [GROUP_SUM_BINDINGS.src]: part.binding as GPUBuffer, [GROUP_SUM_BINDINGS.dst]: buffer,
          })],
        });
      };
      const probsT: MatrixOperand = { binding: probs, offset: 0, strides: sT };
      const gradsT: MatrixOperand = { binding: grads, offset: 0, strides: sT };
      keyGradient('dv', p.v, probsT, dOutOp, p.dimV, 1);
      keyGradient('dk', p.k, gradsT, op(p.q, q), p.dimQK, p.scale);
      if (rope) keyGradient('dkRope', p.kRope!, gradsT, op(p.qRope!, qr!), p.dimRope, p.scale);
      const queriesTable = table(zeros, p.seqStartsK, p.seqStartsQ, p.seqLensQ, p.seqLensK);
      const toQueries = (label: string, bOp: MatrixOperand, target: MatrixOperand, dim: number) => dispatchMatmul(runtime, mmF32In, {
        label, options: f32('float32', p.dtype, false), a: { binding: grads, offset: 0, strides: sStrides }, b: bOp, c: target,
        m: p.seqQ, n: dim, k: p.seqK, outer: nb, inner: p.headsQ, bGroup: group, alpha: p.scale, ragged: queriesTable,
      });
      toQueries('unfused-backward-dq', op(p.k, k), viewOf(p.q, out.dq), p.dimQK);
      if (rope) toQueries('unfused-backward-dqRope', op(p.kRope!, kr!), viewOf(p.qRope!, out.dqRope!), p.dimRope);
    }
    const grads_: Partial<AttentionGrads> = {};
    const views: Record<string, StridedView | undefined> = { dq: p.q, dk: p.k, dv: p.v, dqRope: p.qRope, dkRope: p.kRope };
    for (const [name, buffer] of Object.entries(out)) {
      if (!buffer) continue;
      const t = views[name]!.tensor;
      let tensor: Tensor;
      if (onGpu) {
        let target = buffer;
        if (p.dtype === 'float16') {
          target = runtime.createBuffer(Math.max(4, 4 * Math.ceil(t.size / 2)), `${name} float16`);
          created.push(target);
          const groups = Math.ceil(Math.ceil(t.size / 2) / 256);
          const x = Math.min(groups, runtime.limits.maxComputeWorkgroupsPerDimension);
          runtime.dispatch({
            label: 'cast-f32-f16', pipeline: cast!, workgroups: [x, Math.ceil(groups / x), 1],
            bindGroups: [runtime.bindGroup(cast!, 0, { 0: runtime.uniform(Uint32Array.of(t.size, 0, 0, 0), 'cast params'), 1: buffer, 2: target })],
          });
        }
        tensor = Tensor.fromGpuBuffer({ device: runtime.device, buffer: target, byteOffset: 0 }, t.shape, p.dtype, p.layout);
      } else {
        const values = new Float32Array(await runtime.read(buffer, 0, 4 * t.size));
        tensor = p.dtype === 'float16' ? Tensor.fromData(floatsToHalf(values), t.shape, 'float16', p.layout) : Tensor.fromData(values, t.shape, 'float32', p.layout);
      }
      (grads_ as Record<string, Tensor>)[name] = tensor;
    }
    if (onGpu) await runtime.flush();
    created.length = 0;
    return { ...(grads_ as AttentionGrads), stats: { launches: runtime.counters.dispatches - dispatchesBefore, intermediateBytes: meter.peakIntermediateBytes } };
  } catch (e) {
    for (const b of created) b.destroy();
    throw e;
  } finally {
    releaseOperands(runtime, bound);
    for (const b of pooled) runtime.release(b);
    meter.stop();
  }
}
