// What one block call cost: the numbers the block benchmark and the CLI print.
import type { Tensor } from '../core/tensor.js';

export type BlockPath = 'fused' | 'unfused';

export interface BlockStats {
  path: BlockPath;
  backend: 'cpu' | 'webgpu';
  /**
   * WebGPU: compute dispatches queued. CPU: jobs handed to the worker pool plus whole-tensor passes
   * on the calling thread (bias adds, transposes, RoPE, masks...): the CPU analogue of a launch.
   */
  dispatches: number;
  /** WebGPU queue submits (0 on the CPU). */
  submits: number;
  /** Peak bytes of intermediates the call allocated (packed QKV, scores, transposed copies...). */
  intermediateBytes: number;
  /** Dispatch labels in order, e.g. ["qkv-gemm", "block-attention", "o-gemm"]. */
  kernels: string[];
}

export interface BlockResult {
  /** [B, S, H] (or [S, B, H]) float32, on the device of the input. */
  out: Tensor;
  stats: BlockStats;
}
