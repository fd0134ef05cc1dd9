// The fused AttentionBlock behind the transformer runner's seam (src/model/backend.ts,
// AttentionModule): forward(x, layer, cache, step) with x = RMSNorm(hidden) of the new tokens,
// [T*B, H] with row t*B + b (the block's 'SBH' row order), the KV cache [capacity, B, Nkv*D] per
// layer, and step.rope the cos/sin of positions start .. start+T-1 (so every RoPE scaling the
// runner knows works here unchanged). [Wq; Wk; Wv] and the q/k/v biases are packed once per layer,
// on first use, from the weights the runner loaded.
//   CPU:    one GEMM on the runner's resident weights (ops.linear) -> one RoPE + cache-append pass
//           -> the CPU backend's flash job on strided views of the packed rows and the cache prefix
//           -> O projection.
//   WebGPU: the block's 3 dispatches (qkv-gemm, block-attention, o-gemm), queued on the runner's
//           runtime. Decode queues them without a flush (a whole step stays one submission);
//           prefill submits each layer's work (as the unfused module's attention() does), so the
//           GPU runs layer l while the host encodes layer l + 1 instead of waiting for all layers.
import { UnsupportedError } from '../core/errors.js';
import { cpuEngine } from '../ops/cpu-engine.js';
import type { AttentionModule, StepInfo } from '../model/backend.js';
import type { ModelConfig } from '../model/config.js';
import type { LayerWeights } from '../model/weights.js';
import type { CpuActivations, CpuKvCache, CpuOps, CpuWeight } from '../model/cpu/ops.js';
import { cpuPagedAttention } from '../model/cpu/paged-attention.js';
import type { GpuActivations, GpuKvCache, GpuOps, GpuWeight } from '../model/webgpu/ops.js';
import type { BlockDims } from './config.js';
import { packedAttention, ropeAndCache } from './cpu/block.js';
import type { BlockGeometry } from './shape.js';
import { type GpuBlock, type GpuRopeTable } from './webgpu/block.js';
import type { BlockDecodeCache } from './webgpu/decode.js';
import { pagedBindings, pipelinedKey } from '../ops/decode/webgpu/index.js';
import type { GemmChoice, GpuLinear } from '../ops/gemm/webgpu/index.js';

/** The block's sizes for a model config (RoPE comes per step from the runner). */
export function blockDims(config: ModelConfig): BlockDims {
  const { hiddenSize: hidden, numHeads: heads, numKvHeads: kvHeads, headDim } = config;
  return {
    hidden, heads, kvHeads, headDim,
    group: heads / kvHeads,
    qkvWidth: (heads + 2 * kvHeads) * headDim,
    scale: 1 / Math.sqrt(headDim),
    rope: {},
    maxPositions: config.maxPositionEmbeddings,
  };
}

function pagedUnsupported(): UnsupportedError {
  return new UnsupportedError('attention', 'the fused block\'s decode path cannot run this paged step (head dim not a multiple of 8, or more sequences than its GEMV takes); use the unfused module');
}

function geometry(step: StepInfo): BlockGeometry {
  return { batch: step.batch, seq: step.tokens, rows: step.batch * step.tokens, start: step.start, rowStrideB: 1, rowStrideS: step.batch };
}

// ------------------------------------------------------------------------------------------ CPU

