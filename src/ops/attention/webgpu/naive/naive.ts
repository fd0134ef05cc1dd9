// The unfused attention path as 3 kernels, the baseline the fused kernel is measured against:
//   1. S = scale·QKᵀ (+ qRope·kRopeᵀ) with mask/window/softcap/bias/ALiBi: the matmul builder with
//      the shared score function as its epilogue, into a [B, Nq, Sq, Sk] f32 buffer;
//   2. softmax of each row in place (+ LSE);
//   3. out = P·V: the matmul builder again, writing the output layout directly.
import type { AttentionProblem } from '../../problem.js';
import { scoreUnits } from '../../problem.js';
import type { AttentionResult } from '../../backend.js';
import { bindingSizes, measuredAttention, scoreOptionsOf, scoreParamsOf } from '../attention-io.js';
import { dispatchMatmul, matmulUnsupported, type MatrixOperand } from '../../../gemm/webgpu/matmul.js';
import { buildMatmul, type MatmulOptions } from '../../../gemm/webgpu/matmul.wgsl.js';
import { type GpuRuntime, defineKernel } from '../../../../engines/webgpu/runtime.js';
import { type ScoreOptions, buildScoreFunction } from '../score.wgsl.js';
import { gpuMods, modDataBinding } from '../../mods/webgpu.js';
import { SOFTMAX_BINDINGS, SOFTMAX_PARAMS, type SoftmaxOptions, buildSoftmax } from './softmax.wgsl.js';

export interface ScoresOptions {
  matmul: MatmulOptions;
  score: ScoreOptions;
}

/** Bindings of the scores epilogue, in @group(1). */
const EPILOGUE = { scoreParams: 0, mask: 1, bias: 2, meta: 3, modData: 4 } as const;

/** Step 1: the matmul with the attention score function as its epilogue. */
export function buildScores(o: ScoresOptions): string {
  const epilogue = `${buildScoreFunction(o.score, { group: 1, params: EPILOGUE.scoreParams, mask: EPILOGUE.mask, bias: EPILOGUE.bias, modData: EPILOGUE.modData })}
// per sequence: starts q | starts k | lengths q | lengths k | ALiBi slopes (f32 bits)
@group(1) @binding(${EPILOGUE.meta}) var<storage, read> seq_meta: array<u32>;

// zo = sequence b, zi = query head h, m = query i, n = key j
fn epilogue(value: f32, zo: u32, zi: u32, m: u32, n: u32) -> f32 {
  let nb = sp.batch;
  let slope = ${o.score.alibi ? 'bitcast<f32>(seq_meta[4u * nb + zo * sp.alibi_stride_b + zi])' : '0.0'};
  return final_score(value, zo, zi, m, n, seq_meta[2u * nb + zo], seq_meta[3u * nb + zo], slope);
}`;
  return buildMatmul(o.matmul, { wgsl: epilogue });
}

export const scoresKernel = defineKernel<ScoresOptions>('naive-scores', buildScores);
export const softmaxKernel = defineKernel<SoftmaxOptions>('naive-softmax', buildSoftmax);
export const pvKernel = defineKernel<MatmulOptions>('naive-pv', (o) => buildMatmul(o));

export function scoreBytes(p: AttentionProblem): number {
  return p.batch * p.headsQ * p.seqQ * p.seqK * 4;
}

type NaiveLimits = Pick<GPUSupportedLimits, 'maxStorageBufferBindingSize' | 'maxBufferSize' | 'maxComputeWorkgroupsPerDimension' |
  'maxStorageBuffersPerShaderStage' | 'minStorageBufferOffsetAlignment'>;

export function naiveUnsupported(p: AttentionProblem, limits: NaiveLimits): string | undefined {
  const s = scoreBytes(p);
  if (s > limits.maxStorageBufferBindingSize) {
    return `the Sq×Sk score buffer needs ${s} bytes but maxStorageBufferBindingSize is ${limits.maxStorageBufferBindingSize}`;
  }
  if (p.mods?.kernel.sink) return 'attention sinks are not implemented on the naive WebGPU path (the flash tiers have them)';
  const buffers = 5 + (p.qRope ? 2 : 0) + (p.mask ? 1 : 0) + (p.bias ? 1 : 0) + (p.mods ? 1 : 0);
  if (buffers > limits.maxStorageBuffersPerShaderStage) {
    return `the scores kernel binds ${buffers} storage buffers but maxStorageBuffersPerShaderStage is ${limits.maxStorageBuffersPerShaderStage}`;
  }
  for (const [name, bytes] of bindingSizes(p, limits.minStorageBufferOffsetAlignment)) {
    if (bytes > limits.maxStorageBufferBindingSize) return `${name} needs a storage binding of ${bytes} bytes but maxStorageBufferBindingSize is ${limits.maxStorageBufferBindingSize}`;
  }
  if (p.seqQ > limits.maxComputeWorkgroupsPerDimension) return `softmax needs ${p.seqQ} workgroups along queries but maxComputeWorkgroupsPerDimension is ${limits.maxComputeWorkgroupsPerDimension}`;
  return matmulUnsupported({ m: p.seqQ, n: Math.max(p.seqK, p.dimV), outer: p.batch, inner: p.headsQ }, limits);
}

