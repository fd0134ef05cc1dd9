// DecoderOps on the CPU: activations and weights are float32 arrays in this process's memory.
import { ShapeError } from '../../core/errors.js';
import type { Activations, DecoderOps, KvCache } from '../backend.js';
import type { ModelConfig } from '../config.js';
import type { DecoderWeights, HostTensor } from '../weights.js';
import { linearRows, rmsNormRows, swigluInto } from './kernels.js';

export interface CpuActivations extends Activations {
  readonly data: Float32Array;
}

export type CpuWeight = HostTensor<'float32'>;

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
}

export const cpuActivations = (data: Float32Array, rows: number, cols: number): CpuActivations => ({ data, rows, cols });

export const cpuOps: DecoderOps<CpuActivations, CpuWeight, CpuKvCache> = {
  name: 'cpu',
  async embed(table, ids) {
    const H = table.shape[1];
    const out = new Float32Array(ids.length * H);
    for (let r = 0; r < ids.length; r++) out.set(table.data.subarray(ids[r] * H, (ids[r] + 1) * H), r * H);
    return cpuActivations(out, ids.length, H);
  },
  async rmsNorm(x, weight, eps) {
    return cpuActivations(rmsNormRows(x.data, x.rows, x.cols, weight.data, eps), x.rows, x.cols);
  },
  async linear(x, weight, bias) {
    const [N, K] = weight.shape;
    return cpuActivations(linearRows(x.data, x.rows, K, weight.data, N, bias?.data), x.rows, N);
  },
  async addInPlace(x, y) {
    const a = x.data;
    const b = y.data;
    for (let i = 0; i < a.length; i++) a[i] += b[i];
  },
  async swiglu(gate, up) {
    return cpuActivations(swigluInto(gate.data, up.data), gate.rows, gate.cols);
  },
  async lastRows(x, count) {
    return cpuActivations(x.data.slice((x.rows - count) * x.cols), count, x.cols);
  },
  async read(x) {
    return x.data;
  },
  release() {},
  createCache(config: ModelConfig, batch: number, capacity: number) {
    return new CpuKvCache(config.numLayers, batch, capacity, config.numKvHeads, config.headDim);
  },
  advanceCache(cache, length) {
    cache.length = length;
  },
  weightBytes(weights: DecoderWeights<CpuWeight>) {
    const seen = new Set<CpuWeight>();
    const all = [weights.embed, weights.finalNorm, weights.lmHead, ...weights.layers.flatMap((l) => Object.values(l) as CpuWeight[])];
    let bytes = 0;
    for (const w of all) {
      if (!seen.has(w)) bytes += w.data.byteLength;
      seen.add(w);
    }
    return bytes;
  },
};
