// Performer's features on WebGPU (FAVOR+, positive random features; seed 004):
//   φ(Q) = exp(X·Wᵀ − row max)                 per query head
//   φ(K) = exp(X·Wᵀ − |k|²/2 − G)              G: one stabiliser per key head (the max over its keys)
// X·Wᵀ on the portable f32 matmul, scaled by sqrt(scale); five dispatches. φ(K) is the same for
// every query head of a key head: written per query head for the portable products (keyPlanes
// 'query', each product plane is one query head) or once per key head for the fused kernels
// (keyPlanes 'key', fused-features.ts).
import type { GpuRuntime, Pipeline } from '../../../engines/webgpu/runtime.js';
import { defineKernel } from '../../../engines/webgpu/runtime.js';
import type { AttentionOperands } from '../../attention/webgpu/attention-io.js';
import type { MatmulOptions } from '../../gemm/webgpu/matmul.wgsl.js';
import { dispatchMatmul, matmulKernel } from '../../gemm/webgpu/matmul.js';
import type { ApproxProblem } from '../problem.js';
import { buildPerformerKeys, buildPerformerRows, buildPlaneMax, packApproxParams as pack } from './kernels.wgsl.js';

const rowsKernel = defineKernel<{ dtype: 'float32' | 'float16'; keys: boolean }>('approx-performer-rows', buildPerformerRows);
const planeMaxKernel = defineKernel<Record<string, never>>('approx-plane-max', buildPlaneMax);
const keysKernel = defineKernel<Record<string, never>>('approx-performer-keys', buildPerformerKeys);

const F32: MatmulOptions = { a: 'float32', b: 'float32', out: 'float32', transposeB: false, splitK: false, ragged: false };

export interface PerformerPipelines { matmulIn: Pipeline; qRows: Pipeline; kRows: Pipeline; planeMax: Pipeline; keys: Pipeline }

export async function performerPipelines(runtime: GpuRuntime, dtype: 'float32' | 'float16'): Promise<PerformerPipelines> {
  return {
    matmulIn: await runtime.pipeline(matmulKernel, { ...F32, a: dtype, transposeB: true }),
    qRows: await runtime.pipeline(rowsKernel, { dtype, keys: false }),
    kRows: await runtime.pipeline(rowsKernel, { dtype, keys: true }),
    planeMax: await runtime.pipeline(planeMaxKernel, {}),
    keys: await runtime.pipeline(keysKernel, {}),
  };
}

export interface PerformerTargets {
  /** φ(Q) [B·Hq][Sq][M] and φ(K) [planes][Sk][M], float32. */
  phiQ: GPUBuffer;
  phiK: GPUBuffer;
  /** φ(K)'s planes: one per query head or one per key head. */
  keyPlanes: 'query' | 'key';
  buffer: (floats: number, label: string) => GPUBuffer;
  dispatch: (label: string, pipeline: Pipeline, entries: Record<number, GPUBuffer | GPUBufferBinding>, workgroups: [number, number, number]) => void;
}

/** Queues the dispatches that write φ(Q) and φ(K) of `p` (a Performer problem) into `t`. */
export function performerFeatures(runtime: GpuRuntime, p: ApproxProblem, io: AttentionOperands, pipe: PerformerPipelines, t: PerformerTargets): void {
  const b = p.base;
  const F = p.features;
  const D = b.dimQK;
  const { buffer, dispatch } = t;
  const projection = runtime.uploadTransient(p.projection!, 'performer projection');
  const planesK = b.batch * b.headsKv;
  const rowGrid = (rows: number): [number, number, number] => [Math.min(rows, 65535), Math.ceil(rows / 65535), 1];
  // queries straight into φ(Q), then exp(· − row max) in place
  dispatchMatmul(runtime, pipe.matmulIn, {
    label: 'performer-q-projection', options: { ...F32, a: b.dtype, transposeB: true }, m: b.seqQ, n: F, k: D, outer: b.batch, inner: b.headsQ, alpha: p.scaleSqrt,
    a: { binding: io.q.binding, offset: b.q.offset + io.q.elementBase, strides: [b.q.strides.b, b.q.strides.h, b.q.strides.s, b.q.strides.d] },
    b: { binding: projection, offset: 0, strides: [0, 0, D, 1] },
    c: { binding: t.phiQ, offset: 0, strides: [b.headsQ * b.seqQ * F, b.seqQ * F, F, 1] },
  });
  const qRows = b.batch * b.headsQ * b.seqQ;
  dispatch('performer-q-rows', pipe.qRows, { 0: runtime.uniform(pack({ cols: F, rows: qRows }), 'rows params'), 2: t.phiQ }, rowGrid(qRows));
  if (b.seqK === 0) return;
  // keys: X·Wᵀ per key head, row log weights, one stabiliser per key head, then φ(K) per plane
  const xw = buffer(planesK * b.seqK * F, 'performer k projection');
  dispatchMatmul(runtime, pipe.matmulIn, {
    label: 'performer-k-projection', options: { ...F32, a: b.dtype, transposeB: true }, m: b.seqK, n: F, k: D, outer: b.batch, inner: b.headsKv, alpha: p.scaleSqrt,
    a: { binding: io.k.binding, offset: b.k.offset + io.k.elementBase, strides: [b.k.strides.b, b.k.strides.h, b.k.strides.s, b.k.strides.d] },
    b: { binding: projection, offset: 0, strides: [0, 0, D, 1] },
    c: { binding: xw, offset: 0, strides: [b.headsKv * b.seqK * F, b.seqK * F, F, 1] },
  });
  const stats = buffer(2 * planesK * b.seqK, 'performer key stats');
  const kRows = planesK * b.seqK;
  dispatch('performer-k-rows', pipe.kRows, {
    0: runtime.uniform(pack({ x_strides: [b.k.strides.b, b.k.strides.h, b.k.strides.s, b.k.strides.d], x_off: b.k.offset + io.k.elementBase, heads: b.headsKv, seq: b.seqK, cols: F, rows: kRows, dim: D, half_scale: (p.scaleSqrt * p.scaleSqrt) / 2 }), 'rows params'),
    1: io.k.binding, 2: xw, 3: stats,
  }, rowGrid(kRows));
  const planeMax = buffer(planesK, 'performer key stabilisers');
  dispatch('performer-plane-max', pipe.planeMax, { 0: runtime.uniform(pack({ seq: b.seqK }), 'plane max params'), 3: stats, 4: planeMax }, [planesK, 1, 1]);
  // plane bh of φ(K) reads key plane (bh / heads)·chunks + (bh % heads) / group
  const perQuery = t.keyPlanes === 'query';
  const [heads, group, planes] = perQuery ? [b.headsQ, b.headsQ / b.headsKv, b.batch * b.headsQ] : [b.headsKv, 1, planesK];
  dispatch('performer-keys', pipe.keys, {
    0: runtime.uniform(pack({ heads, group, chunks: b.headsKv, seq: b.seqK, cols: F }), 'keys params'),
    2: xw, 3: stats, 4: planeMax, 5: t.phiK,
  }, [Math.max(1, Math.ceil((b.seqK * F) / 256)), planes, 1]);
}
