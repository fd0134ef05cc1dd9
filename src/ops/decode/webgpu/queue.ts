// Queueing one decode call on a GpuRuntime from buffers already bound: the entry point of the op
// for callers that hold their own GPU buffers and record steps for replay (the fused block's
// decode path, the runner). attentionDecode() on WebGPU (run.ts) binds its tensors and comes here
// too, so every decode on WebGPU goes through this one function.
import type { KeyWindow } from '../../attention/problem.js';
import { type BindingResource, type GpuRuntime, defineKernel } from '../../../engines/webgpu/runtime.js';
import { windowParams } from '../../attention/webgpu/score.wgsl.js';
import { type DecodeAppendOptions, buildDecodeAppend, decodeAppendLayout } from './append.wgsl.js';
import { COMBINE_BINDINGS, COMBINE_PARAMS, type CombineOptions, buildCombine, combineWorkgroupSize } from './combine.wgsl.js';
import { envInt } from '../../../core/env.js';
import type { DecodePlan } from './plan.js';
import { type MlaDecodeOptions, buildMlaDecode } from './mla-sgmatrix.wgsl.js';
import { type PipelinedDecodeOptions, buildPipelinedSplitKv, pipelinedWord } from './split-kv-pipelined.wgsl.js';
import { SPLIT_KV_BINDINGS, SPLIT_KV_PARAMS, type SplitKvOptions, buildSplitKv } from './split-kv.wgsl.js';

export const splitKvKernel = defineKernel<SplitKvOptions>('decode-split-kv', buildSplitKv);
export const combineKernel = defineKernel<CombineOptions>('decode-combine', buildCombine);
export const decodeAppendKernel = defineKernel<DecodeAppendOptions>('decode-append', buildDecodeAppend);
export const mlaDecodeKernel = defineKernel<MlaDecodeOptions>('decode-mla-sgmatrix', buildMlaDecode);
export const pipelinedKernel = defineKernel<PipelinedDecodeOptions>('decode-split-kv-pipelined', buildPipelinedSplitKv);

/**
 * The plan this call runs: the MLA kernel's where the plan has one and the call's layout allows
 * it (16-key chunks inside one page, 16-byte aligned rows for the matrix loads, no finite left
 * window), else split-KV.
 */
export function effectivePlan(plan: DecodePlan, call: Pick<GpuDecodeCall, 'q' | 'keys' | 'values' | 'pageSize' | 'window'>): DecodePlan {
  if (plan.pipelined) {
    // the pipelined kernel reads whole words (16 bytes, or 8 for an int8 cache in chunks of 8):
    // every offset and stride a multiple of one (the append first stores in the same words)
    const E = pipelinedWord(plan.pipelined.kernel);
    const v = call.values ?? call.keys;
    const whole = [call.keys.off, call.keys.spos, call.keys.sp, call.keys.sh, v.off, v.spos, v.sp, v.sh].every((x) => x % E === 0);
    if (!whole) return { ...plan, pipelined: undefined };
    const { splits, grid, combine } = plan.pipelined;
    return { ...plan, splits, grid, combine };
  }
  if (!plan.mla) return plan;
  // a finite left window hides rows inside the first 16-key chunk, which the MLA kernel multiplies by P = 0
  if (Number.isFinite(call.window.left)) return { ...plan, mla: undefined };
  const v = call.values ?? call.keys;
  const aligned = [call.keys.off, call.keys.spos, call.keys.sp, call.keys.sh, v.off, v.spos, v.sp, v.sh].every((x) => x % 8 === 0);
  if (!aligned || (plan.mla.kernel.paged && call.pageSize % 16 !== 0)) return { ...plan, mla: undefined };
  // Q in 16-byte words where its rows allow
  const qWords = plan.mla.kernel.qWords === true && [call.q.off, call.q.sb, call.q.sh, call.q.si].every((x) => x % 8 === 0);
  // (the compact whole-tile form stages Q in words: without them it takes the full layout)
  const mla = qWords === (plan.mla.kernel.qWords === true) ? plan.mla : { ...plan.mla, kernel: { ...plan.mla.kernel, qWords, ...(plan.mla.kernel.compact ? { compact: false } : {}) } };
  return { ...plan, mla, splits: plan.mla.splits, grid: plan.mla.grid, combine: true };
}

