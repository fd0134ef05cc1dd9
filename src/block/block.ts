// AttentionBlock: the attention module of a Qwen2/Llama decoder layer, fused.
//
//   const block = await AttentionBlock.create({ hidden: 4096, heads: 32, kvHeads: 8, rope: { theta: 1e6 } },
//                                             { q, k, v, o, qBias, kBias, vBias });
//   const { out, stats } = await block.forward(hidden);          // [B, S, H] -> [B, S, H], 3 dispatches
//   const ref = await block.forwardUnfused(hidden);              // the same, the traditional way
//
// forward: one GEMM with the packed [Wq; Wk; Wv] (+ packed bias) -> attention reading Q/K/V straight
// out of the packed buffer with RoPE in the kernel and GQA by index (KV cache read + append when
// given) -> O projection. forwardUnfused: separate projections, bias adds, transposes, RoPE, repeat-KV,
// QKᵀ, scale + mask, softmax, PV, transpose back, O projection. Both causal, both on CPU or WebGPU.
import { UnsupportedError, ValueError, show } from '../core/errors.js';
import type { TensorInput } from '../core/tensor.js';
import { autoBackend } from '../ops/attention/index.js';
import { type AttentionBlockConfig, type AttentionBlockWeights, type BlockSpec, validateBlock } from './config.js';
import { type BlockForwardOptions, validateForward } from './shape.js';
import type { BlockResult } from './stats.js';
import type { CpuBlock } from './cpu/block.js';
import type { GpuBlock, GpuBlockOptions } from './webgpu/block.js';

export interface AttentionBlockOptions extends GpuBlockOptions {
  /** 'auto' (default): as attention() decides (WebGPU on a hardware adapter or a caller's device, else the CPU). */
  backend?: 'cpu' | 'webgpu' | 'auto';
  /** A GPUDevice of the caller's (WebGPU). */
  device?: GPUDevice;
}

export class AttentionBlock {
  private constructor(
    readonly spec: BlockSpec,
    readonly backend: 'cpu' | 'webgpu',
    private readonly cpu: CpuBlock | undefined,
    /** The WebGPU implementation (GEMM tier, attention tile, runtime), when backend is 'webgpu'. */
    readonly gpu: GpuBlock | undefined,
  ) {}

  /** Validates config and weights (typed errors), then prepares the weights on the backend. */
  static async create(config: AttentionBlockConfig, weights: AttentionBlockWeights, options: AttentionBlockOptions = {}): Promise<AttentionBlock> {
    const spec = validateBlock(config, weights);
    const choice = options.backend ?? 'auto';
    if (choice !== 'cpu' && choice !== 'webgpu' && choice !== 'auto') {
      throw new ValueError('options.backend', `options.backend must be "cpu", "webgpu" or "auto", got ${show(choice)}`);
    }
    const backend = choice === 'auto' ? await autoBackend({ device: options.device }) : choice;
    if (backend === 'cpu') {
      if (options.gemm && options.gemm !== 'auto' && options.gemm !== 'portable') {
        throw new UnsupportedError('options.gemm', `GEMM tier ${show(options.gemm)} is WebGPU only`);
      }
      const { CpuBlock } = await import('./cpu/block.js');
      return new AttentionBlock(spec, 'cpu', new CpuBlock(spec), undefined);
    }
    const { getRuntime } = await import('../engines/webgpu/runtime.js');
    const { GpuBlock } = await import('./webgpu/block.js');
    const runtime = await getRuntime(options.device);
    return new AttentionBlock(spec, 'webgpu', undefined, await GpuBlock.create(runtime, spec, options));
  }

  /**
   * The fused block. `hidden` is [B, S, H] (layout 'BSH') or [S, B, H] ('SBH'), float32, on the
   * CPU or (WebGPU backend) the GPU; the output is the same shape on the same device. Causal: token
   * s attends to the cache's positions < start and to new tokens <= s. With `cache`, the new tokens'
   * keys and values (after RoPE) are written to it at start .. start + S - 1.
   */
  async forward(hidden: TensorInput, options: BlockForwardOptions = {}): Promise<BlockResult> {
    const call = validateForward(this.spec, hidden, options);
    this.checkLocation(call.x.location);
    return this.cpu ? this.cpu.fused(call) : this.gpu!.fused(call);
  }

  /** The same module computed the traditional unfused way (the baseline). */
  async forwardUnfused(hidden: TensorInput, options: BlockForwardOptions = {}): Promise<BlockResult> {
    const call = validateForward(this.spec, hidden, options);
    this.checkLocation(call.x.location);
    return this.cpu ? this.cpu.unfused(call) : this.gpu!.unfused(call);
  }

  /** Frees GPU weights (WebGPU); the block cannot be used afterwards. */
  destroy(): void {
    this.gpu?.destroy();
  }

  private checkLocation(location: 'cpu' | 'webgpu'): void {
    if (this.backend === 'cpu' && location === 'webgpu') {
      throw new UnsupportedError('hidden', 'this block runs on the CPU backend and cannot read GPU tensors; read them back or create the block with backend "webgpu"');
    }
  }
}
