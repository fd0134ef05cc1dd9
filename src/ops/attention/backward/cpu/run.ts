// attentionBackward() on the CPU engine: stage q, k, v (+ rope parts), out, dO, the LSE, mask and
// bias once into the shared memory (float16 converted to float32), zero the gradient buffers, run
// the jobs (fused: bwd-pre, then bwd-head + bwd-dq-sum or bwd-kv + bwd-q; naive: bwd-naive), and
// copy the gradients out in each input's layout and dtype. Memory beyond the staged O(N·D)
// operands: per-worker tiles and the key slices' dQ partials (fused, slices.ts) or per-worker
// Sq×Sk matrices (naive).
import { floatsToHalf } from '../../../../core/dtype.js';
import { UnsupportedError } from '../../../../core/errors.js';
import { Tensor, numel } from '../../../../core/tensor.js';
import { whileTouchingPages } from '../../../../engines/cpu/host-pages.js';
import { Staging } from '../../../../engines/cpu/staging.js';
import type { OpsCpuEngine } from '../../../cpu-engine.js';
import type { StagedOperand } from '../../cpu/flash.js';
import type { BroadcastOperand } from '../../cpu/scores.js';
import { type BroadcastView, type StridedView, keyRange, visiblePairs } from '../../problem.js';
import type { AttentionGrads } from '../options.js';
import { type BackwardProblem, biasFold } from '../problem.js';
import { compileMods } from '../../mods/cpu/kernel.js';
import { stageMods } from '../../mods/cpu/stage.js';
import { backwardModsKernel } from '../../mods/plan.js';
import { sinkGradTensor } from '../sink.js';
import { type HeadMajorRows, type Side, copyHeadMajor, headMajorOperand, headMajorRows, isHeadMajor } from './head-major.js';
import { type NaiveBackwardParams, naiveBackwardScratch } from './naive.js';
import { SLICE_MIN_TASKS, type SlicePlan, slicePlan } from './slices.js';
import { BWD_KEYS, BWD_ROWS, type BackwardParams, backwardScratch, queriesOfKeys } from './tasks.js';

interface Staged {
  params: BackwardParams;
  /** Gradient buffers: name, byte address, float count, shape, dtype, and the gather they were staged in (head-major) unless in the layout's own order. */
  grads: Array<{ name: keyof AttentionGrads; addr: number; size: number; shape: readonly number[]; dtype: 'float32' | 'float16'; rows?: HeadMajorRows }>;
}

function stagingBytes(bp: BackwardProblem): number {
  const p = bp.forward;
  let bytes = 0;
  for (const view of [p.q, p.k, p.v, p.qRope, p.kRope]) if (view) bytes += 2 * (4 * view.tensor.size + 128); // operand + gradient
  bytes += 2 * (4 * numel(p.outShape) + 128) + 3 * (4 * numel(p.lseShape) + 128);
  if (p.mask) bytes += p.mask.tensor.size + 128;
  if (p.bias) bytes += (bp.biasGrad ? 8 : 4) * p.bias.tensor.size + 256;
  if (p.mods) bytes += p.mods.tensors.reduce((n, t) => n + 4 * t.data.length + 64, 256);
  // the temporary layout-order copy of one operand or gradient while it is made head-major (none
  // when the layout is head-major already: BNSD)
  const views: Array<[StridedView | undefined, Side, number]> = [[p.q, 'q', p.dimQK], [p.k, 'k', p.dimQK], [p.v, 'k', p.dimV], [p.qRope, 'q', p.dimRope], [p.kRope, 'k', p.dimRope]];
  let largest = 0;
  for (const [view, side, dim] of views) if (view && !isHeadMajor(headMajorRows(p, view, side, dim))) largest = Math.max(largest, view.tensor.size);
  if (!isHeadMajor(headMajorRows(p, { tensor: bp.out, offset: 0, strides: p.outStrides }, 'q', p.dimV))) largest = Math.max(largest, numel(p.outShape));
  return bytes + 4 * largest + 1024;
}

