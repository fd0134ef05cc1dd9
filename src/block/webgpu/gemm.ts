// The block's linear layers on the GPU, y = x Wᵀ (+ b), one dispatch each, in two tiers:
//   'portable'         the runtime's strided f32 matmul (weights float32 or float16 read as u32
//                      pairs), the bias added in its epilogue: any adapter, llvmpipe included;
//   'subgroup-matrix'  f16 tensor-core tiles (gemm-sgmat.wgsl.ts): float16 weights on adapters with
//                      chromium-experimental-subgroup-matrix (the lent H100/H200).
// The fused and the unfused block use the same tier, so their comparison measures the fusion only.
import { UnsupportedError } from '../../core/errors.js';
import { dispatchMatmul, matmulKernel } from '../../backends/webgpu/kernels/matmul.js';
import { type MatmulOptions, buildMatmul } from '../../backends/webgpu/kernels/matmul.wgsl.js';
import { type GpuRuntime, defineKernel } from '../../backends/webgpu/runtime.js';
import { type FloatDType, arrayElement, loadFloat, readBinding } from '../../backends/webgpu/wgsl.js';
import { SGMAT_GEMM_BINDINGS, SGMAT_GEMM_PARAMS, SGMAT_TILE, type SgmatGemmOptions, buildSgmatGemm, sgmatUnsupported } from './gemm-sgmat.wgsl.js';

export type GemmTier = 'portable' | 'subgroup-matrix';
export type GemmChoice = GemmTier | 'auto';

/** A weight on the GPU: [outDim, inDim] (PyTorch layout), float32 or float16 bits, with its bias. */
export interface GpuLinear {
  weight: GPUBuffer;
  dtype: 'float32' | 'float16';
  outDim: number;
  inDim: number;
  /** [outDim], float32 unless biasDType says float16. */
  bias?: GPUBuffer;
  biasDType?: 'float32' | 'float16';
}

/** Rows of x in, rows of y out: both row-major with the given element offsets and row strides. */
export interface LinearCall {
  x: GPUBuffer | GPUBufferBinding;
  xOffset?: number;
  xStride?: number;
  rows: number;
  out: GPUBuffer | GPUBufferBinding;
  outOffset?: number;
  outStride?: number;
  label: string;
}

interface BiasOptions {
  matmul: MatmulOptions;
  bias: FloatDType;
}

const portableBiasKernel = defineKernel<BiasOptions>('block-linear-bias', (o) => buildMatmul(o.matmul, {
  wgsl: `${readBinding(0, 'bias', arrayElement(o.bias), 1)}
${loadFloat('bias_at', 'bias', o.bias)}
fn epilogue(value: f32, zo: u32, zi: u32, m: u32, n: u32) -> f32 { return value + bias_at(n); }`,
}));
const sgmatKernel = defineKernel<SgmatGemmOptions>('block-linear-sgmat', buildSgmatGemm);

/** Why `tier` cannot run here with weights of `dtype` (undefined: it can). */
export function gemmUnsupported(runtime: GpuRuntime, tier: GemmTier, dtype: 'float32' | 'float16'): string | undefined {
  if (tier === 'portable') return undefined;
  if (dtype !== 'float16') return 'the subgroup-matrix GEMM needs float16 weights';
  return sgmatUnsupported(runtime.features, runtime.adapter);
}

/** 'auto': the subgroup-matrix tier where it can run, else the portable one. */
export function chooseGemm(runtime: GpuRuntime, choice: GemmChoice, dtype: 'float32' | 'float16'): GemmTier {
  if (choice === 'auto') return gemmUnsupported(runtime, 'subgroup-matrix', dtype) === undefined ? 'subgroup-matrix' : 'portable';
  const reason = gemmUnsupported(runtime, choice, dtype);
  if (reason) throw new UnsupportedError('options.gemm', `GEMM tier "${choice}" cannot run here: ${reason}`);
  return choice;
}

/** Compiles (or finds) the pipeline of `tier` for `linear`, so queueing it later does not wait. */
export async function linearPipeline(runtime: GpuRuntime, tier: GemmTier, linear: GpuLinear, subgroupIndex: SgmatGemmOptions['subgroupIndex'] = 'builtin', vec = linear.inDim % 8 === 0) {
  const bias = linear.bias ? linear.biasDType ?? 'float32' : 'none';
  if (tier === 'subgroup-matrix') return runtime.pipeline(sgmatKernel, { bias, subgroupIndex, vec });
  const matmul: MatmulOptions = { a: 'float32', b: linear.dtype, out: 'float32', transposeB: true, splitK: false, ragged: false };
  return bias !== 'none' ? runtime.pipeline(portableBiasKernel, { matmul, bias }) : runtime.pipeline(matmulKernel, matmul);
}

/** Queues y = x Wᵀ (+ b) as one dispatch. */
export async function queueLinear(runtime: GpuRuntime, tier: GemmTier, linear: GpuLinear, call: LinearCall, subgroupIndex: SgmatGemmOptions['subgroupIndex'] = 'builtin'): Promise<void> {
  const xStride = call.xStride ?? linear.inDim;
  // 16-byte staging loads when K, x's offset and stride allow them
  const vec = linear.inDim % 8 === 0 && xStride % 4 === 0 && (call.xOffset ?? 0) % 4 === 0;
  const pipeline = await linearPipeline(runtime, tier, linear, subgroupIndex, vec);
  const outStride = call.outStride ?? linear.outDim;
  if (tier === 'subgroup-matrix') {
    const B = SGMAT_GEMM_BINDINGS;
    const params = SGMAT_GEMM_PARAMS.pack({
      m: call.rows, n: linear.outDim, k: linear.inDim,
      a_off: call.xOffset ?? 0, a_stride: xStride, c_off: call.outOffset ?? 0, c_stride: outStride,
    });
    const entries: Record<number, GPUBuffer | GPUBufferBinding> = {
      [B.params]: runtime.uniform(params, `${call.label} params`),
      [B.a]: call.x,
      [B.w]: linear.weight,
      [B.c]: call.out,
    };
    if (linear.bias) entries[B.bias] = linear.bias;
    runtime.dispatch({
      label: call.label,
      pipeline,
      bindGroups: [runtime.bindGroup(pipeline, 0, entries)],
      workgroups: [Math.ceil(linear.outDim / SGMAT_TILE.n), Math.ceil(call.rows / SGMAT_TILE.m)],
    });
    return;
  }
  const matmul: MatmulOptions = { a: 'float32', b: linear.dtype, out: 'float32', transposeB: true, splitK: false, ragged: false };
  dispatchMatmul(runtime, pipeline, {
    label: call.label,
    options: matmul,
    a: { binding: call.x, offset: call.xOffset ?? 0, strides: [0, 0, xStride, 1] },
    b: { binding: linear.weight, offset: 0, strides: [0, 0, linear.inDim, 1] },
    c: { binding: call.out, offset: call.outOffset ?? 0, strides: [0, 0, outStride, 1] },
    m: call.rows, n: linear.outDim, k: linear.inDim, outer: 1, inner: 1,
  }, linear.bias ? { 0: linear.bias } : undefined);
}
