// The attention block on WebGPU: the fused path (3 dispatches) and the unfused reference (~15-20).
//
// fused:    qkv-gemm         x [rows, H] · [Wq; Wk; Wv]ᵀ + [bq; bk; bv]  ->  qkv [rows, W]
//           block-attention  reads Q/K/V from qkv by offset, RoPE while staging, GQA by index,
//                            KV cache read/append (attention.wgsl.ts)     ->  attn [rows, Nq D]
//           o-gemm           attn · Woᵀ (+ bo)                             ->  out [rows, H]
// unfused:  the HF eager sequence (unfused.ts).
import { UnsupportedError } from '../../core/errors.js';
import { floatsToHalf } from '../../core/dtype.js';
import { type GpuRuntime, defineKernel } from '../../backends/webgpu/runtime.js';
import { STORAGE_USAGE } from '../../backends/webgpu/usage.js';
import type { BlockSpec, WeightData } from '../config.js';
import { asFloat32, packQkv } from '../pack.js';
import { ropeTable } from '../rope.js';
import type { BlockCall } from '../shape.js';
import type { BlockResult } from '../stats.js';
import {
  BLOCK_ATTENTION_BINDINGS, BLOCK_ATTENTION_PARAMS, BLOCK_ATTENTION_TILES, type BlockAttentionOptions, type BlockAttentionTile,
  blockAttentionWorkgroupBytes, buildBlockAttention,
} from './attention.wgsl.js';
import { type GemmChoice, type GemmTier, type GpuLinear, chooseGemm, linearPipeline, queueLinear } from './gemm.js';
import { type BoundCall, runBlockCall } from './io.js';
import { queueUnfused, type UnfusedWeights } from './unfused.js';

export const blockAttentionKernel = defineKernel<BlockAttentionOptions>('block-attention', buildBlockAttention);

export interface GpuBlockOptions {
  /** GEMM tier (default 'auto': subgroup matrices where present with float16 weights). */
  gemm?: GemmChoice;
  /** Store the weights on the GPU in this dtype (default: the dtype they were given in). */
  weightDType?: 'float32' | 'float16';
  /** Force an attention tile (benchmarks); default: the first of BLOCK_ATTENTION_TILES that fits. */
  tile?: BlockAttentionTile;
}

/** A table of RoPE cos/sin rows on the GPU: cos [rows, D/2] then sin [rows, D/2]. */
export interface GpuRopeTable {
  buffer: GPUBuffer;
  rows: number;
}

/** Per-call extras for callers that manage positions themselves (the model runner, decode replay). */
export interface GpuCallExtras {
  /** u32 [start, rope_base] the kernels read positions from (default: uploaded from call.start, 0). */
  positions?: GPUBuffer;
  /** A RoPE table other than the block's own (e.g. the runner's per-step table). */
  rope?: GpuRopeTable;
}

export class GpuBlock {
  readonly tier: GemmTier;
  readonly tile: BlockAttentionTile;
  private unfusedWeights: UnfusedWeights | undefined;

  private constructor(
    readonly runtime: GpuRuntime,
    readonly spec: BlockSpec,
    readonly weightDType: 'float32' | 'float16',
    tier: GemmTier,
    tile: BlockAttentionTile,
    private readonly qkv: GpuLinear,
    private readonly o: GpuLinear,
    readonly rope: GpuRopeTable,
    private readonly owned: GPUBuffer[],
  ) {
    this.tier = tier;
    this.tile = tile;
  }

