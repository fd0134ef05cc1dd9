// DecoderOps on WebGPU. Weights and the KV cache live on the GPU for the life of the model;
// activations are pooled GPU buffers. Every op only records dispatches through the GpuRuntime, so
// a whole forward pass goes to the GPU as one submission when the logits are read back (plus one
// per layer where the library's attention() is used for prefill, which flushes).
import { envInt } from '../../core/env.js';
import { UnsupportedError } from '../../core/errors.js';
import { runMatmul } from '../../ops/gemm/webgpu/index.js';
import { type GpuRuntime, defineKernel } from '../../engines/webgpu/runtime.js';
import {
  DEFAULT_TENSORCORE_TILE, queueTensorCoreLinear, runnerGemmFromEnv, tensorCoreLinearUnsupported, tensorCoreTileFromEnv,
} from '../../ops/gemm/webgpu/index.js';
import { Scope } from '../../scope/scope.js';
import { Tensor } from '../../core/tensor.js';
import type { PagedKVCache } from '../../ops/decode/index.js';
import type { Activations, DecoderOps, KvCache, StepInfo } from '../backend.js';
import { positionTable } from '../rope.js';
import type { ModelConfig } from '../config.js';
import type { DecoderWeights, HostTensor } from '../weights.js';
import { GEMV_MAX_ROWS, queueGemv } from '../../ops/gemm/webgpu/index.js';
import { TOPK_MAX, TOPK_PARAMS, buildTopK } from './topk.wgsl.js';
import {
  ELEMENTWISE_PARAMS, ELEMENTWISE_WORKGROUP, EMBED_PARAMS, RMSNORM_PARAMS, type WeightDType,
  buildElementwise, buildEmbedding, buildRmsNorm,
} from './kernels.wgsl.js';

export interface GpuActivations extends Activations {
  readonly buffer: GPUBuffer;
}

/** Rows firstRow .. firstRow + rows - 1 of a weight, in one buffer. */
export interface WeightPart {
  readonly buffer: GPUBuffer;
  readonly firstRow: number;
  readonly rows: number;
}

/**
 * A weight on the GPU. Most fit one buffer; a big one (an embedding table or LM head of 150k
 * tokens is 0.5 GiB in float32) is split by rows into parts that each fit a storage binding.
 */
export interface GpuWeight {
  readonly name: string;
  readonly shape: readonly number[];
  readonly size: number;
  readonly dtype: WeightDType;
  readonly parts: readonly WeightPart[];
}

/** Keys and values per layer, [capacity, B, Nkv * D] float32 each (SBH; see backend.ts). */
export class GpuKvCache implements KvCache {
  readonly keys: GPUBuffer[];
  readonly values: GPUBuffer[];
  length = 0;

  constructor(
    runtime: GpuRuntime,
    readonly layers: number,
    readonly batch: number,
    readonly capacity: number,
    readonly kvHeads: number,
    readonly headDim: number,
  ) {
    const bytes = this.layerBytes;
    if (bytes > runtime.limits.maxStorageBufferBindingSize) {
      throw new UnsupportedError('capacity', `a KV cache layer of ${capacity} positions needs ${bytes} bytes, over this GPU's maxStorageBufferBindingSize (${runtime.limits.maxStorageBufferBindingSize})`);
    }
    this.keys = Array.from({ length: layers }, (_, l) => runtime.createBuffer(bytes, `kv cache keys ${l}`));
    this.values = Array.from({ length: layers }, (_, l) => runtime.createBuffer(bytes, `kv cache values ${l}`));
  }

  /** Bytes of one position of one layer's keys (all sequences). */
  get positionBytes(): number {
    return this.batch * this.kvHeads * this.headDim * 4;
  }

  get layerBytes(): number {
    return this.capacity * this.positionBytes;
  }

  get bytes(): number {
    return 2 * this.layers * this.layerBytes;
  }

  destroy(): void {
    for (const b of [...this.keys, ...this.values]) b.destroy();
  }
}

