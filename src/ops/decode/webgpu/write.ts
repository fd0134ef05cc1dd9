// PagedKVCache.write() on WebGPU: rows of one sequence into its pages (pages.wgsl.ts), one
// dispatch per pool. The rows may be CPU data (uploaded) or GPU tensors (bound in place).
import { UnsupportedError } from '../../../core/errors.js';
import type { Tensor } from '../../../core/tensor.js';
import { operandOf, releaseOperands } from '../../../engines/webgpu/operands.js';
import { type GpuRuntime, defineKernel } from '../../../engines/webgpu/runtime.js';
import type { CacheDType } from '../options.js';
import { PAGE_WRITE_PARAMS, PAGE_WRITE_WORKGROUP, type PageWriteOptions, buildPageWrite } from './pages.wgsl.js';

export const pageWriteKernel = defineKernel<PageWriteOptions>('decode-page-write', buildPageWrite);

/** What the writer needs of a PagedKVCache (kept structural: the cache imports this file). */
export interface PagePools {
  readonly dtype: CacheDType;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly valueDim: number;
  readonly pageSize: number;
  readonly keys: readonly Tensor[];
  readonly values: readonly (Tensor | undefined)[];
  readonly kScales: readonly (Tensor | undefined)[];
  readonly vScales: readonly (Tensor | undefined)[];
  strides(dim: number): { page: number; head: number; pos: number };
}

/** The widest store that divides `dim` for this dtype (16 bytes where possible). */
export function storeChunk(dtype: CacheDType, dim: number): number {
  const widest = dtype === 'float32' ? 4 : dtype === 'int8' ? 16 : 8;
  for (const c of [16, 8, 4]) if (c <= widest && dim % c === 0) return c;
  throw new UnsupportedError('headDim', `the WebGPU page writer needs head dims that are multiples of 4, got ${dim}`);
}

/** Queues the stores (no submit). Rows [T, Nkv, D] at positions start .. of the sequence's `pages`. */
export async function writePages(runtime: GpuRuntime, cache: PagePools, pages: readonly number[], start: number, layer: number, k: Tensor, v: Tensor | undefined): Promise<void> {
  const T = k.shape[0];
  const table = runtime.uploadTransient(Uint32Array.from(pages), 'page list');
  const jobs: Array<[Tensor, Tensor, Tensor | undefined, number]> = [[k, cache.keys[layer], cache.kScales[layer], cache.headDim]];
  if (v) jobs.push([v, cache.values[layer]!, cache.vScales[layer], cache.valueDim]);
  for (const [rows, pool, scales, dim] of jobs) {
    const options: PageWriteOptions = { dim, chunk: storeChunk(cache.dtype, dim), cache: cache.dtype, io: rows.dtype as 'float32' | 'float16' };
    const pipeline = await runtime.pipeline(pageWriteKernel, options);
    const src = operandOf(runtime, rows, 'rows');
    try {
      if (src.elementBase % 4 !== 0) throw new UnsupportedError('rows', 'rows must start at a multiple of 4 elements of their buffer');
      const s = cache.strides(dim);
      const sc = cache.strides(1);
      const params = PAGE_WRITE_PARAMS.pack({
        rows: T, heads: cache.kvHeads, start, page_size: cache.pageSize,
        src_off: src.elementBase, src_st: cache.kvHeads * dim, src_sh: dim, dst_off: 0,
        sp: s.page, sh: s.head, spos: s.pos, s_off: 0, s_sp: sc.page, s_sh: sc.head, s_spos: sc.pos,
      });
      const entries: Record<number, GPUBuffer | GPUBufferBinding> = { 0: runtime.uniform(params, 'page write params'), 1: src.binding, 2: table, 3: pool.gpu!.buffer };
      if (scales) entries[4] = scales.gpu!.buffer;
      runtime.dispatch({ label: 'paged cache write', pipeline, bindGroups: [runtime.bindGroup(pipeline, 0, entries)], workgroups: [Math.ceil((T * cache.kvHeads) / PAGE_WRITE_WORKGROUP)] });
    } finally {
      releaseOperands(runtime, [src]);
    }
  }
}
