// The GPU profiler: attached to a GpuRuntime, it sees every command queued and every submit, and
//   - counts dispatches and submits per span (withSpan / Profiler.span / scopes) and per kernel label;
//   - times each dispatch on the GPU with timestamp queries when the device has 'timestamp-query'
//     (each timed dispatch gets its own compute pass, so timestamps bracket exactly one kernel);
//     otherwise it measures wall time per span and per submit on the host, labelled 'wall';
//   - records the peak bytes of intermediates each span allocated;
//   - exports everything as a Chrome trace (chrome://tracing, https://ui.perfetto.dev): one track
//     of GPU kernels (or submits, in wall mode) and one of host spans.
//
//   const profiler = new Profiler(runtime);
//   await profiler.span('fused', () => block.forward(x));
//   await profiler.span('unfused', () => block.forwardUnfused(x));
//   const report = await profiler.report();      // waits for the timestamps
//   writeFileSync('trace.json', JSON.stringify(profiler.chromeTrace()));
import type { DispatchCommand, GpuCommand, GpuRuntime, RuntimeObserver } from '../engines/webgpu/runtime.js';
import { BufferUsage, MapMode } from '../engines/webgpu/usage.js';
import { currentSpans, onSpan, withSpan } from './spans.js';

export type TimingSource = 'gpu-timestamps' | 'wall';

export interface ProfilerOptions {
  /** 'auto' (default): GPU timestamps where the device has them, else wall time. */
  timing?: 'auto' | TimingSource;
  /** Timestamp queries per submit (2 per dispatch); dispatches beyond are counted, not timed. Default 4096. */
  maxQueriesPerSubmit?: number;
}

/** One dispatch as the profiler saw it. */
export interface KernelEvent {
  label: string;
  /** Innermost span, or '' outside any. */
  span: string;
  /** All open spans, outermost first. */
  spans: readonly string[];
  submit: number;
  workgroups: readonly [number, number, number];
  /** GPU start/end in ms on the trace's time axis (timestamp mode, when timed). */
  startMs?: number;
  endMs?: number;
}

export interface SpanEvent {
  label: string;
  depth: number;
  startMs: number;
  endMs: number;
  dispatches: number;
  submits: number;
  /** Peak bytes of 'intermediate' buffers alive during the span beyond those alive before it. */
  intermediateBytes: number;
}

export interface SubmitEvent {
  index: number;
  /** Host time of the submit, ms since the profiler started. */
  hostMs: number;
  /** Wall mode: when the GPU reported the submit done (ms since start). */
  doneMs?: number;
  dispatches: number;
}

export interface KernelSummary {
  label: string;
  count: number;
  /** Summed GPU ms (timestamp mode) or undefined. */
  gpuMs?: number;
}

export interface SpanSummary {
  label: string;
  calls: number;
  dispatches: number;
  submits: number;
  /** Summed host wall ms of the span (ops awaited inside it). */
  wallMs: number;
  /** Summed GPU ms of the kernels queued inside it (timestamp mode). */
  gpuMs?: number;
  intermediateBytes: number;
  /** Dispatch count per kernel label, in first-seen order. */
  kernels: KernelSummary[];
}

export interface ProfileReport {
  timing: TimingSource;
  adapter: string;
  dispatches: number;
  submits: number;
  spans: SpanSummary[];
  kernels: KernelSummary[];
}

interface PendingQueries {
  querySet: GPUQuerySet;
  resolve: GPUBuffer;
  readback: GPUBuffer;
  events: KernelEvent[];
  used: number;
  done?: Promise<void>;
}

export interface ProfilerStartOptions extends ProfilerOptions {
  /** The caller's GPUDevice (default: fusedattn's shared device). */
  device?: GPUDevice;
}

export class Profiler {
  /** A profiler attached to the runtime of `options.device` (default: the shared device). */
  static async start(options: ProfilerStartOptions = {}): Promise<Profiler> {
    const { getRuntime } = await import('../engines/webgpu/runtime.js');
    return new Profiler(await getRuntime(options.device), options);
  }

