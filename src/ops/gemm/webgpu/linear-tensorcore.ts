// y = x Wᵀ (+ b) on the general tensor-core GEMM (gemm-tensorcore.wgsl.ts) with a tile chosen by
// the ceiling study (bench/ceiling/): the block's linear layers take it as a tile candidate
// (src/block/webgpu/gemm.ts) and the runner's prefill linears use it when asked
// (FUSEDATTN_RUNNER_GEMM=tensorcore). The call fixes what the data needs (dtypes, bias, whether
// the edges need bounds checks); the tile fixes the rest.
//   x [rows, K] row-major (float32, converted to f16 while staged, or float16) at xOffset + r·xStride
//   W [N, K] float16 (PyTorch Linear), y [rows, N] float32 or float16 at outOffset + r·outStride
import { envChoice, envString } from '../../../core/env.js';
import { UnsupportedError } from '../../../core/errors.js';
import { defineKernel, type GpuRuntime } from '../../../engines/webgpu/runtime.js';
import {
  TENSORCORE_GEMM_BINDINGS, TENSORCORE_GEMM_PARAMS, type TensorCoreGemmOptions, buildTensorCoreGemm, tensorCoreGemmGeometry, tensorCoreGemmProblem,
} from './gemm-tensorcore.wgsl.js';

/** The tile part of TensorCoreGemmOptions: what the study chooses (the call fixes the rest). */
export type TensorCoreTile = { kind: 'tensorcore' } & Pick<TensorCoreGemmOptions, 'sgM' | 'sgN' | 'fragM' | 'fragN' | 'shape' | 'k' | 'load' | 'layout' | 'stages' | 'prefetch' | 'raster' | 'scratchInTiles'>;

/**
 * The ceiling study's winner (bench/ceiling, H200 2026-12-02, session run 2): 128 x 128 tiles of
 * 4 x 2 subgroups, each 2 x 4 result matrices, K step 64, one stage with register prefetch — 231.5
 * TFLOP/s at 8192³ with Dawn's default robustness (270.5 without), 1.17x the block's previous tile
 * (128 x 256, 2 x 4 subgroups of 4 x 4, K 32: 197.3) in the same run; cuBLAS 761.5.
 */
export const DEFAULT_TENSORCORE_TILE: TensorCoreTile = {
  kind: 'tensorcore', sgM: 4, sgN: 2, fragM: 2, fragN: 4, shape: '16x16x16', k: 64, load: 'vec4', layout: 'padded', stages: 1, prefetch: true, raster: 1,
};

export interface TensorCoreLinearCall {
  x: GPUBuffer | GPUBufferBinding;
  xOffset?: number;
  xStride?: number;
  xDType?: 'float32' | 'float16';
  rows: number;
  weight: GPUBuffer | GPUBufferBinding;
  /** Output features N (rows of W) and input features K. */
  outDim: number;
  inDim: number;
  bias?: GPUBuffer | GPUBufferBinding;
  biasDType?: 'float32' | 'float16';
  out: GPUBuffer | GPUBufferBinding;
  outOffset?: number;
  outStride?: number;
  outDType?: 'float32' | 'float16';
  label: string;
}

/** What the kernel choice depends on: the call without its buffers (bias: whether there is one). */
export type TensorCoreLinearShape = Omit<TensorCoreLinearCall, 'x' | 'weight' | 'out' | 'bias' | 'label'> & { bias?: unknown };

const kernel = defineKernel<TensorCoreGemmOptions>('linear-tensorcore', buildTensorCoreGemm);

