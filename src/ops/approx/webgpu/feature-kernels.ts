// The features kernel as a pipeline definition, shared by the portable products (index.ts) and the
// fused kernels' feature planes (fused-features.ts).
import { defineKernel } from '../../../engines/webgpu/runtime.js';
import { type FeatureKernelOptions, buildFeatures } from './kernels.wgsl.js';

export const featuresKernel = defineKernel<FeatureKernelOptions>('approx-features', buildFeatures);
