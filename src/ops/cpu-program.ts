// The program the CPU engine runs (engines/cpu/program.ts): every op's WASM SIMD micro-kernels in
// one module (compiled once, instantiated by each worker on the shared memory), their scalar twins,
// and every op's tasks by job kind. This is the one place that lists them: a new op's CPU kernels
// are added here (see docs/ARCHITECTURE.md, "Adding an op").
import { envFlag } from '../core/env.js';
import { ModuleBuilder } from '../engines/cpu/wasm/encoder.js';
import type { CompiledProgram, CpuProgram, KernelKind } from '../engines/cpu/program.js';
import { type AttentionKernels, DEFAULT_TILE_OPTIONS, scalarAttentionKernels, tileGeometry } from './attention/cpu/kernels.js';
import { type FlashParams, flashPackTask, flashTask } from './attention/cpu/flash.js';
import { type NaiveParams, naivePvTask, naiveScoresTask, naiveSoftmaxTask } from './attention/cpu/naive.js';
import { SOFTMAX_SIGNATURES, addSoftmaxKernels } from './attention/cpu/wasm-softmax.js';
import { TILE_SIGNATURES, type TileOptions, addTileKernels } from './attention/cpu/wasm-tiles.js';
import { type GemmKernels, scalarGemmKernels } from './gemm/cpu/kernels.js';
import { BACKWARD_SIGNATURES, type BackwardKernels, addBackwardKernels, scalarBackwardKernels } from './attention/backward/cpu/kernels.js';
import { DROPOUT_SIGNATURES, addDropoutKernels } from './attention/dropout/wasm.js';
import { type BackwardParams, backwardDqSumTask, backwardHeadTask, backwardKvTask, backwardPreTask, backwardQTask } from './attention/backward/cpu/tasks.js';
import { type NaiveBackwardParams, backwardNaiveTask } from './attention/backward/cpu/naive.js';
import { type MatmulParams, matmulTask } from './gemm/cpu/matmul-task.js';
import { type ApproxParams, approxTask } from './approx/cpu/linear.js';
import { DEFAULT_GEMM_KERNEL_OPTIONS, GEMM_SIGNATURES, type GemmKernelOptions, addGemmKernels } from './gemm/cpu/wasm-kernels.js';

/** Build options of the whole module: every family's register blocks and tile sizes. */
export type KernelTuning = Omit<GemmKernelOptions, 'relaxed'> & Omit<TileOptions, 'relaxed'>;

export const DEFAULT_KERNEL_OPTIONS: KernelTuning = { ...DEFAULT_TILE_OPTIONS, ...DEFAULT_GEMM_KERNEL_OPTIONS };

/** Names and parameter lists of the exported kernels (the JS side binds to these). */
export const KERNEL_SIGNATURES = { ...GEMM_SIGNATURES, ...SOFTMAX_SIGNATURES, ...TILE_SIGNATURES, ...BACKWARD_SIGNATURES, ...DROPOUT_SIGNATURES } as const;

/** The kernels every CPU task receives. */
export type CpuKernels = {
  readonly kind: KernelKind;
  /** The memory the kernels run on: kernels generated per call (attention score/mask functions) instantiate on it too. */
  readonly memory: WebAssembly.Memory | { readonly buffer: ArrayBufferLike };
} & GemmKernels & AttentionKernels & BackwardKernels;

/** Job kinds and their parameters. */
export interface CpuJobs {
  flash: FlashParams;
  'flash-pack': FlashParams;
  'naive-scores': NaiveParams;
  'naive-softmax': NaiveParams;
  'naive-pv': NaiveParams;
  matmul: MatmulParams;
  /** Linear attention and Performer, one task per (batch, query head). */
  'approx-linear': ApproxParams;
  'bwd-pre': BackwardParams;
  'bwd-kv': BackwardParams;
  'bwd-q': BackwardParams;
  'bwd-head': BackwardParams;
  'bwd-dq-sum': BackwardParams;
  'bwd-naive': NaiveBackwardParams;
}

export interface KernelModuleOptions extends KernelTuning {
  relaxed: boolean;
  /** Shared memory (threads) or a plain one. */
  shared: boolean;
  maximumPages: number;
}

export function buildKernelModule(o: KernelModuleOptions): ModuleBuilder {
  const m = new ModuleBuilder({ shared: o.shared, maximumPages: o.maximumPages });
  addGemmKernels(m, o);
  addSoftmaxKernels(m);
  addTileKernels(m, o);
  addBackwardKernels(m);
  addDropoutKernels(m);
  return m;
}

/** A Float32Array over the memory's current buffer (a new view when the memory has grown). */
function floatView(memory: { readonly buffer: ArrayBufferLike }): () => Float32Array<ArrayBufferLike> {
  let buffer: ArrayBufferLike | undefined;
  let view: Float32Array<ArrayBufferLike> = new Float32Array(0);
  return () => {
    if (memory.buffer !== buffer || view.byteLength !== memory.buffer.byteLength) {
      buffer = memory.buffer;
      view = new Float32Array(buffer);
    }
    return view;
  };
}

export async function compileKernels(shared: boolean, maximumPages: number, relaxed: boolean, tuning: Partial<KernelTuning> = {}): Promise<CompiledProgram> {
  const options: KernelModuleOptions = { ...DEFAULT_KERNEL_OPTIONS, ...tuning, relaxed, shared, maximumPages };
  const builder = buildKernelModule(options);
  if (envFlag('FUSEDATTN_DEBUG_WASM')) console.log(builder.wat());
  const module = await WebAssembly.compile(builder.bytes());
  return { module, kind: relaxed ? 'wasm-relaxed-simd' : 'wasm-simd', tuning };
}

export function instantiateKernels(compiled: CompiledProgram, memory: WebAssembly.Memory): CpuKernels {
  const instance = new WebAssembly.Instance(compiled.module, { env: { memory } });
  const exports = instance.exports as unknown as Record<string, unknown>;
  const kernels: Record<string, unknown> = { kind: compiled.kind, memory, tiles: tileGeometry(compiled.tuning as Partial<TileOptions>) };
  for (const name of Object.keys(KERNEL_SIGNATURES)) {
    if (typeof exports[name] !== 'function') throw new Error(`CPU kernels: export ${name} missing`);
    kernels[name] = exports[name];
  }
  return kernels as unknown as CpuKernels;
}

/** Plain JavaScript kernels with the semantics of the WASM ones (Math.exp, sequential sums). */
export function scalarKernels(memory: { readonly buffer: ArrayBufferLike }, tuning: Partial<KernelTuning> = {}): CpuKernels {
  const f = floatView(memory);
  return { kind: 'scalar', memory, ...scalarGemmKernels(f), ...scalarAttentionKernels(f, tileGeometry(tuning)), ...scalarBackwardKernels(f) };
}

export const CPU_PROGRAM: CpuProgram<CpuKernels, CpuJobs, KernelTuning> = {
  compile: (r) => compileKernels(r.shared, r.maximumPages, r.relaxed, r.tuning),
  instantiate: instantiateKernels,
  scalar: scalarKernels,
  tasks: {
    flash: flashTask,
    'flash-pack': flashPackTask,
    'naive-scores': naiveScoresTask,
    'naive-softmax': naiveSoftmaxTask,
    'naive-pv': naivePvTask,
    matmul: matmulTask,
    'approx-linear': approxTask,
    'bwd-pre': backwardPreTask,
    'bwd-kv': backwardKvTask,
    'bwd-q': backwardQTask,
    'bwd-head': backwardHeadTask,
    'bwd-dq-sum': backwardDqSumTask,
    'bwd-naive': backwardNaiveTask,
  },
};
