// Decode attention on WebGPU (few query rows against a long KV cache, split over the keys and
// merged), for composites (the block's S = 1 path, the runner's unfused module).
export { type FlashDecodeCall, type FlashDecodePlan, DEFAULT_TARGET, flashDecodePlan, queueFlashDecode } from './flash-decode.js';
export {
  COMBINE_PARAMS, COMBINE_WORKGROUP, DECODE_PARAMS, type DecodeAttentionOptions,
  buildDecodeCombine, buildDecodePartial, chooseSplits, decodeSharedBytes,
} from './decode-attention.wgsl.js';
