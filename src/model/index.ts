// fusedattn/model: the Qwen2/Llama transformer runner, its file formats and its test oracle.
// The public types name WebGPU globals (GPUDevice, GPUBuffer): consumers get them from @webgpu/types.
/// <reference types="@webgpu/types" preserve="true" />
export { loadModel, createModel, type TransformerModel, type ModelOptions, type ModelBackendChoice, type AttentionKind, type PagedResult } from './model.js';
export { type PagedCacheOptions } from './decoder.js';
export { generate, generateBatch, type GenerateOptions, type GenerateResult, type BatchOptions, type BatchResult } from './generate.js';
export { createSampler, createCandidateSampler, mergeCandidates, argmax, topIndices, type SamplingOptions, type Sampler, type CandidateSampler, type TopCandidates } from './sampling.js';
export { parseModelConfig, readModelConfig, type ModelConfig, type RopeScaling } from './config.js';
export { ropeFrequencies, ropeTable, type RopeFrequencies, type RopeTable } from './rope.js';
export { weightSpecs, checkWeights, loadWeights, type DecoderWeights, type LayerWeights, type HostTensor, type WeightSpec } from './weights.js';
export { Decoder, type ForwardOptions } from './decoder.js';
export type { Activations, AttentionModule, AttentionFactory, DecoderOps, KvCache, StepInfo } from './backend.js';
export { referenceForward, type ReferenceOptions } from './reference.js';
export { createTokenizer, loadTokenizer, type TextTokenizer } from './tokenizer.js';
export { tinyConfigJson, qwen2HalfBConfigJson, randomWeights, randomHalfWeights, memoryStore, writeModelFolder, modelFolderFiles, configFrom, type RandomTensor, type WriteModelOptions } from './random.js';
export {
  SafetensorsFile, openSafetensors, encodeSafetensors, writeSafetensors, fileSource, bytesSource, bf16ToFloats, floatsToBf16,
  type TensorStore, type SafetensorsEntry, type ByteSource, type StoredDType, type TensorToWrite, type ReadAs,
} from '../io/safetensors.js';
export { modelFiles, type ModelSource, type ModelFileInput, type ModelFiles, type LoadProgress, type SourceOptions } from '../io/sources.js';
