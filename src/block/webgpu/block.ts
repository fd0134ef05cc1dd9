// The attention block on WebGPU: the fused path (3 dispatches) and the unfused reference (~15-20).
//
// fused:    qkv-gemm         x [rows, H] · [Wq; Wk; Wv]ᵀ + [bq; bk; bv]  ->  qkv [rows, W]
//           block-attention  reads Q/K/V from qkv by offset, RoPE while staging, GQA by index,
//                            KV cache read/append                          ->  attn [rows, Nq D]
//           o-gemm           attn · Woᵀ (+ bo)                             ->  out [rows, H]
// Prefill (S > 1) runs block-attention on the library's flash tiers (flash-block.ts): the tensor-core
// kernel with float16 qkv/attn where the GEMMs run on subgroup matrices, else the portable f32 one.
// Decode (S = 1) runs the block's own kernel (attention.wgsl.ts), which can split the keys.
// unfused:  the HF eager sequence (unfused.ts).
import { UnsupportedError } from '../../core/errors.js';
import { floatsToHalf } from '../../core/dtype.js';
import { type GpuRuntime, defineKernel } from '../../engines/webgpu/runtime.js';
import { STORAGE_USAGE } from '../../engines/webgpu/usage.js';
import type { BlockDims, BlockSpec, WeightData } from '../config.js';
import { asFloat32, packQkv } from '../pack.js';
import { ropeTable } from '../rope.js';
import type { BlockCall, BlockGeometry } from '../shape.js';
import type { BlockResult } from '../stats.js';
import {
  BLOCK_ATTENTION_BINDINGS, BLOCK_ATTENTION_PARAMS, BLOCK_ATTENTION_TILES, BLOCK_COMBINE_PARAMS, BLOCK_COMBINE_THREADS,
  type BlockAttentionOptions, type BlockAttentionTile, blockAttentionWorkgroupBytes, buildBlockAttention, buildBlockCombine, tileShape,
  BLOCK_ATTENTION_ROWS_TILES,
} from './attention.wgsl.js';
import { flatGrid } from './unfused.wgsl.js';
import { type GemmChoice, type GemmTier, type GpuLinear, type SgmatKernelChoice, chooseGemm, defaultGemmKernel, linearPipeline, queueLinear, tiledLinearFits } from '../../ops/gemm/webgpu/index.js';
import type { SgMatrixConfig } from '../../ops/attention/webgpu/index.js';
import { type BlockFlashTier, blockFlashPipeline, portableBlockUnsupported, queueBlockFlash, sgMatrixBlockChoice } from '../../ops/attention/webgpu/index.js';
import { type BoundCall, runBlockCall } from './io.js';
import { queueUnfused, type UnfusedWeights } from './unfused.js';
import { type BlockDecodeCache, type BlockDecodeFusion, blockDecodePlan, queueBlockDecode } from './decode.js';

export const blockAttentionKernel = defineKernel<BlockAttentionOptions>('block-attention', buildBlockAttention);
export const blockCombineKernel = defineKernel<{ headDim: number }>('block-attention-combine', buildBlockCombine);

/**
 * Default of GpuBlockOptions.minWorkgroups: enough resident workgroups for a large GPU (an H200 has
 * 132 SMs). At 256, decode at B 8 (32 heads x 8) stayed unsplit and lost to the unfused path.
 */
export const MIN_ATTENTION_WORKGROUPS = 1024;
/** Most key splits per query block. */
const MAX_SPLITS = 64;

export interface GpuBlockOptions {
  /** GEMM tier (default 'auto': subgroup matrices where present with float16 weights). */
  gemm?: GemmChoice;
  /** Store the weights on the GPU in this dtype (default: the dtype they were given in). */
  weightDType?: 'float32' | 'float16';
  /** Force an attention tile (benchmarks); default: the first of BLOCK_ATTENTION_TILES that fits. */
  tile?: BlockAttentionTile;
  /**
   * The attention kernel: 'flash' (default): prefill (S > 1) on the flash tiers (flash-block.ts),
   * decode on the block's own register-blocked kernel; 'tiled': the block's own kernel always;
   * 'rows': its first thread layout, kept for comparison (see attention-core.wgsl.ts).
   */
  attentionKernel?: 'flash' | 'tiled' | 'rows';
  /** Tensor-core GEMM kernel (benchmarks): a tile of the tiled kernel, 'simple', or a general tensor-core tile. Default: defaultGemmKernel(). */
  gemmKernel?: SgmatKernelChoice;
  /** Tensor-core flash configuration for prefill (benchmarks). Default: the tier's first that fits. */
  flashConfig?: SgMatrixConfig;
  /**
   * When the attention grid (query blocks x heads x batch) has fewer workgroups than this, the
   * keys are split over several workgroups per query block and merged by a 4th dispatch (decode,
   * small batches). Default 1024; 0 never splits (always 3 dispatches).
   */
  minWorkgroups?: number;
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
  private ownRope: GpuRopeTable | undefined;

