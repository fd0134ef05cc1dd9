// Per-shape kernel cache for the tensor-core tier (seed 000's idea): candidate configurations
// (subgroups per workgroup, keys per block, tile staging, prefetch, GQA packing) are timed with
// timestamp queries per (adapter, dtype, head dims, mask kind, length class, GQA); the winner is
// persisted — Node: JSON in $XDG_CACHE_HOME/fusedattn (or ~/.cache/fusedattn), browsers:
// localStorage — and used by later calls and later processes.
//
// FUSEDATTN_AUTOTUNE (or setAutotuneMode):
//   'cached' (default)  use a stored winner when there is one, else the default; never tune, so
//                       the first call never stalls
//   'on'                tune a class the first time it is met (the call waits, ~0.1-2 s), then store
//   'background'        like 'cached' now, and tune the class right after the call
//   'force'             re-tune every class once per process, overwriting stored winners
//   'off'               always the default configuration
// FUSEDATTN_AUTOTUNE_FILE overrides the cache file path (Node).
// A candidate whose output differs from the default configuration's on the same inputs is
// rejected (drivers have surprised us before: docs/GPU-NOTES.md, run 2).
import { envFlag, envList, envString } from '../../../../core/env.js';
import type { AttentionProblem } from '../../problem.js';
import { abandonAttention, outputBytes } from '../attention-io.js';
import type { DispatchCommand, GpuRuntime } from '../../../../engines/webgpu/runtime.js';
import { BufferUsage } from '../../../../engines/webgpu/usage.js';
import { SG_MATRIX_CONFIGS, type SgMatrixConfig, fittingConfig, kernelOptionsOf, queueSgMatrix } from './sgmatrix.js';

import { autotuneMode } from './autotune-mode.js';
import { platform } from '#platform';

export { autotuneMode, setAutotuneMode, type AutotuneMode } from './autotune-mode.js';

/** Lengths are bucketed: tiles that win at 1k keys usually win at 1.5k too. */
export function lengthClass(seqK: number): string {
  if (seqK <= 512) return 'k<=512';
  if (seqK <= 2048) return 'k<=2048';
  if (seqK <= 8192) return 'k<=8192';
  return 'k>8192';
}

export function adapterKey(runtime: Pick<GpuRuntime, 'adapter'>): string {
  const a = runtime.adapter;
  const unsafe = envList('GPU_DAWN_TOGGLES').includes('disable_robustness') || envFlag('FUSEDATTN_UNSAFE_DISABLE_ROBUSTNESS');
  return [a.vendor, a.architecture, a.device, a.description, a.backend, unsafe ? 'no-robustness' : 'robust'].join('/');
}

/** The class of problems that share a tuned configuration. */
export function tuneKey(runtime: Pick<GpuRuntime, 'adapter'>, p: AttentionProblem): string {
  const windowed = p.window.left !== Infinity || p.window.right !== Infinity;
  const mask = [windowed ? 'window' : 'full', p.softcap > 0 ? 'softcap' : '', p.alibi ? 'alibi' : ''].filter(Boolean).join('+');
  return [adapterKey(runtime), p.dtype, `${p.dimQK}+${p.dimRope}/${p.dimV}`, mask, lengthClass(p.seqK), p.headsQ > p.headsKv ? 'gqa' : 'mha'].join('|');
}

// ---------------------------------------------------------------- persistence

type Store = Record<string, { config: SgMatrixConfig; ms: number; at: string }>;
let store: Store | undefined;
const tunedThisProcess = new Set<string>();
const inFlight = new Map<string, Promise<SgMatrixConfig>>();

// The local file system where there is one (Node, Bun, Deno: #platform), else localStorage.
function localCache() {
  const fs = platform.fs;
  if (!fs) return undefined;
  const file = envString('FUSEDATTN_AUTOTUNE_FILE') ?? fs.join(envString('XDG_CACHE_HOME') ?? fs.homeCacheDir(), 'fusedattn', 'autotune.json');
  return { fs, file };
}

const LOCAL_KEY = 'fusedattn-autotune';

async function loadStore(): Promise<Store> {
  if (store) return store;
  store = {};
  try {
    const local = localCache();
    if (local) {
      const text = local.fs.readTextSync(local.file);
      if (text !== undefined) store = JSON.parse(text) as Store;
    } else {
      const ls = (globalThis as { localStorage?: Storage }).localStorage;
      const text = ls?.getItem(LOCAL_KEY);
      if (text) store = JSON.parse(text) as Store;
    }
  } catch {
    store = {}; // a corrupt cache is only a lost optimisation
  }
  return store;
}

