// The CPU block's weights as float32 and the O projection both of its paths end with (fused and
// unfused share it, so their comparison measures only what differs).
import { cpuMatmul } from '../../ops/gemm/cpu/index.js';
import type { OpsCpuEngine } from '../../ops/cpu-engine.js';
import type { BlockDims } from '../config.js';
import type { CpuTally } from './tally.js';

export interface CpuWeights {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  o: Float32Array;
  qBias?: Float32Array;
  kBias?: Float32Array;
  vBias?: Float32Array;
  oBias?: Float32Array;
}

/** out = attn Woᵀ + bo: the bias prefilled (one pass), the GEMM accumulating onto it. */
export async function oProjection(engine: OpsCpuEngine, dims: BlockDims, weights: CpuWeights, attn: Float32Array, rows: number, tally: CpuTally, label = 'o-gemm'): Promise<Float32Array> {
  const { hidden: H } = dims;
  const qd = dims.heads * dims.headDim;
  const out = new Float32Array(rows * H);
  const bias = weights.oBias;
  if (bias) {
    for (let r = 0; r < rows; r++) out.set(bias, r * H);
    tally.step('o-bias');
  }
  await cpuMatmul(engine, { m: rows, n: H, k: qd, a: { data: attn, rowStride: qd }, b: { data: weights.o, rowStride: qd }, transposeB: true, out: { data: out, rowStride: H }, accumulate: bias !== undefined });
  tally.step(label);
  return out;
}
