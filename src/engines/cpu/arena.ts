// The one WebAssembly.Memory the CPU backend stages inputs into and writes outputs to, shared by
// every worker (or private to the main thread in the single-threaded fallback), with a first-fit
// allocator so several attention() calls can be in flight at once, each in its own regions.
// The memory grows on demand and never shrinks (WebAssembly memories cannot); freed regions are
// reused by later calls.
import { UnsupportedError } from '../../core/errors.js';

const PAGE = 65536;
/** Every region is 64-byte aligned (cache lines) and followed by slack for 16-byte vector reads. */
const ALIGN = 64;
const SLACK = 64;
/** Bytes at address 0 reserved for job counters (Atomics), one i32 per in-flight job. */
export const CONTROL_BYTES = 4096;
/** wasm32 addresses reach 4 GiB; V8 allows shared memories of 65536 pages. */
export const MAX_PAGES = 65536;

interface Block {
  start: number;
  size: number;
}

export class Arena {
  readonly memory: WebAssembly.Memory;
  readonly shared: boolean;
  readonly maximumPages: number;
  private free: Block[] = [];
  private used = new Map<number, number>();
  private counters: number[] = [];

  constructor(shared: boolean) {
    this.shared = shared;
    let memory: WebAssembly.Memory | undefined;
    let maximum = MAX_PAGES;
    // browsers (32-bit or low-memory) may refuse a 4 GiB reservation for shared memory: step down
    for (; maximum >= 4096; maximum >>= 1) {
      try {
        memory = new WebAssembly.Memory({ initial: 16, maximum, shared });
        break;
      } catch {
        memory = undefined;
      }
    }
    if (!memory) throw new UnsupportedError('backend', 'CPU backend: could not create a WebAssembly.Memory');
    this.memory = memory;
    this.maximumPages = maximum;
    this.free.push({ start: CONTROL_BYTES, size: this.memory.buffer.byteLength - CONTROL_BYTES });
    for (let i = CONTROL_BYTES / 4 - 1; i >= 0; i--) this.counters.push(i);
  }

  get byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  /** Most bytes one call may stage (the memory's maximum, less what other calls hold). */
  get capacity(): number {
    return this.maximumPages * PAGE - CONTROL_BYTES;
  }

  /** Reserves `bytes` (rounded up, plus slack) and returns the region's byte address. */
  allocate(bytes: number): number {
    const size = Math.ceil((bytes + SLACK) / ALIGN) * ALIGN;
    let index = this.free.findIndex((b) => b.size >= size);
    if (index < 0) {
      this.grow(size);
      index = this.free.findIndex((b) => b.size >= size);
    }
    const block = this.free[index];
    const start = block.start;
    if (block.size === size) this.free.splice(index, 1);
    else this.free[index] = { start: start + size, size: block.size - size };
    this.used.set(start, size);
    return start;
  }

  release(address: number): void {
    const size = this.used.get(address);
    if (size === undefined) throw new Error(`CPU arena: release of unknown address ${address}`);
    this.used.delete(address);
    this.free.push({ start: address, size });
    this.free.sort((a, b) => a.start - b.start);
    const merged: Block[] = [];
    for (const b of this.free) {
      const last = merged[merged.length - 1];
      if (last && last.start + last.size === b.start) last.size += b.size;
      else merged.push({ ...b });
    }
    this.free = merged;
  }

  /** An i32 slot for a job's task counter (index into an Int32Array over the memory). */
  takeCounter(): number {
    const slot = this.counters.pop();
    if (slot === undefined) throw new UnsupportedError('backend', `CPU backend: more than ${CONTROL_BYTES / 4} jobs in flight`);
    new Int32Array(this.memory.buffer, 0, CONTROL_BYTES / 4)[slot] = 0;
    return slot;
  }

  giveCounter(slot: number): void {
    this.counters.push(slot);
  }

  private grow(size: number): void {
    const end = this.byteLength;
    const last = this.free.find((b) => b.start + b.size === end);
    const need = size - (last ? last.size : 0);
    // grow geometrically so a sequence of growing calls does not grow on every call
    const pages = Math.max(Math.ceil(need / PAGE), Math.ceil(end / PAGE / 4));
    const current = end / PAGE;
    const target = Math.min(current + pages, this.maximumPages);
    if (target * PAGE - end < need) {
      throw new UnsupportedError('backend', `CPU backend: this call needs ${formatBytes(size)} more of staging memory than a wasm32 memory of ${formatBytes(this.maximumPages * PAGE)} can hold`);
    }
    this.memory.grow(target - current);
    if (last) last.size += (target - current) * PAGE;
    else this.free.push({ start: end, size: (target - current) * PAGE });
  }
}

export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}