/** Why `runtime` cannot run the tensor-core linear at all (undefined: it can). */
export function tensorCoreLinearUnsupported(runtime: Pick<GpuRuntime, 'features' | 'adapter'>): string | undefined {
  for (const f of ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix']) if (!runtime.features.has(f)) return `the device lacks the ${f} feature`;
  const a = runtime.adapter;
  if (a.subgroupMinSize !== 32 || a.subgroupMaxSize !== 32) return `the kernel assumes subgroups of 32 invocations; the adapter has ${a.subgroupMinSize}..${a.subgroupMaxSize}`;
  if (!a.subgroupMatrixConfigs.some((c) => c.componentType === 'f16' && c.resultComponentType === 'f32' && c.M === 16 && c.N === 16 && c.K === 16)) {
    return 'the adapter has no f16 x f16 -> f32 16x16x16 subgroup-matrix configuration';
  }
  return undefined;
}

/** Whether the call's data fit the kernel: K a multiple of 8, x's offset and stride whole 16-byte units. */
export function tensorCoreLinearFits(call: Pick<TensorCoreLinearCall, 'inDim' | 'xOffset' | 'xStride' | 'xDType'>): boolean {
  const unit = call.xDType === 'float16' ? 8 : 4;
  return call.inDim % 8 === 0 && (call.xOffset ?? 0) % unit === 0 && (call.xStride ?? call.inDim) % unit === 0;
}

/** Kernel options of `call` under `tile` (edges checked unless every dimension divides the tile). */
export function tensorCoreLinearOptions(call: TensorCoreLinearShape, tile: TensorCoreTile): TensorCoreGemmOptions {
  const { kind: _kind, ...t } = tile;
  const outStride = call.outStride ?? call.outDim;
  const o: TensorCoreGemmOptions = {
    ...t,
    a: call.xDType ?? 'float32',
    out: call.outDType ?? 'float32',
    bias: call.bias ? call.biasDType ?? 'float32' : 'none',
    b: 'nt',
    operands: 'staged',
    accumulate: 'f32',
    edges: true,
    vecOut: call.outDim % 8 === 0 && (call.outOffset ?? 0) % 8 === 0 && outStride % 8 === 0,
    epilogue: 'scratch',
  };
  if (o.a === 'float32' && o.load === 'u32') o.load = 'vec4';
  const g = tensorCoreGemmGeometry(o);
  o.edges = call.rows % g.m !== 0 || call.outDim % g.n !== 0 || call.inDim % o.k !== 0;
  return o;
}

/** Why `tile` cannot run `call` on `runtime` (workgroup memory, invocations, options), or undefined. */
export function tensorCoreLinearProblem(runtime: Pick<GpuRuntime, 'limits'>, call: TensorCoreLinearShape, tile: TensorCoreTile): string | undefined {
  if (!tensorCoreLinearFits(call)) return 'K must be a multiple of 8 and x\'s offset and row stride whole 16-byte units';
  const o = tensorCoreLinearOptions(call, tile);
  const problem = tensorCoreGemmProblem(o);
  if (problem) return problem;
  const g = tensorCoreGemmGeometry(o);
  if (g.bytes > runtime.limits.maxComputeWorkgroupStorageSize) return `the tile needs ${g.bytes} bytes of workgroup memory, the device allows ${runtime.limits.maxComputeWorkgroupStorageSize}`;
  if (g.threads > runtime.limits.maxComputeInvocationsPerWorkgroup) return `the tile needs ${g.threads} invocations, the device allows ${runtime.limits.maxComputeInvocationsPerWorkgroup}`;
  return undefined;
}

/** Compiles (or finds) the pipeline of `call` under `tile`. */
export function tensorCoreLinearPipeline(runtime: GpuRuntime, call: TensorCoreLinearShape, tile: TensorCoreTile) {
  return runtime.pipeline(kernel, tensorCoreLinearOptions(call, tile));
}

/** Queues y = x Wᵀ (+ b) as one dispatch. The caller has checked tensorCoreLinearProblem. */
export async function queueTensorCoreLinear(runtime: GpuRuntime, call: TensorCoreLinearCall, tile: TensorCoreTile = DEFAULT_TENSORCORE_TILE): Promise<void> {
  const o = tensorCoreLinearOptions(call, tile);
  const pipeline = await runtime.pipeline(kernel, o);
  const g = tensorCoreGemmGeometry(o);
  const B = TENSORCORE_GEMM_BINDINGS;
  const params = TENSORCORE_GEMM_PARAMS.pack({
    m: call.rows, n: call.outDim, k: call.inDim,
    a_off: call.xOffset ?? 0, a_stride: call.xStride ?? call.inDim, c_off: call.outOffset ?? 0, c_stride: call.outStride ?? call.outDim,
  });
  const entries: Record<number, GPUBuffer | GPUBufferBinding> = {
    [B.params]: runtime.uniform(params, `${call.label} params`),
    [B.a]: call.x,
    [B.b]: call.weight,
    [B.c]: call.out,
  };
  if (call.bias) entries[B.bias] = call.bias;
  runtime.dispatch({
    label: call.label,
    pipeline,
    bindGroups: [runtime.bindGroup(pipeline, 0, entries)],
    workgroups: [Math.ceil(call.outDim / g.n), Math.ceil(call.rows / g.m)],
  });
}

/** A tile from JSON (FUSEDATTN_*_GEMM_TILE, bench flags): missing fields from the default tile. */
export function parseTensorCoreTile(text: string): TensorCoreTile {
  const value = JSON.parse(text) as Partial<TensorCoreTile>;
  return { ...DEFAULT_TENSORCORE_TILE, ...value, kind: 'tensorcore' };
}

/** FUSEDATTN_GEMM_TILE as a tile (undefined when unset); UnsupportedError when it is not JSON. */
export function tensorCoreTileFromEnv(): TensorCoreTile | undefined {
  const text = envString('FUSEDATTN_GEMM_TILE');
  if (text === undefined) return undefined;
  try {
    return parseTensorCoreTile(text);
  } catch {
    throw new UnsupportedError('FUSEDATTN_GEMM_TILE', `FUSEDATTN_GEMM_TILE must be a JSON tile of the tensor-core GEMM, got ${text.slice(0, 80)}`);
  }
}

/** FUSEDATTN_RUNNER_GEMM: 'tensorcore' opts the runner's f16 prefill linears in (default 'portable'). */
export function runnerGemmFromEnv(): 'portable' | 'tensorcore' {
  return envChoice('FUSEDATTN_RUNNER_GEMM', ['portable', 'tensorcore'] as const) ?? 'tensorcore';
}