async function saveStore(): Promise<void> {
  const text = JSON.stringify(store ?? {}, null, 1);
  try {
    const local = localCache();
    if (local) local.fs.writeTextSync(local.file, text);
    else {
      (globalThis as { localStorage?: Storage }).localStorage?.setItem(LOCAL_KEY, text);
    }
  } catch {
    // read-only home or storage quota: keep the winner for this process only
  }
}

/** Forgets stored winners (this process's copy; the file is rewritten at the next tuning). */
export function clearAutotuneCache(): void {
  store = {};
  tunedThisProcess.clear();
}

// ---------------------------------------------------------------- choosing

/** The configuration to run `p` with, per the autotune mode (may tune first in 'on'/'force'). */
export async function tunedConfig(runtime: GpuRuntime, p: AttentionProblem): Promise<SgMatrixConfig> {
  const fallback = fittingConfig(p, runtime) ?? SG_MATRIX_CONFIGS[0];
  const mode = autotuneMode();
  if (mode === 'off') return fallback;
  const key = tuneKey(runtime, p);
  const stored = (await loadStore())[key];
  const usable = stored && fittingConfig(p, runtime, stored.config) === stored.config ? stored.config : undefined;
  const wantsTuning = (mode === 'on' && !usable) || (mode === 'force' && !tunedThisProcess.has(key));
  if (wantsTuning) return tuneClass(runtime, p, key);
  if (mode === 'background' && !usable && !tunedThisProcess.has(key)) {
    // after this call's own work was queued: the caller does not wait for it
    setTimeout(() => void tuneClass(runtime, p, key).catch(() => undefined), 0);
  }
  return usable ?? fallback;
}

function tuneClass(runtime: GpuRuntime, p: AttentionProblem, key: string): Promise<SgMatrixConfig> {
  let pending = inFlight.get(key);
  if (!pending) {
    pending = autotune(runtime, p).then(async (result) => {
      await recordTuned(key, result);
      return result.best;
    }).finally(() => inFlight.delete(key));
    inFlight.set(key, pending);
  }
  return pending;
}

/** Stores a tuning result as the winner of its class (and marks it tuned in this process). */
export async function recordTuned(key: string, result: TuneResult): Promise<void> {
  tunedThisProcess.add(key);
  if (Number.isNaN(result.bestMs)) return; // nothing measured: keep what was there
  (await loadStore())[key] = { config: result.best, ms: result.bestMs, at: new Date().toISOString() };
  await saveStore();
}

// ---------------------------------------------------------------- measuring

export interface TuneTrial {
  config: SgMatrixConfig;
  /** Median GPU time of one dispatch, ms (NaN when rejected). */
  ms: number;
  /** Why the candidate was rejected (output differs, compile failure), if it was. */
  rejected?: string;
}

export interface TuneResult {
  best: SgMatrixConfig;
  bestMs: number;
  trials: TuneTrial[];
}

/**
 * Times every fitting candidate on `p` (its own inputs) and returns the fastest whose output matches
 * the default candidate's. Needs the timestamp-query feature; without it, wall-clock time of a
 * finished submit is used.
 */
