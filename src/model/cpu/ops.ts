// DecoderOps on the CPU backend. Weights live in the CPU engine's WebAssembly memory for the whole
// life of the model (copied there once at load), so a linear layer stages only its activations and
// runs the backend's multi-threaded WASM SIMD matmul straight on the resident weight: for decode
// (one row) that streams each weight once per token instead of copying it first. Models too big for
// a wasm32 memory (about 3 GiB of float32 weights) keep their weights in JS arrays and go through
// the backend's staged matmul instead. Activations are float32 arrays in JS memory.
import { ShapeError } from '../../core/errors.js';
import type { OpsCpuEngine as CpuEngine } from '../../ops/cpu-engine.js';
import { matmul, residentLinear } from '../../ops/gemm/cpu/index.js';
import { Tensor } from '../../core/tensor.js';
import type { PagedKVCache } from '../../ops/decode/index.js';
import type { Activations, DecoderOps, KvCache } from '../backend.js';
import type { ModelConfig } from '../config.js';
import type { DecoderWeights, HostTensor } from '../weights.js';
import { rmsNormRows, swigluInto } from './kernels.js';

export interface CpuActivations extends Activations {
  readonly data: Float32Array;
}

/** A weight: resident in the engine's memory at `address`, or a JS array (`data`). */
export interface CpuWeight {
  readonly name: string;
  readonly shape: readonly number[];
  readonly size: number;
  readonly address?: number;
  readonly data?: Float32Array;
}

/** Keys and values of every layer, [capacity, B, Nkv * D] each (SBH; see backend.ts). */
export class CpuKvCache implements KvCache {
  readonly keys: Float32Array[];
  readonly values: Float32Array[];
  length = 0;

  constructor(
    readonly layers: number,
    readonly batch: number,
    readonly capacity: number,
    readonly kvHeads: number,
    readonly headDim: number,
  ) {
    const size = capacity * batch * kvHeads * headDim;
    this.keys = Array.from({ length: layers }, () => new Float32Array(size));
    this.values = Array.from({ length: layers }, () => new Float32Array(size));
  }

  get bytes(): number {
    return 2 * this.layers * this.capacity * this.batch * this.kvHeads * this.headDim * 4;
  }

  /** Writes K and V rows [T * B, Nkv * D] of `layer` at positions start .. start + T - 1. */
  write(layer: number, start: number, k: Float32Array, v: Float32Array): void {
    const offset = start * this.batch * this.kvHeads * this.headDim;
    if (offset + k.length > this.keys[layer].length) {
      throw new ShapeError('cache', `KV cache of ${this.capacity} positions cannot take ${k.length / (this.batch * this.kvHeads * this.headDim)} more at position ${start}`);
    }
    this.keys[layer].set(k, offset);
    this.values[layer].set(v, offset);
  }

  /** The first `length` positions of a layer: a view, no copy. */
  prefix(layer: number, length: number): { keys: Float32Array; values: Float32Array } {
    const n = length * this.batch * this.kvHeads * this.headDim;
    return { keys: this.keys[layer].subarray(0, n), values: this.values[layer].subarray(0, n) };
  }
}

export const cpuActivations = (data: Float32Array, rows: number, cols: number): CpuActivations => ({ data, rows, cols });

/** Weights above this share of the engine's memory stay in JS arrays (the rest is for staging). */
const RESIDENT_SHARE = 0.75;

export class CpuOps implements DecoderOps<CpuActivations, CpuWeight, CpuKvCache> {
  readonly name = 'cpu';
  constructor(
    readonly engine: CpuEngine,
    /** Whether load() should put weights in the engine's memory. */
    readonly resident: boolean,
  ) {}

  /** Decides residency from the total weight bytes the config implies. */
  static forModel(engine: CpuEngine, weightBytes: number): CpuOps {
    return new CpuOps(engine, weightBytes <= RESIDENT_SHARE * engine.arena.capacity);
  }

