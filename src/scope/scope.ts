// Record and replay ("SuperKernel"): the first run of a scope with given arguments records every
// GPU command its ops queue (pipelines, bind groups with their buffers, dispatch sizes, uniform
// buffers with their contents); later runs with the same arguments skip the ops entirely and queue
// the recorded commands again, encoded into ONE command buffer and ONE submit. No pipeline lookup,
// no bind group, no uniform write, no shape check happens on a replay.
//
//   const layer = new Scope(runtime, 'layer0');
//   const y = await layer.run({ x, cache, start }, () => block.forward(x, { cache, start }));
//
// Contract (the same as a CUDA graph's):
// - `args` must name everything the function's GPU work depends on: shapes and numbers by value,
//   GPU tensors/buffers by identity. A different key records anew (recordings are kept per key,
//   least recently used dropped). The contents of input buffers may change between replays.
// - The function may upload, write uniforms and allocate temporaries: the scope keeps those
//   buffers (they never go back to the pool while the recording lives). It may not read results
//   back to the CPU (a replay cannot) nor write from the host into buffers it did not allocate
//   (a replay would not repeat the write): both make the recording fail with UnsupportedError.
// - A replay returns the same value the recording run returned: GPU outputs are the same buffers,
//   overwritten by the replay (read or copy them before the next run of the scope).
import { DeviceError, UnsupportedError } from '../core/errors.js';
import type { GpuRuntime, Recording as RuntimeRecording } from '../engines/webgpu/runtime.js';
import { BufferUsage } from '../engines/webgpu/usage.js';
import { withSpan } from '../profiler/spans.js';
import { scopeKey } from './key.js';

export interface ScopeOptions {
  /** Recordings kept, one per key; the least recently used is dropped first. Default 8. */
  maxRecordings?: number;
  /**
   * Replay in submissions of at most this many commands (default: all in one). Long recordings
   * (a decode step of a whole model: hundreds of dispatches) then start on the GPU while the rest
   * is still being encoded, instead of after all of it.
   */
  submitEvery?: number;
}

/** What the last run of a scope did. */
export interface ScopeRun {
  mode: 'record' | 'replay';
  dispatches: number;
  submits: number;
  /** Milliseconds of JavaScript from the call to the queued submit (GPU time excluded). */
  hostMs: number;
}

export interface ScopeStats {
  records: number;
  replays: number;
  /** Recordings dropped (key evicted, failed replay, dispose). */
  dropped: number;
  /** Recordings alive. */
  recordings: number;
  /** Bytes of buffers the live recordings keep. */
  pinnedBytes: number;
}

interface Recording {
  /** The runtime's capture: commands, and the buffers it keeps out of the pool. */
  captured: RuntimeRecording;
  result: unknown;
  dispatches: number;
}

export class Scope {
  private readonly recordings = new Map<string, Recording>();
  private readonly maxRecordings: number;
  private readonly submitEvery: number;
  private counts = { records: 0, replays: 0, dropped: 0 };
  /** The last run's mode and counts. */
  lastRun: ScopeRun | undefined;

  constructor(readonly runtime: GpuRuntime, readonly label: string, options: ScopeOptions = {}) {
    this.maxRecordings = Math.max(1, options.maxRecordings ?? 8);
    this.submitEvery = Math.max(0, Math.floor(options.submitEvery ?? 0));
  }

  /** Runs `fn` (recording it) or replays its recording for `args`. */
  async run<T>(args: unknown, fn: () => Promise<T>): Promise<T> {
    const key = scopeKey(args);
    return withSpan(this.runtime, `scope:${this.label}`, async () => {
      const recording = this.recordings.get(key);
      return recording ? this.replay(key, recording) as Promise<T> : this.record(key, fn);
    });
  }

  /** True when `args` would replay. */
  has(args: unknown): boolean {
    return this.recordings.has(scopeKey(args));
  }

  get stats(): ScopeStats {
    let pinnedBytes = 0;
    for (const r of this.recordings.values()) for (const b of r.captured.buffers) pinnedBytes += b.size;
    return { ...this.counts, recordings: this.recordings.size, pinnedBytes };
  }

  /** Drops every recording and gives its buffers back to the pool. */
  dispose(): void {
    for (const key of [...this.recordings.keys()]) this.drop(key);
  }

