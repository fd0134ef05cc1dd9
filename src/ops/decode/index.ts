// The decode op: attention of a few new query rows against a KV cache (contiguous or paged;
// float32, float16, bfloat16 or int8), merging partial attention by LSE, and the paged cache.
export { attentionDecode, mergeAttention } from './api.js';
export type { CacheDType, CacheLayout, DecodeCache, DecodeOptions, IntInput } from './options.js';
export { MAX_DECODE_QUERIES } from './options.js';
export { validateDecode } from './validate.js';
export type { DecodeProblem, DecodeCacheView } from './problem.js';
export { referenceDecode, type DecodeReference } from './reference.js';
export { validateMerge, mergeOnHost, type AttentionPartial, type MergeOptions, type MergeResult } from './merge.js';
export { int8Scale, quantizeInt8, roundToStorage, storeRow } from './storage.js';
export { PagedKVCache, type PagedKVCacheOptions } from './paged-cache.js';