async function stage(engine: OpsCpuEngine, st: Staging, bp: BackwardProblem): Promise<Staged> {
  const p = bp.forward;
  engine.checkCapacity(stagingBytes(bp));
  const f = () => new Float32Array(engine.arena.memory.buffer);
  // operands and gradients head-major (rows of one head contiguous), whatever the layout: head-major.ts
  const operand = async (view: StridedView, side: Side, dim: number): Promise<StagedOperand> => {
    const g = headMajorRows(p, view, side, dim);
    const { addr } = await st.floats(view.tensor);
    if (isHeadMajor(g)) return { addr: addr + 4 * view.offset, sb: 4 * view.strides.b, sh: 4 * view.strides.h, ss: 4 * view.strides.s };
    const headMajor = st.allocate(4 * view.tensor.size);
    copyHeadMajor(engine.kernels, addr + 4 * view.offset, headMajor, g);
    st.free(addr);
    return headMajorOperand(headMajor, g);
  };
  const zeros = (count: number) => {
    const addr = st.allocate(4 * count);
    f().fill(0, addr >>> 2, (addr >>> 2) + count);
    return addr;
  };
  const grads: Staged['grads'] = [];
  const gradient = (name: keyof AttentionGrads, view: StridedView, side: Side, dim: number): StagedOperand => {
    const size = view.tensor.size;
    const addr = zeros(size);
    const g = headMajorRows(p, view, side, dim);
    const inOrder = isHeadMajor(g);
    grads.push({ name, addr, size, shape: view.tensor.shape, dtype: p.dtype, rows: inOrder ? undefined : g });
    return inOrder ? { addr, sb: 4 * view.strides.b, sh: 4 * view.strides.h, ss: 4 * view.strides.s } : headMajorOperand(addr, g);
  };
  const broadcast = (view: BroadcastView, addr: number, size: number): BroadcastOperand =>
    ({ addr, sb: size * view.strides.b, sh: size * view.strides.h, si: size * view.strides.i, sj: size * view.strides.j });
  const outView = (t: Tensor): StridedView => ({ tensor: t, offset: 0, strides: p.outStrides });
  const lseStrides = { b: 4 * p.lseStrides.b, h: 4 * p.lseStrides.h, s: 4 * p.lseStrides.s };
  const rows = numel(p.lseShape);
  const statsOperand = (addr: number): StagedOperand => ({ addr, sb: lseStrides.b, sh: lseStrides.h, ss: lseStrides.s });

  let dBias: BroadcastOperand | undefined;
  if (bp.biasGrad && p.bias) {
    const size = p.bias.tensor.size;
    const addr = zeros(size);
    grads.push({ name: 'dBias', addr, size, shape: p.bias.tensor.shape, dtype: p.bias.tensor.dtype as 'float32' | 'float16' });
    dBias = broadcast(p.bias, addr, 4);
  }
  // score / mask functions: the backward's programs (no sink, the derivative added), and the block
  // mask's grid at the tasks' 64 × 64 tiles (the bool mask is applied apart, by modifyScores)
  const modsKernelOptions = backwardModsKernel(p.mods);
  const memory = { shared: engine.arena.shared, maximumPages: engine.arena.maximumPages };
  const mods = modsKernelOptions
    ? await stageMods({ ...p, mods: { ...p.mods!, kernel: modsKernelOptions }, mask: undefined }, {
      kernels: engine.kernels, memory, allocate: (bytes) => st.allocate(bytes), buffer: () => engine.arena.memory.buffer,
    }, { rows: BWD_ROWS, keys: BWD_KEYS, denseKeys: BWD_KEYS })
    : undefined;
  const scoreGrad = modsKernelOptions?.scoreGrad;
  const params: BackwardParams = {
    mods,
    modsGrad: scoreGrad ? await compileMods({ score: scoreGrad, tensors: modsKernelOptions!.tensors }, engine.kernels, memory) : undefined,
    softcap: p.softcap,
    bias: p.bias ? broadcast(p.bias, (await st.floats(p.bias.tensor)).addr, 4) : undefined,
    mask: p.mask ? broadcast(p.mask, await st.bytes(p.mask.tensor), 1) : undefined,
    alibi: p.alibi ? p.alibi.tensor.toFloat32() : undefined,
    alibiStrideB: p.alibi?.strideB ?? 0,
    window: { left: p.window.left, right: p.window.right, bottomRight: p.window.align === 'bottom-right' },
    q: await operand(p.q, 'q', p.dimQK),
    k: await operand(p.k, 'k', p.dimQK),
    v: await operand(p.v, 'k', p.dimV),
    qRope: p.qRope ? await operand(p.qRope, 'q', p.dimRope) : undefined,
    kRope: p.kRope ? await operand(p.kRope, 'k', p.dimRope) : undefined,
    out: await operand(outView(bp.out), 'q', p.dimV),
    dOut: await operand(outView(bp.dOut), 'q', p.dimV),
    lse: statsOperand((await st.floats(bp.lse)).addr),
    stats: statsOperand(st.allocate(4 * rows)),
    delta: statsOperand(st.allocate(4 * rows)),
    dq: gradient('dq', p.q, 'q', p.dimQK),
    dk: gradient('dk', p.k, 'k', p.dimQK),
    dv: gradient('dv', p.v, 'k', p.dimV),
    dqRope: p.qRope ? gradient('dqRope', p.qRope, 'q', p.dimRope) : undefined,
    dkRope: p.kRope ? gradient('dkRope', p.kRope, 'k', p.dimRope) : undefined,
    dBias,
    seqLensQ: p.seqLensQ,
    seqLensK: p.seqLensK,
    seqStartsQ: p.seqStartsQ,
    seqStartsK: p.seqStartsK,
    headsQ: p.headsQ,
    group: p.headsQ / p.headsKv,
    dimQK: p.dimQK,
    dimRope: p.dimRope,
    dimV: p.dimV,
    scale: p.scale,
    dropout: p.dropout,
    preTasks: new Int32Array(0),
    kvStarts: new Int32Array(1),
    kvUnits: new Int32Array(0),
    qTasks: new Int32Array(0),
    sliceCount: 1,
    sliceKeys: new Int32Array(0),
    sliceRows: new Int32Array(0),
    dqParts: [],
    dqRopeParts: [],
  };
  return { params, grads };
}

