// The block's linear layers on the GPU, y = x Wᵀ (+ b), one dispatch each, in two tiers:
//   'portable'         the runtime's strided f32 matmul (weights float32 or float16 read as u32
//                      pairs), the bias added in its epilogue: any adapter, llvmpipe included;
//   'subgroup-matrix'  f16 tensor-core tiles: float16 weights on adapters with
//                      chromium-experimental-subgroup-matrix (the lent H100/H200): the tiled kernel
//                      (gemm-sgmat-tiled.wgsl.ts: float32 or float16 x and y) for prefill, the
//                      simple one (gemm-sgmat.wgsl.ts) for a few rows (decode).
// The fused and the unfused block use the same tier, so their comparison measures the fusion only.
import { UnsupportedError } from '../../../core/errors.js';
import { dispatchMatmul, matmulKernel } from './matmul.js';
import { type MatmulOptions, buildMatmul } from './matmul.wgsl.js';
import { type GpuRuntime, defineKernel } from '../../../engines/webgpu/runtime.js';
import { type FloatDType, arrayElement, loadFloat, readBinding } from '../../../engines/webgpu/wgsl.js';
import { SGMAT_GEMM_PARAMS, SGMAT_TILE, type SgmatGemmOptions, buildSgmatGemm, sgmatUnsupported } from './gemm-sgmat.wgsl.js';
import {
  SGMAT_TILED_BINDINGS, SGMAT_TILED_PARAMS, SGMAT_TILES, type SgmatTile, type SgmatTiledGemmOptions, buildSgmatTiledGemm, tileGeometry,
} from './gemm-sgmat-tiled.wgsl.js';
import {
  DEFAULT_TENSORCORE_TILE, type TensorCoreTile, queueTensorCoreLinear, tensorCoreTileFromEnv, tensorCoreLinearPipeline, tensorCoreLinearProblem,
} from './linear-tensorcore.js';

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
  /** dtype of x (default float32); float16 needs the tiled tensor-core kernel (linearTakes). */
  xDType?: 'float32' | 'float16';
  rows: number;
  out: GPUBuffer | GPUBufferBinding;
  outOffset?: number;
  outStride?: number;
  /** dtype of y (default float32); float16 needs the tiled tensor-core kernel. */
  outDType?: 'float32' | 'float16';
  label: string;
}

/**
 * Which tensor-core kernel runs a linear layer: the tiled one (gemm-sgmat-tiled.wgsl.ts) with this
 * tile, 'simple' (gemm-sgmat.wgsl.ts: 64 x 64 tiles, float32 x and y only), or a tile of the
 * general tensor-core GEMM (src/ops/gemm/webgpu/gemm-tensorcore.wgsl.ts, the ceiling study's
 * candidates; where it cannot take a call, the tiled kernel's default tile runs). Small row counts
 * (decode) take the simple kernel whatever is chosen: a 128-row tile would mostly idle.
 */
export type SgmatKernelChoice = SgmatTile | 'simple' | TensorCoreTile;

/**
 * The kernel choice when the caller names none: FUSEDATTN_GEMM_TILE (a JSON tile of the general
 * tensor-core GEMM: bench/ceiling/best-tile.mjs prints a study's winner) or the study's measured
 * winner (DEFAULT_TENSORCORE_TILE; the tiled kernel's SGMAT_TILES stay selectable).
 */
export function defaultGemmKernel(): SgmatKernelChoice {
  return tensorCoreTileFromEnv() ?? DEFAULT_TENSORCORE_TILE;
}

const isTensorCore = (c: SgmatKernelChoice): c is TensorCoreTile => typeof c === 'object' && 'kind' in c && c.kind === 'tensorcore';

/** Below this many rows the simple kernel runs (its 64-row tiles waste less at decode). */
export const TILED_MIN_ROWS = 64;

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
const sgmatTiledKernel = defineKernel<SgmatTiledGemmOptions>('block-linear-sgmat-tiled', buildSgmatTiledGemm);

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

/**
 * Whether the tiled tensor-core kernel can take `call` on `linear`: K a multiple of 8 (whole 16-byte
 * chunks of W) and x's offset and row stride whole 16-byte units (4 floats or 8 halves).
 */
export function tiledLinearFits(linear: GpuLinear, call: Pick<LinearCall, 'xOffset' | 'xStride' | 'xDType'>): boolean {
  const unit = call.xDType === 'float16' ? 8 : 4;
  return linear.dtype === 'float16' && linear.inDim % 8 === 0 && (call.xOffset ?? 0) % unit === 0 && (call.xStride ?? linear.inDim) % unit === 0;
}

type LinearKernel =
  | { kind: 'portable'; options: BiasOptions | MatmulOptions }
  | { kind: 'simple'; options: SgmatGemmOptions }
  | { kind: 'tiled'; options: SgmatTiledGemmOptions }
  | { kind: 'tensorcore'; tile: TensorCoreTile; shape: Parameters<typeof tensorCoreLinearProblem>[1] };