const embedKernel = defineKernel('model-embed', buildEmbedding);
const rmsNormKernel = defineKernel('model-rmsnorm', buildRmsNorm);
const elementwiseKernel = defineKernel('model-elementwise', buildElementwise);
const topKKernel = defineKernel('model-topk', buildTopK);
/** Commands per submission when a decode step is replayed (see the constructor). */
export const REPLAY_SUBMIT_EVERY = 48;
/** Logits per workgroup of the top-k kernel. */
const TOPK_CHUNK = 2048;

export const gpuActivations = (buffer: GPUBuffer, rows: number, cols: number): GpuActivations => ({ buffer, rows, cols });

/**
 * What kernels read about the step being run, on the GPU: written from the host before the step's
 * commands are queued, so a recorded decode step replays with the new values.
 *   ids        u32 token ids, row t * B + b
 *   positions  u32 [start, rope_base = start]
 *   rope       cos [T, D/2] then sin [T, D/2] of positions start .. start + T - 1
 */
export interface GpuStepState {
  readonly ids: GPUBuffer;
  readonly positions: GPUBuffer;
  readonly rope: { readonly buffer: GPUBuffer; readonly rows: number };
  /** The host ids this state holds (embed() reads the buffer for these). */
  readonly idsOf: Int32Array;
}

interface StepBuffers {
  ids: GPUBuffer;
  positions: GPUBuffer;
  rope: GPUBuffer;
}

export class GpuOps implements DecoderOps<GpuActivations, GpuWeight, GpuKvCache> {
  readonly name = 'webgpu';
  /** Buffers handed to us by attention() (not pooled): destroyed once the work using them is submitted. */
  private readonly afterSubmit: GPUBuffer[] = [];
  /**
   * Step buffers: one set for decode (T = 1), which recorded steps use and which therefore never
   * moves while big enough, one for prefill (grown as prompts grow).
   */
  private readonly stepBuffers: { decode?: StepBuffers; prefill?: StepBuffers } = {};
  private state: GpuStepState | undefined;
  /** Recorded decode steps (src/scope), replayed as one submission each. */
  private readonly steps: Scope;
  /** false: runStep() runs the ops every time (no recording). */
  replayDecode = true;

  constructor(
    readonly runtime: GpuRuntime,
    /** How weights are stored: float32, or float16 halves (half the memory and bandwidth). */
    readonly weightDType: WeightDType,
    /** Largest buffer of one weight part (default: what the device can bind). Tests lower it. */
    readonly maxPartBytes = Math.min(runtime.limits.maxStorageBufferBindingSize, runtime.limits.maxBufferSize),
  ) {
    // a replayed step goes to the GPU in submissions of REPLAY_SUBMIT_EVERY commands, so the GPU
    // starts on the first layers while the host still encodes the rest (H200: 299 tok/s against
    // 220 in one submission); FUSEDATTN_REPLAY_SUBMIT_EVERY overrides it (0: one submission)
    const every = envInt('FUSEDATTN_REPLAY_SUBMIT_EVERY', 0) ?? REPLAY_SUBMIT_EVERY;
    this.steps = new Scope(runtime, 'decode step', { maxRecordings: 8, submitEvery: every });
  }

