// The uniforms every subgroup-matrix GEMM kernel reads (gemm-sgmat, gemm-sgmat-tiled,
// gemm-tensorcore): y[M, N] = x[M, K] · W, x at element a_off with row stride a_stride, y at c_off
// with row stride c_stride. One field list, each kernel its own WGSL struct name.
import { UniformLayout } from '../../../engines/webgpu/uniforms.js';

export function gemmParams(struct: string) {
  return new UniformLayout(struct, { m: 'u32', n: 'u32', k: 'u32', a_off: 'u32', a_stride: 'u32', c_off: 'u32', c_stride: 'u32' });
}