  private async record<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const rt = this.runtime;
    const t0 = performance.now();
    const before = { dispatches: rt.counters.dispatches, submits: rt.counters.submits };
    const written = new Map<GPUBuffer, string>();
    let readback: string | undefined;
    // the runtime captures the commands and keeps the buffers ops release meanwhile (uniforms,
    // temporaries); we watch for what a replay could not repeat
    const detach = rt.observe({
      queued: (c) => {
        if (c.kind === 'copy' && (c.dst.usage & BufferUsage.MAP_READ) !== 0) readback ??= c.label;
      },
      written: (buffer) => {
        if (!written.has(buffer)) written.set(buffer, buffer.label || 'unlabelled buffer');
      },
    });
    const capture = rt.beginCapture();
    let captured: RuntimeRecording;
    let result: T;
    try {
      result = await fn();
    } catch (e) {
      rt.releaseRecording(capture.end());
      throw e;
    } finally {
      detach();
    }
    captured = capture.end();
    await rt.flush();
    const refuse = (why: string) => {
      rt.releaseRecording(captured);
      return new UnsupportedError('scope', `scope "${this.label}" cannot be recorded: ${why}`);
    };
    if (readback) throw refuse(`the function reads GPU results back to the CPU (${readback}); a replay cannot. Read after the scope`);
    const held = new Set(captured.buffers);
    for (const [buffer, label] of written) {
      if (!held.has(buffer)) throw refuse(`the function writes from the host into "${label}", a buffer it did not allocate; a replay would not repeat the write. Write it before the scope`);
    }
    const recording: Recording = { captured, result, dispatches: captured.commands.filter((c) => c.kind === 'dispatch').length };
    this.recordings.set(key, recording);
    this.counts.records++;
    while (this.recordings.size > this.maxRecordings) this.drop(this.recordings.keys().next().value as string);
    this.lastRun = {
      mode: 'record',
      dispatches: rt.counters.dispatches - before.dispatches,
      submits: rt.counters.submits - before.submits,
      hostMs: performance.now() - t0,
    };
    return result;
  }

  private async replay(key: string, recording: Recording): Promise<unknown> {
    const rt = this.runtime;
    const t0 = performance.now();
    const before = { dispatches: rt.counters.dispatches, submits: rt.counters.submits };
    // most recently used last
    this.recordings.delete(key);
    this.recordings.set(key, recording);
    try {
      const commands = recording.captured.commands;
      const every = this.submitEvery > 0 ? this.submitEvery : commands.length;
      // each flush submits at once (its error check is what it awaits): submit every slice, then wait
      const submitted: Promise<void>[] = [];
      for (let i = 0; i < commands.length; i += every) {
        rt.enqueue(...commands.slice(i, i + every));
        submitted.push(rt.flush());
      }
      await Promise.all(submitted);
    } catch (e) {
      this.drop(key);
      if (e instanceof DeviceError) {
        throw new DeviceError('scope', `replaying scope "${this.label}" failed (was a buffer it uses destroyed?): ${e.message}`);
      }
      throw e;
    }
    this.counts.replays++;
    this.lastRun = {
      mode: 'replay',
      dispatches: rt.counters.dispatches - before.dispatches,
      submits: rt.counters.submits - before.submits,
      hostMs: performance.now() - t0,
    };
    return recording.result;
  }

  private drop(key: string): void {
    const recording = this.recordings.get(key);
    if (!recording) return;
    this.recordings.delete(key);
    this.runtime.releaseRecording(recording.captured);
    this.counts.dropped++;
  }
}

const registries = new WeakMap<GpuRuntime, Map<string, Scope>>();

export interface ScopeCallOptions extends ScopeOptions {
  /** The caller's GPUDevice (default: fusedattn's shared device, the one ops use by default). */
  device?: GPUDevice;
}

/**
 * scope(label, args, fn): the scope named `label` (made on first use, one per device) runs `fn`
 * or replays its recording for `args`. See Scope for the contract.
 */
export async function scope<T>(label: string, args: unknown, fn: () => Promise<T>, options: ScopeCallOptions = {}): Promise<T> {
  const { getRuntime } = await import('../engines/webgpu/runtime.js');
  const rt = await getRuntime(options.device);
  let scopes = registries.get(rt);
  if (!scopes) registries.set(rt, (scopes = new Map()));
  let s = scopes.get(label);
  if (!s) scopes.set(label, (s = new Scope(rt, label, options)));
  return s.run(args, fn);
}

/** The scope `label` that scope() made on `device` (default: the shared one), for its stats and dispose(). */
export async function getScope(label: string, device?: GPUDevice): Promise<Scope | undefined> {
  const { getRuntime } = await import('../engines/webgpu/runtime.js');
  return registries.get(await getRuntime(device))?.get(label);
}
