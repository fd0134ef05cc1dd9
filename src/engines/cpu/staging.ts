// A call's regions in the engine's arena: allocated as the call stages its operands, released
// together when it ends (whatever the op). Copies are paced (core/pace.ts): staging a huge input
// gives the event loop a turn every few tens of milliseconds instead of blocking it for seconds.
import { halfToFloats } from '../../core/dtype.js';
import { firstNonFinite } from '../../core/finite.js';
import { Pacer, pacedRange } from '../../core/pace.js';
import type { Tensor } from '../../core/tensor.js';
import type { Arena } from './arena.js';

/** Regions of one call in the engine's arena, released together. */
export class Staging {
  private readonly regions: number[] = [];
  /** Shared by every paced copy of the call (in and out). */
  readonly pacer = new Pacer();
  constructor(private readonly arena: Arena) {}

  allocate(bytes: number): number {
    const addr = this.arena.allocate(bytes);
    this.regions.push(addr);
    return addr;
  }

  /**
   * Copies a float tensor (float32, or float16 converted) and returns its byte address; with
   * `scan`, also whether it holds a NaN or ±Inf.
   */
  async floats(t: Tensor, scan = false): Promise<{ addr: number; nonFinite: boolean }> {
    const n = t.size;
    const addr = this.allocate(4 * n);
    let nonFinite = false;
    await pacedRange(n, this.pacer, (start, end) => {
      // the memory may have grown (another call's allocation) since the last step: view it afresh
      const dst = new Float32Array(this.arena.memory.buffer, addr + 4 * start, end - start);
      if (t.dtype === 'float16') halfToFloats((t.data as Uint16Array).subarray(start, end), dst);
      else dst.set((t.data as Float32Array).subarray(start, end));
      if (scan && !nonFinite) nonFinite = firstNonFinite(dst, 'float32') >= 0;
    });
    return { addr, nonFinite };
  }

  async bytes(t: Tensor): Promise<number> {
    const addr = this.allocate(t.size);
    await pacedRange(t.size, this.pacer, (start, end) => {
      new Uint8Array(this.arena.memory.buffer, addr + start, end - start).set((t.data as Uint8Array).subarray(start, end));
    });
    return addr;
  }

  /** Releases one region before the call ends (a temporary copy), so it can be reused. */
  free(addr: number): void {
    const at = this.regions.indexOf(addr);
    if (at < 0) throw new Error(`CPU staging: free of a region this call does not hold (${addr})`);
    this.regions.splice(at, 1);
    this.arena.release(addr);
  }

  release(): void {
    for (const addr of this.regions) this.arena.release(addr);
    this.regions.length = 0;
  }
}
