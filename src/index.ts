// fusedattn: FlashAttention and fused attention for JavaScript and TypeScript.
// The public types name WebGPU globals (GPUDevice, GPUBuffer): consumers get them from @webgpu/types.
/// <reference types="@webgpu/types" preserve="true" />
export { attention, naiveAttention } from './ops/attention/index.js';
export type { AttentionOptions, BackendChoice, BackendName, CausalAlign } from './ops/attention/index.js';
export { validateAttention } from './ops/attention/index.js';
export type { AttentionProblem, StridedView, BroadcastView, KeyWindow } from './ops/attention/index.js';
export { referenceAttention, type Precision, type ReferenceResult } from './ops/attention/index.js';
export type { AttentionResult, RunStats } from './ops/attention/index.js';
export { listBackends, type BackendInfo } from './ops/attention/index.js';
export { gpuDevice, gpuAdapterInfo, type AdapterDescription } from './engines/webgpu/public.js';
export { Tensor, type Layout, type TensorInput, type GpuStorage } from './core/tensor.js';
export type { DType } from './core/dtype.js';
export { toHalfBits, fromHalfBits, floatsToHalf, halfToFloats, toBfloat16Bits, fromBfloat16Bits, floatsToBfloat16, bfloat16ToFloats } from './core/dtype.js';
export { configure, dispose, type FusedAttnConfig, type CpuKernelChoice, type WebGpuTierChoice } from './core/config.js';
export { configNotes } from './core/env.js';
export { FusedAttnError, ShapeError, DTypeError, ValueError, UnsupportedError, DeviceError } from './core/errors.js';
export { parseNpy, encodeNpy, type NpyArray, type NpyDType } from './io/npy.js';
export { npyToTensor, tensorToNpy } from './io/npy-tensor.js';
export { AttentionBlock, type AttentionBlockOptions, type AttentionBlockConfig, type AttentionBlockWeights, type BlockForwardOptions, type BlockKvCache, type BlockLayout, type BlockResult, type BlockStats, type RopeConfig, referenceBlock, validateBlock } from './block/index.js';
export { Scope, scope, getScope, type ScopeOptions, type ScopeCallOptions, type ScopeRun, type ScopeStats } from './scope/index.js';
export { Profiler, type ProfilerOptions, type ProfilerStartOptions, type ProfileReport, type SpanSummary, type KernelSummary, type ChromeTrace, type ChromeTraceEvent, type TimingSource } from './profiler/index.js';
export { tuneAttention, setAutotuneMode, autotuneMode, clearAutotuneCache, type AutotuneMode, type TuneResult, type TuneTrial } from './ops/attention/webgpu/index.js';
export { attentionDecode, mergeAttention, validateDecode, referenceDecode, MAX_DECODE_QUERIES, PagedKVCache, type PagedKVCacheOptions, int8Scale, roundToStorage, type DecodeCache, type DecodeOptions, type CacheDType, type CacheLayout, type DecodeProblem, type AttentionPartial, type MergeOptions, type MergeResult } from './ops/decode/index.js';
// Attention variants (issue 13): score/mask/sink functions, block masks
export {
  FloatExpr, IntExpr, BoolExpr, FloatTensor, IntTensor, ModTensor, capture, float, int, bool, type Kind,
  ScoreMod, MaskMod, SinkMod, scoreMod, maskMod, sinkMod, andMasks, orMasks, composeScoreMods, type ScoreContext, type MaskContext, type SinkContext,
  causal, slidingWindow, prefixLM, documentMask, streamingMask, attentionSinks, softcap, alibi, alibiSlopes, t5RelativeBias, t5Bucket, type T5Options,
  BlockMask, createBlockMask, type BlockMaskOptions,
} from './ops/attention/index.js';
// Approximate attention (issue 13, seed 004): linear attention and Performer
export { linearAttention, performerAttention, featureMap, FeatureMap, performerProjection, referenceApprox, type LinearAttentionOptions, type PerformerOptions, type FeatureContext } from './ops/approx/index.js';
// Training: the attention backward and dropout (issue 10)
export {
  attentionBackward, naiveAttentionBackward, attentionWithGrad, type AttentionWithGrad, type AttentionBackwardOptions, type AttentionGrads,
  validateAttentionBackward, type BackwardProblem, referenceAttentionBackward, referenceGradients, type ReferenceGrads,
  finiteDifferenceGradients, type FiniteDifferenceOptions, type DropoutOptions, philox4x32_10, type DropoutSpec, attentionDropoutMask,
} from './ops/attention/index.js';