  readonly timing: TimingSource;
  readonly kernels: KernelEvent[] = [];
  readonly spans: SpanEvent[] = [];
  readonly submits: SubmitEvent[] = [];
  private readonly t0 = performance.now();
  private readonly maxQueries: number;
  private current: PendingQueries | undefined;
  private readonly inFlight: PendingQueries[] = [];
  private pendingEvents: KernelEvent[] = [];
  /** First GPU timestamp and the host time (ms) it is drawn at: the first timed submit's. */
  private gpuOrigin: { stamp: bigint; hostMs: number } | undefined;
  private readonly waits: Promise<void>[] = [];
  private detach: (() => void) | undefined;

  constructor(readonly runtime: GpuRuntime, options: ProfilerOptions = {}) {
    const canTime = runtime.features.has('timestamp-query');
    const want = options.timing ?? 'auto';
    this.timing = want === 'auto' ? (canTime ? 'gpu-timestamps' : 'wall') : want;
    if (this.timing === 'gpu-timestamps' && !canTime) throw new Error('Profiler: this device has no timestamp-query feature');
    this.maxQueries = options.maxQueriesPerSubmit ?? 4096;
    const detachObserver = runtime.observe(this.observer());
    const detachSpans = onSpan(runtime, (label, depth) => this.openSpan(label, depth));
    this.detach = () => {
      detachObserver();
      detachSpans();
    };
  }

  /**
   * Runs `fn` as a named span. Every span opened while the profiler is attached is measured (the
   * block's "fused-block" / "unfused-block", scopes' "scope:<label>", yours): dispatches, submits,
   * host wall time and the peak of intermediate bytes.
   */
  span<T>(label: string, fn: () => Promise<T>): Promise<T> {
    return withSpan(this.runtime, label, fn);
  }

  private openSpan(label: string, depth: number): () => void {
    const rt = this.runtime;
    const before = { dispatches: rt.counters.dispatches, submits: rt.counters.submits };
    const meter = rt.meter();
    const startMs = this.now();
    return () => {
      meter.stop();
      this.spans.push({
        label, depth, startMs, endMs: this.now(),
        dispatches: rt.counters.dispatches - before.dispatches,
        submits: rt.counters.submits - before.submits,
        intermediateBytes: meter.peakIntermediateBytes,
      });
    };
  }

  /** Stops observing the runtime (pending timestamps are still collected by report()). */
  stop(): void {
    this.detach?.();
    this.detach = undefined;
  }

  /** Waits for outstanding timestamps and summarises per span and per kernel. */
  async report(): Promise<ProfileReport> {
    await this.settle();
    const byKernel = (events: KernelEvent[]): KernelSummary[] => {
      const map = new Map<string, KernelSummary>();
      for (const e of events) {
        let k = map.get(e.label);
        if (!k) map.set(e.label, (k = { label: e.label, count: 0, gpuMs: this.timing === 'gpu-timestamps' ? 0 : undefined }));
        k.count++;
        if (k.gpuMs !== undefined && e.startMs !== undefined && e.endMs !== undefined) k.gpuMs += e.endMs - e.startMs;
      }
      return [...map.values()];
    };
    const labels = [...new Set(this.spans.map((s) => s.label))];
    const spans = labels.map((label): SpanSummary => {
      const calls = this.spans.filter((s) => s.label === label);
      const kernels = byKernel(this.kernels.filter((k) => k.spans.includes(label)));
      return {
        label,
        calls: calls.length,
        dispatches: calls.reduce((n, s) => n + s.dispatches, 0),
        submits: calls.reduce((n, s) => n + s.submits, 0),
        wallMs: calls.reduce((n, s) => n + s.endMs - s.startMs, 0),
        gpuMs: this.timing === 'gpu-timestamps' ? kernels.reduce((n, k) => n + (k.gpuMs ?? 0), 0) : undefined,
        intermediateBytes: Math.max(0, ...calls.map((s) => s.intermediateBytes)),
        kernels,
      };
    });
    const a = this.runtime.adapter;
    return {
      timing: this.timing,
      adapter: [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' '),
      dispatches: this.kernels.length,
      submits: this.submits.length,
      spans,
      kernels: byKernel(this.kernels),
    };
  }