  /** Writes the step's ids, positions and RoPE rows into the step buffers (before its commands). */
  beginStep(step: StepInfo, ids: Int32Array): void {
    const half = step.rope.cos.length / Math.max(1, step.tokens);
    const which = step.tokens === 1 ? 'decode' : 'prefill';
    const need = { ids: Math.max(16, ids.length * 4), positions: 16, rope: Math.max(16, 8 * step.tokens * half) };
    let buffers = this.stepBuffers[which];
    if (!buffers || buffers.ids.size < need.ids || buffers.rope.size < need.rope) {
      if (buffers) this.destroyAfterSubmit(buffers.ids), this.destroyAfterSubmit(buffers.positions), this.destroyAfterSubmit(buffers.rope);
      buffers = {
        ids: this.runtime.createBuffer(need.ids, `${which} step ids`),
        positions: this.runtime.createBuffer(need.positions, `${which} step positions`),
        rope: this.runtime.createBuffer(need.rope, `${which} step rope`),
      };
      this.stepBuffers[which] = buffers;
    }
    const rope = new Float32Array(2 * step.rope.cos.length);
    rope.set(step.rope.cos, 0);
    rope.set(step.rope.sin, step.rope.cos.length);
    this.runtime.write(buffers.ids, 0, new Uint32Array(ids.buffer, ids.byteOffset, ids.length));
    this.runtime.write(buffers.positions, 0, Uint32Array.of(step.start, step.start));
    this.runtime.write(buffers.rope, 0, rope);
    this.state = { ids: buffers.ids, positions: buffers.positions, rope: { buffer: buffers.rope, rows: step.tokens }, idsOf: ids };
  }

  /** The state beginStep() wrote (attention modules read positions and RoPE rows from it). */
  stepState(): GpuStepState {
    if (!this.state) throw new Error('GpuOps.stepState() before beginStep()');
    return this.state;
  }

  /**
   * Runs a decode step's commands, or replays its recording when `key` was seen: the step's ops are
   * then not called at all, and their commands go to the GPU as one command buffer. The output
   * belongs to the recording (read it before the next step).
   */
  runStep(key: unknown, fn: () => Promise<GpuActivations>): Promise<GpuActivations> {
    if (!this.replayDecode) return fn().then((out) => (this.release(out), out));
    const state = this.stepState();
    return this.steps.run({ key, ids: state.ids, positions: state.positions, rope: state.rope.buffer }, async () => {
      const out = await fn();
      this.release(out); // kept by the recording: it writes this buffer on every replay
      return out;
    });
  }

  /** Record/replay counts of the decode steps. */
  get stepStats() {
    return { ...this.steps.stats, lastRun: this.steps.lastRun };
  }

  /** A GPU weight from a tensor read from the file (float32 values or float16 bits). */
  upload(tensor: HostTensor<'float32'> | HostTensor<'float16'>): GpuWeight {
    const dtype: WeightDType = tensor.data instanceof Float32Array ? 'float32' : 'float16';
    const rows = tensor.shape.length === 2 ? tensor.shape[0] : 1;
    const rowElements = tensor.data.length / rows;
    const rowBytes = rowElements * tensor.data.BYTES_PER_ELEMENT;
    const maxBytes = this.maxPartBytes;
    // parts start on whole rows and, for float16 pairs, on a whole u32 word
    let rowsPerPart = Math.max(1, Math.floor(maxBytes / rowBytes));
    if (dtype === 'float16' && rowElements % 2 === 1) rowsPerPart -= rowsPerPart % 2;
    if (rowsPerPart < 1 || rowBytes > maxBytes) {
      throw new UnsupportedError(tensor.name, `weight ${tensor.name}: one row of ${rowBytes} bytes exceeds this GPU's largest storage binding (${maxBytes} bytes)`);
    }
    const parts: WeightPart[] = [];
    for (let firstRow = 0; firstRow < rows; firstRow += rowsPerPart) {
      const count = Math.min(rowsPerPart, rows - firstRow);
      const data = tensor.data.subarray(firstRow * rowElements, (firstRow + count) * rowElements);
      const buffer = this.runtime.createBuffer(data.byteLength, parts.length ? `${tensor.name} [${firstRow}:]` : tensor.name);
      this.runtime.write(buffer, 0, data);
      parts.push({ buffer, firstRow, rows: count });
    }
    return { name: tensor.name, shape: tensor.shape, size: tensor.data.length, dtype, parts };
  }

  /** A pooled activation buffer of rows x cols floats. */
  activations(rows: number, cols: number, label: string): GpuActivations {
    return gpuActivations(this.runtime.acquire(Math.max(16, rows * cols * 4), 'intermediate', label), rows, cols);
  }