/** Rows [b, head, i, d] in a buffer: element offset and strides (d contiguous), in elements. */
export interface GpuRows {
  off: number;
  sb: number;
  sh: number;
  si: number;
}

/** A cache tensor in a buffer: element offset and (page, head, position) strides. */
export interface GpuCacheTensor {
  binding: BindingResource;
  off: number;
  sp: number;
  sh: number;
  spos: number;
}

export interface GpuDecodeCall {
  batch: number;
  tokens: number;
  headsQ: number;
  headsKv: number;
  q: GpuRows & { binding: BindingResource };
  keys: GpuCacheTensor;
  /** Absent for a shared latent cache (values = the first Dv key columns). */
  values?: GpuCacheTensor;
  /** int8: scales, addressed like the cache without d (values' scales absent when shared). */
  kScales?: GpuCacheTensor;
  vScales?: GpuCacheTensor;
  /** Positions per page (the capacity for a contiguous cache), block-table width, pages. */
  pageSize: number;
  maxPages: number;
  numPages: number;
  /**
   * u32 words: lengths [B] at lengthsAt (stride lengthsStride, default 1; 0 = one length for all,
   * plus lengthsAdd), block table [B, maxPages] at tableAt, ALiBi slopes (f32 bits) at slopesAt,
   * and with RoPE the first position of the table at ropeBaseAt.
   */
  meta: { binding: BindingResource; lengthsAt: number; lengthsStride?: number; lengthsAdd?: number; tableAt?: number; slopesAt?: number; slopesStrideB?: number; ropeBaseAt?: number };
  /** New rows to store and attend (plan.kernel.append): keys, and values unless shared. */
  append?: { binding: BindingResource; k: GpuRows; v?: GpuRows };
  /** RoPE table (plan.kernel.rope): cos [rows, Dq/2] then sin; row = position - meta[ropeBaseAt]. */
  rope?: { buffer: GPUBuffer; rows: number };
  out: GpuRows & { binding: BindingResource };
  /** float32 [B, Nq, Sq] (when the plan was made with lse). */
  lse?: BindingResource;
  scale: number;
  softcap: number;
  window: KeyWindow;
  label?: string;
}

/** Bytes of the partials the combine pass reads. */
export function partialBytes(plan: DecodePlan, call: Pick<GpuDecodeCall, 'batch' | 'tokens' | 'headsQ'>): number {
  return call.batch * call.headsQ * call.tokens * plan.splits * (plan.kernel.dimV + 4) * 4;
}

/**
 * Compiles the plan's pipelines (cached), so that a kernel that fails to build throws before
 * anything of the call is queued.
 */
export async function prepareDecode(runtime: GpuRuntime, plan: DecodePlan, lse: boolean): Promise<void> {
  await runtime.pipeline(splitKvKernel, plan.kernel);
  if (plan.mla) await runtime.pipeline(mlaDecodeKernel, plan.mla.kernel);
  if (plan.pipelined) await runtime.pipeline(pipelinedKernel, plan.pipelined.kernel);
  if (plan.pipelined?.append) await runtime.pipeline(decodeAppendKernel, plan.pipelined.append);
  const combined = [plan.combine && plan.splits, plan.mla?.splits, plan.pipelined?.combine && plan.pipelined.splits].filter((x): x is number => typeof x === 'number');
  for (const splits of new Set(combined)) await runtime.pipeline(combineKernel, combineOptions(runtime, plan, splits, lse));
}

/** The combine pass's kernel for `splits` splits of the plan's rows. */
function combineOptions(runtime: GpuRuntime, plan: DecodePlan, splits: number, lse: boolean): CombineOptions {
  const max = Math.min(runtime.limits.maxComputeInvocationsPerWorkgroup, runtime.limits.maxComputeWorkgroupSizeX);
  const workgroupSize = combineWorkgroupSize(plan.rows, splits, plan.kernel.dimV, max, envInt('FUSEDATTN_DECODE_COMBINE_WG', 32, 1024));
  return { dimV: plan.kernel.dimV, io: plan.kernel.io, lse, workgroupSize };
}