/** The kernel (and its options) that runs `call` on `linear` with `tier`; UnsupportedError when none can. */
function linearKernel(runtimeLimits: Pick<GpuRuntime, 'limits'>, tier: GemmTier, linear: GpuLinear, call: Omit<LinearCall, 'x' | 'out' | 'label'>, choice: SgmatKernelChoice): LinearKernel {
  const bias = linear.bias ? linear.biasDType ?? 'float32' : 'none';
  const halves = call.xDType === 'float16' || call.outDType === 'float16';
  if (tier === 'portable') {
    if (halves) throw new UnsupportedError('gemm', 'the portable GEMM reads and writes float32 activations only');
    const matmul: MatmulOptions = { a: 'float32', b: linear.dtype, out: 'float32', transposeB: true, splitK: false, ragged: false };
    return { kind: 'portable', options: bias !== 'none' ? { matmul, bias } : matmul };
  }
  const tiled = tiledLinearFits(linear, call);
  if (halves && !tiled) throw new UnsupportedError('gemm', 'float16 activations need the tiled tensor-core GEMM, which needs K a multiple of 8 and 16-byte aligned rows of x');
  if (tiled && isTensorCore(choice) && (halves || call.rows >= TILED_MIN_ROWS)) {
    const shape = {
      rows: call.rows, outDim: linear.outDim, inDim: linear.inDim, xOffset: call.xOffset, xStride: call.xStride, xDType: call.xDType,
      outOffset: call.outOffset, outStride: call.outStride, outDType: call.outDType, bias: linear.bias !== undefined, biasDType: linear.biasDType,
    };
    if (tensorCoreLinearProblem(runtimeLimits, shape, choice) === undefined) return { kind: 'tensorcore', tile: choice, shape };
  }
  if (halves || (tiled && choice !== 'simple' && call.rows >= TILED_MIN_ROWS)) {
    const outStride = call.outStride ?? linear.outDim;
    return {
      kind: 'tiled',
      options: {
        a: call.xDType ?? 'float32',
        out: call.outDType ?? 'float32',
        bias,
        tile: choice === 'simple' || isTensorCore(choice) ? SGMAT_TILES[0] : choice,
        vecOut: linear.outDim % 8 === 0 && (call.outOffset ?? 0) % 8 === 0 && outStride % 8 === 0,
      },
    };
  }
  const xStride = call.xStride ?? linear.inDim;
  // 16-byte staging loads when K, x's offset and stride allow them
  const vec = linear.inDim % 8 === 0 && xStride % 4 === 0 && (call.xOffset ?? 0) % 4 === 0;
  return { kind: 'simple', options: { bias, subgroupIndex: 'builtin', vec } };
}

function pipelineOf(runtime: GpuRuntime, kernel: LinearKernel) {
  switch (kernel.kind) {
    case 'tensorcore': return tensorCoreLinearPipeline(runtime, kernel.shape, kernel.tile);
    case 'tiled': return runtime.pipeline(sgmatTiledKernel, kernel.options);
    case 'simple': return runtime.pipeline(sgmatKernel, kernel.options);
    default: return 'bias' in kernel.options ? runtime.pipeline(portableBiasKernel, kernel.options) : runtime.pipeline(matmulKernel, kernel.options);
  }
}

/** Compiles (or finds) the pipeline a call of `rows` rows would use, so queueing it later does not wait. */
export async function linearPipeline(runtime: GpuRuntime, tier: GemmTier, linear: GpuLinear, call: Omit<LinearCall, 'x' | 'out' | 'label'>, choice: SgmatKernelChoice = defaultGemmKernel()) {
  return pipelineOf(runtime, linearKernel(runtime, tier, linear, call, choice));
}

/** Queues y = x Wᵀ (+ b) as one dispatch. */
export async function queueLinear(runtime: GpuRuntime, tier: GemmTier, linear: GpuLinear, call: LinearCall, choice: SgmatKernelChoice = defaultGemmKernel()): Promise<void> {
  const kernel = linearKernel(runtime, tier, linear, call, choice);
  if (kernel.kind === 'tensorcore') {
    await queueTensorCoreLinear(runtime, {
      ...kernel.shape, x: call.x, weight: linear.weight, bias: linear.bias, biasDType: linear.biasDType, out: call.out, label: call.label,
    }, kernel.tile);
    return;
  }
  const pipeline = await pipelineOf(runtime, kernel);
  const xStride = call.xStride ?? linear.inDim;
  const outStride = call.outStride ?? linear.outDim;
  if (kernel.kind === 'tiled' || kernel.kind === 'simple') {
    // both tensor-core kernels share the binding numbers and the uniform fields
    const B = SGMAT_TILED_BINDINGS;
    const layout = kernel.kind === 'tiled' ? SGMAT_TILED_PARAMS : SGMAT_GEMM_PARAMS;
    const params = layout.pack({
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
    const tile = kernel.kind === 'tiled' ? tileGeometry(kernel.options.tile) : SGMAT_TILE;
    runtime.dispatch({
      label: call.label,
      pipeline,
      bindGroups: [runtime.bindGroup(pipeline, 0, entries)],
      workgroups: [Math.ceil(linear.outDim / tile.n), Math.ceil(call.rows / tile.m)],
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
