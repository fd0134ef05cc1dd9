// A paged decode step's attention on the CPU (continuous batching: one new token per sequence, the
// sequences at different positions), for both CPU attention modules: Q, K, V projections, RoPE of
// each row at its sequence's position, then the decode op on the paged cache, which stores the new
// keys and values (attentionDecode's append), and the O projection.
import { Tensor } from '../../core/tensor.js';
import { attentionDecode } from '../../ops/decode/index.js';
import { rotateRows } from '../../block/rope.js';
import type { StepInfo } from '../backend.js';
import type { ModelConfig } from '../config.js';
import type { LayerWeights } from '../weights.js';
import { type CpuActivations, type CpuOps, type CpuWeight, cpuActivations } from './ops.js';

export async function cpuPagedAttention(config: ModelConfig, ops: CpuOps, w: LayerWeights<CpuWeight>, x: CpuActivations, layer: number, step: StepInfo): Promise<CpuActivations> {
  const { numHeads: Nq, numKvHeads: Nkv, headDim: D } = config;
  const paged = step.paged!;
  const B = step.batch;
  const q = await ops.linear(x, w.q, w.qBias);
  const k = await ops.linear(x, w.k, w.kBias);
  const v = await ops.linear(x, w.v, w.vBias);
  // step.rope holds one row per sequence, at its position
  rotateRows(q.data, B, Nq * D, 0, Nq, D, step.rope, (r) => r);
  rotateRows(k.data, B, Nkv * D, 0, Nkv, D, step.rope, (r) => r);
  const { out } = await attentionDecode(Tensor.fromData(q.data, [B, Nq, 1, D]), paged.cache.view(paged.seqs, layer), {
    append: { k: Tensor.fromData(k.data, [B, Nkv, 1, D]), v: Tensor.fromData(v.data, [B, Nkv, 1, D]) }, backend: 'cpu',
  });
  return ops.linear(cpuActivations(out.data as Float32Array, B, Nq * D), w.o, w.oBias);
}