  /** Destroys `buffer` after the next submission (it may still be used by recorded commands). */
  destroyAfterSubmit(buffer: GPUBuffer): void {
    this.afterSubmit.push(buffer);
  }

  async embed(table: GpuWeight, ids: Int32Array): Promise<GpuActivations> {
    const H = table.shape[1];
    const out = this.activations(ids.length, H, 'embeddings');
    const pipeline = await this.runtime.pipeline(embedKernel, { table: table.dtype });
    const idBuffer = this.state?.idsOf === ids ? this.state.ids : this.runtime.uploadTransient(new Uint32Array(ids.buffer, ids.byteOffset, ids.length), 'token ids');
    for (const part of table.parts) {
      const bindGroup = this.runtime.bindGroup(pipeline, 0, {
        0: part.buffer,
        1: idBuffer,
        2: out.buffer,
        3: this.runtime.uniform(EMBED_PARAMS.pack({ rows: ids.length, cols: H, part_start: part.firstRow, part_rows: part.rows }), 'embed params'),
      });
      this.runtime.dispatch({ label: 'embed', pipeline, bindGroups: [bindGroup], workgroups: [Math.ceil(H / 64), ids.length] });
    }
    return out;
  }

  async rmsNorm(x: GpuActivations, weight: GpuWeight, eps: number): Promise<GpuActivations> {
    const out = this.activations(x.rows, x.cols, 'rmsnorm');
    const workgroupSize = this.runtime.limits.maxComputeInvocationsPerWorkgroup >= 256 ? 256 : 64;
    const pipeline = await this.runtime.pipeline(rmsNormKernel, { weight: weight.dtype, workgroupSize });
    const bindGroup = this.runtime.bindGroup(pipeline, 0, {
      0: x.buffer,
      1: weight.parts[0].buffer,
      2: out.buffer,
      3: this.runtime.uniform(RMSNORM_PARAMS.pack({ cols: x.cols, eps }), 'rmsnorm params'),
    });
    this.runtime.dispatch({ label: 'rmsnorm', pipeline, bindGroups: [bindGroup], workgroups: this.grid(x.rows, 1) });
    return out;
  }

  /** (RMSNorm(x) * norm) Wᵀ (+ b): at decode, the norm inside the GEMV (one dispatch per weight part). */
  async normLinear(x: GpuActivations, norm: GpuWeight, eps: number, weight: GpuWeight, bias?: GpuWeight): Promise<GpuActivations> {
    if (x.rows > GEMV_MAX_ROWS) {
      const normed = await this.rmsNorm(x, norm, eps);
      const out = await this.linear(normed, weight, bias);
      this.release(normed);
      return out;
    }
    const out = this.activations(x.rows, weight.shape[0], `linear ${weight.name}`);
    for (const part of weight.parts) await this.gemv(x, weight, part, out, { bias, norm: { weight: norm, eps } });
    return out;
  }

  async linear(x: GpuActivations, weight: GpuWeight, bias?: GpuWeight): Promise<GpuActivations> {
    const [N, K] = weight.shape;
    const out = this.activations(x.rows, N, `linear ${weight.name}`);
    if (x.rows <= GEMV_MAX_ROWS) {
      // decode: a GEMV per part, the bias in its epilogue
      for (const part of weight.parts) await this.gemv(x, weight, part, out, { bias });
      return out;
    }
    if (this.tensorCoreLinear(weight, K)) {
      // float16 weights on the tensor-core GEMM (x rounded to f16 while staged), the bias in its
      // epilogue; FUSEDATTN_RUNNER_GEMM=portable keeps the portable f32 GEMM
      const tile = tensorCoreTileFromEnv() ?? DEFAULT_TENSORCORE_TILE;
      for (const [i, part] of weight.parts.entries()) {
        await queueTensorCoreLinear(this.runtime, {
          x: x.buffer, rows: x.rows, weight: part.buffer, outDim: part.rows, inDim: K, out: out.buffer, outOffset: part.firstRow, outStride: N,
          bias: bias && i === 0 && weight.parts.length === 1 ? bias.parts[0].buffer : undefined, biasDType: bias?.dtype, label: `linear ${weight.name}`,
        }, tile);
      }
      if (bias && weight.parts.length > 1) await this.elementwise('bias', out, bias.parts[0].buffer, x.rows * N, N, bias.dtype);
      return out;
    }
    // one GEMM per part of the weight, each writing its columns of the output
    for (const part of weight.parts) {
      await runMatmul(this.runtime, {
        options: { a: 'float32', b: weight.dtype, out: 'float32', transposeB: true, splitK: false, ragged: false },
        a: { binding: x.buffer, offset: 0, strides: [0, 0, K, 1] },
        b: { binding: part.buffer, offset: 0, strides: [0, 0, K, 1] },
        c: { binding: out.buffer, offset: part.firstRow, strides: [0, 0, N, 1] },
        m: x.rows,
        n: part.rows,
        k: K,
        outer: 1,
        inner: 1,
        label: `linear ${weight.name}`,
      });
    }
    if (bias) await this.elementwise('bias', out, bias.parts[0].buffer, x.rows * N, N, bias.dtype);
    return out;
  }

