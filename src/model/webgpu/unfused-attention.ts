// The unfused attention module on WebGPU, the traditional sequence of separate kernels: Q, K and V
// projections (3 GEMMs) with their bias adds, RoPE on Q and on K, K and V appended to the cache
// (one kernel), attention, O projection. Attention is the split-KV decode kernel pair for decode
// (one query per sequence against a long cache: it needs the splits to fill the GPU) and the
// library's flash attention() on the SBH cache prefix for prefill. Neither makes a score matrix.
// Per-step values (positions, RoPE rows) come from the ops' step buffers, so a decode step's
// commands can be recorded once and replayed (GpuOps.runStep).
import { attention } from '../../ops/attention/index.js';
import { UnsupportedError } from '../../core/errors.js';
import { Tensor } from '../../core/tensor.js';
import { defineKernel } from '../../engines/webgpu/runtime.js';
import type { AttentionModule, StepInfo } from '../backend.js';
import type { ModelConfig } from '../config.js';
import type { LayerWeights } from '../weights.js';
import {
  COMBINE_PARAMS, DECODE_PARAMS, type DecodeAttentionOptions,
  buildDecodeCombine, buildDecodePartial, chooseSplits, decodeSharedBytes,
} from '../../ops/decode/webgpu/index.js';
import { ELEMENTWISE_WORKGROUP, KV_APPEND_PARAMS, ROPE_PARAMS, buildKvAppend, buildRope } from './kernels.wgsl.js';
import { type DecodePlan, decodePlanDevice, pagedBindings, pipelinedKey, planDecode, prepareDecode, queueAttentionDecode } from '../../ops/decode/webgpu/index.js';
import { type GpuActivations, type GpuKvCache, type GpuOps, type GpuWeight, gpuActivations } from './ops.js';

const ropeKernel = defineKernel('model-rope', (_: Record<string, never>) => buildRope());
const kvAppendKernel = defineKernel('model-kv-append', (_: Record<string, never>) => buildKvAppend());
const partialKernel = defineKernel('model-decode-partial', buildDecodePartial);
const combineKernel = defineKernel('model-decode-combine', buildDecodeCombine);

export interface GpuAttentionOptions {
  /** Use the split-KV kernels for prefill too (tests; the library's flash kernel is faster there). */
  splitKvPrefill?: boolean;
  /** Workgroups the split-KV kernel aims for (default: the decode op's plan). */
  targetWorkgroups?: number;
  /** Use the first split-KV kernel (decode-attention.wgsl.ts) even where the second one runs (comparisons). */
  firstDecodeKernel?: boolean;
}

