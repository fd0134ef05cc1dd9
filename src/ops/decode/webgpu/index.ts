// Decode attention on WebGPU for composites that hold their own GPU buffers and record steps (the
// block's S = 1 path, the runner): plan a call for a device, compile its kernels, queue it. The
// first split-KV kernel (decode-attention.wgsl.ts) stays for the unfused module's comparisons.
export { type DecodePlan, type DecodeShape, type PlanDevice, DEFAULT_TARGET, planDecode, decodeSplits, pipelinedKey } from './plan.js';
export { decodePlanDevice } from './plan-device.js';
export { type GpuCacheTensor, type GpuDecodeCall, type GpuRows, partialBytes, prepareDecode, effectivePlan, mlaDecodeKernel, queueAttentionDecode, splitKvKernel, combineKernel } from './queue.js';
export { type SplitKvOptions, buildSplitKv, splitKvSharedBytes, splitKvUnsupported, SPLIT_KV_PARAMS, SPLIT_KV_BINDINGS } from './split-kv.wgsl.js';
export { type CombineOptions, buildCombine, buildMerge, combineWorkgroupSize } from './combine.wgsl.js';
export { writePages } from './write.js';
export {
  COMBINE_PARAMS, COMBINE_WORKGROUP, DECODE_PARAMS, type DecodeAttentionOptions,
  buildDecodeCombine, buildDecodePartial, chooseSplits, decodeSharedBytes,
} from './decode-attention.wgsl.js';
export { type PagedBindings, pagedBindings } from './paged.js';
export { type MlaDecodeOptions, buildMlaDecode, mlaDecodeSharedBytes, mlaDecodeUnsupported } from './mla-sgmatrix.wgsl.js';
