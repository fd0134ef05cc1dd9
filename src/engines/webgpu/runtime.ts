// GpuRuntime: the one object per GPUDevice that every GPU op goes through (attention tiers, GEMMs,
// the block, the model runner). It owns
//   - the pipeline cache, keyed by the kernel's name + stableKey(its typed options object);
//   - the buffer pool with byte accounting (buffers.ts), uniform and upload helpers, readback;
//   - the command queue: ops call dispatch()/copy()/clear(), which only RECORD commands; flush()
//     encodes everything pending into one command buffer and submits it once.
// That single choke point is what the record-and-replay scope and the profiler hook into
// (RuntimeObserver): they see every command as it is queued, may put timestamp writes on a
// dispatch's compute pass, may encode query resolves before finish(), and hear about each submit.
// GPU validation / out-of-memory errors are caught with error scopes and thrown as DeviceError
// carrying the GPU's message.
import { onDispose } from '../../core/config.js';
import { envFlag } from '../../core/env.js';
import { DeviceError, UnsupportedError } from '../../core/errors.js';
import { BufferPool, type BufferRole, type Meter, type PoolStats } from './buffers.js';
import { type AcquiredDevice, type AdapterDescription, acquireDevice, releaseSharedDevice } from './device.js';
import { stableKey } from './stable-key.js';
import { BufferUsage, MapMode, STORAGE_USAGE } from './usage.js';

/** A WGSL kernel: a pure builder from its typed options object to WGSL source. */
export interface KernelSpec<O> {
  /** Short name, used in labels, cache keys, the profiler and FUSEDATTN_DEBUG_WGSL output. */
  readonly name: string;
  build(options: O): string;
  /** Entry point in the built WGSL (default "main"). */
  readonly entryPoint?: string;
}

export function defineKernel<O>(name: string, build: (options: O) => string, entryPoint = 'main'): KernelSpec<O> {
  return { name, build, entryPoint };
}

/** A compiled kernel: the GPU pipeline plus what it was built from. */
export interface Pipeline {
  readonly gpu: GPUComputePipeline;
  readonly name: string;
  /** The cache key: `${name}:${stableKey(options)}`. */
  readonly key: string;
  readonly wgsl: string;
}

export type Workgroups = number | readonly [number, number?, number?];

/** A buffer, or a part of one, bound to a binding point. */
export type BindingResource = GPUBuffer | GPUBufferBinding;

export interface DispatchRequest {
  /** What this dispatch is, for the profiler and error messages (e.g. "flash-fwd"). */
  label: string;
  pipeline: Pipeline;
  /** Bind group i goes to @group(i). Make them with runtime.bindGroup() so hazards are tracked. */
  bindGroups: readonly GPUBindGroup[];
  workgroups: Workgroups;
}

export interface DispatchCommand {
  readonly kind: 'dispatch';
  readonly label: string;
  readonly pipeline: Pipeline;
  readonly bindGroups: readonly GPUBindGroup[];
  readonly workgroups: readonly [number, number, number];
}
export interface CopyCommand {
  readonly kind: 'copy';
  readonly label: string;
  readonly src: GPUBuffer;
  readonly srcOffset: number;
  readonly dst: GPUBuffer;
  readonly dstOffset: number;
  readonly size: number;
}
export interface ClearCommand {
  readonly kind: 'clear';
  readonly label: string;
  readonly buffer: GPUBuffer;
  readonly offset: number;
  readonly size: number;
}
export type GpuCommand = DispatchCommand | CopyCommand | ClearCommand;

/**
 * Hooks for the scope (record/replay) and the profiler. All optional; several observers may be
 * attached at once (runtime.observe returns the function that detaches one).
 */
export interface RuntimeObserver {
  /** Every command, as an op queues it (replayed commands included). */
  queued?(command: GpuCommand): void;
  /**
   * Timestamp writes for one dispatch's compute pass. Returning writes puts that dispatch in a
   * compute pass of its own; returning undefined lets it share a pass with its neighbours.
   */
  timestampWrites?(command: DispatchCommand): GPUComputePassTimestampWrites | undefined;
  /** Called after all commands are encoded, before finish(): resolve query sets here. */
  beforeFinish?(encoder: GPUCommandEncoder, commands: readonly GpuCommand[]): void;
  /** Called right after the command buffer holding `commands` was submitted. */
  submitted?(commands: readonly GpuCommand[]): void;
  /** A host write (queue.writeBuffer) of `bytes` bytes into `buffer` at `offset`, as it is issued. */
  written?(buffer: GPUBuffer, offset: number, bytes: number): void;
}