export async function runNaive(runtime: GpuRuntime, p: AttentionProblem): Promise<AttentionResult> {
  const score = scoreOptionsOf(p);
  const rope = p.dimRope > 0;
  const scoresPipeline = runtime.pipeline(scoresKernel, {
    matmul: { a: p.dtype, b: p.dtype, out: 'float32', transposeB: true, splitK: rope, ragged: true },
    score,
  });
  const softmaxPipeline = runtime.pipeline(softmaxKernel, { returnLse: p.returnLse });
  // skipZeroA: a key of weight 0 adds nothing, even a NaN/inf value (README "Failure behaviour")
  const pvOptions: MatmulOptions = { a: 'float32', b: p.dtype, out: p.dtype, transposeB: false, splitK: false, ragged: true, skipZeroA: true };
  const pvPipeline = runtime.pipeline(pvKernel, pvOptions);
  const pipelines = await Promise.all([scoresPipeline, softmaxPipeline, pvPipeline]);

  return measuredAttention(runtime, p, (io) => {
    const scores = runtime.acquire(Math.max(4, scoreBytes(p)), 'intermediate', 'naive scores S');
    try {
      if (p.seqQ > 0) {
        const nb = p.batch;
        const zeros = new Int32Array(nb);
        const table = (rowsA: Int32Array, rowsB: Int32Array, rowsC: Int32Array, lenM: Int32Array, lenB: Int32Array) => {
          const t = new Uint32Array(5 * nb);
          [rowsA, rowsB, rowsC, lenM, lenB].forEach((part, i) => t.set(part, i * nb));
          return runtime.uploadTransient(t, 'ragged table');
        };
        const sStrides = [p.headsQ * p.seqQ * p.seqK, p.seqQ * p.seqK, p.seqK, 1] as const;
        const view = (v: AttentionProblem['q'], base: number, binding: GPUBufferBinding): MatrixOperand => ({
          binding,
          offset: v.offset + base,
          strides: [v.strides.b, v.strides.h, v.strides.s, v.strides.d],
        });
        const group = p.headsQ / p.headsKv;

        // 1. S = QKᵀ -> scores
        const epilogueEntries: Record<number, GPUBuffer | GPUBufferBinding> = {
          [EPILOGUE.scoreParams]: runtime.uniform(scoreParamsOf(p, io.mask, io.bias), 'score params'),
          [EPILOGUE.meta]: io.meta,
        };
        if (io.mask) epilogueEntries[EPILOGUE.mask] = io.mask.binding;
        if (io.bias) epilogueEntries[EPILOGUE.bias] = io.bias.binding;
        // whole rows: no block structure here, only the captured tensors of the functions
        const mods = gpuMods(p, undefined);
        const modData = modDataBinding(runtime, p, mods, undefined, undefined);
        if (modData) epilogueEntries[EPILOGUE.modData] = modData;
        dispatchMatmul(runtime, pipelines[0], {
          label: 'naive-scores',
          options: { a: p.dtype, b: p.dtype, out: 'float32', transposeB: true, splitK: rope, ragged: true },
          a: view(p.q, io.q.elementBase, io.q.binding),
          b: view(p.k, io.k.elementBase, io.k.binding),
          c: { binding: scores, offset: 0, strides: sStrides },
          a2: rope ? view(p.qRope!, io.qRope!.elementBase, io.qRope!.binding) : undefined,
          b2: rope ? view(p.kRope!, io.kRope!.elementBase, io.kRope!.binding) : undefined,
          m: p.seqQ, n: p.seqK, k: p.dimQK, k2: p.dimRope,
          outer: nb, inner: p.headsQ, bGroup: group,
          ragged: table(p.seqStartsQ, p.seqStartsK, zeros, p.seqLensQ, p.seqLensK),
        }, epilogueEntries);

        // 2. softmax rows in place (+ LSE)
        const softmaxEntries: Record<number, GPUBuffer> = {
          [SOFTMAX_BINDINGS.params]: runtime.uniform(SOFTMAX_PARAMS.pack({
            s_strides: [sStrides[0], sStrides[1], sStrides[2], 0],
            lse_strides: [p.lseStrides.b, p.lseStrides.h, p.lseStrides.s, 0],
            batch: nb,
            beta: scoreUnits(p.scale).beta,
          }), 'softmax params'),
          [SOFTMAX_BINDINGS.meta]: io.meta,
          [SOFTMAX_BINDINGS.scores]: scores,
        };
        if (io.lse) softmaxEntries[SOFTMAX_BINDINGS.lse] = io.lse;
        runtime.dispatch({
          label: 'naive-softmax',
          pipeline: pipelines[1],
          bindGroups: [runtime.bindGroup(pipelines[1], 0, softmaxEntries)],
          workgroups: [p.seqQ, p.headsQ, nb],
        });

        // 3. out = P·V
        dispatchMatmul(runtime, pipelines[2], {
          label: 'naive-pv',
          options: pvOptions,
          a: { binding: scores, offset: 0, strides: sStrides },
          b: view(p.v, io.v.elementBase, io.v.binding),
          c: { binding: io.out, offset: 0, strides: [p.outStrides.b, p.outStrides.h, p.outStrides.s, p.outStrides.d] },
          m: p.seqQ, n: p.dimV, k: p.seqK,
          outer: nb, inner: p.headsQ, bGroup: group,
          ragged: table(zeros, p.seqStartsK, p.seqStartsQ, p.seqLensQ, p.seqLensK),
        });
      }
    } finally {
      // the kernels reading it are queued; the pool hands it out again only to later work
      runtime.release(scores);
    }
  });
}