  private constructor(
    readonly runtime: GpuRuntime,
    readonly dims: BlockDims,
    /** The host weights, for the unfused path (absent for blocks made from GPU weights). */
    private readonly spec: BlockSpec | undefined,
    readonly weightDType: 'float32' | 'float16',
    tier: GemmTier,
    tile: BlockAttentionTile,
    private readonly qkv: GpuLinear,
    private readonly o: GpuLinear,
    private readonly owned: GPUBuffer[],
    private readonly minWorkgroups: number,
    private readonly options: GpuBlockOptions,
  ) {
    this.tier = tier;
    this.tile = tile;
  }

  /** Uploads the block's weights ([Wq; Wk; Wv] packed once) and compiles its kernels. */
  static async create(runtime: GpuRuntime, spec: BlockSpec, options: GpuBlockOptions = {}): Promise<GpuBlock> {
    const dtype = options.weightDType ?? spec.weightDType;
    const owned: GPUBuffer[] = [];
    const upload = (data: ArrayBufferView, label: string) => uploadOwned(runtime, owned, data, label);
    const weight = (w: WeightData) => (dtype === 'float16' ? (w instanceof Uint16Array ? w : floatsToHalf(w)) : asFloat32(w));
    const { H, W, qd } = sizes(spec);
    const packed = packQkv(spec);
    const qkv: GpuLinear = { weight: upload(weight(packed.weight), 'block Wqkv'), dtype, outDim: W, inDim: H, bias: packed.bias ? upload(packed.bias, 'block bqkv') : undefined };
    const w = spec.weights;
    const o: GpuLinear = { weight: upload(weight(w.o), 'block Wo'), dtype, outDim: H, inDim: qd, bias: w.oBias ? upload(asFloat32(w.oBias), 'block bo') : undefined };
    const block = await GpuBlock.assemble(runtime, spec, spec, dtype, qkv, o, owned, options);
    void block.rope; // upload the table now: a first call inside a scope must not write it
    return block;
  }

  /**
   * A block on weights already on the GPU (the model runner's): `qkv` is the packed [Wq; Wk; Wv]
   * [W, H] with its packed bias, `o` is Wo [H, Nq D]. The fused path only (no unfused weights).
   * `owned` buffers are destroyed with the block.
   */
  static fromLinears(runtime: GpuRuntime, dims: BlockDims, qkv: GpuLinear, o: GpuLinear, owned: GPUBuffer[], options: GpuBlockOptions = {}): Promise<GpuBlock> {
    return GpuBlock.assemble(runtime, dims, undefined, qkv.dtype, qkv, o, owned, options);
  }

  private static async assemble(
    runtime: GpuRuntime, dims: BlockDims, spec: BlockSpec | undefined, dtype: 'float32' | 'float16',
    qkv: GpuLinear, o: GpuLinear, owned: GPUBuffer[], options: GpuBlockOptions,
  ): Promise<GpuBlock> {
    const tier = chooseGemm(runtime, options.gemm ?? 'auto', dtype);
    const tiles = options.attentionKernel === 'rows' ? BLOCK_ATTENTION_ROWS_TILES : BLOCK_ATTENTION_TILES;
    const tile = options.tile ?? tiles.find((t) => fitsTile(runtime, t, dims.headDim));
    if (!tile) {
      throw new UnsupportedError('config.headDim', `head dim ${dims.headDim} needs ${blockAttentionWorkgroupBytes(tiles.at(-1)!, dims.headDim)} bytes of workgroup memory but maxComputeWorkgroupStorageSize is ${runtime.limits.maxComputeWorkgroupStorageSize}`);
    }
    const block = new GpuBlock(runtime, dims, spec, dtype, tier, tile, qkv, o, owned, options.minWorkgroups ?? MIN_ATTENTION_WORKGROUPS, options);
    await block.compile();
    return block;
  }

