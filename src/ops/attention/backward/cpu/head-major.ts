// The CPU backward stages its operands and gradients head-major: the rows of one (batch, head)
// contiguous, [batch][heads][sequence extent][dim] (TND: [heads][T], each sequence at its
// cu_seqlens rows), whatever the user's layout. Why: in BSND, BSH, SBH and TND a head's
// consecutive rows are heads·dim floats apart; at 8 heads of 128 that is 4 KiB, so a 64-key
// block's rows fall into the same L1 sets and the backward's matmuls over them thrash (measured:
// B1 H8/2 S1024 D128 causal BSND took 1.3x BNSD's time, now within 6%). The forward packs its own
// panels and does not care. The copies run in WASM (copy_rows) on the arena: a JavaScript row
// loop into the shared memory cost 0.6-1 ms per 2 MiB tensor, 6-10x a memcpy.
import type { StridedView, AttentionProblem } from '../../problem.js';
import type { StagedOperand } from '../../cpu/flash.js';
import type { BackwardKernels } from './kernels.js';

/** Rows of `row` floats in planes: plane (i0, i1) holds counts[2] rows, source row (i0, i1, i2) at i0·s0 + i1·s1 + i2·s2 (elements). */
export interface HeadMajorRows {
  readonly counts: readonly [number, number, number];
  readonly strides: readonly [number, number, number];
  readonly row: number;
}

/** Whose heads and sequence extent a tensor has: the queries' (q, out, dO) or the keys' (k, v). */
export type Side = 'q' | 'k';

export function headMajorRows(p: AttentionProblem, view: StridedView, side: Side, dim: number): HeadMajorRows {
  const heads = side === 'q' ? p.headsQ : p.headsKv;
  const extent = p.varlen ? (side === 'q' ? p.totalQ : p.totalK) : side === 'q' ? p.seqQ : p.seqK;
  return { counts: [p.varlen ? 1 : p.batch, heads, extent], strides: [view.strides.b, view.strides.h, view.strides.s], row: dim };
}

/** Whether the layout's own order is already head-major (BNSD, or one head): then no copy is needed. */
export function isHeadMajor(g: HeadMajorRows): boolean {
  const [n0, n1, n2] = g.counts;
  const [s0, s1, s2] = g.strides;
  // a dimension of one element has no stride to match
  return (n2 <= 1 || s2 === g.row) && (n1 <= 1 || s1 === n2 * g.row) && (n0 <= 1 || s0 === n1 * n2 * g.row);
}

/** The staged operand of head-major rows at `addr` (byte strides; TND keeps batch stride 0). */
export function headMajorOperand(addr: number, g: HeadMajorRows): StagedOperand {
  const [, heads, extent] = g.counts;
  const sh = 4 * extent * g.row;
  return { addr, sb: g.strides[0] === 0 ? 0 : heads * sh, sh, ss: 4 * g.row };
}

/** Copies the tensor at `layoutAddr` (the layout's order) to `headMajorAddr`, or back (`toLayout`). */
export function copyHeadMajor(kernels: Pick<BackwardKernels, 'copy_rows'>, layoutAddr: number, headMajorAddr: number, g: HeadMajorRows, toLayout = false): void {
  const [n0, n1, n2] = g.counts;
  const [s0, s1, s2] = g.strides;
  const planeBytes = 4 * n2 * g.row;
  for (let i0 = 0; i0 < n0; i0++) {
    for (let i1 = 0; i1 < n1; i1++) {
      const layout = layoutAddr + 4 * (i0 * s0 + i1 * s1);
      const headMajor = headMajorAddr + (i0 * n1 + i1) * planeBytes;
      if (toLayout) kernels.copy_rows(headMajor, 4 * g.row, layout, 4 * s2, n2, g.row);
      else kernels.copy_rows(layout, 4 * s2, headMajor, 4 * g.row, n2, g.row);
    }
  }
}
