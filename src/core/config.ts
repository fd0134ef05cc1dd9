// Process-wide settings: `configure()` overrides the environment variables of the same meaning,
// and `dispose()` releases what the library holds (the CPU worker pool, the shared GPU device).
// This file sits in core, below the engines, so it cannot reach them: an engine registers what to
// do when a setting changes or on dispose, when it is first loaded (an engine never loaded has
// nothing to release).
import { clampThreads, envChoice, envInt } from './env.js';
import { ValueError, show } from './errors.js';

export const CPU_KERNEL_CHOICES = ['auto', 'wasm-simd', 'scalar'] as const;
export type CpuKernelChoice = (typeof CPU_KERNEL_CHOICES)[number];
export const WEBGPU_TIER_CHOICES = ['auto', 'sgmatrix', 'subgroup', 'portable'] as const;
export type WebGpuTierChoice = (typeof WEBGPU_TIER_CHOICES)[number];
export type AutotuneMode = 'cached' | 'on' | 'background' | 'force' | 'off';
export const AUTOTUNE_MODES: readonly AutotuneMode[] = ['cached', 'on', 'background', 'force', 'off'];

/**
 * What `configure()` takes. Each key overrides its environment variable; a key given as
 * `undefined` goes back to the variable (or the default).
 */
export interface FusedAttnConfig {
  /** CPU worker threads (FUSEDATTN_CPU_THREADS): 0 = single-threaded; above the core count: clamped, with a note. */
  cpuThreads?: number;
  /** CPU kernels (FUSEDATTN_CPU_KERNELS). */
  cpuKernels?: CpuKernelChoice;
  /** Forces a WebGPU flash tier (FUSEDATTN_WEBGPU_TIER); 'auto' = the best that can run the call. */
  webgpuTier?: WebGpuTierChoice;
  /** When the tensor-core tier may tune (FUSEDATTN_AUTOTUNE); see README "WebGPU tiers". */
  autotune?: AutotuneMode;
}

type Key = keyof FusedAttnConfig;
const KEYS: readonly Key[] = ['cpuThreads', 'cpuKernels', 'webgpuTier', 'autotune'];

const settings: FusedAttnConfig = {};
const changeHooks = new Set<(changed: readonly Key[]) => void>();
const disposeHooks = new Set<() => void | Promise<void>>();

function checkChoice<T extends string>(key: Key, value: unknown, choices: readonly T[]): T {
  if (typeof value !== 'string' || !choices.includes(value as T)) {
    throw new ValueError(`options.${key}`, `configure(): ${key} must be one of ${choices.join(', ')}, got ${show(value)}`);
  }
  return value as T;
}

/**
 * Sets process-wide options, validated first (a ValueError naming the option; nothing changes on
 * an error). A change of the CPU options retires the running CPU pool: calls in flight finish on
 * it, the next call starts a new one.
 */
export function configure(options: FusedAttnConfig): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ValueError('options', `configure() takes an options object, got ${show(options)}`);
  }
  const next: FusedAttnConfig = { ...settings };
  const changed: Key[] = [];
  for (const [key, value] of Object.entries(options)) {
    if (!KEYS.includes(key as Key)) {
      throw new ValueError(`options.${key}`, `configure(): unknown option ${show(key)}; the options are ${KEYS.join(', ')}`);
    }
    const k = key as Key;
    if (value === undefined) delete next[k];
    else if (k === 'cpuThreads') {
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
        throw new ValueError('options.cpuThreads', `configure(): cpuThreads must be an integer >= 0 (0 = single-threaded), got ${show(value)}`);
      }
      next.cpuThreads = value;
    } else if (k === 'cpuKernels') next.cpuKernels = checkChoice(k, value, CPU_KERNEL_CHOICES);
    else if (k === 'webgpuTier') next.webgpuTier = checkChoice(k, value, WEBGPU_TIER_CHOICES);
    else next.autotune = checkChoice(k, value, AUTOTUNE_MODES);
    if (next[k] !== settings[k]) changed.push(k);
  }
  for (const k of KEYS) {
    if (next[k] === undefined) delete settings[k];
    else (settings as Record<Key, unknown>)[k] = next[k];
  }
  if (changed.length) for (const hook of changeHooks) hook(changed);
}

/**
 * Releases the CPU worker pool and the GPU device fusedattn acquired itself (never one you passed
 * as options.device); calls still in flight fail with DeviceError. The next call starts afresh.
 */
export async function dispose(): Promise<void> {
  const errors: unknown[] = [];
  for (const hook of disposeHooks) {
    try {
      await hook();
    } catch (e) {
      errors.push(e);
    }
  }
  if (errors.length) throw errors[0];
}

/** Engines: run `hook` after configure() changed some settings. */
export function onConfigChange(hook: (changed: readonly Key[]) => void): void {
  changeHooks.add(hook);
}

/** Engines: run `hook` on dispose(). */
export function onDispose(hook: () => void | Promise<void>): void {
  disposeHooks.add(hook);
}

// ---------------------------------------------------------------- effective values

/** Worker threads: configure()'s, else FUSEDATTN_CPU_THREADS, else `cores`; clamped to `cores`. */
export function cpuThreadsSetting(cores: number): number {
  if (settings.cpuThreads !== undefined) return clampThreads(settings.cpuThreads, cores, 'configure({ cpuThreads })');
  const fromEnv = envInt('FUSEDATTN_CPU_THREADS', 0, 1 << 16);
  return fromEnv === undefined ? cores : clampThreads(fromEnv, cores, 'FUSEDATTN_CPU_THREADS');
}

export function cpuKernelsSetting(): CpuKernelChoice {
  return settings.cpuKernels ?? envChoice('FUSEDATTN_CPU_KERNELS', CPU_KERNEL_CHOICES) ?? 'auto';
}

/** The forced tier, or undefined for 'auto'. */
export function webgpuTierSetting(): Exclude<WebGpuTierChoice, 'auto'> | undefined {
  const tier = settings.webgpuTier ?? envChoice('FUSEDATTN_WEBGPU_TIER', WEBGPU_TIER_CHOICES) ?? 'auto';
  return tier === 'auto' ? undefined : tier;
}

export function autotuneSetting(): AutotuneMode {
  return settings.autotune ?? envChoice('FUSEDATTN_AUTOTUNE', AUTOTUNE_MODES) ?? 'cached';
}
