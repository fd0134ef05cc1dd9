// Timing the block, fused vs unfused (and replayed through a scope), for `fusedattn bench-block`
// and bench/block.mjs. Inputs are made once and stay on the device they run on (GPU tensors on
// WebGPU), weights are random (seeded); each timed call ends when the GPU reports its work done
// (WebGPU) or when the result is in memory (CPU). Median of `iterations` after `warmup` calls; the
// paths take turns call by call (no path is always first after a clock change).
import { Tensor } from '../core/tensor.js';
import type { AttentionBlockConfig } from './config.js';
import { AttentionBlock, type AttentionBlockOptions } from './block.js';
import { randomBlockWeights, randomHidden } from './random.js';
import { type BlockCheck, blockCheck } from './bench-check.js';
import type { BlockPath, BlockStats } from './stats.js';

export interface BlockBenchCase {
  config: AttentionBlockConfig;
  batch: number;
  seq: number;
  /** With a KV cache of `cached` earlier positions (decode: seq 1). Default 0 = prefill without cache. */
  cached?: number;
  qkvBias?: boolean;
}

export interface BlockBenchOptions extends AttentionBlockOptions {
  iterations?: number;
  warmup?: number;
  /** Weight dtype given to the block. Default float32. */
  weights?: 'float32' | 'float16';
  /** Paths to time. Default fused and unfused (scope: fused replayed through a Scope, WebGPU only). */
  paths?: Array<BlockPath | 'scope'>;
  seed?: number;
  /** WebGPU: run the paths untimed for at least this long first, to bring GPU clocks up. Default 1000. */
  spinUpMs?: number;
  /**
   * Check each path's output of the case against the float64 module first (bench-check.ts) and
   * report a failure instead of a time. Default true.
   */
  check?: boolean;
  /**
   * WebGPU: calls per sample, queued back to back (each submits; the GPU never idles between them),
   * the sample being their wall time / this: steady-state latency, as PyTorch's CUDA-event numbers
   * are taken. 1 (default): one call, waited for, per sample.
   */
  backToBack?: number;
}

