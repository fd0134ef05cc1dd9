// attention() on the CPU engine: stage the inputs once into the shared memory (float16 converted
// to float32 on the way; every layout kept as is and read through its strides), run the fused
// job (or the naive three jobs), and copy the output out in q's layout and dtype. Copies in and
// out are paced (core/pace.ts): a huge call gives the event loop a turn every few tens of ms.
import { whileTouchingPages } from '../../../engines/cpu/host-pages.js';
import { floatsToHalf } from '../../../core/dtype.js';
import { pacedRange } from '../../../core/pace.js';
import { Tensor, numel } from '../../../core/tensor.js';
import { type AttentionProblem, type BroadcastView, type StridedView, visiblePairs } from '../problem.js';
import type { AttentionResult } from '../backend.js';
import { Staging } from '../../../engines/cpu/staging.js';
import type { OpsCpuEngine as CpuEngine } from '../../cpu-engine.js';
import { type FlashParams, PACK_KEYS, type StagedOperand, type StagedProblem, flashScratch, flashTasks, panelBytes } from './flash.js';
import { NAIVE_SCRATCH_BYTES, type NaiveParams, naiveBlocks, naiveGroups, sBufferStride } from './naive.js';
import type { BroadcastOperand, ScoreOptions } from './scores.js';
import { type StagedMods, stageMods } from '../mods/cpu/stage.js';
import type { KernelTiles } from '../block-mask/kernel-grid.js';

/** Largest S buffer group of the naive path (the rest of the heads wait for the next group). */
export const NAIVE_BUDGET_BYTES = 256 * 2 ** 20;

/** Why the CPU engine cannot run this problem, or undefined. */
export function cpuUnsupported(p: AttentionProblem): string | undefined {
  for (const [name, view] of [['query', p.q], ['key', p.k], ['value', p.v], ['qRope', p.qRope], ['kRope', p.kRope]] as const) {
    if (!view) continue;
    if (!view.tensor.data) return `${name} lives on the GPU`;
    if (view.strides.d !== 1) return `${name} has head-dim stride ${view.strides.d} (the CPU kernels need 1)`;
  }
  if (p.outStrides.d !== 1) return 'output head-dim stride must be 1';
  return undefined;
}

/** Bytes the call stages: inputs as float32, mask, bias, output and LSE. */
function stagingBytes(p: AttentionProblem): number {
  let bytes = 0;
  for (const view of [p.q, p.k, p.v, p.qRope, p.kRope]) if (view) bytes += 4 * view.tensor.size + 128;
  if (p.mask) bytes += p.mask.tensor.size + 128;
  if (p.bias) bytes += 4 * p.bias.tensor.size + 128;
  return bytes + 4 * (numel(p.outShape) + (p.returnLse ? numel(p.lseShape) : 0)) + 256;
}

interface Staged {
  common: StagedProblem;
  out: number;
  lse: number;
}

/** The call's score/mask/sink functions and block structure, staged for tasks of `tiles`. */
function stageModsOf(engine: CpuEngine, st: Staging, p: AttentionProblem, tiles: KernelTiles): Promise<StagedMods | undefined> {
  return stageMods(p, {
    kernels: engine.kernels,
    memory: { shared: engine.arena.shared, maximumPages: engine.arena.maximumPages },
    allocate: (bytes) => st.allocate(bytes),
    buffer: () => engine.arena.memory.buffer,
  }, tiles);
}