  /**
   * Whether a prefill linear runs on the tensor-core GEMM: float16 weights on an adapter with
   * subgroup matrices (H200: runner prefill 4406 -> 7049 tok/s, greedy tokens unchanged, session
   * run 1), unless FUSEDATTN_RUNNER_GEMM=portable.
   */
  private tensorCoreLinear(weight: GpuWeight, K: number): boolean {
    if (runnerGemmFromEnv() !== 'tensorcore' || weight.dtype !== 'float16' || K % 8 !== 0) return false;
    if (weight.parts.some((p) => p.firstRow % 8 !== 0 && weight.parts.length > 1)) return false;
    return tensorCoreLinearUnsupported(this.runtime) === undefined;
  }

  /** residual += x Wᵀ (+ b): at decode, one GEMV that adds into the residual stream. */
  async linearAdd(x: GpuActivations, weight: GpuWeight, bias: GpuWeight | undefined, residual: GpuActivations): Promise<void> {
    if (x.rows > GEMV_MAX_ROWS) {
      const y = await this.linear(x, weight, bias);
      await this.addInPlace(residual, y);
      this.release(y);
      return;
    }
    for (const part of weight.parts) await this.gemv(x, weight, part, residual, { bias, accumulate: true });
  }

  /** silu(x' Wgᵀ + bg) * (x' Wuᵀ + bu), x' = x or RMSNorm(x) * norm: at decode, one GEMV over both weights. */
  async swigluLinear(x: GpuActivations, gate: GpuWeight, up: GpuWeight, gateBias?: GpuWeight, upBias?: GpuWeight, norm?: { weight: GpuWeight; eps: number }): Promise<GpuActivations> {
    const paired = x.rows <= GEMV_MAX_ROWS && gate.parts.length === 1 && up.parts.length === 1 && gate.dtype === up.dtype &&
      (gateBias === undefined) === (upBias === undefined) && gateBias?.dtype === upBias?.dtype;
    if (!paired) {
      const h = norm ? await this.rmsNorm(x, norm.weight, norm.eps) : x;
      const g = await this.linear(h, gate, gateBias);
      const u = await this.linear(h, up, upBias);
      const act = await this.swiglu(g, u);
      this.release(g, u);
      if (h !== x) this.release(h);
      return act;
    }
    const out = this.activations(x.rows, gate.shape[0], 'swiglu');
    await this.gemv(x, gate, gate.parts[0], out, { bias: gateBias, pair: { weight: up.parts[0].buffer, bias: upBias?.parts[0].buffer }, norm });
    return out;
  }

