// The GEMM family on WebGPU, for composites (the block, the runner): linear layers y = x Wᵀ (+ b) in
// two tiers (the portable strided matmul; tensor-core tiles on subgroup matrices), the strided
// batched matmul itself, and the decode GEMV (few rows against a weight, with fused epilogues).
export {
  type GemmChoice, type GemmTier, type GpuLinear, type LinearCall, type SgmatKernelChoice, TILED_MIN_ROWS,
  chooseGemm, defaultGemmKernel, gemmUnsupported, linearPipeline, queueLinear, tiledLinearFits,
} from './gemm.js';
export {
  DEFAULT_TENSORCORE_TILE, type TensorCoreTile, parseTensorCoreTile, queueTensorCoreLinear, tensorCoreLinearUnsupported,
} from './linear-tensorcore.js';
export { SGMAT_TILES, type SgmatTile } from './gemm-sgmat-tiled.wgsl.js';
export { type MatmulCall, type MatrixOperand, dispatchMatmul, matmulKernel, matmulUnsupported, runMatmul } from './matmul.js';
export type { MatmulEpilogue, MatmulOptions } from './matmul.wgsl.js';
export { GEMV_MAX_ROWS, type GemvCall, type GemvWeight, queueGemv } from './gemv.js';
