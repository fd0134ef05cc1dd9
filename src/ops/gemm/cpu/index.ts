// The GEMM family on the CPU engine, for composites (the block, the runner): batched strided
// float32 matmul (staged operands) and y = x Wᵀ against a weight resident in the engine's memory.
export { type MatmulSpec, type MatrixOperand, cpuMatmul, matmul, residentLinear } from './matmul.js';
