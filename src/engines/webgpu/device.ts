// Getting a GPUDevice: the caller's (options.device), navigator.gpu in a browser, or in Node the
// `webgpu` package (Dawn), tried in this order:
//   1. Dawn's default backend (Vulkan on Linux GPUs, Metal, D3D12), with the Dawn toggles of
//      GPU_DAWN_TOGGLES passed as `enable-dawn-features=...` (e.g. vulkan_enable_f16_on_nvidia),
//      GPU_DAWN_DISABLE_TOGGLES as `disable-dawn-features=...` (default: timestamp_quantization);
//   2. Dawn's OpenGL ES backend at compatibility feature level (Mesa llvmpipe without a GPU:
//      f32 only, slow, but real WebGPU), with EGL_PLATFORM=surfaceless set if unset.
// FUSEDATTN_WEBGPU_BACKEND=vulkan|opengles|metal|d3d12|default forces one (none disables WebGPU).
// One device per process is cached; when it is lost, the next call acquires a new one.
import { platform } from '#platform';
import type { DawnModule } from '../../core/platform/types.js';
import { defaultEnv, envChoice, envFlag, envIsSet, envList, envString } from '../../core/env.js';
import { prepareQuietStderr, withQuietStderr } from './quiet-stderr.js';
import { DeviceError } from '../../core/errors.js';

/** Optional adapter features we ask for when the adapter has them. */
export const WANTED_FEATURES = [
  'shader-f16',
  'subgroups',
  'subgroup-size-control',
  'timestamp-query',
  'chromium-experimental-subgroup-matrix',
] as const;

export type DeviceSource = 'caller' | 'navigator' | 'dawn';

/** One subgroup-matrix shape the adapter offers (Dawn's chromium-experimental-subgroup-matrix). */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

/** What `fusedattn info` prints about the adapter, and what benchmarks record with each row. */
export interface AdapterDescription {
  source: DeviceSource;
  /** Dawn backend asked for ('default', 'vulkan', 'opengles', ...), or 'browser' / 'caller'. */
  backend: string;
  featureLevel: 'core' | 'compatibility';
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  /** Features enabled on our device. */
  features: string[];
  /** The limits kernels care about (device values). */
  limits: Record<string, number>;
  subgroupMatrixConfigs: SubgroupMatrixConfig[];
}

export interface AcquiredDevice {
  device: GPUDevice;
  description: AdapterDescription;
}

const KEY_LIMITS = [
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxUniformBufferBindingSize',
  'minStorageBufferOffsetAlignment',
  'maxBindGroups',
] as const;

let cached: Promise<AcquiredDevice> | undefined;
/** Why the last attempt found no adapter (kept so hasAdapter() does not retry on every call). */
let lastFailure: DeviceError | undefined;
/** The Dawn instance (or navigator.gpu) and adapter options the shared device came from. */
let origin: { gpu: GPU; options: GPURequestAdapterOptions; source: DeviceSource; backend: string; level: 'core' | 'compatibility' } | undefined;

/**
 * The process's shared device (acquired once), or a description of the caller's own device.
 * Throws DeviceError, saying what was tried, when no adapter can be had.
 */
export async function acquireDevice(callerDevice?: GPUDevice): Promise<AcquiredDevice> {
  if (callerDevice) return { device: callerDevice, description: describeDevice(callerDevice, undefined, 'caller', 'caller', 'core') };
  if (lastFailure) throw lastFailure;
  if (!cached) {
    const attempt = acquireShared();
    cached = attempt;
    attempt.then(
      ({ device }) => {
        device.lost.then(() => {
          if (cached === attempt) cached = undefined;
        });
      },
      (e: unknown) => {
        if (cached === attempt) cached = undefined;
        lastFailure = e instanceof DeviceError ? e : new DeviceError('webgpu', String(e));
      },
    );
  }
  return cached;
}

/**
 * Destroys the shared device (dispose()); the next call acquires a new one from the same WebGPU
 * instance. A caller's device is never touched.
 */
