// What a CPU block call did, the CPU analogue of a GPU dispatch list.
import type { BlockStats } from '../stats.js';

/** Counts what a CPU block call did, the CPU analogue of dispatches. */
export class CpuTally {
  readonly kernels: string[] = [];
  intermediateBytes = 0;

  /** A buffer of `floats` float32 the call allocates beyond its input and output. */
  alloc(floats: number): Float32Array {
    this.intermediateBytes += 4 * floats;
    return new Float32Array(floats);
  }

  step(label: string): void {
    this.kernels.push(label);
  }

  stats(path: BlockStats['path']): BlockStats {
    return { path, backend: 'cpu', dispatches: this.kernels.length, submits: 0, intermediateBytes: this.intermediateBytes, kernels: this.kernels };
  }
}