  /**
   * The profile as a Chrome trace (JSON object format): open it in https://ui.perfetto.dev or
   * chrome://tracing. Call after report() so GPU timestamps are in.
   */
  chromeTrace(): ChromeTrace {
    const pid = 1;
    const us = (ms: number) => Math.round(ms * 1000 * 1000) / 1000;
    const events: ChromeTraceEvent[] = [
      { name: 'process_name', ph: 'M', pid, tid: 0, args: { name: `fusedattn (${this.timing})` } },
      { name: 'thread_name', ph: 'M', pid, tid: 1, args: { name: 'host spans (wall time)' } },
      { name: 'thread_name', ph: 'M', pid, tid: 2, args: { name: this.timing === 'gpu-timestamps' ? 'GPU kernels (timestamp queries)' : 'GPU submits (wall time: submit to done)' } },
    ];
    for (const s of this.spans) {
      events.push({ name: s.label, cat: 'span', ph: 'X', pid, tid: 1, ts: us(s.startMs), dur: us(s.endMs - s.startMs), args: { dispatches: s.dispatches, submits: s.submits, intermediateBytes: s.intermediateBytes } });
    }
    if (this.timing === 'gpu-timestamps') {
      for (const k of this.kernels) {
        const args = { span: k.spans.join(' / '), submit: k.submit, workgroups: k.workgroups.join('x') };
        if (k.startMs !== undefined && k.endMs !== undefined) {
          events.push({ name: k.label, cat: 'kernel', ph: 'X', pid, tid: 2, ts: us(k.startMs), dur: us(Math.max(0, k.endMs - k.startMs)), args });
        }
      }
    } else {
      for (const s of this.submits) {
        const inside = this.kernels.filter((k) => k.submit === s.index);
        events.push({ name: `submit ${s.index}`, cat: 'submit', ph: 'X', pid, tid: 2, ts: us(s.hostMs), dur: us(Math.max(0, (s.doneMs ?? s.hostMs) - s.hostMs)), args: { dispatches: s.dispatches, timing: 'wall' } });
        // kernels of a submit in order, as instants: wall mode cannot time them one by one
        for (const k of inside) events.push({ name: k.label, cat: 'kernel', ph: 'i', s: 't', pid, tid: 2, ts: us(s.hostMs), args: { span: k.spans.join(' / '), workgroups: k.workgroups.join('x'), timing: 'not measured (no timestamp-query)' } });
      }
    }
    return { traceEvents: events, displayTimeUnit: 'ms', otherData: { timing: this.timing, adapter: this.runtime.adapter.description } };
  }

  private now(): number {
    return performance.now() - this.t0;
  }

  private observer(): RuntimeObserver {
    return {
      queued: (c: GpuCommand) => {
        if (c.kind !== 'dispatch') return;
        const spans = currentSpans(this.runtime);
        const event: KernelEvent = { label: c.label, span: spans.at(-1) ?? '', spans: [...spans], submit: -1, workgroups: c.workgroups };
        this.kernels.push(event);
        this.pendingEvents.push(event);
        this.byCommand.set(c, this.pendingEvents.length - 1);
      },
      timestampWrites: this.timing === 'gpu-timestamps' ? (c: DispatchCommand) => this.timestampWrites(c) : undefined,
      beforeFinish: this.timing === 'gpu-timestamps' ? (encoder: GPUCommandEncoder) => this.resolveQueries(encoder) : undefined,
      submitted: (commands: readonly GpuCommand[]) => this.onSubmitted(commands),
    };
  }

