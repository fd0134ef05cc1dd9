// The attention op's public surface, for the library's API and for composites (block, model, CLI,
// testing): the call, its options, validation into the AttentionProblem every backend reads, the
// float64 reference, and the backend choice. Engine-specific entry points: ./cpu/index.ts,
// ./webgpu/index.ts.
export { attention, naiveAttention } from './api.js';
export type { AttentionOptions, BackendChoice, BackendName, CausalAlign } from './options.js';
export { validateAttention } from './validate.js';
export { type AttentionProblem, type StridedView, type BroadcastView, type AlibiView, type KeyWindow, diagonalOffset, keyRange, viewIndex, visiblePairs } from './problem.js';
export { LAYOUTS, LAYOUT_LEGEND, type Strides4, contiguousStrides, physicalShape, rankOf } from './layout.js';
export { referenceAttention, type Precision, type ReferenceResult } from './reference.js';
export type { AttentionBackend, AttentionResult, RunContext, RunStats } from './backend.js';
export { autoBackend, chooseBackend, getBackend, listBackends, type BackendInfo } from './registry.js';
// variants (issue 13): score / mask / sink functions and block masks
export * from './mods/index.js';
export { BlockMask, createBlockMask, type BlockMaskOptions } from './block-mask/block-mask.js';
// Training (issue 10): the backward, its validation and float64 reference with the finite-difference
// check; dropout (Philox4x32-10 keep mask) shared by forward and backward.
export { attentionBackward, naiveAttentionBackward, attentionWithGrad, type AttentionWithGrad } from './backward/api.js';
export type { AttentionBackwardOptions, AttentionGrads } from './backward/options.js';
export { validateAttentionBackward } from './backward/validate.js';
export type { BackwardProblem } from './backward/problem.js';
export { referenceAttentionBackward, referenceGradients, type ReferenceGrads } from './backward/reference.js';
export { finiteDifferenceGradients, type FiniteDifferenceOptions } from './backward/finite-difference.js';
// which (batch, head) entries of a sink tensor dSink covers (the test helpers compare dSink by it)
export { sinkGradLayout, type SinkGradLayout } from './backward/sink.js';
export type { DropoutOptions } from './dropout/options.js';
export { philox4x32_10, type DropoutSpec } from './dropout/philox.js';
export { attentionDropoutMask } from './dropout/mask.js';
