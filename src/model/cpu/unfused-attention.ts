// The unfused attention module on the CPU, the traditional sequence of separate steps: Q, K and V
// projections with their bias adds, RoPE on Q and K, KV-cache append, causal attention over the
// cache, O projection. (The attention step itself never materialises scores: see cache-attention.)
import type { AttentionModule, StepInfo } from '../backend.js';
import type { ModelConfig } from '../config.js';
import type { LayerWeights } from '../weights.js';
import { attendCache } from './cache-attention.js';
import { applyRope } from './kernels.js';
import { type CpuActivations, type CpuKvCache, type CpuWeight, cpuActivations, cpuOps } from './ops.js';

export function cpuUnfusedAttention(config: ModelConfig, layers: readonly LayerWeights<CpuWeight>[]): AttentionModule<CpuActivations, CpuKvCache> {
  const { numHeads: Nq, numKvHeads: Nkv, headDim: D } = config;
  return {
    name: 'unfused (cpu)',
    async forward(x: CpuActivations, layer: number, cache: CpuKvCache, step: StepInfo) {
      const w = layers[layer];
      const q = await cpuOps.linear(x, w.q, w.qBias);
      const k = await cpuOps.linear(x, w.k, w.kBias);
      const v = await cpuOps.linear(x, w.v, w.vBias);
      applyRope(q.data, step.batch, Nq, D, step.rope);
      applyRope(k.data, step.batch, Nkv, D, step.rope);
      cache.write(layer, step.start, k.data, v.data);
      const attn = attendCache(q.data, cache.keys[layer], cache.values[layer], {
        batch: step.batch,
        tokens: step.tokens,
        start: step.start,
        headsQ: Nq,
        headsKv: Nkv,
        headDim: D,
      });
      return cpuOps.linear(cpuActivations(attn, x.rows, Nq * D), w.o, w.oBias);
    },
  };
}