  /** Makes a backend weight from a float32 tensor read from the file. */
  upload(tensor: HostTensor<'float32'>): CpuWeight {
    const size = tensor.data.length;
    if (!this.resident) return { name: tensor.name, shape: tensor.shape, size, data: tensor.data };
    const address = this.engine.arena.allocate(4 * size);
    new Float32Array(this.engine.arena.memory.buffer, address, size).set(tensor.data);
    return { name: tensor.name, shape: tensor.shape, size, address };
  }

  /** The weight's values (a fresh view: growing a wasm memory may replace its buffer). */
  values(w: CpuWeight): Float32Array {
    return w.data ?? new Float32Array(this.engine.arena.memory.buffer, w.address, w.size);
  }

  async embed(table: CpuWeight, ids: Int32Array): Promise<CpuActivations> {
    const H = table.shape[1];
    const values = this.values(table);
    const out = new Float32Array(ids.length * H);
    for (let r = 0; r < ids.length; r++) out.set(values.subarray(ids[r] * H, (ids[r] + 1) * H), r * H);
    return cpuActivations(out, ids.length, H);
  }

  async rmsNorm(x: CpuActivations, weight: CpuWeight, eps: number): Promise<CpuActivations> {
    return cpuActivations(rmsNormRows(x.data, x.rows, x.cols, this.values(weight), eps), x.rows, x.cols);
  }

  async linear(x: CpuActivations, weight: CpuWeight, bias?: CpuWeight): Promise<CpuActivations> {
    const [N, K] = weight.shape;
    const M = x.rows;
    const y = weight.address === undefined
      ? (await matmul({ m: M, n: N, k: K, a: { data: x.data, rowStride: K }, b: { data: weight.data as Float32Array, rowStride: K }, transposeB: true })).out
      : await residentLinear(this.engine, x.data, M, K, weight.address, N);
    if (bias) {
      const b = this.values(bias);
      for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) y[m * N + n] += b[n];
    }
    return cpuActivations(y, M, N);
  }

  async addInPlace(x: CpuActivations, y: CpuActivations): Promise<void> {
    const a = x.data;
    const b = y.data;
    for (let i = 0; i < a.length; i++) a[i] += b[i];
  }

  async swiglu(gate: CpuActivations, up: CpuActivations): Promise<CpuActivations> {
    return cpuActivations(swigluInto(gate.data, up.data), gate.rows, gate.cols);
  }

  async lastRows(x: CpuActivations, count: number): Promise<CpuActivations> {
    return cpuActivations(x.data.slice((x.rows - count) * x.cols), count, x.cols);
  }

  async read(x: CpuActivations): Promise<Float32Array> {
    return x.data;
  }

  release(): void {}

  createCache(config: ModelConfig, batch: number, capacity: number): CpuKvCache {
    return new CpuKvCache(config.numLayers, batch, capacity, config.numKvHeads, config.headDim);
  }

  advanceCache(cache: CpuKvCache, length: number): void {
    cache.length = length;
  }

  readonly pagedBackend = 'cpu' as const;

  async storePrefill(cache: CpuKvCache, paged: PagedKVCache, seq: number, tokens: number): Promise<void> {
    const n = tokens * cache.kvHeads * cache.headDim;
    const rows = (x: Float32Array) => Tensor.fromData(x.subarray(0, n), [tokens, cache.kvHeads, cache.headDim]);
    for (let l = 0; l < cache.layers; l++) await paged.write(seq, l, rows(cache.keys[l]), rows(cache.values[l]), 0);
  }

  weightBytes(weights: DecoderWeights<CpuWeight>): number {
    const all = new Set([weights.embed, weights.finalNorm, weights.lmHead, ...weights.layers.flatMap((l) => Object.values(l) as CpuWeight[])]);
    let bytes = 0;
    for (const w of all) bytes += 4 * w.size;
    return bytes;
  }

  /** Gives the resident weights' memory back to the engine. */
  dispose(weights: DecoderWeights<CpuWeight>): void {
    const all = new Set([weights.embed, weights.finalNorm, weights.lmHead, ...weights.layers.flatMap((l) => Object.values(l) as CpuWeight[])]);
    for (const w of all) if (w.address !== undefined) this.engine.arena.release(w.address);
  }
}