/** Queues the partial pass (and the combine pass when the plan has one). Submits nothing. */
export async function queueAttentionDecode(runtime: GpuRuntime, chosen: DecodePlan, given: GpuDecodeCall): Promise<void> {
  const plan = effectivePlan(chosen, given);
  const k = plan.kernel;
  const label = given.label ?? 'decode attention';
  const appendFirst = given.append ? plan.pipelined?.append : undefined;
  const pipeline = plan.mla ? await runtime.pipeline(mlaDecodeKernel, plan.mla.kernel)
    : plan.pipelined ? await runtime.pipeline(pipelinedKernel, plan.pipelined.kernel) : await runtime.pipeline(splitKvKernel, k);
  const kernelName = plan.mla ? 'MLA tensor-core' : plan.pipelined ? 'split-KV pipelined' : 'split-KV';
  let rotated: GPUBuffer | undefined;
  let partials: GPUBuffer | undefined;
  try {
    rotated = appendFirst ? runtime.acquire(given.batch * given.headsQ * given.tokens * k.dimQK * (k.io === 'float16' ? 2 : 4), 'intermediate', 'decode queries (rotated)') : undefined;
    // with the append first, the attention reads the rotated queries [B, Nq, Sq, D] and the cache
    // only, the new rows included
    const rotatedRows = { off: 0, sb: given.headsQ * given.tokens * k.dimQK, sh: given.tokens * k.dimQK, si: k.dimQK };
    const call: GpuDecodeCall = rotated ? {
      ...given, append: undefined, rope: undefined, q: { binding: rotated, ...rotatedRows },
      meta: { ...given.meta, lengthsAdd: (given.meta.lengthsAdd ?? 0) + given.tokens },
    } : given;
    partials = plan.combine ? runtime.acquire(partialBytes(plan, call), 'intermediate', 'decode partials') : undefined;
    if (appendFirst && rotated) await queueAppend(runtime, appendFirst, given, { binding: rotated, ...rotatedRows }, label);
    const values = call.values ?? call.keys;
    const scales = call.kScales ?? { binding: call.keys.binding, off: 0, sp: 0, sh: 0, spos: 0 };
    const params = decodeParams(call);
    const B = SPLIT_KV_BINDINGS;
    const entries: Record<number, BindingResource> = {
      [B.params]: runtime.uniform(params, `${label} params`),
      [B.q]: call.q.binding,
      [B.keys]: call.keys.binding,
      [B.meta]: call.meta.binding,
      [B.out]: partials ?? call.out.binding,
    };
    if (!k.sharedKV) entries[B.values] = values.binding;
    if (plan.mla) {
      // the MLA kernel binds params, q, keys (values), meta and the partials only
      if (plan.mla.kernel.sharedKV !== k.sharedKV) throw new Error("decode plan: MLA and split-KV disagree on a shared cache");
    } else if (k.cache === 'int8') {
      entries[B.kScales] = scales.binding;
      if (!k.sharedKV) entries[B.vScales] = call.vScales!.binding;
    }
    if (k.append && !plan.mla && !plan.pipelined) entries[B.append] = call.append!.binding;
    if (plan.pipelined?.kernel.lse) {
      if (!call.lse) throw new Error('decode plan: the pipelined kernel writes an LSE the call has no buffer for');
      entries[B.lse] = call.lse;
    }
    if (k.rope && !plan.mla && !plan.pipelined) entries[B.rope] = call.rope!.buffer;
    runtime.dispatch({ label: `${label} (${kernelName})`, pipeline, bindGroups: [runtime.bindGroup(pipeline, 0, entries)], workgroups: plan.grid });
    if (!partials) return;
    const combine = await runtime.pipeline(combineKernel, combineOptions(runtime, plan, plan.splits, call.lse !== undefined));
    const rows = call.batch * call.headsQ * call.tokens;
    const C = COMBINE_BINDINGS;
    const combineEntries: Record<number, BindingResource> = {
      [C.params]: runtime.uniform(COMBINE_PARAMS.pack({ rows, splits: plan.splits, heads_q: call.headsQ, tokens: call.tokens, ...rowParams('o', call.out) }), `${label} combine params`),
      [C.partials]: partials,
      [C.out]: call.out.binding,
    };
    if (call.lse) combineEntries[C.lse] = call.lse;
    runtime.dispatch({ label: `${label} (combine)`, pipeline: combine, bindGroups: [runtime.bindGroup(combine, 0, combineEntries)], workgroups: runtime.foldedGrid(rows) });
  } finally {
    runtime.release(partials);
    runtime.release(rotated);
  }
}

