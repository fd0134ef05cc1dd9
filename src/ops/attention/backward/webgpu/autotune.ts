// Per-shape configuration cache of the tensor-core backward tier, as the forward's autotune.ts is:
// candidates (subgroups and block of the kv and q kernels) are timed with timestamp queries on the
// call's own inputs, per (adapter, head dims, options, length class, GQA); the winner is persisted
// (Node, Bun, Deno: JSON beside the forward's cache, $XDG_CACHE_HOME/fusedattn/autotune-backward.json
// or FUSEDATTN_AUTOTUNE_BACKWARD_FILE; browsers: localStorage) and used by later calls and processes.
// The mode is the forward's (FUSEDATTN_AUTOTUNE / setAutotuneMode): 'cached' (default) never tunes,
// 'on' tunes a class when first met, 'force' once per process, 'background' right after the call,
// 'off' always the default. A candidate whose gradients differ from the default's is rejected.
import { envString } from '../../../../core/env.js';
import { Tensor } from '../../../../core/tensor.js';
import { platform } from '#platform';
import type { GpuRuntime } from '../../../../engines/webgpu/runtime.js';
import { BufferUsage } from '../../../../engines/webgpu/usage.js';
import { adapterKey, lengthClass } from '../../webgpu/tiers/autotune.js';
import { autotuneMode } from '../../webgpu/tiers/autotune-mode.js';
import type { AttentionGrads } from '../options.js';
import type { BackwardProblem } from '../problem.js';
import { runBackwardPlan } from './portable.js';
import { SG_BACKWARD_CONFIGS, type SgBackwardConfig, fittingBackwardConfig, sgBackwardPlan } from './sgmatrix.js';

type Store = Record<string, { config: SgBackwardConfig; ms: number; at: string }>;
let store: Store | undefined;
const tunedThisProcess = new Set<string>();
const inFlight = new Map<string, Promise<SgBackwardConfig>>();
const LOCAL_KEY = 'fusedattn-autotune-backward';

// The local file system where there is one (Node, Bun, Deno: #platform), else localStorage.
function localCache() {
  const fs = platform.fs;
  if (!fs) return undefined;
  const file = envString('FUSEDATTN_AUTOTUNE_BACKWARD_FILE') ?? fs.join(envString('XDG_CACHE_HOME') ?? fs.homeCacheDir(), 'fusedattn', 'autotune-backward.json');
  return { fs, file };
}

async function loadStore(): Promise<Store> {
  if (store) return store;
  store = {};
  try {
    const local = localCache();
    const text = local ? local.fs.readTextSync(local.file) : (globalThis as { localStorage?: Storage }).localStorage?.getItem(LOCAL_KEY) ?? undefined;
    if (text) store = JSON.parse(text) as Store;
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
    else (globalThis as { localStorage?: Storage }).localStorage?.setItem(LOCAL_KEY, text);
  } catch {
    // read-only home or storage quota: keep the winner for this process only
  }
}

export function backwardTuneKey(runtime: Pick<GpuRuntime, 'adapter'>, bp: BackwardProblem): string {
  const p = bp.forward;
  const windowed = p.window.left !== Infinity || p.window.right !== Infinity;
  const options = [windowed ? 'window' : 'full', p.softcap > 0 ? 'softcap' : '', p.alibi ? 'alibi' : '', p.dropout ? 'dropout' : ''].filter(Boolean).join('+');
  return [adapterKey(runtime), 'backward', p.dtype, `${p.dimQK}+${p.dimRope}/${p.dimV}`, options, lengthClass(p.seqK), p.headsQ > p.headsKv ? 'gqa' : 'mha'].join('|');
}

/** The configuration to run `bp` with, per the autotune mode. */
export async function tunedBackwardConfig(runtime: GpuRuntime, bp: BackwardProblem): Promise<SgBackwardConfig> {
  const fallback = fittingBackwardConfig(bp, runtime) ?? SG_BACKWARD_CONFIGS[0];
  const mode = autotuneMode();
  if (mode === 'off') return fallback;
  const key = backwardTuneKey(runtime, bp);
  const stored = (await loadStore())[key];
  const usable = stored && fittingBackwardConfig(bp, runtime, stored.config) === stored.config ? stored.config : undefined;
  if ((mode === 'on' && !usable) || (mode === 'force' && !tunedThisProcess.has(key))) return tuneClass(runtime, bp, key);
  if (mode === 'background' && !usable && !tunedThisProcess.has(key)) setTimeout(() => void tuneClass(runtime, bp, key).catch(() => undefined), 0);
  return usable ?? fallback;
}

function tuneClass(runtime: GpuRuntime, bp: BackwardProblem, key: string): Promise<SgBackwardConfig> {
  let pending = inFlight.get(key);
  if (!pending) {
    pending = autotuneBackward(runtime, bp).then(async (result) => {
      tunedThisProcess.add(key);
      if (!Number.isNaN(result.bestMs)) {
        (await loadStore())[key] = { config: result.best, ms: result.bestMs, at: new Date().toISOString() };
        await saveStore();
      }
      return result.best;
    }).finally(() => inFlight.delete(key));
    inFlight.set(key, pending);
  }
  return pending;
}

