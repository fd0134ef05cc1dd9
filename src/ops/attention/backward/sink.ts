// dSink, the gradient of per-head attention-sink logits (GPT-OSS). The sink is one more softmax
// term without a value: P_sink = exp(sink - LSE) with the forward's LSE (which holds the sink),
// and out = Σ_j P_j v_j. So dL/dsink = Σ_rows P_sink · (0 - D) with D = dO · O, the same
// rowsum the backward's pre pass computes; summed over every row (b, i) a logit serves.
// dq, dk and dv need no change for sinks: P = exp(s - LSE) is already the sink-aware softmax.
// The sum over rows runs here on the host, from each row's (LSE, D) as the backward's pre pass
// left them: in the CPU arena, or read back from WebGPU (8 bytes a row).
import { ValueError } from '../../../core/errors.js';
import { Tensor } from '../../../core/tensor.js';
import type { AttentionProblem } from '../problem.js';
import { referenceMods } from '../mods/evaluate.js';
import type { BackwardProblem } from './problem.js';

/** Where dSink goes: the logits' shape ([Nq] or [B, Nq]) and the flat index of (b, h) in it. */
export interface SinkGradLayout {
  shape: number[];
  index(b: number, h: number): number;
}

/**
 * The layout of dSink for `p`, or why there is none: only per-head logits (options.sink as an
 * array or tensor, or attentionSinks()) are parameters with a gradient; a general sink function
 * of the row is not.
 */
export function sinkGradLayout(p: AttentionProblem): SinkGradLayout | string {
  const root = p.mods?.sinkMod?.root;
  if (!root) return 'options.sinkGrad asks for dSink, but no options.sink was given';
  const isVar = (n: { op: string; name?: string }, name: string) => n.op === 'var' && n.name === name;
  if (root.op === 'load' && root.tensor) {
    const args = root.args;
    if (root.tensor.rank === 1 && isVar(args[0], 'h') && root.tensor.shape[0] === p.headsQ) return { shape: [p.headsQ], index: (_b, h) => h };
    if (root.tensor.rank === 2 && isVar(args[0], 'b') && isVar(args[1], 'h') && root.tensor.shape[0] === p.batch && root.tensor.shape[1] === p.headsQ) {
      return { shape: [p.batch, p.headsQ], index: (b, h) => b * p.headsQ + h };
    }
  }
  return 'options.sinkGrad needs per-head sink logits (options.sink as an [Nq] or [B, Nq] array or tensor, or attentionSinks()); this sink is a function of the row, which has no parameter to differentiate';
}

/** Per query row (b, h, t), t the row's token index (seqStartsQ[b] + i): its LSE and D = dO · O. */
export interface RowStats {
  lse(b: number, h: number, t: number): number;
  delta(b: number, h: number, t: number): number;
}

/** dSink from each row's LSE and D (a sum over rows: O(B·Nq·Sq) once D is known). */
export function sinkGradient(p: AttentionProblem, layout: SinkGradLayout, rows: RowStats): Float64Array {
  const sink = referenceMods(p.mods!.kernel, p.mods!.tensors).sink!;
  const grad = new Float64Array(layout.shape.reduce((a, b) => a * b, 1));
  for (let b = 0; b < p.batch; b++) {
    const sq = p.seqLensQ[b];
    const sk = p.seqLensK[b];
    for (let h = 0; h < p.headsQ; h++) {
      let sum = 0;
      for (let i = 0; i < sq; i++) {
        const s = sink(b, h, i, sq, sk);
        if (s === -Infinity) continue; // a sink of -inf takes no weight (and its LSE may be -inf too)
        const t = p.seqStartsQ[b] + i;
        sum -= Math.exp(s - rows.lse(b, h, t)) * rows.delta(b, h, t);
      }
      grad[layout.index(b, h)] += sum;
    }
  }
  return grad;
}

/** The dSink tensor (float32, on the CPU: it holds a few numbers whatever the backend). */
export function sinkGradTensor(bp: BackwardProblem, rows: RowStats): Tensor {
  const layout = sinkGradLayout(bp.forward);
  if (typeof layout === 'string') throw new ValueError('options.sinkGrad', layout);
  return Tensor.fromData(Float32Array.from(sinkGradient(bp.forward, layout, rows)), layout.shape);
}
