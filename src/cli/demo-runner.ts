// Where the demo's tensors live and how its calls are timed. On the CPU, inputs are plain arrays
// and a call is done when its promise resolves. On a GPU, passing CPU arrays would time the
// uploads and readbacks (at long lengths more than the kernels themselves), so the inputs are
// uploaded once, results stay on the device, and a call is timed until the GPU queue is drained;
// outputs are read back afterwards, for the checks only.
import type { AttentionOptions, BackendName } from '../ops/attention/index.js';
import type { AttentionResult } from '../ops/attention/index.js';
import type { GpuRuntime } from '../engines/webgpu/runtime.js';
import { Tensor } from '../core/tensor.js';

export interface Inputs {
  q: Tensor;
  k: Tensor;
  v: Tensor;
}

type AttentionCall = (q: Tensor, k: Tensor, v: Tensor, options: AttentionOptions) => Promise<AttentionResult>;

export interface TimedResult {
  /** Result with CPU tensors (read back from the GPU when it ran there). */
  result: AttentionResult;
  /** Milliseconds of each timed run. */
  runs: number[];
}

export class DemoRunner {
  private constructor(readonly backend: BackendName, private readonly runtime: GpuRuntime | undefined) {}

  static async create(backend: BackendName): Promise<DemoRunner> {
    if (backend === 'cpu') return new DemoRunner(backend, undefined);
    const { getRuntime } = await import('../engines/webgpu/runtime.js');
    return new DemoRunner(backend, await getRuntime());
  }

  /**
   * Timed runs per call in the demo's main step. A GPU call is short and its timing noisy: the
   * median of 3. A CPU call at the calibrated length takes seconds: once is enough.
   */
  get repeats(): number {
    return this.runtime ? 3 : 1;
  }

  /** Bytes one storage binding may span (GPU), which bounds q/k/v and the naive S×S scores. */
  get bindingLimit(): number {
    return this.runtime ? this.runtime.limits.maxStorageBufferBindingSize : Infinity;
  }

  /** The inputs as the calls should receive them: uploaded once on a GPU. */
  place(inputs: Inputs): Inputs {
    const runtime = this.runtime;
    if (!runtime) return inputs;
    const upload = (t: Tensor, label: string) => {
      const data = t.data as Float32Array | Uint16Array;
      const buffer = runtime.createBuffer(data.byteLength, `demo ${label}`);
      runtime.write(buffer, 0, data);
      return Tensor.fromGpuBuffer({ device: runtime.device, buffer, byteOffset: 0 }, t.shape, t.dtype);
    };
    return { q: upload(inputs.q, 'q'), k: upload(inputs.k, 'k'), v: upload(inputs.v, 'v') };
  }

  /** Frees what place() uploaded. */
  free(placed: Inputs): void {
    if (this.runtime) for (const t of [placed.q, placed.k, placed.v]) t.gpu?.buffer.destroy();
  }

  /** Runs `call` `repeats` times, timing each to completion; returns the last result on the CPU. */
  async time(call: AttentionCall, placed: Inputs, options: AttentionOptions, repeats = 1): Promise<TimedResult> {
    if (this.runtime) await this.runtime.finish(); // the uploads are not part of the timing
    const runs: number[] = [];
    let result: AttentionResult | undefined;
    for (let r = 0; r < repeats; r++) {
      if (result) this.discard(result);
      const start = performance.now();
      result = await call(placed.q, placed.k, placed.v, options);
      if (this.runtime) await this.runtime.finish();
      runs.push(performance.now() - start);
    }
    return { result: await this.toCpu(result!), runs };
  }

  private async toCpu(result: AttentionResult): Promise<AttentionResult> {
    const runtime = this.runtime;
    if (!runtime || !result.out.gpu) return result;
    const read = async (t: Tensor) => {
      const bytes = await runtime.read(t.gpu!.buffer, t.gpu!.byteOffset, t.size * (t.dtype === 'float16' ? 2 : 4));
      t.gpu!.buffer.destroy();
      return Tensor.fromData(t.dtype === 'float16' ? new Uint16Array(bytes) : new Float32Array(bytes), t.shape, t.dtype);
    };
    return { out: await read(result.out), lse: result.lse ? await read(result.lse) : undefined, stats: result.stats };
  }

  private discard(result: AttentionResult): void {
    result.out.gpu?.buffer.destroy();
    result.lse?.gpu?.buffer.destroy();
  }
}

/** Median of a few timings. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