/** The decode kernels' uniforms for a call (the append dispatch's too: `out` is its rotated queries). */
function decodeParams(call: GpuDecodeCall, out: GpuRows = call.out): ArrayBuffer {
  const values = call.values ?? call.keys;
  const scales = call.kScales ?? { binding: call.keys.binding, off: 0, sp: 0, sh: 0, spos: 0 };
  const noRows = { off: 0, sb: 0, sh: 0, si: 0 };
  return SPLIT_KV_PARAMS.pack({
    batch: call.batch, tokens: call.tokens, heads_q: call.headsQ, heads_kv: call.headsKv,
    q_off: call.q.off, q_sb: call.q.sb, q_sh: call.q.sh, q_si: call.q.si,
    k_off: call.keys.off, k_sp: call.keys.sp, k_sh: call.keys.sh, k_spos: call.keys.spos,
    v_off: values.off, v_sp: values.sp, v_sh: values.sh, v_spos: values.spos,
    ks_off: scales.off, vs_off: call.vScales?.off ?? 0, s_sp: scales.sp, s_sh: scales.sh,
    s_spos: scales.spos, page_size: call.pageSize, max_pages: call.maxPages, num_pages: call.numPages,
    len_at: call.meta.lengthsAt, table_at: call.meta.tableAt ?? 0, slopes_at: call.meta.slopesAt ?? 0, slopes_sb: call.meta.slopesStrideB ?? 0,
    len_sb: call.meta.lengthsStride ?? 1, len_add: call.meta.lengthsAdd ?? 0, rope_at: call.meta.ropeBaseAt ?? 0,
    ...rowParams('ak', call.append?.k ?? noRows), ...rowParams('av', call.append?.v ?? noRows),
    ...rowParams('o', out),
    rope_rows: call.rope?.rows ?? 0, scale: call.scale, softcap: call.softcap, bottom_right: call.window.align === 'bottom-right' ? 1 : 0,
    ...windowParams(call.window.left, call.window.right),
  });
}

/** Queues the append dispatch (append.wgsl.ts): the new rows into the cache, the rotated queries into `rotated`. */
async function queueAppend(runtime: GpuRuntime, o: DecodeAppendOptions, call: GpuDecodeCall, rotated: GpuRows & { binding: GPUBuffer }, label: string): Promise<void> {
  const pipeline = await runtime.pipeline(decodeAppendKernel, o);
  const B = SPLIT_KV_BINDINGS;
  const values = call.values ?? call.keys;
  const entries: Record<number, BindingResource> = {
    [B.params]: runtime.uniform(decodeParams(call, rotated), `${label} append params`),
    [B.q]: call.q.binding,
    [B.keys]: call.keys.binding,
    [B.values]: values.binding,
    [B.meta]: call.meta.binding,
    [B.append]: call.append!.binding,
    [B.out]: rotated.binding,
  };
  if (o.cache === 'int8') {
    entries[B.kScales] = call.kScales!.binding;
    entries[B.vScales] = call.vScales!.binding;
  }
  if (o.rope) entries[B.rope] = call.rope!.buffer;
  const rows = call.batch * call.tokens * (call.headsQ + 2 * call.headsKv);
  const groups = Math.ceil(rows / decodeAppendLayout(o).rowsPerGroup);
  runtime.dispatch({ label: `${label} (append)`, pipeline, bindGroups: [runtime.bindGroup(pipeline, 0, entries)], workgroups: runtime.foldedGrid(groups) });
}

function rowParams<P extends string>(prefix: P, r: GpuRows): Record<`${P}_off` | `${P}_sb` | `${P}_sh` | `${P}_si`, number> {
  return { [`${prefix}_off`]: r.off, [`${prefix}_sb`]: r.sb, [`${prefix}_sh`]: r.sh, [`${prefix}_si`]: r.si } as Record<`${P}_off` | `${P}_sb` | `${P}_sh` | `${P}_si`, number>;
}