export function cpuFusedAttention(config: ModelConfig, layers: readonly LayerWeights<CpuWeight>[], ops: CpuOps): AttentionModule<CpuActivations, CpuKvCache> {
  const dims = blockDims(config);
  const { heads: Nq, kvHeads: Nkv, headDim: D, hidden: H } = dims;
  const packed: Array<{ qkv: CpuWeight; bias: Float32Array | undefined } | undefined> = [];

  const pack = (layer: number) => {
    const w = layers[layer];
    const W = dims.qkvWidth;
    const data = new Float32Array(W * H);
    data.set(ops.values(w.q), 0);
    data.set(ops.values(w.k), Nq * D * H);
    data.set(ops.values(w.v), (Nq + Nkv) * D * H);
    let bias: Float32Array | undefined;
    if (w.qBias || w.kBias || w.vBias) {
      bias = new Float32Array(W);
      if (w.qBias) bias.set(ops.values(w.qBias), 0);
      if (w.kBias) bias.set(ops.values(w.kBias), Nq * D);
      if (w.vBias) bias.set(ops.values(w.vBias), (Nq + Nkv) * D);
    }
    return { qkv: ops.upload({ name: `model.layers.${layer}.self_attn.qkv_proj.weight (packed)`, shape: [W, H], data }), bias };
  };

  return {
    name: 'fused (cpu)',
    async forward(x: CpuActivations, layer: number, cache: CpuKvCache, step: StepInfo) {
      // a paged decode step (continuous batching): the decode op on the paged cache
      if (step.paged) return cpuPagedAttention(config, ops, layers[layer], x, layer, step);
      const p = (packed[layer] ??= pack(layer));
      const qkv = await ops.linear(x, p.qkv);
      const call = { ...geometry(step), layout: 'SBH' as const };
      ropeAndCache(dims, call, qkv.data, step.rope, p.bias, cache.keys[layer], cache.values[layer]);
      const attention = await packedAttention(await cpuEngine(), dims, call, qkv.data, cache.keys[layer], cache.values[layer]);
      const w = layers[layer];
      return ops.linear({ data: attention.out.data as Float32Array, rows: x.rows, cols: Nq * D }, w.o, w.oBias);
    },
  };
}

// --------------------------------------------------------------------------------------- WebGPU

export interface GpuFusedAttentionOptions {
  /** GEMM tier of the block (default 'auto'). */
  gemm?: GemmChoice;
}