/**
 * Commands recorded between beginCapture() and end(), with the pooled buffers they use that ops
 * released meanwhile: those stay out of the pool (so nothing else overwrites them) until
 * releaseRecording(). Replaying re-queues the same pipelines, bind groups and workgroup counts.
 */
export interface Recording {
  readonly commands: readonly GpuCommand[];
  readonly buffers: readonly GPUBuffer[];
}

export interface Capture {
  /** Stops recording and returns what was recorded. */
  end(): Recording;
}

interface CaptureState {
  commands: GpuCommand[];
  buffers: GPUBuffer[];
}

export interface RuntimeCounters {
  dispatches: number;
  submits: number;
  pipelineHits: number;
  pipelineMisses: number;
}

const runtimes = new WeakMap<GPUDevice, GpuRuntime>();

/** The runtime of the caller's device, or of the process's shared device (acquired on first use). */
export async function getRuntime(callerDevice?: GPUDevice): Promise<GpuRuntime> {
  if (callerDevice) {
    const existing = runtimes.get(callerDevice);
    if (existing) {
      // a caller's device is theirs to replace; ours (below) is re-acquired after a loss
      if (existing.isLost) throw new DeviceError('options.device', `the GPUDevice passed in was lost (${existing.lostReason}); pass a new one`);
      return existing;
    }
  }
  const acquired = await acquireDevice(callerDevice);
  let runtime = runtimes.get(acquired.device);
  if (!runtime || runtime.isLost) {
    runtime = new GpuRuntime(acquired);
    runtimes.set(acquired.device, runtime);
  }
  if (!callerDevice) sharedRuntime = runtime;
  return runtime;
}

/**
 * The runtime already made for `device` (or for the shared device), without acquiring anything:
 * for synchronous checks such as AttentionBackend.unsupported().
 */
export function peekRuntime(device?: GPUDevice): GpuRuntime | undefined {
  const runtime = device ? runtimes.get(device) : sharedRuntime;
  return runtime && !runtime.isLost ? runtime : undefined;
}

let sharedRuntime: GpuRuntime | undefined;

onDispose(async () => {
  sharedRuntime = undefined;
  await releaseSharedDevice();
});

export class GpuRuntime {
  readonly device: GPUDevice;
  readonly adapter: AdapterDescription;
  readonly features: ReadonlySet<string>;
  readonly limits: GPUSupportedLimits;
  readonly counters: RuntimeCounters = { dispatches: 0, submits: 0, pipelineHits: 0, pipelineMisses: 0 };
  /** Print generated WGSL when compiling (FUSEDATTN_DEBUG_WGSL=1). */
  debugWgsl = envFlag('FUSEDATTN_DEBUG_WGSL');

  private readonly pool: BufferPool;
  private readonly pipelines = new Map<string, Promise<Pipeline>>();
  private readonly observers = new Set<RuntimeObserver>();
  private pending: GpuCommand[] = [];
  /** Buffers that pending (unsubmitted) commands use: a host write to one must submit first. */
  private pendingBuffers = new Set<GPUBuffer>();
  private transient: GPUBuffer[] = [];
  private readonly bindGroupBuffers = new WeakMap<GPUBindGroup, GPUBuffer[]>();
  private errorChecks: Array<Promise<DeviceError | undefined>> = [];
  private uncaptured: DeviceError[] = [];
  private lostMessage: string | undefined;
  /** Active captures, outermost first. */
  private captures: CaptureState[] = [];

  constructor(acquired: AcquiredDevice) {
    this.device = acquired.device;
    this.adapter = acquired.description;
    this.features = new Set(this.device.features as unknown as Iterable<string>);
    this.limits = this.device.limits;
    this.pool = new BufferPool(this.device);
    this.device.lost.then((info) => {
      this.lostMessage = `${info.reason ?? 'unknown'}: ${info.message}`;
    });
    this.device.addEventListener('uncapturederror', (event) => {
      const error = (event as GPUUncapturedErrorEvent).error;
      this.uncaptured.push(new DeviceError('webgpu', `GPU error outside an op's error scope: ${error.message}`));
    });
  }