/** The gradients' host arrays, one per staged gradient (allocated before the jobs: see host-pages.ts). */
function hostArrays(staged: Staged): Array<Float32Array<ArrayBuffer> | Uint16Array<ArrayBuffer>> {
  return staged.grads.map((g) => (g.dtype === 'float16' ? new Uint16Array(g.size) : new Float32Array(g.size)));
}

function readBack(engine: OpsCpuEngine, st: Staging, bp: BackwardProblem, staged: Staged, hosts = hostArrays(staged)): AttentionGrads {
  const grads: Partial<AttentionGrads> = {};
  staged.grads.forEach((g, i) => {
    // a head-major gradient goes back to the layout's order through a temporary region first
    const inLayout = g.rows ? st.allocate(4 * g.size) : g.addr;
    if (g.rows) copyHeadMajor(engine.kernels, inLayout, g.addr, g.rows, true);
    const values = new Float32Array(engine.arena.memory.buffer, inLayout, g.size);
    const layout = g.name === 'dBias' ? undefined : bp.forward.layout;
    const host = hosts[i];
    if (host instanceof Uint16Array) floatsToHalf(values, host);
    else host.set(values);
    if (g.rows) st.free(inLayout);
    (grads as Record<string, Tensor>)[g.name] = Tensor.fromData(host, g.shape, g.dtype, layout);
  });
  return grads as AttentionGrads;
}

/**
 * Units grouped into tasks: (b, hk) per pair (no slicing), (b, hk, j0) per key block (bwd-kv), or
 * (b, hk, s) per key slice (bwd-head). The axes the dBias broadcast folds share a task, in order
 * (a slice or key block writes its own dBias columns, so those fold only under a key broadcast).
 */
function foldedTasks(bp: BackwardProblem, split: 'pairs' | 'keyBlocks' | SlicePlan): { starts: Int32Array; units: Int32Array; weights: number[] } {
  const p = bp.forward;
  const fold = biasFold(p, bp.biasGrad);
  const window = { left: p.window.left, right: p.window.right, bottomRight: p.window.align === 'bottom-right' };
  const groups = new Map<string, { units: number[]; weight: number }>();
  for (let b = 0; b < p.batch; b++) {
    const sq = p.seqLensQ[b];
    const sk = p.seqLensK[b];
    for (let hk = 0; hk < p.headsKv; hk++) {
      const parts = split === 'pairs' ? 1 : split === 'keyBlocks' ? Math.ceil(sk / BWD_KEYS) : split.count;
      for (let part = 0; part < parts; part++) {
        let weight = sq * sk;
        let unit = [b, hk];
        if (split === 'keyBlocks') {
          const j0 = part * BWD_KEYS;
          const cols = Math.min(BWD_KEYS, sk - j0);
          const [lo, hi] = queriesOfKeys({ window }, sq, sk, j0, j0 + cols - 1);
          weight = Math.max(0, hi - lo + 1) * cols + cols;
          unit = [b, hk, j0];
        } else if (split !== 'pairs') {
          const keys = split.keys.subarray(b * (split.count + 1));
          if (keys[part] === keys[part + 1]) continue; // a short sequence's empty slice
          weight = split.work[b * split.count + part];
          unit = [b, hk, part];
        }
        const key = `${fold.batch ? '*' : b}/${fold.kvHeads ? '*' : hk}/${fold.keyBlocks || split === 'pairs' ? '*' : part}`;
        let group = groups.get(key);
        if (!group) groups.set(key, (group = { units: [], weight: 0 }));
        group.units.push(...unit);
        group.weight += weight;
      }
    }
  }
  // heaviest first, so the job's tail is short (a stable sort: equal weights keep their order)
  const list = [...groups.values()].sort((x, y) => y.weight - x.weight);
  const width = split === 'pairs' ? 2 : 3;
  const starts = new Int32Array(list.length + 1);
  const units: number[] = [];
  list.forEach((g, t) => {
    units.push(...g.units);
    starts[t + 1] = units.length / width;
  });
  return { starts, units: Int32Array.from(units), weights: list.map((g) => g.weight) };
}