  /** The block's own RoPE table (positions 0 .. maxPositions - 1), uploaded on first use. */
  get rope(): GpuRopeTable {
    if (!this.ownRope) {
      const table = ropeTable(this.dims.rope, this.dims.headDim, 0, this.dims.maxPositions);
      const data = new Float32Array(table.cos.length * 2);
      data.set(table.cos, 0);
      data.set(table.sin, table.cos.length);
      this.ownRope = { buffer: uploadOwned(this.runtime, this.owned, data, 'block rope table'), rows: this.dims.maxPositions };
    }
    return this.ownRope;
  }

  /**
   * The flash tier that runs a call's attention (undefined: the block's own kernel): prefill only,
   * 'sgmatrix' where the GEMMs run on subgroup matrices and can read and write float16 activations.
   */
  flashTier(call: Pick<BlockGeometry, 'seq'>, cache: boolean, cacheOffsets: readonly number[] = [0, 0]): BlockFlashTier | undefined {
    if ((this.options.attentionKernel ?? 'flash') !== 'flash' || this.options.tile || call.seq < 2) return undefined;
    const { qd } = sizes(this.dims);
    if (this.tier === 'subgroup-matrix' && tiledLinearFits(this.qkv, {}) && tiledLinearFits(this.o, { xDType: 'float16', xStride: qd }) &&
      typeof sgMatrixBlockChoice(this.runtime, this.dims, cache, cacheOffsets, this.options.flashConfig) !== 'string') return 'sgmatrix';
    return portableBlockUnsupported(this.runtime, this.dims) === undefined ? 'portable' : undefined;
  }

  /** What runs a call's attention: 'flash-sgmatrix', 'flash-portable', or the block's own kernel ('tiled', 'rows'). */
  attentionName(call: Pick<BlockGeometry, 'seq'>, cache: boolean): string {
    const flash = this.flashTier(call, cache);
    return flash ? `flash-${flash}` : this.tile.kind;
  }

  /** The three-dispatch path. */
  fused(call: BlockCall, extras: GpuCallExtras = {}): Promise<BlockResult> {
    return runBlockCall(this.runtime, 'fused', call, this.dims.hidden, (bound) => this.queueFused(call, bound, extras));
  }

  /** The traditional sequence of separate kernels. */
  unfused(call: BlockCall, extras: GpuCallExtras = {}): Promise<BlockResult> {
    const spec = this.spec;
    if (!spec) throw new UnsupportedError('path', 'this block was made from GPU weights (fused path only); the unfused path needs the host weights');
    return runBlockCall(this.runtime, 'unfused', call, spec.hidden, async (bound) => {
      this.unfusedWeights ??= this.createUnfusedWeights(spec);
      await queueUnfused(this.runtime, spec, this.tier, this.unfusedWeights, call, bound, this.positions(call, extras), extras.rope ?? this.rope, this.options.gemmKernel);
    });
  }

