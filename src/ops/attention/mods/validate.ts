// The scoreMod / maskMod / blockMask / sink options of attention(): checked against the call's
// sizes and lowered once (plan.ts), so backends receive them ready to compile.
import { ShapeError, ValueError, show } from '../../../core/errors.js';
import { readEnv } from '../../../core/env.js';
import { Tensor, type TensorInput, toTensor } from '../../../core/tensor.js';
import { BlockMask, blockMaskMismatch } from '../block-mask/block-mask.js';
import { attentionSinks } from './builtins.js';
import { type ModsPlan, planMods } from './plan.js';
import { MaskMod, ScoreMod, SinkMod, programVariables } from './program.js';
import type { KeyWindow } from '../problem.js';

export interface ModOptions {
  scoreMod?: ScoreMod;
  maskMod?: MaskMod;
  blockMask?: BlockMask;
  sink?: SinkMod | Float32Array | readonly number[] | TensorInput;
}

export interface CallSizes {
  batch: number;
  headsQ: number;
  seqQ: number;
  seqK: number;
  seqLensQ: Int32Array;
  seqLensK: Int32Array;
  /** The call's own key window (options.causal / window). */
  window: KeyWindow;
}

export interface ValidatedMods {
  mods: ModsPlan | undefined;
  blockMask: BlockMask | undefined;
  /** The key window the call runs with: its own, or the block mask's window part. */
  window: KeyWindow;
}

/** FUSEDATTN_MODS_AS_OPTIONS=off: functions run as written (benchmarks measure what the splits save). */
export function splitsEnabled(): boolean {
  return readEnv('FUSEDATTN_MODS_AS_OPTIONS')?.toLowerCase() !== 'off';
}

/** No causal and no window. */
function unbounded(w: KeyWindow): boolean {
  return w.left === Infinity && w.right === Infinity;
}

function sinkOf(sink: ModOptions['sink'], s: CallSizes): SinkMod {
  if (sink instanceof SinkMod) return sink;
  let t: Tensor;
  if (Array.isArray(sink) || sink instanceof Float32Array) t = Tensor.fromData(Float32Array.from(sink as ArrayLike<number>), [(sink as ArrayLike<number>).length]);
  else t = toTensor(sink as TensorInput, 'options.sink', ['float32', 'float16']);
  const shape = t.shape;
  const ok = (shape.length === 1 && shape[0] === s.headsQ) || (shape.length === 2 && shape[0] === s.batch && shape[1] === s.headsQ);
  if (!ok) throw new ShapeError('options.sink', `options.sink logits must have shape [Nq] = [${s.headsQ}] or [B, Nq] = [${s.batch}, ${s.headsQ}], got ${show(shape)}`);
  return attentionSinks(t);
}

export function validateMods(o: ModOptions, s: CallSizes): ValidatedMods {
  const { scoreMod } = o;
  let { maskMod, blockMask } = o;
  let window = s.window;
  if (scoreMod !== undefined && !(scoreMod instanceof ScoreMod)) {
    throw new ValueError('options.scoreMod', `options.scoreMod must be a ScoreMod (scoreMod(...) or a built-in such as softcap()), got ${show(scoreMod)}`);
  }
  if (maskMod !== undefined && !(maskMod instanceof MaskMod)) {
    throw new ValueError('options.maskMod', `options.maskMod must be a MaskMod (maskMod(...) or a built-in such as causal()), got ${show(maskMod)}`);
  }
  if (blockMask !== undefined) {
    if (!(blockMask instanceof BlockMask)) throw new ValueError('options.blockMask', `options.blockMask must come from createBlockMask(), got ${show(blockMask)}`);
    const mismatch = blockMaskMismatch(blockMask, s.batch, s.headsQ, s.seqQ, s.seqK);
    if (mismatch) throw new ShapeError('options.blockMask', `options.blockMask does not fit this call: ${mismatch}`);
    if (maskMod !== undefined && maskMod !== blockMask.maskMod) {
      throw new ValueError('options.maskMod', 'options.maskMod and options.blockMask disagree: a block mask carries its own maskMod; pass the block mask alone');
    }
    maskMod = blockMask.maskMod;
    const lengths = programVariables(planMods({ maskMod }).kernel.mask!);
    const ragged = s.seqLensQ.some((n) => n !== s.seqQ) || s.seqLensK.some((n) => n !== s.seqK);
    if (ragged && (lengths.has('qLen') || lengths.has('kvLen'))) {
      throw new ValueError('options.blockMask', 'the block mask\'s maskMod reads qLen/kvLen, which createBlockMask took as Sq/Sk, but this call\'s sequences have other lengths; use a mask that does not read them, or no block mask');
    }
    // a window part (X ∧ kv <= q ...) runs as the call's window where the call has none of its own:
    // the kernels apply it per row, and X alone marks blocks FULL (block-mask/window-part.ts)
    if (blockMask.windowed && unbounded(window) && splitsEnabled()) {
      window = blockMask.windowed.window;
      blockMask = blockMask.windowed.rest;
      maskMod = blockMask?.maskMod;
    }
  }
  const sinkMod = o.sink === undefined ? undefined : sinkOf(o.sink, s);
  if (!scoreMod && !maskMod && !sinkMod) return { mods: undefined, blockMask, window };
  return { mods: planMods({ scoreMod, maskMod, sinkMod }), blockMask, window };
}