  get isLost(): boolean {
    return this.lostMessage !== undefined;
  }

  /** Why the device was lost ("destroyed: ...", "unknown: ..."), if it was. */
  get lostReason(): string | undefined {
    return this.lostMessage;
  }

  // ---------------------------------------------------------------- pipelines

  /** The cached pipeline for (kernel, options), compiled on first use. */
  pipeline<O>(kernel: KernelSpec<O>, options: O): Promise<Pipeline> {
    this.assertAlive();
    const key = `${kernel.name}:${stableKey(options)}`;
    const hit = this.pipelines.get(key);
    if (hit) {
      this.counters.pipelineHits++;
      return hit;
    }
    this.counters.pipelineMisses++;
    const compiled = this.compile(kernel, options, key);
    this.pipelines.set(key, compiled);
    compiled.catch(() => this.pipelines.delete(key));
    return compiled;
  }

  /** Number of distinct pipelines compiled or compiling. */
  get pipelineCount(): number {
    return this.pipelines.size;
  }

  private async compile<O>(kernel: KernelSpec<O>, options: O, key: string): Promise<Pipeline> {
    const wgsl = kernel.build(options);
    if (this.debugWgsl) console.error(`// ---- FUSEDATTN_DEBUG_WGSL ${key}\n${wgsl}`);
    const [module, moduleError] = this.scoped(() => this.device.createShaderModule({ code: wgsl, label: kernel.name }));
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length > 0) {
      const lines = wgsl.split('\n');
      const detail = errors.map((m) => `line ${m.lineNum}: ${m.message}\n    ${lines[m.lineNum - 1]?.trim() ?? ''}`).join('\n');
      throw new DeviceError('webgpu', `WGSL of kernel ${kernel.name} does not compile (set FUSEDATTN_DEBUG_WGSL=1 to print it):\n${detail}`);
    }
    await throwIf(moduleError);
    let gpu: GPUComputePipeline;
    try {
      gpu = await this.device.createComputePipelineAsync({
        label: kernel.name,
        layout: 'auto',
        compute: { module, entryPoint: kernel.entryPoint ?? 'main' },
      });
    } catch (e) {
      throw new DeviceError('webgpu', `pipeline for kernel ${kernel.name} failed: ${(e as Error).message}`);
    }
    return { gpu, name: kernel.name, key, wgsl };
  }

  /**
   * `groups` workgroups as an x × y grid within maxComputeWorkgroupsPerDimension (y = 1 when they
   * fit in x); kernels number them wid.x + wid.y * nwg.x and skip those past their count.
   */
  foldedGrid(groups: number): [number, number] {
    const y = Math.ceil(groups / this.limits.maxComputeWorkgroupsPerDimension);
    return [Math.ceil(groups / y), y];
  }

  // ---------------------------------------------------------------- buffers

  /** A pooled buffer of at least `bytes` (STORAGE | COPY_SRC | COPY_DST unless `usage` says). */
  acquire(bytes: number, role: BufferRole, label: string, usage: number = STORAGE_USAGE): GPUBuffer {
    this.assertAlive();
    this.checkBufferSize(bytes, label);
    return this.pool.acquire(bytes, usage, role, label);
  }

  /** Returns a pooled buffer; it is reused only after pending commands are submitted. */
  release(buffer: GPUBuffer | undefined): void {
    if (!buffer) return;
    // while recording, released buffers belong to the (outermost) recording: a replay uses them
    if (this.captures.length > 0 && this.pool.owns(buffer)) this.captures[0].buffers.push(buffer);
    else {
      this.pool.release(buffer);
      // nothing unsubmitted can use it: reusable at once
      if (this.pending.length === 0) this.pool.afterSubmit();
    }
  }

  /**
   * A buffer that is not pooled: for results handed to the caller (a GPU tensor they own and may
   * destroy). Rounded up to 4 bytes.
   */
  createBuffer(bytes: number, label: string, usage: number = STORAGE_USAGE): GPUBuffer {
    this.assertAlive();
    this.checkBufferSize(bytes, label);
    return this.device.createBuffer({ size: Math.max(4, align4(bytes)), usage, label });
  }

  /** Copies CPU data into a fresh pooled storage buffer (padded to 4 bytes; float16 bits and u8 masks as they are). */
  upload(data: ArrayBufferView, label: string, role: BufferRole = 'input'): GPUBuffer {
    const buffer = this.acquire(Math.max(4, align4(data.byteLength)), role, label);
    this.write(buffer, 0, data);
    return buffer;
  }

  /** A uniform buffer holding `bytes`, released automatically after the next submit. */
  uniform(bytes: ArrayBuffer | ArrayBufferView, label: string): GPUBuffer {
    const view = ArrayBuffer.isView(bytes) ? bytes : new Uint8Array(bytes);
    const buffer = this.acquire(Math.max(16, align4(view.byteLength)), 'uniform', label, BufferUsage.UNIFORM | BufferUsage.COPY_DST);
    this.write(buffer, 0, view);
    this.releaseAfterSubmit(buffer);
    return buffer;
  }

  /** Like upload(), but released automatically after the next submit (small per-call tables). */
  uploadTransient(data: ArrayBufferView, label: string): GPUBuffer {
    const buffer = this.upload(data, label, 'uniform');
    this.releaseAfterSubmit(buffer);
    return buffer;
  }

  private releaseAfterSubmit(buffer: GPUBuffer): void {
    if (this.captures.length > 0) this.captures[0].buffers.push(buffer);
    else this.transient.push(buffer);
  }

  /**
   * queue.writeBuffer, made safe: if a pending command uses `buffer`, pending work is submitted
   * first (a queue write would otherwise land before those commands run). Pads to 4 bytes.
   */
  write(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
    this.assertAlive();
    if (this.pendingBuffers.has(buffer)) this.submit();
    for (const o of this.observers) o.written?.(buffer, offset, data.byteLength);
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 !== 0) {
      const padded = new Uint8Array(align4(bytes.byteLength));
      padded.set(bytes);
      bytes = padded;
    }
    if (bytes.byteLength > 0) this.device.queue.writeBuffer(buffer, offset, bytes as Uint8Array<ArrayBuffer>);
  }

  /** Pool statistics (live bytes per role, free bytes, reuse counts). */
  memory(): PoolStats {
    return this.pool.snapshot();
  }

  /** Starts measuring the peak of intermediate bytes (RunStats.intermediateBytes). */
  meter(): Meter {
    return this.pool.meter();
  }

  /** Destroys the pool's free buffers (keeps `keepBytes`). */
  trimPool(keepBytes = 0): void {
    this.pool.trim(keepBytes);
  }

  // ---------------------------------------------------------------- commands

  /** A bind group for `pipeline`'s @group(group), from { binding number: buffer or binding }. */
  bindGroup(pipeline: Pipeline, group: number, entries: Readonly<Record<number, BindingResource>>, label?: string): GPUBindGroup {
    this.assertAlive();
    const buffers: GPUBuffer[] = [];
    const list: GPUBindGroupEntry[] = Object.entries(entries).map(([binding, resource]) => {
      const bufferBinding: GPUBufferBinding = isBufferBinding(resource) ? resource : { buffer: resource };
      buffers.push(bufferBinding.buffer);
      return { binding: Number(binding), resource: bufferBinding };
    });
    const bindGroup = this.device.createBindGroup({ label: label ?? `${pipeline.name}/${group}`, layout: pipeline.gpu.getBindGroupLayout(group), entries: list });
    this.bindGroupBuffers.set(bindGroup, buffers);
    return bindGroup;
  }

  /** Queues one compute dispatch (recorded now, encoded and submitted by flush()). */
  dispatch(request: DispatchRequest): void {
    this.assertAlive();
    const wg = typeof request.workgroups === 'number' ? [request.workgroups] : request.workgroups;
    const workgroups: [number, number, number] = [wg[0], wg[1] ?? 1, wg[2] ?? 1];
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    for (const n of workgroups) {
      if (!Number.isInteger(n) || n < 0 || n > max) {
        throw new UnsupportedError('workgroups', `dispatch ${request.label}: workgroup counts ${workgroups.join(' x ')} exceed maxComputeWorkgroupsPerDimension (${max})`);
      }
    }
    this.enqueue({ kind: 'dispatch', label: request.label, pipeline: request.pipeline, bindGroups: request.bindGroups, workgroups });
  }

  /** Queues a buffer-to-buffer copy (offsets and size multiples of 4). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number, label = 'copy'): void {
    this.assertAlive();
    this.enqueue({ kind: 'copy', label, src, srcOffset, dst, dstOffset, size: align4(size) });
  }

  /** Queues zero-filling of a buffer range (offset and size multiples of 4). */
  clear(buffer: GPUBuffer, offset = 0, size = buffer.size - offset, label = 'clear'): void {
    this.assertAlive();
    this.enqueue({ kind: 'clear', label, buffer, offset, size: align4(size) });
  }

  /**
   * Queues already-recorded commands again (the scope's replay). Their bind groups and buffers
   * must still be alive; nothing is re-validated on the JS side.
   */
  enqueue(...commands: GpuCommand[]): void {
    for (const command of commands) {
      this.pending.push(command);
      if (command.kind === 'dispatch') {
        this.counters.dispatches++;
        for (const group of command.bindGroups) for (const b of this.bindGroupBuffers.get(group) ?? []) this.pendingBuffers.add(b);
      } else if (command.kind === 'copy') {
        this.pendingBuffers.add(command.src);
        this.pendingBuffers.add(command.dst);
      } else this.pendingBuffers.add(command.buffer);
      for (const c of this.captures) c.commands.push(command);
      for (const o of this.observers) o.queued?.(command);
    }
  }

  /**
   * Starts recording every queued command (the scope's first run). Recordings nest: an outer
   * one also gets the inner one's commands, and holds the buffers.
   */
  beginCapture(): Capture {
    this.assertAlive();
    const state: CaptureState = { commands: [], buffers: [] };
    this.captures.push(state);
    let ended = false;
    return {
      end: () => {
        if (!ended) {
          ended = true;
          this.captures = this.captures.filter((c) => c !== state);
          // a nested capture's held buffers stay with the outer one, which outlives it
          if (this.captures.length > 0) this.captures[0].buffers.push(...state.buffers.splice(0));
        }
        return { commands: state.commands, buffers: state.buffers };
      },
    };
  }

  /** Queues a recording's commands again (call flush() to submit them as one command buffer). */
  replay(recording: Recording): void {
    this.assertAlive();
    this.enqueue(...recording.commands);
  }

  /** Gives a recording's buffers back to the pool; the recording must not be replayed after. */
  releaseRecording(recording: Recording): void {
    for (const b of recording.buffers) this.pool.release(b);
    (recording.buffers as GPUBuffer[]).length = 0;
  }

  /** Number of commands waiting for the next submit. */
  get pendingCount(): number {
    return this.pending.length;
  }

  /** Attaches an observer (scope recorder, profiler); returns the function that detaches it. */
  observe(observer: RuntimeObserver): () => void {
    this.observers.add(observer);
    return () => this.observers.delete(observer);
  }

  /**
   * Encodes every pending command into one command buffer and submits it; then reports any GPU
   * error of this or earlier submits as a DeviceError. Resolves once submitted, not once done.
   */
  async flush(): Promise<void> {
    this.submit();
    await this.checkErrors();
  }

  /** Waits until the GPU has finished everything submitted so far. */
  async finish(): Promise<void> {
    await this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.checkErrors();
  }

  /** Reads `size` bytes of `buffer` from `offset` back to the CPU (submits pending work first). */
  async read(buffer: GPUBuffer, offset = 0, size = buffer.size - offset): Promise<ArrayBuffer> {
    const bytes = align4(size);
    if (bytes === 0) return new ArrayBuffer(0);
    const staging = this.acquire(bytes, 'staging', 'readback', BufferUsage.MAP_READ | BufferUsage.COPY_DST);
    try {
      this.copy(buffer, offset, staging, 0, bytes, 'readback');
      await this.flush();
      try {
        await staging.mapAsync(MapMode.READ, 0, bytes);
      } catch (e) {
        await this.checkErrors();
        throw new DeviceError('webgpu', `reading back a GPU buffer failed: ${(e as Error).message}${this.isLost ? ` (device lost: ${this.lostMessage})` : ''}`);
      }
      const out = staging.getMappedRange(0, bytes).slice(0, size);
      staging.unmap();
      return out;
    } finally {
      this.release(staging);
    }
  }

  private submit(): void {
    this.assertAlive();
    const commands = this.pending;
    if (commands.length === 0 && this.transient.length === 0) return;
    this.pending = [];
    this.pendingBuffers = new Set();
    if (commands.length > 0) {
      const [, error] = this.scoped(() => {
        const encoder = this.device.createCommandEncoder({ label: 'fusedattn' });
        this.encode(encoder, commands);
        for (const o of this.observers) o.beforeFinish?.(encoder, commands);
        this.device.queue.submit([encoder.finish()]);
      }, commands);
      this.errorChecks.push(error);
      this.counters.submits++;
      for (const o of this.observers) o.submitted?.(commands);
    }
    for (const b of this.transient) this.pool.release(b);
    this.transient = [];
    this.pool.afterSubmit();
  }

  private encode(encoder: GPUCommandEncoder, commands: readonly GpuCommand[]): void {
    let pass: GPUComputePassEncoder | undefined;
    const endPass = () => {
      pass?.end();
      pass = undefined;
    };
    for (const command of commands) {
      if (command.kind !== 'dispatch') {
        endPass();
        if (command.kind === 'copy') encoder.copyBufferToBuffer(command.src, command.srcOffset, command.dst, command.dstOffset, command.size);
        else encoder.clearBuffer(command.buffer, command.offset, command.size);
        continue;
      }
      let timestamps: GPUComputePassTimestampWrites | undefined;
      for (const o of this.observers) timestamps ??= o.timestampWrites?.(command);
      if (timestamps) {
        endPass();
        const own = encoder.beginComputePass({ label: command.label, timestampWrites: timestamps });
        recordDispatch(own, command);
        own.end();
        continue;
      }
      // WebGPU makes each dispatch its own usage scope: writes are visible to the next dispatch of
      // the same pass, so consecutive dispatches share one pass.
      pass ??= encoder.beginComputePass({ label: 'fusedattn' });
      recordDispatch(pass, command);
    }
    endPass();
  }

  /** Runs `fn` inside validation + out-of-memory error scopes; the promise resolves to the error. */
  private scoped<T>(fn: () => T, commands?: readonly GpuCommand[]): [T, Promise<DeviceError | undefined>] {
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    let result: T | undefined;
    let thrown: unknown;
    let failed = false;
    try {
      result = fn();
    } catch (e) {
      thrown = e;
      failed = true;
    }
    const validation = this.device.popErrorScope();
    const oom = this.device.popErrorScope();
    if (failed) throw thrown;
    const labels = commands ? ` in [${[...new Set(commands.map((c) => c.label))].join(', ')}]` : '';
    const error = Promise.all([validation, oom]).then(([v, o]) => {
      if (o) return new DeviceError('webgpu', `GPU out of memory${labels}: ${o.message}`);
      if (v) return new DeviceError('webgpu', `GPU validation error${labels}: ${v.message}`);
      return undefined;
    }, (e: Error) => new DeviceError('webgpu', `GPU error scope failed${labels}: ${e.message}`));
    return [result as T, error];
  }

  private async checkErrors(): Promise<void> {
    const checks = this.errorChecks;
    this.errorChecks = [];
    const errors = (await Promise.all(checks)).filter((e): e is DeviceError => e !== undefined);
    errors.push(...this.uncaptured.splice(0));
    if (errors.length > 0) throw errors[0];
    if (this.isLost) throw this.lostError();
  }

  private assertAlive(): void {
    if (this.isLost) throw this.lostError();
  }

  private lostError(): DeviceError {
    return new DeviceError('webgpu', `the GPU device was lost (${this.lostMessage}); the next call acquires a new device`);
  }

  private checkBufferSize(bytes: number, label: string): void {
    if (bytes > this.limits.maxBufferSize) {
      throw new UnsupportedError(label, `${label} needs a GPU buffer of ${bytes} bytes but maxBufferSize is ${this.limits.maxBufferSize}`);
    }
  }
}

async function throwIf(error: Promise<DeviceError | undefined>): Promise<void> {
  const e = await error;
  if (e) throw e;
}

function recordDispatch(pass: GPUComputePassEncoder, command: DispatchCommand): void {
  pass.setPipeline(command.pipeline.gpu);
  command.bindGroups.forEach((group, i) => pass.setBindGroup(i, group));
  pass.dispatchWorkgroups(...command.workgroups);
}

function isBufferBinding(resource: BindingResource): resource is GPUBufferBinding {
  return (resource as GPUBufferBinding).buffer !== undefined && typeof (resource as GPUBuffer).mapAsync !== 'function';
}

export function align4(bytes: number): number {
  return Math.ceil(bytes / 4) * 4;
}