export async function releaseSharedDevice(): Promise<void> {
  const previous = cached;
  cached = undefined;
  lastFailure = undefined;
  const acquired = await previous?.catch(() => undefined);
  acquired?.device.destroy();
}

/**
 * A new GPUDevice, separate from the shared one, from the same WebGPU instance and adapter kind
 * (Dawn misbehaves with several instances in one process, so callers who want a device of their
 * own, and tests of options.device, should get it here). Same features and limits as ours.
 */
export async function openSeparateDevice(): Promise<GPUDevice> {
  await acquireDevice();
  const from = origin as NonNullable<typeof origin>;
  const adapter = await withQuietStderr(() => from.gpu.requestAdapter(from.options));
  if (!adapter) throw new DeviceError('webgpu', `no second adapter from backend ${from.backend}`);
  return (await openDevice(adapter, from.source, from.backend, from.level)).device;
}

/** True when a WebGPU adapter can be had here (acquires and caches the shared device). */
export async function hasAdapter(): Promise<boolean> {
  if (backendOverride() === 'none') return false;
  try {
    await acquireDevice();
    return true;
  } catch {
    return false;
  }
}

/** Software rasterisers (Mesa llvmpipe/lavapipe/softpipe, SwiftShader) run WGSL on the CPU, slower than our CPU backend. */
const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|softpipe|swiftshader/i;

/** True for a fallback (software) adapter: 'auto' treats it as no GPU. */
export function isSoftwareAdapter(d: Pick<AdapterDescription, 'isFallbackAdapter' | 'vendor' | 'architecture' | 'device' | 'description'>): boolean {
  return d.isFallbackAdapter || SOFTWARE_ADAPTER.test(`${d.vendor} ${d.architecture} ${d.device} ${d.description}`);
}

/** True when a hardware WebGPU adapter can be had here: what backend 'auto' asks. */
export async function hasHardwareAdapter(): Promise<boolean> {
  backendOverride(); // a malformed FUSEDATTN_WEBGPU_BACKEND is reported, not read as "no GPU"
  const { available, adapter } = await describeAdapter();
  return available && adapter !== undefined && !isSoftwareAdapter(adapter);
}

/** For `fusedattn info` / listBackends(): availability, a one-line detail and the full description. */
export async function describeAdapter(): Promise<{ available: boolean; detail: string; adapter?: AdapterDescription }> {
  try {
    backendOverride();
  } catch (e) {
    return { available: false, detail: (e as Error).message };
  }
  if (backendOverride() === 'none') return { available: false, detail: 'disabled by FUSEDATTN_WEBGPU_BACKEND=none' };
  try {
    const { description } = await acquireDevice();
    return { available: true, detail: summarize(description), adapter: description };
  } catch (e) {
    return { available: false, detail: e instanceof Error ? e.message : String(e) };
  }
}

/** One line: adapter name, backend, f16/subgroup support and the workgroup memory. */
export function summarize(d: AdapterDescription): string {
  const name = [d.vendor, d.architecture, d.device].filter(Boolean).join(' ') || 'unknown adapter';
  const extras = ['shader-f16', 'subgroups', 'timestamp-query', 'chromium-experimental-subgroup-matrix'].filter((f) => d.features.includes(f));
  return `${name} (${d.description}; backend ${d.backend}, ${d.featureLevel}); features: ${extras.join(', ') || 'none of f16/subgroups/timestamps'}; ` +
    `workgroup memory ${d.limits.maxComputeWorkgroupStorageSize} B, storage binding ${d.limits.maxStorageBufferBindingSize} B`;
}

/** Dawn's backend names (its `backend=` flag), plus ours: auto (= unset) and none. */
export const WEBGPU_BACKEND_CHOICES = ['auto', 'default', 'vulkan', 'metal', 'd3d12', 'd3d11', 'opengles', 'opengl', 'null', 'none'] as const;