  /** Queues the fused path's three dispatches (for callers that manage buffers themselves). */
  async queueFused(call: BlockGeometry, bound: BoundCall, extras: GpuCallExtras = {}): Promise<void> {
    // decode (S = 1 with a cache): GEMVs and the split-KV kernel of decode.ts where they apply
    if (await queueBlockDecode(this.runtime, this.dims, this.qkv, this.o, call, bound, { rope: extras.rope ?? this.rope, positions: extras.positions }, this.minWorkgroups)) return;
    const rt = this.runtime;
    const { W, qd, kvd } = sizes(this.dims);
    const { heads, headDim: D } = this.dims;
    const rope = extras.rope ?? this.rope;
    const cache = bound.keys !== undefined;
    const flash = this.flashTier(call, cache, [bound.keys?.elementBase ?? 0, bound.values?.elementBase ?? 0]);
    if (flash) return this.queueFlash(flash, call, bound, extras);
    const splits = this.splitsFor(call, cache);
    const pipeline = await this.attentionPipeline(cache, splits > 1);
    const qkv = rt.acquire(call.rows * W * 4, 'intermediate', 'packed qkv');
    const attn = rt.acquire(call.rows * qd * 4, 'intermediate', 'attention output');
    const partial = splits > 1 ? rt.acquire(call.batch * heads * call.seq * splits * (D + 2) * 4, 'intermediate', 'attention partials') : undefined;
    try {
      await queueLinear(rt, this.tier, this.qkv, { x: bound.x.binding, xOffset: bound.x.elementBase, rows: call.rows, out: qkv, label: 'qkv-gemm' });
      const B = BLOCK_ATTENTION_BINDINGS;
      const params = BLOCK_ATTENTION_PARAMS.pack({
        row_b: call.rowStrideB, row_s: call.rowStrideS, qkv_width: W, out_width: qd, seq: call.seq, batch: call.batch,
        kv_width: kvd, k_col: qd, v_col: qd + kvd, group: this.dims.group, scale: this.dims.scale,
        kc_off: bound.keys?.elementBase ?? 0, vc_off: bound.values?.elementBase ?? 0, rope_rows: rope.rows,
        splits, heads,
      });
      const entries: Record<number, GPUBuffer | GPUBufferBinding> = {
        [B.params]: rt.uniform(params, 'block attention params'),
        [B.qkv]: qkv,
        [B.rope]: rope.buffer,
        [B.step]: this.positions(call, extras),
        [B.out]: partial ?? attn,
      };
      if (bound.keys && bound.values) {
        entries[B.kCache] = bound.keys.binding;
        entries[B.vCache] = bound.values.binding;
      }
      rt.dispatch({
        label: 'block-attention',
        pipeline,
        bindGroups: [rt.bindGroup(pipeline, 0, entries)],
        workgroups: [Math.ceil(call.seq / tileShape(this.tile).rows) * splits, heads, call.batch],
      });
      if (partial) {
        const combine = await rt.pipeline(blockCombineKernel, { headDim: D });
        const count = call.batch * heads * call.seq * D;
        const combineParams = BLOCK_COMBINE_PARAMS.pack({ count, heads, seq: call.seq, splits, row_b: call.rowStrideB, row_s: call.rowStrideS, out_width: qd });
        rt.dispatch({
          label: 'block-attention-combine',
          pipeline: combine,
          bindGroups: [rt.bindGroup(combine, 0, { 0: rt.uniform(combineParams, 'combine params'), 1: partial, 2: attn })],
          workgroups: flatGrid(count, BLOCK_COMBINE_THREADS),
        });
      }
      await queueLinear(rt, this.tier, this.o, { x: attn, rows: call.rows, out: bound.out, label: 'o-gemm' });
    } finally {
      rt.release(qkv);
      rt.release(attn);
      rt.release(partial);
    }
  }

  /**
   * Queues the decode path (decode.ts) with the runner's fusions: the input RMSNorm inside the qkv
   * GEMV, the O projection added into `bound.out`. False (nothing queued) where it does not apply.
   */
  queueDecode(call: BlockGeometry, bound: BoundCall, extras: GpuCallExtras, fusion: BlockDecodeFusion, paged?: BlockDecodeCache): Promise<boolean> {
    return queueBlockDecode(this.runtime, this.dims, this.qkv, this.o, call, bound, { rope: extras.rope ?? this.rope, positions: extras.positions }, this.minWorkgroups, fusion, paged);
  }

  /** The decode path's kernel and splits for a call (decode.ts), or undefined where it does not run. */
  decodePlan(call: BlockGeometry, cache: boolean | BlockDecodeCache = true) {
    return blockDecodePlan(this.runtime, this.dims, call, cache, this.minWorkgroups);
  }

  /** The fused path with attention on a flash tier: float16 activations between the three dispatches on 'sgmatrix'. */
  private async queueFlash(tier: BlockFlashTier, call: BlockGeometry, bound: BoundCall, extras: GpuCallExtras): Promise<void> {
    const rt = this.runtime;
    const { W, qd } = sizes(this.dims);
    const dtype = tier === 'sgmatrix' ? 'float16' : 'float32';
    const bytes = dtype === 'float16' ? 2 : 4;
    const kernel = this.options.gemmKernel ?? defaultGemmKernel();
    const qkv = rt.acquire(call.rows * W * bytes, 'intermediate', 'packed qkv');
    const attn = rt.acquire(call.rows * qd * bytes, 'intermediate', 'attention output');
    try {
      await queueLinear(rt, this.tier, this.qkv, { x: bound.x.binding, xOffset: bound.x.elementBase, rows: call.rows, out: qkv, outDType: dtype, label: 'qkv-gemm' }, kernel);
      await queueBlockFlash(rt, this.dims, tier, {
        geometry: call, qkv, out: attn, rope: extras.rope ?? this.rope, positions: this.positions(call, extras), keys: bound.keys, values: bound.values,
      }, this.options.flashConfig);
      await queueLinear(rt, this.tier, this.o, { x: attn, xDType: dtype, rows: call.rows, out: bound.out, label: 'o-gemm' }, kernel);
    } finally {
      rt.release(qkv);
      rt.release(attn);
    }
  }