export function gpuUnfusedAttention(config: ModelConfig, layers: readonly LayerWeights<GpuWeight>[], ops: GpuOps, options: GpuAttentionOptions = {}): AttentionModule<GpuActivations, GpuKvCache> {
  const { numHeads: Nq, numKvHeads: Nkv, headDim: D } = config;
  const runtime = ops.runtime;
  const decodeOptions = splitKvOptions(D, Nq / Nkv, runtime.limits.maxComputeWorkgroupStorageSize);
  const device = decodePlanDevice(runtime);
  const plan = (step: StepInfo): DecodePlan | undefined => {
    if (options.firstDecodeKernel) return undefined;
    const p = planDecode({
      dimQK: D, dimV: D, group: Nq / Nkv, headsKv: Nkv, batch: step.batch, tokens: step.tokens, maxKeys: step.start + step.tokens,
      cache: 'float32', io: 'float32', paged: false, sharedKV: false, append: false, rope: false, softcap: false, alibi: false, lse: false,
    }, runtime.limits, options.targetWorkgroups, device);
    return typeof p === 'string' ? undefined : p;
  };

  // a paged decode step (continuous batching): RoPE and the append in the decode op's kernel
  const pagedPlan = (step: StepInfo): DecodePlan | undefined => {
    const p = planDecode({
      dimQK: D, dimV: D, group: Nq / Nkv, headsKv: Nkv, batch: step.batch, tokens: 1, maxKeys: step.start + 1,
      cache: step.paged!.cache.dtype, io: 'float32', paged: true, sharedKV: false, append: true, rope: true, softcap: false, alibi: false, lse: false,
    }, runtime.limits, options.targetWorkgroups, device);
    return typeof p === 'string' ? undefined : p;
  };
  const pagedRope = (step: StepInfo) => ops.ropeByPosition(config, step.paged!.cache.capacity);
  const pagedForward = async (x: GpuActivations, layer: number, step: StepInfo): Promise<GpuActivations> => {
    const chosen = pagedPlan(step);
    if (!chosen) throw new UnsupportedError('headDim', `the decode op cannot run a paged step with head dim ${D} on this GPU`);
    await prepareDecode(runtime, chosen, false);
    const w = layers[layer];
    const B = step.batch;
    const q = await ops.linear(x, w.q, w.qBias);
    const k = await ops.linear(x, w.k, w.kBias);
    const v = await ops.linear(x, w.v, w.vBias);
    // the new keys then values in one binding, as the kernel reads them
    const kvd = Nkv * D;
    const fresh = runtime.acquire(2 * B * kvd * 4, 'intermediate', 'new keys and values');
    runtime.copy(k.buffer, 0, fresh, 0, B * kvd * 4, 'new keys');
    runtime.copy(v.buffer, 0, fresh, B * kvd * 4, B * kvd * 4, 'new values');
    const attn = ops.activations(B, Nq * D, 'attention');
    const b = pagedBindings(step.paged!.cache, layer);
    const rows = (off: number, width: number) => ({ off, sb: width, sh: D, si: B * width });
    await queueAttentionDecode(runtime, chosen, {
      batch: B, tokens: 1, headsQ: Nq, headsKv: Nkv, q: { binding: q.buffer, ...rows(0, Nq * D) },
      keys: b.keys, values: b.values, kScales: b.kScales, vScales: b.vScales, pageSize: b.pageSize, maxPages: b.maxPages, numPages: b.numPages, meta: b.meta,
      append: { binding: fresh, k: rows(0, kvd), v: rows(B * kvd, kvd) }, rope: pagedRope(step),
      out: { binding: attn.buffer, ...rows(0, Nq * D) }, scale: 1 / Math.sqrt(D), softcap: 0, window: { left: Infinity, right: Infinity, align: 'bottom-right' },
      label: 'paged decode attention',
    });
    runtime.release(fresh);
    const out = await ops.linear(attn, w.o, w.oBias);
    ops.release(q, k, v, attn);
    return out;
  };

  const rope = async (x: GpuActivations, heads: number, step: StepInfo) => {
    const table = ops.stepState().rope;
    const pairs = x.rows * heads * (D / 2);
    const pipeline = await runtime.pipeline(ropeKernel, {});
    const bindGroup = runtime.bindGroup(pipeline, 0, {
      0: x.buffer,
      1: table.buffer,
      2: runtime.uniform(ROPE_PARAMS.pack({ rows: x.rows, batch: step.batch, heads, half: D / 2, table_rows: table.rows }), 'rope params'),
    });
    runtime.dispatch({ label: 'rope', pipeline, bindGroups: [bindGroup], workgroups: ops.grid(pairs, ELEMENTWISE_WORKGROUP) });
  };

  const append = async (k: GpuActivations, v: GpuActivations, cache: GpuKvCache, layer: number) => {
    const n = k.rows * k.cols;
    const pipeline = await runtime.pipeline(kvAppendKernel, {});
    const bindGroup = runtime.bindGroup(pipeline, 0, {
      0: runtime.uniform(KV_APPEND_PARAMS.pack({ n, position_floats: cache.positionBytes / 4 }), 'kv append params'),
      1: k.buffer,
      2: v.buffer,
      3: cache.keys[layer],
      4: cache.values[layer],
      5: ops.stepState().positions,
    });
    runtime.dispatch({ label: 'kv append', pipeline, bindGroups: [bindGroup], workgroups: ops.grid(n, ELEMENTWISE_WORKGROUP) });
  };

  // the decode op on the SBH cache after the append: rows t * B + b, keys 0 .. start + T - 1
  const flashDecode = async (q: GpuActivations, cache: GpuKvCache, layer: number, step: StepInfo, chosen: DecodePlan): Promise<GpuActivations> => {
    await prepareDecode(runtime, chosen, false);
    const out = ops.activations(q.rows, Nq * D, 'attention');
    const B = step.batch;
    const rows = (width: number) => ({ off: 0, sb: width, sh: D, si: B * width });
    const sbh = (buffer: GPUBuffer) => ({ binding: buffer, off: 0, sp: Nkv * D, sh: D, spos: B * Nkv * D });
    await queueAttentionDecode(runtime, chosen, {
      batch: B, tokens: step.tokens, headsQ: Nq, headsKv: Nkv,
      q: { binding: q.buffer, ...rows(Nq * D) },
      keys: sbh(cache.keys[layer]), values: sbh(cache.values[layer]),
      pageSize: 0, maxPages: 1, numPages: B,
      meta: { binding: ops.stepState().positions, lengthsAt: 0, lengthsStride: 0, lengthsAdd: step.tokens },
      out: { binding: out.buffer, ...rows(Nq * D) },
      scale: 1 / Math.sqrt(D), softcap: 0, window: { left: Infinity, right: 0, align: 'bottom-right' },
    });
    return out;
  };

  const splitKv = async (q: GpuActivations, cache: GpuKvCache, layer: number, step: StepInfo): Promise<GpuActivations> => {
    if (!decodeOptions) throw new UnsupportedError('headDim', `the split-KV decode kernel needs more workgroup memory than this GPU has for head dim ${D} and ${Nq / Nkv} query heads per KV head`);
    const length = step.start + step.tokens;
    const rows = q.rows;
    const { splits, keysPerSplit } = chooseSplits(length, Nkv, rows, decodeOptions.tileKeys, options.targetWorkgroups);
    const partials = runtime.acquire(rows * Nq * splits * (D + 2) * 4, 'intermediate', 'decode partials');
    const partial = await runtime.pipeline(partialKernel, decodeOptions);
    runtime.dispatch({
      label: 'decode attention (split-KV)',
      pipeline: partial,
      bindGroups: [runtime.bindGroup(partial, 0, {
        0: q.buffer,
        1: cache.keys[layer],
        2: cache.values[layer],
        3: partials,
        4: runtime.uniform(DECODE_PARAMS.pack({ batch: step.batch, start: step.start, heads_q: Nq, heads_kv: Nkv, splits, keys_per_split: keysPerSplit, scale: 1 / Math.sqrt(D) }), 'decode params'),
      })],
      workgroups: [Nkv, rows, splits],
    });
    const out = ops.activations(rows, Nq * D, 'attention');
    const combine = await runtime.pipeline(combineKernel, { headDim: D });
    runtime.dispatch({
      label: 'decode attention (combine)',
      pipeline: combine,
      bindGroups: [runtime.bindGroup(combine, 0, {
        0: partials,
        1: out.buffer,
        2: runtime.uniform(COMBINE_PARAMS.pack({ row_heads: rows * Nq, splits }), 'combine params'),
      })],
      workgroups: ops.grid(rows * Nq, 1),
    });
    runtime.release(partials);
    return out;
  };

  const flash = async (q: GpuActivations, cache: GpuKvCache, layer: number, step: StepInfo): Promise<GpuActivations> => {
    const length = step.start + step.tokens;
    const device = runtime.device;
    const view = (buffer: GPUBuffer, seq: number, heads: number) => Tensor.fromGpuBuffer({ device, buffer, byteOffset: 0 }, [seq, step.batch, heads * D], 'float32');
    const { out } = await attention(view(q.buffer, step.tokens, Nq), view(cache.keys[layer], length, Nkv), view(cache.values[layer], length, Nkv), {
      layout: 'SBH', heads: Nq, kvHeads: Nkv, causal: true, backend: 'webgpu',
    });
    const buffer = out.gpu!.buffer;
    ops.destroyAfterSubmit(buffer); // attention() hands us an unpooled buffer
    return gpuActivations(buffer, q.rows, Nq * D);
  };

  return {
    name: 'unfused (webgpu)',
    async forward(x: GpuActivations, layer: number, cache: GpuKvCache, step: StepInfo) {
      if (step.paged) return pagedForward(x, layer, step);
      const w = layers[layer];
      const q = await ops.linear(x, w.q, w.qBias);
      const k = await ops.linear(x, w.k, w.kBias);
      const v = await ops.linear(x, w.v, w.vBias);
      await rope(q, Nq, step);
      await rope(k, Nkv, step);
      await append(k, v, cache, layer);
      const useFlash = step.tokens > 1 && !options.splitKvPrefill;
      const chosen = useFlash ? undefined : plan(step);
      const attn = useFlash ? await flash(q, cache, layer, step) : chosen ? await flashDecode(q, cache, layer, step, chosen) : await splitKv(q, cache, layer, step);
      const out = await ops.linear(attn, w.o, w.oBias);
      ops.release(q, k, v);
      if (!useFlash) ops.release(attn);
      return out;
    },
    // the first decode kernel takes `start` in a uniform: its steps cannot be replayed
    stepKey: (step: StepInfo) => {
      const chosen = step.paged ? pagedPlan(step) : plan(step);
      if (chosen && step.paged) return { workgroup: chosen.kernel.workgroupSize, unroll: chosen.kernel.unroll, splits: chosen.splits, ...pipelinedKey(chosen), rope: pagedRope(step).buffer };
      return chosen ? { workgroup: chosen.kernel.workgroupSize, unroll: chosen.kernel.unroll, splits: chosen.splits, ...pipelinedKey(chosen) } : null;
    },
  };
}

/** Kernel options with the largest key tile whose workgroup memory fits, or undefined. */
export function splitKvOptions(headDim: number, group: number, sharedBytes: number): DecodeAttentionOptions | undefined {
  for (const tileKeys of [32, 16, 8, 4]) {
    const o = { headDim, group, tileKeys, workgroupSize: 64 };
    if (decodeSharedBytes(o) <= sharedBytes) return o;
  }
  return undefined;
}

