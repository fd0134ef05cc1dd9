// Approximate attention (seed 004): linear attention and Performer, CPU and WebGPU.
export { linearAttention, performerAttention } from './api.js';
export { type ApproxCommonOptions, type LinearAttentionOptions, type PerformerOptions, type ApproxProblem, validateApprox } from './problem.js';
export { FeatureMap, featureMap, performerProjection, type FeatureContext, type FeatureMapChoice } from './features.js';
export { referenceApprox, referenceApproxRows } from './reference.js';