export async function autotune(runtime: GpuRuntime, p: AttentionProblem, candidates: readonly SgMatrixConfig[] = SG_MATRIX_CONFIGS, reps = 5): Promise<TuneResult> {
  const seen = new Set<string>();
  const fitting = candidates.filter((c) => {
    if (fittingConfig(p, runtime, c) !== c) return false;
    const k = JSON.stringify(kernelOptionsOf(p, c));
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  const trials: TuneTrial[] = fitting.map((config) => ({ config, ms: Infinity }));
  let reference: Uint16Array | undefined;
  // An idle GPU runs at low clocks for a while: spin on the first candidate for ~250 ms, then time
  // every candidate in 3 rounds and keep each one's best round, so no candidate is judged while
  // the clocks ramp (one-shot timings varied 3-4x on the H200, docs/GPU-NOTES.md run 4).
  if (fitting[0]) {
    const start = performance.now();
    for (let i = 0; i < 50 && performance.now() - start < 250; i++) await timeConfig(runtime, p, fitting[0], reps).catch(() => undefined);
  }
  for (let round = 0; round < 3; round++) {
    for (const trial of trials) {
      if (trial.rejected) continue;
      try {
        const { ms, out } = await timeConfig(runtime, p, trial.config, reps);
        if (!reference) reference = out;
        const diff = round === 0 ? maxHalfDifference(out, reference) : 0;
        if (diff > 2e-2) trial.rejected = `output differs from the default configuration's by ${diff}`;
        else trial.ms = Math.min(trial.ms, ms);
      } catch (e) {
        trial.rejected = (e as Error).message.split('\n')[0];
      }
    }
  }
  for (const t of trials) if (t.rejected) t.ms = NaN;
  const ok = trials.filter((t) => !Number.isNaN(t.ms)).sort((a, b) => a.ms - b.ms);
  const best = ok[0] ?? { config: fitting[0] ?? SG_MATRIX_CONFIGS[0], ms: NaN };
  return { best: best.config, bestMs: best.ms, trials };
}

/** Median ms of `reps` timed dispatches (after one warm-up) and the output they produced. */
export async function timeConfig(runtime: GpuRuntime, p: AttentionProblem, config: SgMatrixConfig, reps: number): Promise<{ ms: number; out: Uint16Array }> {
  const useTimestamps = runtime.features.has('timestamp-query');
  let captured: DispatchCommand | undefined;
  const detachCapture = runtime.observe({ queued: (c) => { if (c.kind === 'dispatch' && c.label === 'flash-sgmatrix') captured = c; } });
  let io;
  try {
    io = await queueSgMatrix(runtime, p, config);
  } finally {
    detachCapture();
  }
  try {
    if (!captured) throw new Error('the kernel was not dispatched');
    await runtime.finish(); // warm-up (and compilation) outside the timed dispatches
    let times = useTimestamps ? await timestamped(runtime, captured, reps) : [];
    // no timestamps (or another observer took this dispatch's pass): wall clock of finished submits
    if (times.length === 0 || times.every((t) => t <= 0)) {
      times = [];
      for (let r = 0; r < reps; r++) {
        const t0 = performance.now();
        runtime.enqueue(captured);
        await runtime.finish();
        times.push(performance.now() - t0);
      }
    }
    times.sort((a, b) => a - b);
    const out = new Uint16Array(await runtime.read(io.out, 0, outputBytes(p)));
    return { ms: times[Math.floor(times.length / 2)], out };
  } finally {
    abandonAttention(runtime, io);
  }
}

async function timestamped(runtime: GpuRuntime, command: DispatchCommand, reps: number): Promise<number[]> {
  const device = runtime.device;
  const querySet = device.createQuerySet({ type: 'timestamp', count: 2 * reps });
  const resolved = device.createBuffer({ size: 16 * reps, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
  let index = 0;
  const detach = runtime.observe({
    timestampWrites: (c) => (c === command && index < 2 * reps ? { querySet, beginningOfPassWriteIndex: index++, endOfPassWriteIndex: index++ } : undefined),
    beforeFinish: (encoder) => encoder.resolveQuerySet(querySet, 0, 2 * reps, resolved, 0),
  });
  try {
    for (let r = 0; r < reps; r++) runtime.enqueue(command);
    await runtime.flush();
  } finally {
    detach();
  }
  const ticks = new BigUint64Array(await runtime.read(resolved, 0, 16 * reps));
  querySet.destroy();
  resolved.destroy();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) times.push(Number(ticks[2 * r + 1] - ticks[2 * r]) / 1e6);
  return times;
}

const HALF = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const e = (h >>> 10) & 31, m = h & 1023, s = h & 0x8000 ? -1 : 1;
    t[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
})();

/** Largest |a - b| over float16 arrays relative to max(1, max |b|); NaN anywhere counts as Infinity. */
function maxHalfDifference(a: Uint16Array, b: Uint16Array): number {
  let diff = 0, scale = 1;
  for (let i = 0; i < b.length; i++) {
    const x = HALF[a[i]], y = HALF[b[i]];
    if (Number.isNaN(x) !== Number.isNaN(y)) return Infinity;
    if (Number.isNaN(x)) continue;
    diff = Math.max(diff, Math.abs(x - y));
    scale = Math.max(scale, Math.abs(y));
  }
  return diff / scale;
}
