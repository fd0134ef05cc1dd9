// The buffer pool behind GpuRuntime: GPU buffers are expensive to create, so released ones are
// kept by (usage, size class) and handed out again. Sizes are rounded up to a size class (powers of
// two split in quarters) so a slightly larger request still hits the pool.
//
// Byte accounting: every pooled buffer is acquired with a role. 'intermediate' is what an op
// allocates beyond its inputs and outputs (the S×S scores of the naive path, a split-K
// workspace...): RunStats.intermediateBytes is the peak of those during the op, read from a Meter.
//
// Reuse rule: a released buffer may still be read by commands that are recorded but not yet
// submitted, and queue.writeBuffer() runs before those commands. So released buffers wait in
// `retired` until the runtime has submitted its pending commands (release is then safe: later
// host writes are ordered after the submitted work).

export type BufferRole = 'input' | 'output' | 'intermediate' | 'uniform' | 'staging';

export interface PoolStats {
  /** Bytes of pooled buffers currently handed out, per role. */
  liveBytes: Record<BufferRole, number>;
  /** Bytes sitting in the pool, free. */
  freeBytes: number;
  /** Bytes of all buffers this pool ever created (destroyed ones excluded). */
  createdBytes: number;
  /** Buffers created / acquisitions served from the pool. */
  created: number;
  reused: number;
}

/** Peak intermediate bytes since the meter started (see GpuRuntime.meter()). */
export interface Meter {
  readonly peakIntermediateBytes: number;
  /** Stops updating. */
  stop(): void;
}

interface Entry {
  buffer: GPUBuffer;
  usage: number;
  size: number;
  role: BufferRole;
}

/** Smallest size class >= bytes: 16, then each power of two split in four steps. */
export function sizeClass(bytes: number): number {
  if (bytes <= 16) return 16;
  const pow = 2 ** Math.floor(Math.log2(bytes));
  const step = Math.max(4, pow / 4);
  return Math.ceil(bytes / step) * step;
}

export class BufferPool {
  private readonly device: GPUDevice;
  private readonly free = new Map<string, GPUBuffer[]>();
  private readonly live = new Map<GPUBuffer, Entry>();
  private retired: Entry[] = [];
  private readonly meters = new Set<{ start: number; peak: number }>();
  private readonly stats: PoolStats = {
    liveBytes: { input: 0, output: 0, intermediate: 0, uniform: 0, staging: 0 },
    freeBytes: 0,
    createdBytes: 0,
    created: 0,
    reused: 0,
  };
  /** Free bytes kept before the oldest free buffers are destroyed. */
  maxFreeBytes = 512 * 1024 * 1024;

  constructor(device: GPUDevice) {
    this.device = device;
  }

  acquire(bytes: number, usage: number, role: BufferRole, label: string): GPUBuffer {
    const size = sizeClass(bytes);
    const key = `${usage}:${size}`;
    const list = this.free.get(key);
    let buffer = list?.pop();
    if (buffer) {
      this.stats.reused++;
      this.stats.freeBytes -= size;
    } else {
      buffer = this.device.createBuffer({ size, usage, label });
      this.stats.created++;
      this.stats.createdBytes += size;
    }
    this.live.set(buffer, { buffer, usage, size, role });
    this.stats.liveBytes[role] += size;
    if (role === 'intermediate') this.updateMeters();
    return buffer;
  }

  /** True if `buffer` came from this pool and is handed out. */
  owns(buffer: GPUBuffer): boolean {
    return this.live.has(buffer);
  }

  /** Gives a buffer back; it becomes reusable after the next submit (see file comment). */
  release(buffer: GPUBuffer): void {
    const entry = this.live.get(buffer);
    if (!entry) return; // not ours (a caller's buffer) or already released
    this.live.delete(buffer);
    this.stats.liveBytes[entry.role] -= entry.size;
    this.retired.push(entry);
  }

  /** Called by the runtime right after it submitted pending work. */
  afterSubmit(): void {
    for (const entry of this.retired) {
      const key = `${entry.usage}:${entry.size}`;
      let list = this.free.get(key);
      if (!list) this.free.set(key, (list = []));
      list.push(entry.buffer);
      this.stats.freeBytes += entry.size;
    }
    this.retired = [];
    if (this.stats.freeBytes > this.maxFreeBytes) this.trim(this.maxFreeBytes / 2);
  }

  /** Destroys free buffers until at most `keepBytes` stay pooled. */
  trim(keepBytes = 0): void {
    for (const [key, list] of this.free) {
      while (list.length > 0 && this.stats.freeBytes > keepBytes) {
        const buffer = list.pop() as GPUBuffer;
        this.stats.freeBytes -= buffer.size;
        this.stats.createdBytes -= buffer.size;
        buffer.destroy();
      }
      if (list.length === 0) this.free.delete(key);
    }
  }

  snapshot(): PoolStats {
    return { ...this.stats, liveBytes: { ...this.stats.liveBytes } };
  }

  meter(): Meter {
    const state = { start: this.stats.liveBytes.intermediate, peak: 0 };
    this.meters.add(state);
    return {
      get peakIntermediateBytes() {
        return state.peak;
      },
      stop: () => {
        this.meters.delete(state);
      },
    };
  }

  private updateMeters(): void {
    const now = this.stats.liveBytes.intermediate;
    for (const m of this.meters) m.peak = Math.max(m.peak, now - m.start);
  }
}
