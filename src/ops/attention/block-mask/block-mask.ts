// createBlockMask(): FlexAttention's BlockMask for our kernels. The mask function is evaluated once
// per tile (on the CPU with the generated WebAssembly SIMD kernel, or on the GPU) and the result,
// for every query block, lists the key blocks the mask keeps partly (the kernels evaluate the mask
// there) and wholly (no mask evaluation); all other key blocks are never visited. One BlockMask
// serves any number of calls, and every head and batch entry it was built for (or broadcast to).
import { ValueError, show } from '../../../core/errors.js';
import { simdAvailable } from '../../../engines/cpu/platform.js';
import { compileMods, modsKernel } from '../mods/cpu/kernel.js';
import { packModData, planMods } from '../mods/plan.js';
import { type MaskMod, MaskMod as MaskModClass, programVariables } from '../mods/program.js';
import { type BlockGrid, EMPTY, FULL, PARTIAL, combineGrids, emptyGrid, gridDensity, statusOf } from './grid.js';
import type { KeyWindow } from '../key-window.js';
import { type WindowPart, windowPart } from './window-part.js';

/**
 * A mask with a key-window part (window-part.ts) as calls run it: the window, and the block mask of
 * the rest (undefined when the window is the whole mask), whose FULL blocks are those the rest
 * keeps entirely (the kernels apply the window themselves) and whose EMPTY blocks are the whole
 * mask's.
 */
export interface WindowedBlockMask {
  window: KeyWindow;
  rest: BlockMask | undefined;
}

export interface BlockMaskOptions {
  /** Query and key rows per block (one number for both). Default 128, as FlexAttention. */
  blockSize?: number | readonly [number, number];
  /** Where the mask is evaluated: 'cpu' (default) or 'webgpu'. */
  backend?: 'cpu' | 'webgpu';
  /** A GPUDevice of the caller's for backend 'webgpu'. */
  device?: GPUDevice;
}

/**
 * A block-sparse mask: `maskMod` plus, per (batch, head, query block), which key blocks are
 * partly or fully visible. Batch and head dimensions of size 1 broadcast (the mask ignored them,
 * or the caller passed 1).
 */
export class BlockMask {
  /** @internal */
  constructor(readonly maskMod: MaskMod, readonly grid: BlockGrid, /** @internal */ readonly windowed?: WindowedBlockMask) {}

  get seqQ(): number { return this.grid.seqQ; }
  get seqK(): number { return this.grid.seqK; }
  get blockQ(): number { return this.grid.blockQ; }
  get blockK(): number { return this.grid.blockK; }
  get qBlocks(): number { return this.grid.qBlocks; }
  get kBlocks(): number { return this.grid.kBlocks; }
  /** Batch and head sizes of the block lists (1 = the same lists for all). */
  get batch(): number { return this.grid.batch; }
  get heads(): number { return this.grid.heads; }

  /** Fraction of tiles the kernels visit (partial + full), 0..1. */
  density(): number {
    return gridDensity(this.grid);
  }

  /** FlexAttention's kv_num_blocks / kv_indices (partial blocks): [batch, heads, qBlocks(, kBlocks)]. */
  get kvNumBlocks(): Int32Array { return this.lists(PARTIAL).counts; }
  get kvIndices(): Int32Array { return this.lists(PARTIAL).indices; }
  /** full_kv_num_blocks / full_kv_indices: the key blocks with no masked pair. */
  get fullKvNumBlocks(): Int32Array { return this.lists(FULL).counts; }
  get fullKvIndices(): Int32Array { return this.lists(FULL).indices; }

  private lists(want: number): { counts: Int32Array; indices: Int32Array } {
    const g = this.grid;
    const rows = g.batch * g.heads * g.qBlocks;
    const counts = new Int32Array(rows);
    const indices = new Int32Array(rows * g.kBlocks);
    for (let r = 0; r < rows; r++) {
      for (let kb = 0; kb < g.kBlocks; kb++) if (g.status[r * g.kBlocks + kb] === want) indices[r * g.kBlocks + counts[r]++] = kb;
    }
    return { counts, indices };
  }

  toString(): string {
    const g = this.grid;
    return `BlockMask(${this.maskMod.label}; [${g.batch}, ${g.heads}], Sq ${g.seqQ}, Sk ${g.seqK}, blocks ${g.blockQ}x${g.blockK}, density ${(100 * this.density()).toFixed(1)}%)`;
  }
}

function positiveInt(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw new ValueError(name, `createBlockMask: ${name} must be a positive integer, got ${show(value)}`);
  return value;
}

/**
 * Evaluates `maskMod` over [B, H, Sq, Sk] in blocks (FlexAttention's create_block_mask). B or H may
 * be 1 (or null) to share the lists; dimensions the mask does not read are shared anyway.
 * qLen / kvLen read as Sq / Sk.
 */