  static async create(runtime: GpuRuntime, spec: BlockSpec, options: GpuBlockOptions = {}): Promise<GpuBlock> {
    const dtype = options.weightDType ?? spec.weightDType;
    const tier = chooseGemm(runtime, options.gemm ?? 'auto', dtype);
    const tile = options.tile ?? BLOCK_ATTENTION_TILES.find((t) => fitsTile(runtime, t, spec.headDim));
    if (!tile) {
      throw new UnsupportedError('config.headDim', `head dim ${spec.headDim} needs ${blockAttentionWorkgroupBytes(BLOCK_ATTENTION_TILES.at(-1)!, spec.headDim)} bytes of workgroup memory but maxComputeWorkgroupStorageSize is ${runtime.limits.maxComputeWorkgroupStorageSize}`);
    }
    const owned: GPUBuffer[] = [];
    const upload = (data: ArrayBufferView, label: string) => {
      const buffer = runtime.createBuffer(data.byteLength, label, STORAGE_USAGE);
      runtime.write(buffer, 0, data);
      owned.push(buffer);
      return buffer;
    };
    const weight = (w: WeightData) => (dtype === 'float16' ? (w instanceof Uint16Array ? w : floatsToHalf(w)) : asFloat32(w));
    const { H, W, qd } = sizes(spec);
    const packed = packQkv(spec);
    const qkv: GpuLinear = { weight: upload(weight(packed.weight), 'block Wqkv'), dtype, outDim: W, inDim: H, bias: packed.bias ? upload(packed.bias, 'block bqkv') : undefined };
    const w = spec.weights;
    const o: GpuLinear = { weight: upload(weight(w.o), 'block Wo'), dtype, outDim: H, inDim: qd, bias: w.oBias ? upload(asFloat32(w.oBias), 'block bo') : undefined };
    const table = ropeTable(spec.rope, spec.headDim, 0, spec.maxPositions);
    const ropeData = new Float32Array(table.cos.length * 2);
    ropeData.set(table.cos, 0);
    ropeData.set(table.sin, table.cos.length);
    const rope = { buffer: upload(ropeData, 'block rope table'), rows: spec.maxPositions };
    const block = new GpuBlock(runtime, spec, dtype, tier, tile, qkv, o, rope, owned);
    await Promise.all([linearPipeline(runtime, tier, qkv), linearPipeline(runtime, tier, o), block.attentionPipeline(false)]);
    return block;
  }

  /** The three-dispatch path. */
  fused(call: BlockCall, extras: GpuCallExtras = {}): Promise<BlockResult> {
    return runBlockCall(this.runtime, 'fused', call, this.spec.hidden, (bound) => this.queueFused(call, bound, extras));
  }

  /** The traditional sequence of separate kernels. */
  unfused(call: BlockCall, extras: GpuCallExtras = {}): Promise<BlockResult> {
    return runBlockCall(this.runtime, 'unfused', call, this.spec.hidden, async (bound) => {
      this.unfusedWeights ??= this.createUnfusedWeights();
      await queueUnfused(this.runtime, this.spec, this.tier, this.unfusedWeights, call, bound, this.positions(call, extras), extras.rope ?? this.rope);
    });
  }

  /** Queues the fused path's three dispatches (for callers that manage buffers themselves). */
  async queueFused(call: BlockCall, bound: BoundCall, extras: GpuCallExtras = {}): Promise<void> {
    const rt = this.runtime;
    const { W, qd, kvd } = sizes(this.spec);
    const rope = extras.rope ?? this.rope;
    const cache = bound.keys !== undefined;
    const pipeline = await this.attentionPipeline(cache);
    const qkv = rt.acquire(call.rows * W * 4, 'intermediate', 'packed qkv');
    const attn = rt.acquire(call.rows * qd * 4, 'intermediate', 'attention output');
    try {
      await queueLinear(rt, this.tier, this.qkv, { x: bound.x.binding, xOffset: bound.x.elementBase, rows: call.rows, out: qkv, label: 'qkv-gemm' });
      const B = BLOCK_ATTENTION_BINDINGS;
      const params = BLOCK_ATTENTION_PARAMS.pack({
        row_b: call.rowStrideB, row_s: call.rowStrideS, qkv_width: W, out_width: qd, seq: call.seq, batch: call.batch,
        kv_width: kvd, k_col: qd, v_col: qd + kvd, group: this.spec.group, scale: this.spec.scale,
        kc_off: bound.keys?.elementBase ?? 0, vc_off: bound.values?.elementBase ?? 0, rope_rows: rope.rows,
      });
      const entries: Record<number, GPUBuffer | GPUBufferBinding> = {
        [B.params]: rt.uniform(params, 'block attention params'),
        [B.qkv]: qkv,
        [B.rope]: rope.buffer,
        [B.step]: this.positions(call, extras),
        [B.out]: attn,
      };
      if (bound.keys && bound.values) {
        entries[B.kCache] = bound.keys.binding;
        entries[B.vCache] = bound.values.binding;
      }
      rt.dispatch({
        label: 'block-attention',
        pipeline,
        bindGroups: [rt.bindGroup(pipeline, 0, entries)],
        workgroups: [Math.ceil(call.seq / this.tile.rows), this.spec.heads, call.batch],
      });
      await queueLinear(rt, this.tier, this.o, { x: attn, rows: call.rows, out: bound.out, label: 'o-gemm' });
    } finally {
      rt.release(qkv);
      rt.release(attn);
    }
  }