async function stage(engine: CpuEngine, st: Staging, p: AttentionProblem): Promise<Staged> {
  engine.checkCapacity(stagingBytes(p));
  let vNonFinite = false;
  const operand = async (view: StridedView, scan = false): Promise<StagedOperand> => {
    const { addr, nonFinite } = await st.floats(view.tensor, scan);
    if (nonFinite) vNonFinite = true;
    return { addr: addr + 4 * view.offset, sb: 4 * view.strides.b, sh: 4 * view.strides.h, ss: 4 * view.strides.s };
  };
  const broadcast = (view: BroadcastView, addr: number, size: number): BroadcastOperand =>
    ({ addr, sb: size * view.strides.b, sh: size * view.strides.h, si: size * view.strides.i, sj: size * view.strides.j });
  const out = st.allocate(4 * numel(p.outShape));
  const lse = p.returnLse ? st.allocate(4 * numel(p.lseShape)) : 0;
  const options: ScoreOptions = {
    softcap: p.softcap,
    bias: p.bias ? broadcast(p.bias, (await st.floats(p.bias.tensor)).addr, 4) : undefined,
    mask: p.mask ? broadcast(p.mask, await st.bytes(p.mask.tensor), 1) : undefined,
    alibi: p.alibi ? p.alibi.tensor.toFloat32() : undefined,
    alibiStrideB: p.alibi?.strideB ?? 0,
    window: { left: p.window.left, right: p.window.right, bottomRight: p.window.align === 'bottom-right' },
  };
  const common: Staged['common'] = {
    ...options,
    q: await operand(p.q),
    k: await operand(p.k),
    v: await operand(p.v, true),
    qRope: p.qRope ? await operand(p.qRope) : undefined,
    kRope: p.kRope ? await operand(p.kRope) : undefined,
    out: { addr: out, sb: 4 * p.outStrides.b, sh: 4 * p.outStrides.h, ss: 4 * p.outStrides.s },
    lse: p.returnLse ? { addr: lse, sb: 4 * p.lseStrides.b, sh: 4 * p.lseStrides.h, ss: 4 * p.lseStrides.s } : undefined,
    seqLensQ: p.seqLensQ,
    seqLensK: p.seqLensK,
    seqStartsQ: p.seqStartsQ,
    seqStartsK: p.seqStartsK,
    group: p.headsQ / p.headsKv,
    dimQK: p.dimQK,
    dimRope: p.dimRope,
    dimV: p.dimV,
    scale: p.scale,
    headsQ: p.headsQ,
    dropout: p.dropout,
    vNonFinite,
  };
  return { common, out, lse };
}

/** The output's host array (allocated before the main job: see host-pages.ts). */
function hostOut(p: AttentionProblem): Float32Array<ArrayBuffer> | Uint16Array<ArrayBuffer> {
  const n = numel(p.outShape);
  return p.dtype === 'float16' ? new Uint16Array(n) : new Float32Array(n);
}

async function readBack(engine: CpuEngine, st: Staging, p: AttentionProblem, staged: Staged, outData = hostOut(p)): Promise<Pick<AttentionResult, 'out' | 'lse'>> {
  const n = numel(p.outShape);
  await pacedRange(n, st.pacer, (start, end) => {
    const src = new Float32Array(engine.arena.memory.buffer, staged.out + 4 * start, end - start);
    if (outData instanceof Uint16Array) floatsToHalf(src, outData.subarray(start, end));
    else outData.set(src, start);
  });
  const out = Tensor.fromData(outData, p.outShape, p.dtype, p.layout);
  if (!p.returnLse) return { out };
  const lse = Tensor.fromData(new Float32Array(engine.arena.memory.buffer, staged.lse, numel(p.lseShape)).slice(), p.lseShape, 'float32');
  return { out, lse };
}

function flops(p: AttentionProblem, pairs = visiblePairs(p)): number {
  return 2 * pairs * (p.dimQK + p.dimRope + p.dimV);
}

