// What a call's score/mask/sink functions become for the kernels: the lowered programs (the
// compile-time part, plain data inside each kernel's options, hence its pipeline cache key) and
// one packed u32 buffer of run-time data shared by every backend (WGSL storage binding, CPU arena):
//
//   word 0          offset (in words) of the block table, 0 when there is none
//   word 1          number of captured tensors
//   words 4 + 9t .. per tensor t: data offset (words), dims[4], strides[4] (unused dims 1 / 0)
//   ...             tensor data (f32 or i32 bits), then the block table (block-table.ts)
import type { ModTensor } from './expr.js';
import { scoreDerivative } from './derivative.js';
import { Lowering, type MaskMod, type Program, type ScoreMod, type SinkMod, type TensorSlot } from './program.js';

/** Compile-time part: part of every kernel option object that runs the mods. */
export interface ModsKernelOptions {
  score?: Program;
  mask?: Program;
  sink?: Program;
  /** d(score)/d(its score variable), for the backward's chain rule (backwardModsKernel). */
  scoreGrad?: Program;
  tensors: TensorSlot[];
}

/** A call's mods as the problem carries them. */
export interface ModsPlan {
  readonly scoreMod: ScoreMod | undefined;
  readonly maskMod: MaskMod | undefined;
  readonly sinkMod: SinkMod | undefined;
  readonly kernel: ModsKernelOptions;
  readonly tensors: readonly ModTensor[];
}

export const HEADER_BASE = 4;
export const HEADER_WORDS = 9;

export function planMods(parts: { scoreMod?: ScoreMod; maskMod?: MaskMod; sinkMod?: SinkMod }): ModsPlan {
  const lowering = new Lowering();
  const kernel: ModsKernelOptions = { tensors: [] };
  if (parts.scoreMod) kernel.score = lowering.lower(parts.scoreMod.root);
  if (parts.maskMod) kernel.mask = lowering.lower(parts.maskMod.root);
  if (parts.sinkMod) kernel.sink = lowering.lower(parts.sinkMod.root);
  kernel.tensors = lowering.slots();
  return { scoreMod: parts.scoreMod, maskMod: parts.maskMod, sinkMod: parts.sinkMod, kernel, tensors: lowering.tensors };
}

/**
 * What the backward's kernels compile of a call's mods: the score and mask programs, the score's
 * derivative (scoreGrad) and no sink (the forward's LSE already holds it, and P = exp(s - LSE) is
 * all the backward recomputes). Lowered in the forward's order, so its tensor slots are the first
 * of the forward's (the sink comes last; the derivative reads no other tensor) and
 * packModData(plan.tensors) serves both; a kernel then declares mod_data only when it reads it.
 * Undefined when there is neither a score nor a mask function.
 */
export function backwardModsKernel(plan: ModsPlan | undefined): ModsKernelOptions | undefined {
  if (!plan || (!plan.scoreMod && !plan.maskMod)) return undefined;
  const lowering = new Lowering();
  const kernel: ModsKernelOptions = { tensors: [] };
  if (plan.scoreMod) kernel.score = lowering.lower(plan.scoreMod.root);
  if (plan.maskMod) kernel.mask = lowering.lower(plan.maskMod.root);
  if (plan.scoreMod) kernel.scoreGrad = lowering.lower(scoreDerivative(plan.scoreMod.root));
  kernel.tensors = lowering.slots();
  return kernel;
}

/** The packed run-time data: header, every tensor's elements, then `table` if given. */
export function packModData(tensors: readonly ModTensor[], table?: Uint32Array): Uint32Array {
  let offset = HEADER_BASE + HEADER_WORDS * tensors.length;
  const offsets = tensors.map((t) => {
    const at = offset;
    offset += t.data.length;
    return at;
  });
  const tableOffset = table ? offset : 0;
  const words = new Uint32Array(Math.max(offset + (table?.length ?? 0), HEADER_BASE));
  words[0] = tableOffset;
  words[1] = tensors.length;
  tensors.forEach((t, i) => {
    const h = HEADER_BASE + HEADER_WORDS * i;
    words[h] = offsets[i];
    let stride = 1;
    for (let d = 3; d >= 0; d--) {
      const size = d < t.rank ? t.shape[d] : 1;
      words[h + 1 + d] = size;
      words[h + 5 + d] = d < t.rank ? stride : 0;
      if (d < t.rank) stride *= size;
    }
    words.set(new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length), offsets[i]);
  });
  if (table) words.set(table, tableOffset);
  return words;
}

/** True when the kernels have something to evaluate per element. */
export function hasElementMods(k: ModsKernelOptions | undefined): boolean {
  return k !== undefined && (k.score !== undefined || k.mask !== undefined);
}
