// Staging a call's mods for the CPU kernels (main thread) and the per-task helpers the fused and
// naive tasks call (any thread): the packed data in the arena, the generated kernel, the block
// grid at the kernels' tile sizes, and the sink logit of every row, evaluated once per call.
import type { AttentionProblem } from '../../problem.js';
import { type BlockGrid } from '../../block-mask/grid.js';
import { type KernelTiles, forEachBlock, kernelGrid } from '../../block-mask/kernel-grid.js';
import { VAR_INDEX, makeEnv, programEvaluator } from '../evaluate.js';
import { hasElementMods, packModData } from '../plan.js';
import { programVariables } from '../program.js';
import { type CompiledMods, type ModsHost, compileMods, modsKernel } from './kernel.js';

/** What the tasks get (plain data: it is posted to the workers). */
export interface StagedMods {
  /** The score/mask kernel, when there is a score or mask function. */
  compiled: CompiledMods | undefined;
  /** Byte address of the packed mods data (plan.ts). */
  data: number;
  /** Block structure at the task's tile sizes, when the call has one. */
  grid: BlockGrid | undefined;
  /** Byte address of the f32 sink logits, 0 without sinks; row (b, h, i) at b·sb + h·sh + i·si. */
  sinks: number;
  sinkStrides: [number, number, number];
}

export interface StageContext {
  kernels: ModsHost;
  memory: { shared: boolean; maximumPages: number };
  /** Allocates `bytes` of the call's staging memory, returns the byte address. */
  allocate(bytes: number): number;
  buffer(): ArrayBufferLike;
}

/** Stages the mods of `p` (undefined when the call has none and no block structure). */
export async function stageMods(p: AttentionProblem, ctx: StageContext, tiles: KernelTiles): Promise<StagedMods | undefined> {
  const grid = kernelGrid(p, tiles);
  if (!p.mods && !grid) return undefined;
  const words = packModData(p.mods?.tensors ?? []);
  const data = ctx.allocate(4 * words.length);
  new Uint32Array(ctx.buffer(), data, words.length).set(words);
  const compiled = p.mods && hasElementMods(p.mods.kernel) ? await compileMods(p.mods.kernel, ctx.kernels, ctx.memory) : undefined;
  const staged: StagedMods = { compiled, data, grid, sinks: 0, sinkStrides: [0, 0, 0] };
  const sink = p.mods?.kernel.sink;
  if (sink) {
    // evaluated per (b, h, i) only along the variables the sink reads
    const uses = programVariables(sink);
    const nb = uses.has('b') || uses.has('qLen') || uses.has('kvLen') ? p.batch : 1;
    const nh = uses.has('h') ? p.headsQ : 1;
    const nq = uses.has('q') ? p.seqQ : 1;
    const f = programEvaluator(sink, p.mods!.tensors);
    const env = makeEnv();
    staged.sinks = ctx.allocate(4 * nb * nh * nq);
    const out = new Float32Array(ctx.buffer(), staged.sinks, nb * nh * nq);
    for (let b = 0; b < nb; b++) {
      env[VAR_INDEX.b] = b;
      env[VAR_INDEX.qLen] = p.seqLensQ[b];
      env[VAR_INDEX.kvLen] = p.seqLensK[b];
      for (let h = 0; h < nh; h++) {
        env[VAR_INDEX.h] = h;
        for (let i = 0; i < nq; i++) {
          env[VAR_INDEX.q] = i;
          out[(b * nh + h) * nq + i] = f(env);
        }
      }
    }
    staged.sinkStrides = [nb > 1 ? nh * nq : 0, nh > 1 ? nq : 0, nq > 1 ? 1 : 0];
  }
  return staged;
}

/** The tiles a task of rows i0.. visits: every listed block's keys inside [lo, hi], `bc` at a time. */
export function forEachTile(m: StagedMods, b: number, h: number, i0: number, lo: number, hi: number, bc: number, visit: (j0: number, cols: number, withMask: boolean) => void): void {
  if (!m.grid) {
    // tiles start on a multiple of 4 keys (the K panel's groups); keys before lo are clipped
    for (let j0 = lo - (lo % 4); j0 <= hi; j0 += bc) visit(j0, Math.min(bc, hi + 1 - j0), true);
    return;
  }
  forEachBlock(m.grid, b, h, i0, (k0, k1, full) => {
    const start = Math.max(k0, lo - (lo % 4));
    const end = Math.min(k1 - 1, hi);
    for (let j0 = start; j0 <= end; j0 += bc) visit(j0, Math.min(bc, end + 1 - j0), !full);
  });
}

/** Runs the score/mask kernel on an S tile (nothing when the call has no element mods). */
export function applyMods(kernels: ModsHost, m: StagedMods, s: number, lds: number, rows: number, cols: number, b: number, h: number, i0: number, j0: number, sq: number, sk: number, withMask: boolean, beta: number): void {
  if (!m.compiled) return;
  modsKernel(kernels, m.compiled).apply(s, lds, rows, cols, b, h, i0, j0, sq, sk, m.data, withMask ? 1 : 0, beta);
}

/**
 * Folds the sink into the softmax statistics of rows i0.. of (b, h) (m in units of beta, l the sum
 * of e^(beta·(s − m))): l += e^(sink − beta·m), so finalize's O / l is the output with the sink;
 * returns each row's LSE (the sink's logit for a row with no visible key). Without sinks, returns
 * undefined and changes nothing.
 */
export function foldSinks(buffer: ArrayBufferLike, m: StagedMods | undefined, b: number, h: number, i0: number, rows: number, mAddr: number, lAddr: number, beta: number): Float64Array | undefined {
  if (!m || !m.sinks) return undefined;
  const f = new Float32Array(buffer);
  const [sb, sh, si] = m.sinkStrides;
  const lse = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const sink = f[(m.sinks >>> 2) + b * sb + h * sh + (i0 + r) * si];
    const mx = beta * f[(mAddr >>> 2) + r];
    const l = f[(lAddr >>> 2) + r];
    if (l === 0 || sink === -Infinity) {
      lse[r] = l === 0 ? sink : mx + Math.log(l);
      continue;
    }
    const top = Math.max(mx, sink);
    lse[r] = top + Math.log(l * Math.exp(mx - top) + Math.exp(sink - top));
    f[(lAddr >>> 2) + r] = l + Math.exp(sink - mx);
  }
  return lse;
}