/** The fused forward. */
export async function runFlash(engine: CpuEngine, p: AttentionProblem): Promise<AttentionResult> {
  const st = new Staging(engine.arena);
  try {
    const staged = await stage(engine, st, p);
    const tiles = engine.kernels.tiles;
    staged.common.mods = await stageModsOf(engine, st, p, { rows: tiles.br, keys: 4, denseKeys: tiles.bc });
    // K/V panels, one pair per (b, kv head)
    const pairs = p.batch * p.headsKv;
    const kPanels = new Uint32Array(pairs);
    const vPanels = new Uint32Array(pairs);
    const vBlockStride = new Int32Array(p.batch);
    const packTasks: number[] = [];
    let panelTotal = 0;
    for (let b = 0; b < p.batch; b++) {
      const sizes = panelBytes(p.seqLensK[b], tiles, p.dimQK, p.dimRope, p.dimV);
      vBlockStride[b] = sizes.vBlockStride;
      for (let hk = 0; hk < p.headsKv; hk++) {
        engine.checkCapacity(stagingBytes(p) + panelTotal + sizes.k + sizes.v);
        kPanels[b * p.headsKv + hk] = st.allocate(sizes.k);
        vPanels[b * p.headsKv + hk] = st.allocate(sizes.v);
        panelTotal += sizes.k + sizes.v;
        for (let j0 = 0; j0 < p.seqLensK[b]; j0 += PACK_KEYS) packTasks.push(b, hk, j0);
      }
    }
    const params: FlashParams = {
      ...staged.common, br: tiles.br, bc: tiles.bc, tasks: new Int32Array(0),
      kPanels, vPanels, vBlockStride, headsKv: p.headsKv, packTasks: Int32Array.from(packTasks),
    };
    params.tasks = flashTasks(params, p.headsQ);
    const taskCount = params.tasks.length / 3;
    const perWorker = flashScratch(0, tiles, p.dimQK, p.dimRope, p.dimV).bytes;
    const workers = engine.participants(taskCount);
    const scratch = st.allocate(workers * perWorker);
    const packFlops = (p.totalK * p.headsKv * (p.dimQK + p.dimRope + p.dimV)) * 8;
    await engine.execute('flash-pack', params, packTasks.length / 3, scratch, perWorker, packFlops);
    // the output's host pages fault in while the workers run, not during readBack
    const outData = hostOut(p);
    await whileTouchingPages(engine.execute('flash', params, taskCount, scratch, perWorker, flops(p)), [outData]);
    const launches = (packTasks.length ? 1 : 0) + (taskCount ? 1 : 0);
    // intermediateBytes: what the algorithm needs beyond the staged inputs and the output, i.e. the
    // per-worker tile scratch. Staged copies of the inputs (as given, or packed into K/V panels,
    // O(N·D) like the inputs) are not counted, on this path or the naive one.
    return { ...(await readBack(engine, st, p, staged, outData)), stats: { launches, intermediateBytes: workers * perWorker, backend: 'cpu', ...engine.execution(taskCount, flops(p)) } };
  } finally {
    st.release();
  }
}

/** The unfused three-step path: S materialised per head group, softmax, P·V. */
export async function runNaive(engine: CpuEngine, p: AttentionProblem, budget = NAIVE_BUDGET_BYTES): Promise<AttentionResult> {
  const st = new Staging(engine.arena);
  try {
    const staged = await stage(engine, st, p);
    // whole rows: the block structure would only skip work the S buffer already holds
    staged.common.mods = p.mods ? await stageModsOf(engine, st, { ...p, blockMask: undefined, mask: undefined }, { rows: 1, keys: 4, denseKeys: 4 }) : undefined;
    let launches = 0;
    let peak = 0;
    for (const group of naiveGroups(p.seqLensQ, p.seqLensK, p.headsQ, budget)) {
      const bytes = group.reduce((sum, [, , size]) => sum + size, 0);
      engine.checkCapacity(stagingBytes(p) + bytes);
      const sBase = engine.arena.allocate(bytes);
      try {
        const pairs = new Uint32Array(4 * group.length);
        let offset = sBase;
        group.forEach(([b, h, size], index) => {
          pairs.set([b, h, offset, sBufferStride(p.seqLensK[b])], 4 * index);
          offset += size;
        });
        const params: NaiveParams = { ...staged.common, pairs, blocks: naiveBlocks(p.seqLensQ, pairs) };
        const taskCount = params.blocks.length / 2;
        const workers = engine.participants(taskCount);
        const scratch = engine.arena.allocate(workers * NAIVE_SCRATCH_BYTES);
        try {
          let pairsInGroup = 0;
          for (const [b] of group) pairsInGroup += p.seqLensQ[b] * p.seqLensK[b];
          const work = 2 * pairsInGroup * Math.max(p.dimQK + p.dimRope, p.dimV);
          await engine.execute('naive-scores', params, taskCount, scratch, NAIVE_SCRATCH_BYTES, work);
          await engine.execute('naive-softmax', params, taskCount, scratch, NAIVE_SCRATCH_BYTES, work);
          await engine.execute('naive-pv', params, taskCount, scratch, NAIVE_SCRATCH_BYTES, work);
          launches += 3;
          peak = Math.max(peak, bytes + workers * NAIVE_SCRATCH_BYTES);
        } finally {
          engine.arena.release(scratch);
        }
      } finally {
        engine.arena.release(sBase);
      }
    }
    return { ...(await readBack(engine, st, p, staged)), stats: { launches, intermediateBytes: peak, backend: 'cpu', ...engine.execution(p.batch * p.headsQ, flops(p)) } };
  } finally {
    st.release();
  }
}