export async function createBlockMask(maskMod: MaskMod, B: number | null, H: number | null, Sq: number, Sk: number, options: BlockMaskOptions = {}): Promise<BlockMask> {
  if (!(maskMod instanceof MaskModClass)) throw new ValueError('maskMod', `createBlockMask: maskMod must be a MaskMod (maskMod(...) or a built-in), got ${show(maskMod)}`);
  const batch = positiveInt(B ?? 1, 'B');
  const heads = positiveInt(H ?? 1, 'H');
  const seqQ = positiveInt(Sq, 'Sq');
  const seqK = positiveInt(Sk, 'Sk');
  const size = options.blockSize ?? 128;
  const [blockQ, blockK] = typeof size === 'number' ? [size, size] : size;
  positiveInt(blockQ, 'blockSize');
  positiveInt(blockK, 'blockSize');
  if (blockQ % 4 !== 0 || blockK % 4 !== 0) throw new ValueError('blockSize', `createBlockMask: block sizes must be multiples of 4, got ${blockQ}x${blockK}`);
  if (options.backend !== undefined && options.backend !== 'cpu' && options.backend !== 'webgpu') {
    throw new ValueError('options.backend', `createBlockMask: backend must be "cpu" or "webgpu", got ${show(options.backend)}`);
  }
  const sizes = { batch, heads, seqQ, seqK, blockQ, blockK };
  const grid = await maskGrid(maskMod, sizes, options);
  const part = windowPart(maskMod);
  return new BlockMask(maskMod, grid, part && (await windowed(part, grid, sizes, options)));
}

type GridSizes = { batch: number; heads: number; seqQ: number; seqK: number; blockQ: number; blockK: number };

/** The grid of `maskMod`, evaluated where the options say. */
async function maskGrid(maskMod: MaskMod, s: GridSizes, options: BlockMaskOptions): Promise<BlockGrid> {
  const plan = planMods({ maskMod });
  const uses = programVariables(plan.kernel.mask!);
  const grid = emptyGrid(uses.has('b') ? s.batch : 1, uses.has('h') ? s.heads : 1, s.seqQ, s.seqK, s.blockQ, s.blockK);
  if (options.backend === 'webgpu') {
    const { gpuBlockCounts } = await import('./webgpu.js');
    const counts = await gpuBlockCounts(plan, grid, options.device);
    fillStatus(grid, (tile, rows, cols) => statusOf(counts[tile], rows * cols));
  } else {
    await cpuStatus(plan, grid);
  }
  return grid;
}

/** The windowed form: the rest's grid, EMPTY wherever the whole mask's is (see WindowedBlockMask). */
async function windowed(part: WindowPart, whole: BlockGrid, s: GridSizes, options: BlockMaskOptions): Promise<WindowedBlockMask> {
  if (!part.rest) return { window: part.window, rest: undefined };
  // the rest reads no variable the whole mask does not: its grid broadcasts into the whole's
  const rest = combineGrids(whole, await maskGrid(part.rest, s, options), (w, r) => (w === EMPTY ? EMPTY : r));
  return { window: part.window, rest: new BlockMask(part.rest, rest) };
}

function fillStatus(g: BlockGrid, status: (tile: number, rows: number, cols: number) => number): void {
  for (let bh = 0; bh < g.batch * g.heads; bh++) {
    for (let qb = 0; qb < g.qBlocks; qb++) {
      const rows = Math.min(g.blockQ, g.seqQ - qb * g.blockQ);
      for (let kb = 0; kb < g.kBlocks; kb++) {
        const tile = (bh * g.qBlocks + qb) * g.kBlocks + kb;
        g.status[tile] = status(tile, rows, Math.min(g.blockK, g.seqK - kb * g.blockK));
      }
    }
  }
}

/** Counts each tile on the calling thread with the generated kernel, on a private memory. */
async function cpuStatus(plan: ReturnType<typeof planMods>, g: BlockGrid): Promise<void> {
  const words = packModData(plan.tensors);
  const MAX_PAGES = 65536;
  const memory = new WebAssembly.Memory({ initial: Math.ceil((4 * words.length + 64) / 65536), maximum: MAX_PAGES });
  new Uint32Array(memory.buffer).set(words);
  const kind = simdAvailable() ? 'wasm-simd' : 'scalar';
  const compiled = await compileMods(plan.kernel, { kind }, { shared: false, maximumPages: MAX_PAGES });
  const kernel = modsKernel({ memory }, compiled);
  fillStatus(g, (tile, rows, cols) => {
    const bh = Math.floor(tile / (g.qBlocks * g.kBlocks));
    const qb = Math.floor(tile / g.kBlocks) % g.qBlocks;
    const kb = tile % g.kBlocks;
    const b = Math.floor(bh / g.heads);
    const h = bh % g.heads;
    const visible = kernel.count(rows, cols, b, h, qb * g.blockQ, kb * g.blockK, g.seqQ, g.seqK, 0);
    return statusOf(visible, rows * cols);
  });
}

/** Checks a BlockMask against a call's sizes; the reason it does not fit, or undefined. */
export function blockMaskMismatch(m: BlockMask, batch: number, heads: number, seqQ: number, seqK: number): string | undefined {
  if (m.seqQ !== seqQ || m.seqK !== seqK) return `it was built for Sq ${m.seqQ}, Sk ${m.seqK} but the call has Sq ${seqQ}, Sk ${seqK}`;
  if (m.batch !== 1 && m.batch !== batch) return `it has ${m.batch} batch entries but the call has ${batch}`;
  if (m.heads !== 1 && m.heads !== heads) return `it has ${m.heads} heads but the call has ${heads} query heads`;
  return undefined;
}

export { EMPTY, FULL, PARTIAL };