  private gemv(x: GpuActivations, weight: GpuWeight, part: WeightPart, out: GpuActivations, extra: { bias?: GpuWeight; accumulate?: boolean; pair?: { weight: GPUBuffer; bias?: GPUBuffer }; norm?: { weight: GpuWeight; eps: number } }): Promise<void> {
    const [N, K] = weight.shape;
    return queueGemv(this.runtime, {
      x: x.buffer,
      rows: x.rows,
      weight: { buffer: part.buffer, dtype: weight.dtype, rows: part.rows, k: K },
      out: out.buffer,
      outStride: N,
      outCol: part.firstRow,
      bias: extra.bias && { buffer: extra.bias.parts[0].buffer, dtype: extra.bias.dtype },
      accumulate: extra.accumulate,
      pair: extra.pair,
      norm: extra.norm && { buffer: extra.norm.weight.parts[0].buffer, dtype: extra.norm.weight.dtype, eps: extra.norm.eps },
      label: `${extra.pair ? 'gate+up (swiglu)' : 'linear'} ${weight.name}`,
    });
  }

  /** Largest candidates supported by topK(). */
  readonly maxTopK = TOPK_MAX;

  /**
   * Per chunk of TOPK_CHUNK logits of each row, its k largest (bits) and their ids, and its NaN
   * count: [rows, chunks * (2k + 1)] u32 (see topk.wgsl.ts; model/sampling.ts mergeCandidates()).
   */
  async topK(logits: GpuActivations, k: number): Promise<GpuActivations> {
    const workgroupSize = Math.min(256, this.runtime.limits.maxComputeInvocationsPerWorkgroup) >= 256 ? 256 : 64;
    const chunks = Math.ceil(logits.cols / TOPK_CHUNK);
    const out = this.activations(logits.rows, chunks * (2 * k + 1), 'top-k candidates');
    const pipeline = await this.runtime.pipeline(topKKernel, { k, workgroupSize, chunk: TOPK_CHUNK });
    const bindGroup = this.runtime.bindGroup(pipeline, 0, {
      0: this.runtime.uniform(TOPK_PARAMS.pack({ n: logits.cols, chunks }), 'top-k params'),
      1: logits.buffer,
      2: out.buffer,
    });
    this.runtime.dispatch({ label: k === 1 ? 'argmax' : `top-${k}`, pipeline, bindGroups: [bindGroup], workgroups: [chunks, logits.rows] });
    return out;
  }

  async addInPlace(x: GpuActivations, y: GpuActivations): Promise<void> {
    await this.elementwise('add', x, y.buffer, x.rows * x.cols, x.cols);
  }

  async swiglu(gate: GpuActivations, up: GpuActivations): Promise<GpuActivations> {
    const out = this.activations(gate.rows, gate.cols, 'swiglu');
    const n = gate.rows * gate.cols;
    const pipeline = await this.runtime.pipeline(elementwiseKernel, { op: 'swiglu' });
    const bindGroup = this.runtime.bindGroup(pipeline, 0, {
      0: gate.buffer,
      1: up.buffer,
      2: out.buffer,
      3: this.runtime.uniform(ELEMENTWISE_PARAMS.pack({ n, cols: gate.cols }), 'swiglu params'),
    });
    this.runtime.dispatch({ label: 'swiglu', pipeline, bindGroups: [bindGroup], workgroups: this.grid(n, ELEMENTWISE_WORKGROUP) });
    return out;
  }

  /** x += y ('add') or x += bias broadcast over rows ('bias'), in place. */
  private async elementwise(op: 'add' | 'bias', x: GpuActivations, y: GPUBuffer, n: number, cols: number, bias: WeightDType = 'float32'): Promise<void> {
    const pipeline = await this.runtime.pipeline(elementwiseKernel, op === 'bias' ? { op, bias } : { op });
    const bindGroup = this.runtime.bindGroup(pipeline, 0, {
      0: x.buffer,
      1: y,
      2: this.runtime.uniform(ELEMENTWISE_PARAMS.pack({ n, cols }), `${op} params`),
    });
    this.runtime.dispatch({ label: op === 'add' ? 'residual add' : 'bias add', pipeline, bindGroups: [bindGroup], workgroups: this.grid(n, ELEMENTWISE_WORKGROUP) });
  }

