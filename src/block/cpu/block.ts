// The attention block on the CPU backend (worker pool + WASM SIMD kernels).
//
// fused:    qkv-gemm          one pool job: x [rows, H] · [Wq; Wk; Wv]ᵀ -> qkv [rows, W]
//           bias-rope-cache   one pass over the packed rows: + [bq; bk; bv], RoPE on the Q and K
//                             columns in place, the new K/V rows copied into the cache
//           flash-attention   one pool job reading Q, K, V through strided views of qkv / the cache
//           o-gemm            one pool job (+ bo prefilled into the output)
// The CPU flash kernel has no RoPE stage, so RoPE is the one extra pass (no copies, no transposes).
// unfused:  the HF eager sequence, each step a pool job or a whole-tensor pass (see unfusedCpu).
import { type OpsCpuEngine as CpuEngine, cpuEngine } from '../../ops/cpu-engine.js';
import { runFlash } from '../../ops/attention/cpu/index.js';
import { cpuMatmul } from '../../ops/gemm/cpu/index.js';
import { Tensor } from '../../core/tensor.js';
import type { BlockDims, BlockSpec } from '../config.js';
import { asFloat32, packBias, packQkv } from '../pack.js';
import { type RopeTable, ropeTable, rotateRows } from '../rope.js';
import type { BlockCall, BlockGeometry, BlockLayout } from '../shape.js';
import type { BlockResult } from '../stats.js';
import { causalProblem } from './problem.js';
import { CpuTally } from './tally.js';
import { unfusedCpu } from './unfused.js';
import { type CpuWeights, oProjection } from './weights.js';

export class CpuBlock {
  private readonly qkv: Float32Array;
  private readonly qkvBias: Float32Array | undefined;
  readonly weights: CpuWeights;

  constructor(readonly spec: BlockSpec) {
    const w = spec.weights;
    this.qkv = asFloat32(packQkv(spec).weight);
    this.qkvBias = packBias(spec);
    const opt = (x: typeof w.qBias) => (x ? asFloat32(x) : undefined);
    this.weights = {
      q: asFloat32(w.q), k: asFloat32(w.k), v: asFloat32(w.v), o: asFloat32(w.o),
      qBias: opt(w.qBias), kBias: opt(w.kBias), vBias: opt(w.vBias), oBias: opt(w.oBias),
    };
  }

  async fused(call: BlockCall): Promise<BlockResult> {
    const engine = await cpuEngine();
    const spec = this.spec;
    const { heads: Nq, kvHeads: Nkv, headDim: D, hidden: H } = spec;
    const { rows, seq: S } = call;
    const qd = Nq * D;
    const W = qd + 2 * Nkv * D;
    const tally = new CpuTally();
    const x = call.x.toFloat32();

    const qkv = tally.alloc(rows * W);
    await cpuMatmul(engine, { m: rows, n: W, k: H, a: { data: x, rowStride: H }, b: { data: this.qkv, rowStride: H }, transposeB: true, out: { data: qkv, rowStride: W } });
    tally.step('qkv-gemm');

    const keys = call.cacheKeys?.data as Float32Array | undefined;
    const values = call.cacheValues?.data as Float32Array | undefined;
    ropeAndCache(spec, call, qkv, ropeTable(spec.rope, D, call.start, S), this.qkvBias, keys, values);
    tally.step('bias-rope-cache');

    const attention = await packedAttention(engine, spec, call, qkv, keys, values);
    tally.step('flash-attention');
    tally.intermediateBytes += rows * qd * 4 + (attention.stats?.intermediateBytes ?? 0);
    const attn = attention.out.data as Float32Array;

    const out = await oProjection(engine, spec, this.weights, attn, rows, tally);
    return { out: Tensor.fromData(out, call.x.shape, 'float32'), stats: tally.stats('fused') };
  }

  unfused(call: BlockCall): Promise<BlockResult> {
    return unfusedCpu(this.spec, this.weights, call);
  }
}

/**
 * The fused path's one pass over the packed rows: + [bq; bk; bv] (when given), RoPE on the Q and K
 * columns in place with `table` (row t for token t), and the new K/V rows copied into the cache.
 */
export function ropeAndCache(
  dims: BlockDims, call: BlockGeometry, qkv: Float32Array, table: RopeTable, bias?: Float32Array, keys?: Float32Array, values?: Float32Array,
): void {
  const { heads: Nq, kvHeads: Nkv, headDim: D } = dims;
  const qd = Nq * D;
  const kvd = Nkv * D;
  const W = qd + 2 * kvd;
  for (let b = 0; b < call.batch; b++) {
    for (let s = 0; s < call.seq; s++) {
      const row = (b * call.rowStrideB + s * call.rowStrideS) * W;
      if (bias) for (let c = 0; c < W; c++) qkv[row + c] += bias[c];
      rotateRows(qkv, 1, 0, row, Nq + Nkv, D, table, () => s);
      if (keys && values) {
        const at = ((call.start + s) * call.batch + b) * kvd;
        keys.set(qkv.subarray(row + qd, row + qd + kvd), at);
        values.set(qkv.subarray(row + qd + kvd, row + W), at);
      }
    }
  }
}

/** Attention of the packed rows' queries over the packed keys, or over the cache prefix. */
export async function packedAttention(engine: CpuEngine, dims: BlockDims, call: BlockGeometry & { layout: BlockLayout }, qkv: Float32Array, keys?: Float32Array, values?: Float32Array) {
  const { heads: Nq, kvHeads: Nkv, headDim: D } = dims;
  const qd = Nq * D;
  const kvd = Nkv * D;
  const W = qd + 2 * kvd;
  const rowView = (offset: number) => ({ data: qkv, offset, strides: { b: call.rowStrideB * W, h: D, s: call.rowStrideS * W, d: 1 } });
  const cacheView = (data: Float32Array) => ({ data, offset: 0, strides: { b: kvd, h: D, s: call.batch * kvd, d: 1 } });
  const seqK = keys ? call.start + call.seq : call.seq;
  const problem = causalProblem({
    layout: call.layout, batch: call.batch, headsQ: Nq, headsKv: Nkv, seqQ: call.seq, seqK, headDim: D, scale: dims.scale,
    q: rowView(0),
    // only the filled prefix of the cache: the kernel stages what it is given
    k: keys ? cacheView(keys.subarray(0, seqK * call.batch * kvd)) : rowView(qd),
    v: values ? cacheView(values.subarray(0, seqK * call.batch * kvd)) : rowView(qd + kvd),
  });
  return runFlash(engine, problem);
}