  /** Compiles the kernels of decode and prefill, so that a first call (in a scope, say) does not wait. */
  private async compile(): Promise<void> {
    const rt = this.runtime;
    const prefill = { seq: 1024 };
    const flash = this.flashTier(prefill, false);
    const dtype = flash === 'sgmatrix' ? 'float16' : 'float32';
    const kernel = this.options.gemmKernel ?? defaultGemmKernel();
    const { qd } = sizes(this.dims);
    await Promise.all([
      linearPipeline(rt, this.tier, this.qkv, { rows: 1 }, kernel),
      linearPipeline(rt, this.tier, this.o, { rows: 1 }, kernel),
      this.attentionPipeline(false),
      ...(flash ? [
        linearPipeline(rt, this.tier, this.qkv, { rows: prefill.seq, outDType: dtype }, kernel),
        linearPipeline(rt, this.tier, this.o, { rows: prefill.seq, xDType: dtype, xStride: qd }, kernel),
        blockFlashPipeline(rt, this.dims, flash, false, this.options.flashConfig),
        blockFlashPipeline(rt, this.dims, flash, true, this.options.flashConfig),
      ] : []),
    ]);
  }

  /** Key splits per query block: 1 when the grid is large enough, else enough to reach minWorkgroups. */
  splitsFor(call: BlockGeometry, cache: boolean): number {
    const decode = this.decodePlan(call, cache);
    if (decode) return decode.splits;
    if (this.flashTier(call, cache)) return 1;
    const { rows, keys } = tileShape(this.tile);
    const grid = Math.ceil(call.seq / rows) * this.dims.heads * call.batch;
    if (this.minWorkgroups <= 0 || grid >= this.minWorkgroups) return 1;
    const keyTiles = Math.ceil(((cache ? call.start : 0) + call.seq) / keys);
    return Math.max(1, Math.min(keyTiles, MAX_SPLITS, Math.ceil(this.minWorkgroups / grid)));
  }

  /** Frees the weights and tables (the block is unusable afterwards). */
  destroy(): void {
    for (const b of this.owned) b.destroy();
    this.owned.length = 0;
    this.ownRope = undefined;
    if (this.unfusedWeights) for (const b of this.unfusedWeights.owned) b.destroy();
    this.unfusedWeights = undefined;
  }

  private attentionPipeline(cache: boolean, split = false) {
    return this.runtime.pipeline(blockAttentionKernel, { headDim: this.dims.headDim, cache, tile: this.tile, split });
  }

  private positions(call: BlockGeometry, extras: GpuCallExtras): GPUBuffer {
    return extras.positions ?? this.runtime.uploadTransient(new Uint32Array([call.start, 0]), 'block positions');
  }

  private createUnfusedWeights(spec: BlockSpec): UnfusedWeights {
    const rt = this.runtime;
    const owned: GPUBuffer[] = [];
    const upload = (data: ArrayBufferView, label: string) => uploadOwned(rt, owned, data, label);
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

function uploadOwned(runtime: GpuRuntime, owned: GPUBuffer[], data: ArrayBufferView, label: string): GPUBuffer {
  const buffer = runtime.createBuffer(data.byteLength, label, STORAGE_USAGE);
  runtime.write(buffer, 0, data);
  owned.push(buffer);
  return buffer;
}

function fitsTile(runtime: GpuRuntime, t: BlockAttentionTile, headDim: number): boolean {
  const l = runtime.limits;
  const { threads } = tileShape(t);
  return threads <= l.maxComputeInvocationsPerWorkgroup && threads <= l.maxComputeWorkgroupSizeX &&
    blockAttentionWorkgroupBytes(t, headDim) <= l.maxComputeWorkgroupStorageSize;
}

export function sizes(spec: BlockDims): { H: number; W: number; qd: number; kvd: number } {
  const qd = spec.heads * spec.headDim;
  const kvd = spec.kvHeads * spec.headDim;
  return { H: spec.hidden, W: qd + 2 * kvd, qd, kvd };
}