export interface BackwardTuneTrial {
  config: SgBackwardConfig;
  ms: number;
  rejected?: string;
}

/** Times the first `maxCandidates` fitting candidates on `bp` (2 rounds, best of each) and returns the fastest that agrees with the default. */
export async function autotuneBackward(runtime: GpuRuntime, bp: BackwardProblem, candidates: readonly SgBackwardConfig[] = SG_BACKWARD_CONFIGS, maxCandidates = 4): Promise<{ best: SgBackwardConfig; bestMs: number; trials: BackwardTuneTrial[] }> {
  const trials: BackwardTuneTrial[] = candidates.filter((c) => fittingBackwardConfig(bp, runtime, c) === c).slice(0, maxCandidates).map((config) => ({ config, ms: Infinity }));
  let reference: Float32Array[] | undefined;
  for (let round = 0; round < 2; round++) {
    for (const trial of trials) {
      if (trial.rejected) continue;
      try {
        const { ms, grads } = await timed(runtime, () => sgBackwardPlan(runtime, bp, trial.config).then((plan) => runBackwardPlan(runtime, bp, plan)));
        if (round === 0) {
          const values = await gradValues(runtime, grads);
          if (!reference) reference = values;
          const diff = maxRelDifference(values, reference);
          if (diff > 2e-2) trial.rejected = `gradients differ from the default configuration's by ${diff}`;
        }
        for (const g of Object.values(grads)) if (g && typeof g === 'object' && 'gpu' in g) g.gpu?.buffer.destroy();
        if (!trial.rejected) trial.ms = Math.min(trial.ms, ms);
      } catch (e) {
        trial.rejected = (e as Error).message.split('\n')[0];
      }
    }
  }
  for (const t of trials) if (t.rejected) t.ms = NaN;
  const ok = trials.filter((t) => !Number.isNaN(t.ms)).sort((a, b) => a.ms - b.ms);
  const best = ok[0] ?? { config: trials[0]?.config ?? SG_BACKWARD_CONFIGS[0], ms: NaN };
  return { best: best.config, bestMs: best.ms, trials };
}

/** GPU time of every dispatch `op` queues (timestamp queries), or wall clock without them. */
async function timed(runtime: GpuRuntime, op: () => Promise<AttentionGrads>): Promise<{ ms: number; grads: AttentionGrads }> {
  if (!runtime.features.has('timestamp-query')) {
    await runtime.finish();
    const t0 = performance.now();
    const grads = await op();
    await runtime.finish();
    return { ms: performance.now() - t0, grads };
  }
  const max = 64;
  const querySet = runtime.device.createQuerySet({ type: 'timestamp', count: 2 * max });
  const resolved = runtime.device.createBuffer({ size: 16 * max, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
  let used = 0;
  const detach = runtime.observe({
    timestampWrites: () => (used < 2 * max ? { querySet, beginningOfPassWriteIndex: used++, endOfPassWriteIndex: used++ } : undefined),
    beforeFinish: (encoder) => { if (used > 0) encoder.resolveQuerySet(querySet, 0, used, resolved, 0); },
  });
  let grads: AttentionGrads;
  try {
    grads = await op();
    await runtime.flush();
  } finally {
    detach();
  }
  const ticks = new BigUint64Array(await runtime.read(resolved, 0, Math.max(16, 8 * used)));
  querySet.destroy();
  resolved.destroy();
  let ns = 0;
  for (let i = 0; i + 1 < used; i += 2) ns += Number(ticks[i + 1] - ticks[i]);
  return { ms: ns / 1e6, grads };
}

async function gradValues(runtime: GpuRuntime, grads: AttentionGrads): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const g of [grads.dq, grads.dk, grads.dv]) {
    if (g.data) out.push(g.toFloat32());
    else {
      const bytes = await runtime.read(g.gpu!.buffer, g.gpu!.byteOffset, Math.ceil((g.size * (g.dtype === 'float16' ? 2 : 4)) / 4) * 4);
      out.push(g.dtype === 'float16' ? Tensor.fromData(new Uint16Array(bytes, 0, g.size), g.shape, 'float16').toFloat32() : new Float32Array(bytes, 0, g.size));
    }
  }
  return out;
}

function maxRelDifference(a: Float32Array[], b: Float32Array[]): number {
  let worst = 0;
  a.forEach((x, n) => {
    let diff = 0;
    let scale = 1e-30;
    for (let i = 0; i < x.length; i++) {
      if (Number.isNaN(x[i]) !== Number.isNaN(b[n][i])) return (worst = Infinity);
      diff = Math.max(diff, Math.abs(x[i] - b[n][i]));
      scale = Math.max(scale, Math.abs(b[n][i]));
    }
    worst = Math.max(worst, diff / scale);
    return undefined;
  });
  return worst;
}