function backendOverride(): string | undefined {
  const value = envChoice('FUSEDATTN_WEBGPU_BACKEND', WEBGPU_BACKEND_CHOICES);
  return value === 'auto' ? undefined : value;
}

async function acquireShared(): Promise<AcquiredDevice> {
  const override = backendOverride();
  if (override === 'none') throw new DeviceError('webgpu', 'WebGPU is disabled by FUSEDATTN_WEBGPU_BACKEND=none');
  if (origin) {
    // after a device loss or dispose(): a new device from the same instance (a second Dawn
    // instance in one process crashes or hangs on Mesa)
    const from = origin;
    const adapter = await withQuietStderr(() => from.gpu.requestAdapter(from.options));
    if (!adapter) throw new DeviceError('webgpu', `no adapter from backend ${from.backend} any more (it gave one before)`);
    return openDevice(adapter, from.source, from.backend, from.level);
  }
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu && override === undefined) {
    const options: GPURequestAdapterOptions = { powerPreference: 'high-performance' };
    const adapter = await nav.gpu.requestAdapter(options);
    if (!adapter) throw new DeviceError('webgpu', 'navigator.gpu.requestAdapter() returned no adapter');
    origin = { gpu: nav.gpu, options, source: 'navigator', backend: 'browser', level: 'core' };
    return openDevice(adapter, 'navigator', 'browser', 'core');
  }
  if (platform.name !== 'node' && platform.name !== 'bun') {
    throw new DeviceError('webgpu', `no WebGPU here: navigator.gpu is missing${platform.name === 'deno' ? ' (Deno: run with --unstable-webgpu where your Deno needs it)' : ' (the browser lacks WebGPU or has it disabled)'}; pass options.device, or use the CPU backend`);
  }
  return acquireDawn(override);
}


async function acquireDawn(override: string | undefined): Promise<AcquiredDevice> {
  // EGL reads this when Dawn's OpenGL ES backend starts; headless Mesa needs surfaceless. Also set
  // in the C environment: Bun's process.env does not reach native code (the platform calls setenv).
  defaultEnv('EGL_PLATFORM', 'surfaceless');
  platform.defaultNativeEnv('EGL_PLATFORM', 'surfaceless');
  let dawn: DawnModule;
  try {
    dawn = await platform.loadDawn();
    await prepareQuietStderr();
  } catch (e) {
    throw new DeviceError('webgpu', (e as Error).message);
  }
  const toggles = envList('GPU_DAWN_TOGGLES');
  // explicit opt-in only: Dawn then skips its bounds checks (kernels are correct without them)
  if (envFlag('FUSEDATTN_UNSAFE_DISABLE_ROBUSTNESS')) toggles.push('disable_robustness');
  const flags = toggles.length ? [`enable-dawn-features=${toggles.join(',')}`] : [];
  // Dawn rounds GPU timestamps to 2^16 ns unless timestamp_quantization is disabled: a browser's
  // defence against timing attacks by web pages, which a Node process does not need, and at that
  // resolution the profiler and the autotuner read 0 for every kernel under 65 µs. Off by default
  // here; GPU_DAWN_DISABLE_TOGGLES replaces the list (set it empty to keep the quantization).
  const disabled = !envIsSet('GPU_DAWN_DISABLE_TOGGLES') ? ['timestamp_quantization'] : envList('GPU_DAWN_DISABLE_TOGGLES');
  if (disabled.length) flags.push(`disable-dawn-features=${disabled.join(',')}`);
  const tried: string[] = [];
  const attempts: Array<{ backend: string; level: 'core' | 'compatibility' }> =
    override === undefined ? [{ backend: 'default', level: 'core' }, { backend: 'opengles', level: 'compatibility' }]
      : [{ backend: override, level: override === 'opengles' ? 'compatibility' : 'core' }];
  for (const { backend, level } of attempts) {
    if ((backend === 'default' || backend === 'vulkan') && process.platform === 'linux' && !platform.vulkanLoaderPresent()) {
      // Dawn's default backend on Linux is Vulkan; without the loader it would only print a
      // multi-line warning on stderr before failing
      tried.push('vulkan: no Vulkan loader (libvulkan.so.1) found');
      continue;
    }
    try {
      const gpu = withQuietStderr(() => dawn.create(backend === 'default' ? flags : [`backend=${backend}`, ...flags]));
      const options = {
        powerPreference: 'high-performance',
        ...(level === 'compatibility' ? { featureLevel: 'compatibility' } : {}),
      } as GPURequestAdapterOptions;
      const adapter = await withQuietStderr(() => gpu.requestAdapter(options));
      if (!adapter) {
        tried.push(`${backend}: no adapter`);
        continue;
      }
      const name = backend === 'default' ? defaultBackendName() : backend;
      // keeping the instance referenced also keeps Dawn alive as long as our devices
      origin = { gpu, options, source: 'dawn', backend: name, level };
      return await openDevice(adapter, 'dawn', name, level);
    } catch (e) {
      tried.push(`${backend}: ${(e as Error).message}`);
    }
  }
  const hint = override === undefined ? ' (without a GPU, install Mesa: apt-get install libegl1 libegl-mesa0 libgles2 libgl1-mesa-dri)' : '';
  throw new DeviceError('webgpu', `no WebGPU adapter found; tried ${tried.join('; ')}${hint}`);
}

