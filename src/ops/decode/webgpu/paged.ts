// A PagedKVCache layer as queueAttentionDecode() binds it, for composites that queue the decode
// op themselves (the runner's decode steps): the pools, the page geometry and the cache's table
// buffer (a zero word for the RoPE base, the lengths, the block table: PagedKVCache.metaLayout).
import { UnsupportedError } from '../../../core/errors.js';
import type { Tensor } from '../../../core/tensor.js';
import type { PagedKVCache } from '../paged-cache.js';
import type { GpuCacheTensor, GpuDecodeCall } from './queue.js';

export interface PagedBindings {
  keys: GpuCacheTensor;
  values: GpuCacheTensor | undefined;
  kScales: GpuCacheTensor | undefined;
  vScales: GpuCacheTensor | undefined;
  pageSize: number;
  maxPages: number;
  numPages: number;
  meta: GpuDecodeCall['meta'];
}

export function pagedBindings(cache: PagedKVCache, layer: number): PagedBindings {
  const { buffer, zeroAt, lengthsAt, tableAt } = cache.metaLayout();
  if (!buffer) throw new UnsupportedError('cache', 'this PagedKVCache lives on the CPU; the GPU decode needs one created with backend "webgpu"');
  const tensor = (t: Tensor | undefined, dim: number): GpuCacheTensor | undefined => {
    if (!t) return undefined;
    const s = cache.strides(dim);
    return { binding: t.gpu!.buffer, off: 0, sp: s.page, sh: s.head, spos: s.pos };
  };
  return {
    keys: tensor(cache.keys[layer], cache.headDim)!,
    values: tensor(cache.values[layer], cache.valueDim),
    kScales: tensor(cache.kScales[layer], 1),
    vScales: tensor(cache.vScales[layer], 1),
    pageSize: cache.pageSize,
    maxPages: cache.maxPages,
    numPages: cache.numPages,
    meta: { binding: buffer, lengthsAt, tableAt, ropeBaseAt: zeroAt },
  };
}