  /** Frees the weights and tables (the block is unusable afterwards). */
  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
    if (this.unfusedWeights) for (const b of this.unfusedWeights.owned) b.destroy();
    this.unfusedWeights = undefined;
  }

  private attentionPipeline(cache: boolean) {
    return this.runtime.pipeline(blockAttentionKernel, { headDim: this.spec.headDim, cache, tile: this.tile });
  }

  private positions(call: BlockCall, extras: GpuCallExtras): GPUBuffer {
    return extras.positions ?? this.runtime.uploadTransient(new Uint32Array([call.start, 0]), 'block positions');
  }

  private createUnfusedWeights(): UnfusedWeights {
    const rt = this.runtime;
    const spec = this.spec;
    const owned: GPUBuffer[] = [];
    const upload = (data: ArrayBufferView, label: string) => {
      const buffer = rt.createBuffer(data.byteLength, label, STORAGE_USAGE);
      rt.write(buffer, 0, data);
      owned.push(buffer);
      return buffer;
    };
    const dtype = this.weightDType;
    const weight = (w: WeightData) => (dtype === 'float16' ? (w instanceof Uint16Array ? w : floatsToHalf(w)) : asFloat32(w));
    const { H, qd, kvd } = sizes(spec);
    const w = spec.weights;
    const linear = (data: WeightData, outDim: number, inDim: number, label: string): GpuLinear => ({ weight: upload(weight(data), label), dtype, outDim, inDim });
    const bias = (data: WeightData | undefined, label: string) => (data ? upload(asFloat32(data), label) : undefined);
    return {
      q: linear(w.q, qd, H, 'block Wq'),
      k: linear(w.k, kvd, H, 'block Wk'),
      v: linear(w.v, kvd, H, 'block Wv'),
      o: linear(w.o, H, qd, 'block Wo (unfused)'),
      qBias: bias(w.qBias, 'block bq'),
      kBias: bias(w.kBias, 'block bk'),
      vBias: bias(w.vBias, 'block bv'),
      oBias: bias(w.oBias, 'block bo (unfused)'),
      owned,
    };
  }
}

function fitsTile(runtime: GpuRuntime, t: BlockAttentionTile, headDim: number): boolean {
  const l = runtime.limits;
  return t.threads <= l.maxComputeInvocationsPerWorkgroup && t.threads <= l.maxComputeWorkgroupSizeX &&
    blockAttentionWorkgroupBytes(t, headDim) <= l.maxComputeWorkgroupStorageSize;
}

export function sizes(spec: BlockSpec): { H: number; W: number; qd: number; kvd: number } {
  const qd = spec.heads * spec.headDim;
  const kvd = spec.kvHeads * spec.headDim;
  return { H: spec.hidden, W: qd + 2 * kvd, qd, kvd };
}