export function gpuFusedAttention(config: ModelConfig, layers: readonly LayerWeights<GpuWeight>[], ops: GpuOps, options: GpuFusedAttentionOptions = {}): AttentionModule<GpuActivations, GpuKvCache> {
  const dims = blockDims(config);
  const runtime = ops.runtime;
  const blocks: Array<Promise<GpuBlock>> = [];
  let first: GpuBlock | undefined;

  const single = (w: GpuWeight) => {
    if (w.parts.length !== 1) throw new UnsupportedError(w.name, `the fused block needs ${w.name} in one GPU buffer, it is split in ${w.parts.length} (larger than a storage binding)`);
    return w.parts[0].buffer;
  };

  /** [Wq; Wk; Wv] and [bq; bk; bv] packed by GPU copies (the runner uploaded them apart). */
  const makeBlock = async (layer: number): Promise<GpuBlock> => {
    const { GpuBlock } = await import('./webgpu/block.js');
    const w = layers[layer];
    const dtype = w.q.dtype;
    const bpe = dtype === 'float16' ? 2 : 4;
    const { hidden: H, qkvWidth: W } = dims;
    if (bpe === 2 && H % 2 === 1) throw new UnsupportedError('hidden_size', `the fused block packs float16 weights by whole u32 words and needs an even hidden size, got ${H}`);
    const weight = runtime.createBuffer(W * H * bpe, `layer ${layer} packed qkv`);
    const owned = [weight];
    let row = 0;
    for (const part of [w.q, w.k, w.v]) {
      for (const p of part.parts) runtime.copy(p.buffer, 0, weight, (row + p.firstRow) * H * bpe, p.rows * H * bpe, 'pack qkv');
      row += part.shape[0];
    }
    let bias: GPUBuffer | undefined;
    const biases = [w.qBias, w.kBias, w.vBias];
    const biasDType = biases.find((b) => b)?.dtype ?? 'float32';
    if (biases.some((b) => b)) {
      const bb = biasDType === 'float16' ? 2 : 4;
      bias = runtime.createBuffer(W * bb, `layer ${layer} packed qkv bias`);
      owned.push(bias);
      const widths = [dims.heads, dims.kvHeads, dims.kvHeads].map((n) => n * dims.headDim);
      let at = 0;
      biases.forEach((b, i) => {
        if (b) runtime.copy(single(b), 0, bias!, at * bb, widths[i] * bb, 'pack qkv bias');
        at += widths[i];
      });
    }
    const qkv: GpuLinear = { weight, dtype, outDim: W, inDim: H, bias, biasDType };
    const o: GpuLinear = { weight: single(w.o), dtype: w.o.dtype, outDim: H, inDim: dims.heads * dims.headDim, bias: w.oBias ? single(w.oBias) : undefined, biasDType: w.oBias?.dtype };
    return GpuBlock.fromLinears(runtime, dims, qkv, o, owned, { gemm: options.gemm });
  };

  const operand = (buffer: GPUBuffer) => ({ binding: { buffer }, elementBase: 0, uploaded: undefined });
  const prepared = async (layer: number, step: StepInfo) => {
    const block = await (blocks[layer] ??= makeBlock(layer));
    first ??= block;
    // this step's cos/sin rows and positions [start, start], written by the runner before the step
    const state = ops.stepState();
    return { block, extras: { rope: state.rope as GpuRopeTable, positions: state.positions } };
  };
  /** A paged decode step's cache for the block's decode path (the decode op reads its pages). */
  const pagedCache = (layer: number, step: StepInfo): BlockDecodeCache => {
    const paged = step.paged!;
    const b = pagedBindings(paged.cache, layer);
    return { dtype: paged.cache.dtype, ...b, values: b.values!, paged: true, maxKeys: step.start + 1 };
  };
  const pagedRope = (step: StepInfo) => ops.ropeByPosition(config, step.paged!.cache.capacity);
  const forward = async (x: GpuActivations, layer: number, cache: GpuKvCache, step: StepInfo) => {
    if (step.paged) {
      // without the norm fusion (the decoder's fallback): the same decode path, plain GEMVs
      const { block } = await prepared(layer, step);
      const out = ops.activations(x.rows, dims.hidden, 'attention block');
      const bound = { x: operand(x.buffer), keys: undefined, values: undefined, out: out.buffer };
      if (!(await block.queueDecode(geometry(step), bound, { rope: pagedRope(step) }, {}, pagedCache(layer, step)))) throw pagedUnsupported();
      return out;
    }
    const { block, extras } = await prepared(layer, step);
    const out = ops.activations(x.rows, dims.hidden, 'attention block');
    await block.queueFused(geometry(step), {
      x: operand(x.buffer),
      keys: operand(cache.keys[layer]),
      values: operand(cache.values[layer]),
      out: out.buffer,
    }, extras);
    // prefill: hand this layer to the GPU now (measured on the H200: one submission for all 24
    // layers left the GPU idle while the host encoded them, prefill 30% slower than unfused)
    if (step.tokens > 1) await runtime.flush();
    return out;
  };

  return {
    name: 'fused (webgpu)',
    forward,
    async forwardResidual(hidden: GpuActivations, inputNorm: GpuWeight, eps: number, layer: number, cache: GpuKvCache, step: StepInfo) {
      const { block, extras } = await prepared(layer, step);
      if (step.paged) {
        const bound = { x: operand(hidden.buffer), keys: undefined, values: undefined, out: hidden.buffer };
        const fusion = { norm: { buffer: single(inputNorm), dtype: inputNorm.dtype, eps }, accumulate: true };
        if (!(await block.queueDecode(geometry(step), bound, { rope: pagedRope(step) }, fusion, pagedCache(layer, step)))) throw pagedUnsupported();
        return;
      }
      const bound = { x: operand(hidden.buffer), keys: operand(cache.keys[layer]), values: operand(cache.values[layer]), out: hidden.buffer };
      // decode: the norm in the qkv GEMV, the residual add in the O GEMV (4 or 5 dispatches in all)
      if (await block.queueDecode(geometry(step), bound, extras, { norm: { buffer: single(inputNorm), dtype: inputNorm.dtype, eps }, accumulate: true })) return;
      const normed = await ops.rmsNorm(hidden, inputNorm, eps);
      const out = await forward(normed, layer, cache, step);
      await ops.addInPlace(hidden, out);
      ops.release(normed, out);
    },
    // the decode path's commands depend on the step only through its kernel and split count
    stepKey: (step: StepInfo) => {
      const plan = first?.decodePlan(geometry(step), step.paged ? pagedCache(0, step) : true);
      if (!plan) return null;
      return { workgroup: plan.kernel.workgroupSize, unroll: plan.kernel.unroll, splits: plan.splits, ...pipelinedKey(plan), ...(step.paged ? { rope: pagedRope(step).buffer } : {}) };
    },
  };
}