/** Work estimate of the backward for the engine's inline threshold: 7 matmul-like passes. */
function flops(bp: BackwardProblem): number {
  const p = bp.forward;
  return 2 * visiblePairs(p) * (2 * (p.dimQK + p.dimRope) + 2 * p.dimV) * 1.75;
}

/**
 * The fused backward. `schedule` (tests only) forces the split schedule, which otherwise runs only
 * past the partials' memory cap.
 */
export async function runBackward(engine: OpsCpuEngine, bp: BackwardProblem, schedule?: 'split'): Promise<AttentionGrads> {
  const p = bp.forward;
  const st = new Staging(engine.arena);
  try {
    // wall time of each phase (stats.phasesMs): where a call's time goes beyond the matmuls
    const phasesMs: Record<string, number> = {};
    let mark = performance.now();
    const phase = (name: string) => {
      const now = performance.now();
      phasesMs[name] = +(now - mark).toFixed(2);
      mark = now;
    };
    const staged = await stage(engine, st, bp);
    phase('stage');
    const params = staged.params;
    const pre: number[] = [];
    const qTasks: Array<[number, number, number, number]> = [];
    for (let b = 0; b < p.batch; b++) {
      for (let h = 0; h < p.headsQ; h++) {
        for (let i0 = 0; i0 < p.seqLensQ[b]; i0 += BWD_ROWS) {
          pre.push(b, h, i0);
          qTasks.push([b, h, i0, 0]);
        }
      }
    }
    params.preTasks = Int32Array.from(pre);
    // heaviest query blocks first (causal: the last rows see the most keys)
    for (const task of qTasks) {
      const [b, , i0] = task;
      const rows = Math.min(BWD_ROWS, p.seqLensQ[b] - i0);
      const [lo] = keyRange(p, b, i0);
      const [, hi] = keyRange(p, b, i0 + rows - 1);
      task[3] = rows * Math.max(0, hi - lo + 1);
    }
    qTasks.sort((x, y) => y[3] - x[3]);
    params.qTasks = Int32Array.from(qTasks.flatMap(([b, h, i0]) => [b, h, i0]));
    // the per-head schedule (5 matmuls per tile, dQ in the task) over key slices of each pair, so
    // that a few pairs still make enough tasks; the split schedule (7 matmuls, dQ in its own pass)
    // only when the partials' memory cap leaves too few slices. The choice and the slices depend
    // on the problem only, never on the thread count, so gradients are the same bits on every machine.
    const plan = slicePlan(bp);
    const sliced = foldedTasks(bp, plan);
    // (the key-block grouping is built only when the slices may be too few: 8192 units at B4 H32 S4096)
    const keyBlocks = schedule === 'split' || sliced.starts.length - 1 < SLICE_MIN_TASKS ? foldedTasks(bp, 'keyBlocks') : undefined;
    const perHead = schedule !== 'split' && (!keyBlocks || sliced.starts.length - 1 >= Math.min(SLICE_MIN_TASKS, keyBlocks.starts.length - 1));
    const kv = perHead ? sliced : keyBlocks!;
    params.kvStarts = kv.starts;
    params.kvUnits = kv.units;
    const partials = perHead ? plan.count - 1 : 0;
    if (perHead) {
      params.sliceCount = plan.count;
      params.sliceKeys = plan.keys;
      params.sliceRows = plan.rows;
    }
    const partialBytes = partials * 4 * (p.q.tensor.size + (p.qRope?.tensor.size ?? 0));
    const perWorker = backwardScratch(0).bytes;
    const kvTasks = kv.starts.length - 1;
    const qCount = perHead ? 0 : qTasks.length;
    const workers = engine.participants(Math.max(kvTasks, qCount));
    engine.checkCapacity(stagingBytes(bp) + workers * perWorker + partialBytes + 128 * partials);
    const scratch = st.allocate(workers * perWorker);
    // the partials are zeroed by the tasks that write them (only the query blocks they reach)
    for (let s = 0; s < partials; s++) {
      params.dqParts.push(st.allocate(4 * p.q.tensor.size));
      if (p.qRope) params.dqRopeParts.push(st.allocate(4 * p.qRope.tensor.size));
    }
    const work = flops(bp);
    phase('plan');
    // the workers' time in each job's tasks, to tell the job's work from its dispatch (stats.busyMs)
    const busyMs: Record<string, number> = {};
    const workersBusy = () => engine.pool?.busyMsByWorker.reduce((a, b) => a + b, 0) ?? 0;
    const job = async (kind: 'bwd-pre' | 'bwd-head' | 'bwd-dq-sum' | 'bwd-kv' | 'bwd-q', tasks: number, jobFlops: number) => {
      const before = workersBusy();
      await engine.execute(kind, params, tasks, scratch, perWorker, jobFlops);
      phase(kind);
      const busy = workersBusy() - before;
      if (busy > 0) busyMs[kind] = +(busy / engine.participants(tasks)).toFixed(2);
    };
    await job('bwd-pre', pre.length / 3, 4 * p.totalQ * p.headsQ * p.dimV);
    // the gradients' host pages fault in while the main job's workers run, not during readBack
    const hosts = hostArrays(staged);
    if (perHead) {
      await whileTouchingPages(job('bwd-head', kvTasks, work * (5 / 7)), hosts);
      if (partials) await job('bwd-dq-sum', pre.length / 3, p.totalQ * p.headsQ * (p.dimQK + p.dimRope) * plan.count);
    } else {
      await whileTouchingPages(job('bwd-kv', kvTasks, work * (4 / 7)), hosts);
      await job('bwd-q', qCount, work * (3 / 7));
    }
    const launches = (pre.length ? 1 : 0) + (kvTasks ? 1 : 0) + (qCount ? 1 : 0) + (partials && pre.length ? 1 : 0);
    const read = readBack(engine, st, bp, staged, hosts);
    phase('readBack');
    const grads = { ...read, stats: { launches, intermediateBytes: workers * perWorker + 8 * numel(p.lseShape) + partialBytes, phasesMs, busyMs } };
    // dSink from each row's LSE and the D = rowsum(dO ∘ O) bwd-pre left in the arena (sink.ts)
    if (bp.sinkGrad) {
      const f = new Float32Array(engine.arena.memory.buffer);
      const at = (o: StagedOperand, b: number, h: number, t: number) => (o.addr + b * o.sb + h * o.sh + t * o.ss) >>> 2;
      grads.dSink = sinkGradTensor(bp, { lse: (b, h, t) => f[at(params.lse, b, h, t)], delta: (b, h, t) => f[at(params.delta, b, h, t)] });
    }
    return grads;
  } finally {
    st.release();
  }
}