export interface BlockBenchRow {
  backend: 'cpu' | 'webgpu';
  path: BlockPath | 'scope';
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  batch: number;
  seq: number;
  cached: number;
  weights: 'float32' | 'float16';
  gemm: string;
  /** WebGPU: what ran the attention ('flash-sgmatrix', 'flash-portable', or the block's own 'tiled' / 'rows' kernel). */
  attention?: string;
  dispatches: number;
  submits: number;
  intermediateBytes: number;
  /** Calls per sample (options.backToBack). */
  backToBack: number;
  /** Median ms per call, and all samples. */
  ms: number;
  samples: number[];
  /**
   * WebGPU: median ms from the call until its commands were encoded, just before the submit: the
   * JavaScript op work (and encoding) a scope replay cuts. CPU: the same as ms.
   */
  hostMs: number;
  kernels: string[];
  /** 'ok', or what differs from the float64 module (then `ms` is NaN: no speed for a wrong result). */
  check?: string;
  /** The rows checked. */
  checked?: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Times one case on every requested path; the block is created once and destroyed at the end. */
export async function benchBlock(c: BlockBenchCase, options: BlockBenchOptions = {}): Promise<BlockBenchRow[]> {
  const weights = randomBlockWeights(c.config, options.seed ?? 1, { qkvBias: c.qkvBias ?? true, dtype: options.weights ?? 'float32' });
  const block = await AttentionBlock.create(c.config, weights, options);
  try {
    return await benchWith(block, c, options);
  } finally {
    block.destroy();
  }
}

/** Times `c` on an existing block (its config and backend; c.config is not used). */
export async function benchWith(block: AttentionBlock, c: BlockBenchCase, options: BlockBenchOptions = {}): Promise<BlockBenchRow[]> {
  const { hidden: H, kvHeads: Nkv, headDim: D, heads: Nq } = block.spec;
  const cached = c.cached ?? 0;
  const iterations = options.iterations ?? 5;
  const warmup = options.warmup ?? 1;
  const shape = [c.batch, c.seq, H];
  const xData = randomHidden(c.batch * c.seq, H, (options.seed ?? 1) + 1);
  const gpu = block.gpu;
  const capacity = cached + c.seq;
  // a cache of seeded random keys and values (the new tokens' slots are written by the calls)
  const cacheHost = cached > 0 ? {
    keys: randomHidden(capacity * c.batch, Nkv * D, (options.seed ?? 1) + 2),
    values: randomHidden(capacity * c.batch, Nkv * D, (options.seed ?? 1) + 3),
  } : undefined;
  const cacheData = () => ({ keys: cacheHost!.keys.slice(), values: cacheHost!.values.slice() });
  const checker: BlockCheck | undefined = options.check === false ? undefined : blockCheck({
    spec: block.spec, batch: c.batch, seq: c.seq, cached, x: xData, cache: cacheHost, xSeed: (options.seed ?? 1) + 1,
    lowPrecision: gpu?.tier === 'subgroup-matrix',
  });

  // inputs where the block runs
  let x: Tensor;
  let cache: { keys: Tensor; values: Tensor } | undefined;
  const gpuBuffers: GPUBuffer[] = [];
  if (gpu) {
    const device = gpu.runtime.device;
    const onGpu = (data: Float32Array, s: number[]) => {
      const buffer = gpu.runtime.createBuffer(data.byteLength, 'bench input');
      gpu.runtime.write(buffer, 0, data);
      gpuBuffers.push(buffer);
      return Tensor.fromGpuBuffer({ device, buffer, byteOffset: 0 }, s, 'float32');
    };
    x = onGpu(xData, shape);
    if (cached > 0) {
      const d = cacheData();
      cache = { keys: onGpu(d.keys, [capacity, c.batch, Nkv * D]), values: onGpu(d.values, [capacity, c.batch, Nkv * D]) };
    }
  } else {
    x = Tensor.fromData(xData, shape);
    if (cached > 0) {
      const d = cacheData();
      cache = { keys: Tensor.fromData(d.keys, [capacity, c.batch, Nkv * D]), values: Tensor.fromData(d.values, [capacity, c.batch, Nkv * D]) };
    }
  }
  const forwardOptions = cache ? { start: cached, cache } : {};
  const done = async () => {
    if (gpu) await gpu.runtime.device.queue.onSubmittedWorkDone();
  };
  const rows: BlockBenchRow[] = [];
  let lastEncoded = 0;
  const detach = gpu?.runtime.observe({ beforeFinish: () => { lastEncoded = performance.now(); } });
  const { Scope } = await import('../scope/scope.js');
  const paths = (options.paths ?? ['fused', 'unfused']).filter((p) => p !== 'scope' || gpu);
  interface PathState {
    path: BlockPath | 'scope';
    scope: InstanceType<typeof Scope> | undefined;
    stats?: BlockStats;
    out?: Tensor;
    samples: number[];
    host: number[];
    check?: string;
  }
  const states: PathState[] = paths.map((path) => ({ path, scope: gpu && path === 'scope' ? new Scope(gpu.runtime, 'bench') : undefined, samples: [], host: [] }));
  const call = async (st: PathState): Promise<{ stats: BlockStats; hostMs: number; out: Tensor }> => {
    const t0 = performance.now();
    let result;
    if (st.scope) result = await st.scope.run({ x, forwardOptions }, () => block.forward(x, forwardOptions));
    else result = await (st.path === 'unfused' ? block.forwardUnfused(x, forwardOptions) : block.forward(x, forwardOptions));
    return { stats: result.stats, hostMs: (gpu ? lastEncoded : performance.now()) - t0, out: result.out };
  };
  try {
    // paths take turns, call by call, so clock ramps and thermal drift hit them alike; GPU clocks
    // are first brought up by running the paths for at least `spinUpMs`
    const spinUntil = performance.now() + (gpu ? options.spinUpMs ?? 1000 : 0);
    const perSample = gpu ? Math.max(1, options.backToBack ?? 1) : 1;
    for (let i = 0; ; i++) {
      const timed = i >= warmup && performance.now() >= spinUntil;
      for (const st of states) {
        await done();
        const t0 = performance.now();
        const outs: Tensor[] = [];
        let r = await call(st);
        outs.push(r.out);
        // the first call's output, against float64 (untimed: this pass is warm-up)
        if (checker && st.check === undefined) {
          const out = r.out.gpu ? new Float32Array(await gpu!.runtime.read(r.out.gpu.buffer, r.out.gpu.byteOffset, c.batch * c.seq * H * 4)) : r.out.toFloat32();
          st.check = checker.check(out) ?? 'ok';
        }
        for (let k = 1; k < perSample; k++) outs.push((r = await call(st)).out);
        await done();
        const ms = (performance.now() - t0) / perSample;
        st.stats ??= r.stats;
        // a scope returns the recorded output again; plain GPU calls hand a new buffer each time
        if (gpu && !st.scope) for (const out of outs) out.gpu!.buffer.destroy();
        st.out = r.out;
        if (timed && st.samples.length < iterations) {
          st.samples.push(ms);
          st.host.push(r.hostMs);
        }
      }
      if (states.every((st) => st.samples.length >= iterations)) break;
    }
    for (const st of states) {
      const replay = st.scope?.lastRun;
      rows.push({
        backend: block.backend,
        path: st.path,
        hidden: H, heads: Nq, kvHeads: Nkv, headDim: D,
        batch: c.batch, seq: c.seq, cached,
        weights: block.gpu?.weightDType ?? 'float32',
        gemm: gpu ? gpu.tier : 'cpu',
        attention: gpu?.attentionName({ seq: c.seq }, cached > 0),
        dispatches: replay?.dispatches ?? st.stats?.dispatches ?? 0,
        submits: replay?.submits ?? st.stats?.submits ?? 0,
        intermediateBytes: st.stats?.intermediateBytes ?? 0,
        ms: st.check === undefined || st.check === 'ok' ? median(st.samples) : NaN,
        check: st.check,
        checked: checker?.what,
        samples: st.samples,
        hostMs: median(st.host),
        kernels: st.stats?.kernels ?? [],
        backToBack: perSample,
      });
    }
  } finally {
    for (const st of states) {
      if (st.scope) {
        st.scope.dispose();
        st.out?.gpu?.buffer.destroy();
      }
    }
    detach?.();
    for (const b of gpuBuffers) b.destroy();
  }
  return rows;
}

/** A fixed-width table of rows, with the fused/unfused latency ratio per case. */
export function formatBlockTable(rows: readonly BlockBenchRow[]): string {
  const header = ['backend', 'shape (H/Nq/Nkv/D)', 'B', 'S', 'cache', 'path', 'gemm', 'weights', 'dispatches', 'submits', 'ms', 'host ms', 'interm. MiB', 'vs unfused'];
  const lines = rows.map((r) => {
    const base = rows.find((u) => u.path === 'unfused' && u.backend === r.backend && u.batch === r.batch && u.seq === r.seq && u.cached === r.cached && u.hidden === r.hidden && u.weights === r.weights && u.gemm === r.gemm);
    const path = r.attention && r.path !== 'unfused' ? `${r.path} (${r.attention})` : r.path;
    const ratio = base && r !== base && Number.isFinite(r.ms) && Number.isFinite(base.ms) ? `${((1 - r.ms / base.ms) * 100).toFixed(0)}% lower` : '';
    return [
      r.backend, `${r.hidden}/${r.heads}/${r.kvHeads}/${r.headDim}`, String(r.batch), String(r.seq), String(r.cached), path, r.gemm, r.weights,
      String(r.dispatches), String(r.submits), r.check === undefined || r.check === 'ok' ? r.ms.toFixed(2) : 'WRONG', r.hostMs.toFixed(2), (r.intermediateBytes / 2 ** 20).toFixed(1), ratio,
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  return [fmt(header), fmt(widths.map((w) => '-'.repeat(w))), ...lines.map(fmt)].join('\n');
}