  // commands queued but not yet submitted -> their event (a command object may be queued again by a replay)
  private byCommand = new Map<GpuCommand, number>();

  private timestampWrites(c: DispatchCommand): GPUComputePassTimestampWrites | undefined {
    const index = this.byCommand.get(c);
    if (index === undefined) return undefined;
    const q = (this.current ??= this.newQueries());
    if (q.used + 2 > this.maxQueries) return undefined;
    const event = this.pendingEvents[index];
    const at = q.used;
    q.used += 2;
    q.events[at / 2] = event;
    return { querySet: q.querySet, beginningOfPassWriteIndex: at, endOfPassWriteIndex: at + 1 };
  }

  private newQueries(): PendingQueries {
    const device = this.runtime.device;
    const count = this.maxQueries;
    return {
      querySet: device.createQuerySet({ type: 'timestamp', count, label: 'profiler timestamps' }),
      resolve: device.createBuffer({ size: count * 8, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC, label: 'profiler resolve' }),
      readback: device.createBuffer({ size: count * 8, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST, label: 'profiler readback' }),
      events: [],
      used: 0,
    };
  }

  private resolveQueries(encoder: GPUCommandEncoder): void {
    const q = this.current;
    if (!q || q.used === 0) return;
    encoder.resolveQuerySet(q.querySet, 0, q.used, q.resolve, 0);
    encoder.copyBufferToBuffer(q.resolve, 0, q.readback, 0, q.used * 8);
  }

  private onSubmitted(commands: readonly GpuCommand[]): void {
    const index = this.submits.length;
    const dispatches = commands.filter((c) => c.kind === 'dispatch').length;
    const submit: SubmitEvent = { index, hostMs: this.now(), dispatches };
    this.submits.push(submit);
    for (const e of this.pendingEvents) e.submit = index;
    this.pendingEvents = [];
    this.byCommand = new Map();
    if (this.timing === 'wall') {
      this.waits.push(this.runtime.device.queue.onSubmittedWorkDone().then(() => { submit.doneMs = this.now(); }));
      return;
    }
    const q = this.current;
    this.current = undefined;
    if (!q) return;
    if (q.used === 0) {
      destroyQueries(q);
      return;
    }
    q.done = q.readback.mapAsync(MapMode.READ, 0, q.used * 8).then(() => {
      const stamps = new BigUint64Array(q.readback.getMappedRange(0, q.used * 8).slice(0));
      q.readback.unmap();
      // GPU and host clocks differ: GPU times are drawn from the first timed submit's host time on
      const origin = (this.gpuOrigin ??= { stamp: stamps[0], hostMs: submit.hostMs });
      for (let i = 0; i < q.used / 2; i++) {
        const event = q.events[i];
        if (!event) continue;
        event.startMs = origin.hostMs + Number(stamps[2 * i] - origin.stamp) / 1e6;
        event.endMs = origin.hostMs + Number(stamps[2 * i + 1] - origin.stamp) / 1e6;
      }
      destroyQueries(q);
    });
    this.inFlight.push(q);
  }

  private async settle(): Promise<void> {
    await Promise.all(this.waits.splice(0));
    const flights = this.inFlight.splice(0);
    await Promise.all(flights.map((q) => q.done));
  }
}

function destroyQueries(q: PendingQueries): void {
  q.querySet.destroy();
  q.resolve.destroy();
  q.readback.destroy();
}

export interface ChromeTraceEvent {
  name: string;
  cat?: string;
  ph: 'X' | 'M' | 'i';
  pid: number;
  tid: number;
  ts?: number;
  dur?: number;
  s?: 't';
  args?: Record<string, unknown>;
}

export interface ChromeTrace {
  traceEvents: ChromeTraceEvent[];
  displayTimeUnit: 'ms';
  otherData: Record<string, unknown>;
}
