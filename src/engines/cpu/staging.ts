// A call's regions in the engine's arena: allocated as the call stages its operands, released
// together when it ends (whatever the op).
import { halfToFloats } from '../../core/dtype.js';
import type { Tensor } from '../../core/tensor.js';
import type { Arena } from './arena.js';

/** Regions of one call in the engine's arena, released together. */
export class Staging {
  private readonly regions: number[] = [];
  constructor(private readonly arena: Arena) {}

  allocate(bytes: number): number {
    const addr = this.arena.allocate(bytes);
    this.regions.push(addr);
    return addr;
  }

  /** Copies a float tensor (float32, or float16 converted) and returns its byte address. */
  floats(t: Tensor): number {
    const n = t.size;
    const addr = this.allocate(4 * n);
    const dst = new Float32Array(this.arena.memory.buffer, addr, n);
    if (t.dtype === 'float16') halfToFloats(t.data as Uint16Array, dst);
    else dst.set(t.data as Float32Array);
    return addr;
  }

  bytes(t: Tensor): number {
    const addr = this.allocate(t.size);
    new Uint8Array(this.arena.memory.buffer, addr, t.size).set(t.data as Uint8Array);
    return addr;
  }

  release(): void {
    for (const addr of this.regions) this.arena.release(addr);
    this.regions.length = 0;
  }
}