/** The unfused backward (Sq×Sk matrices per worker), the baseline. */
export async function runNaiveBackward(engine: OpsCpuEngine, bp: BackwardProblem): Promise<AttentionGrads> {
  const p = bp.forward;
  // the baseline recomputes softmax from the scores (not from the LSE), which would miss a sink,
  // and has no chain rule for a score function
  if (p.mods?.scoreMod || p.mods?.sinkMod) throw new UnsupportedError('options.backend', 'the unfused CPU backward (a baseline) does not take score functions or sinks (mask functions and block masks it does); attentionBackward() takes them all');
  const st = new Staging(engine.arena);
  try {
    const staged = await stage(engine, st, bp);
    const tasks = foldedTasks(bp, 'pairs');
    const rowsS = Math.ceil(p.seqQ / 4) * 4;
    const params: NaiveBackwardParams = {
      ...staged.params,
      naiveStarts: tasks.starts,
      naiveUnits: tasks.units,
      ldS: 4 * Math.max(4, Math.ceil(p.seqK / 4) * 4),
      ldT: 4 * Math.max(4, rowsS),
      rowsS: Math.max(4, rowsS),
    };
    const perWorker = naiveBackwardScratch(0, params).bytes;
    const taskCount = tasks.starts.length - 1;
    const workers = engine.participants(taskCount);
    engine.checkCapacity(stagingBytes(bp) + workers * perWorker);
    const scratch = st.allocate(workers * perWorker);
    await engine.execute('bwd-naive', params, taskCount, scratch, perWorker, flops(bp));
    return { ...readBack(engine, st, bp, staged), stats: { launches: taskCount ? 1 : 0, intermediateBytes: workers * perWorker } };
  } finally {
    st.release();
  }
}