  /** Workgroups covering n items of `perGroup` each, folded into 2-D past the per-dimension limit. */
  grid(n: number, perGroup: number): [number, number] {
    return this.runtime.foldedGrid(Math.max(1, Math.ceil(n / perGroup)));
  }

  async lastRows(x: GpuActivations, count: number): Promise<GpuActivations> {
    const out = this.activations(count, x.cols, 'last rows');
    this.runtime.copy(x.buffer, (x.rows - count) * x.cols * 4, out.buffer, 0, count * x.cols * 4, 'last rows');
    return out;
  }

  async read(x: GpuActivations): Promise<Float32Array> {
    const data = new Float32Array(await this.runtime.read(x.buffer, 0, x.rows * x.cols * 4));
    // read() submitted everything recorded, so buffers from attention() may go now
    for (const b of this.afterSubmit.splice(0)) b.destroy();
    return data;
  }

  release(...xs: GpuActivations[]): void {
    for (const x of xs) this.runtime.release(x.buffer);
  }

  createCache(config: ModelConfig, batch: number, capacity: number): GpuKvCache {
    return new GpuKvCache(this.runtime, config.numLayers, batch, capacity, config.numKvHeads, config.headDim);
  }

  advanceCache(cache: GpuKvCache, length: number): void {
    cache.length = length;
  }

  readonly pagedBackend = 'webgpu' as const;

  async storePrefill(cache: GpuKvCache, paged: PagedKVCache, seq: number, tokens: number): Promise<void> {
    const device = this.runtime.device;
    const rows = (buffer: GPUBuffer) => Tensor.fromGpuBuffer({ device, buffer, byteOffset: 0 }, [tokens, cache.kvHeads, cache.headDim], 'float32');
    for (let l = 0; l < cache.layers; l++) await paged.write(seq, l, rows(cache.keys[l]), rows(cache.values[l]), 0);
  }

  disposeCache(cache: GpuKvCache): void {
    // commands queued after the last submit (the page writes) may still read it
    for (const b of [...cache.keys, ...cache.values]) this.destroyAfterSubmit(b);
  }

  private positionRope: { buffer: GPUBuffer; rows: number } | undefined;

  /**
   * cos [rows, D/2] then sin of positions 0 .. rows - 1 (row p as a one-token step at p uses it):
   * the table the decode kernels read by position in paged steps. Uploaded once, grown by doubling.
   */
  ropeByPosition(config: ModelConfig, rows: number): { buffer: GPUBuffer; rows: number } {
    if (this.positionRope && this.positionRope.rows >= rows) return this.positionRope;
    if (this.positionRope) this.destroyAfterSubmit(this.positionRope.buffer);
    const count = Math.max(rows, 2 * (this.positionRope?.rows ?? 0), 256);
    const table = positionTable(config, count);
    const data = new Float32Array(2 * table.cos.length);
    data.set(table.cos, 0);
    data.set(table.sin, table.cos.length);
    const buffer = this.runtime.createBuffer(data.byteLength, 'rope by position');
    this.runtime.write(buffer, 0, data);
    this.positionRope = { buffer, rows: count };
    return this.positionRope;
  }

  weightBytes(weights: DecoderWeights<GpuWeight>): number {
    let bytes = 0;
    for (const w of allWeights(weights)) for (const p of w.parts) bytes += p.buffer.size;
    return bytes;
  }

  dispose(weights: DecoderWeights<GpuWeight>): void {
    this.steps.dispose();
    for (const set of Object.values(this.stepBuffers)) for (const b of Object.values(set)) b.destroy();
    this.positionRope?.buffer.destroy();
    for (const w of allWeights(weights)) for (const p of w.parts) p.buffer.destroy();
  }
}

function allWeights(weights: DecoderWeights<GpuWeight>): Set<GpuWeight> {
  return new Set([weights.embed, weights.finalNorm, weights.lmHead, ...weights.layers.flatMap((l) => Object.values(l) as GpuWeight[])]);
}