function defaultBackendName(): string {
  switch (process.platform) {
    case 'darwin': return 'metal';
    case 'win32': return 'd3d12';
    default: return 'vulkan';
  }
}

async function openDevice(adapter: GPUAdapter, source: DeviceSource, backend: string, level: 'core' | 'compatibility'): Promise<AcquiredDevice> {
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  // Ask for everything the adapter allows: compat defaults (4 storage buffers, 16 KiB of
  // workgroup memory) are far below what llvmpipe and real GPUs offer.
  for (const key in adapter.limits) {
    // no kernel binds with dynamic offsets; asking for the adapter's full count makes Dawn's
    // OpenGL ES backend print two "artificially reduced" warnings on stderr for every device
    if (key.startsWith('maxDynamic')) continue;
    const value = (adapter.limits as unknown as Record<string, unknown>)[key];
    if (typeof value === 'number') requiredLimits[key] = value;
  }
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: 'fusedattn' });
  } catch (first) {
    try {
      device = await adapter.requestDevice({ requiredFeatures, label: 'fusedattn' });
    } catch {
      throw new DeviceError('webgpu', `requestDevice failed on ${backend}: ${(first as Error).message}`);
    }
  }
  return { device, description: describeDevice(device, adapter, source, backend, level) };
}

function describeDevice(device: GPUDevice, adapter: GPUAdapter | undefined, source: DeviceSource, backend: string, level: 'core' | 'compatibility'): AdapterDescription {
  const info = (adapter?.info ?? (device as { adapterInfo?: GPUAdapterInfo }).adapterInfo ?? {}) as Partial<GPUAdapterInfo> & {
    subgroupMinSize?: number;
    subgroupMaxSize?: number;
    subgroupMatrixConfigs?: ReadonlyArray<Record<string, unknown>>;
  };
  const limits: Record<string, number> = {};
  for (const key of KEY_LIMITS) {
    const value = (device.limits as unknown as Record<string, unknown>)[key];
    if (typeof value === 'number') limits[key] = value;
  }
  return {
    source,
    backend,
    featureLevel: level,
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    isFallbackAdapter: Boolean((info as { isFallbackAdapter?: boolean }).isFallbackAdapter),
    subgroupMinSize: info.subgroupMinSize,
    subgroupMaxSize: info.subgroupMaxSize,
    features: [...device.features].sort(),
    limits,
    subgroupMatrixConfigs: (info.subgroupMatrixConfigs ?? []).map((c) => ({
      componentType: String(c.componentType),
      resultComponentType: String(c.resultComponentType),
      M: Number(c.M),
      N: Number(c.N),
      K: Number(c.K),
    })),
  };
}
