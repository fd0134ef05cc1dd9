// Where element (b, h, s, d) of an attention tensor lives, for each layout. All kernels index
//   offset + b*strides.b + (seqStart[b] + s)*strides.s + h*strides.h + d*strides.d
// so one formula serves the fixed layouts (seqStart all 0) and TND (strides.b = 0, seqStart from
// cu_seqlens).
import type { Layout } from '../../core/tensor.js';

export interface Strides4 {
  b: number;
  h: number;
  s: number;
  d: number;
}

export const LAYOUTS: readonly Layout[] = ['BNSD', 'BSND', 'BSH', 'SBH', 'TND'];

/** What each layout's dimensions mean, for error messages. */
export const LAYOUT_LEGEND: Record<Layout, string> = {
  BNSD: '[batch, heads, seq, dim]',
  BSND: '[batch, seq, heads, dim]',
  BSH: '[batch, seq, heads*dim]',
  SBH: '[seq, batch, heads*dim]',
  TND: '[total_tokens, heads, dim]',
};

export function rankOf(layout: Layout): number {
  return layout === 'BNSD' || layout === 'BSND' ? 4 : 3;
}

/** Physical shape of a tensor with these logical sizes (`seq` is T for TND). */
export function physicalShape(layout: Layout, batch: number, heads: number, seq: number, dim: number): number[] {
  switch (layout) {
    case 'BNSD': return [batch, heads, seq, dim];
    case 'BSND': return [batch, seq, heads, dim];
    case 'BSH': return [batch, seq, heads * dim];
    case 'SBH': return [seq, batch, heads * dim];
    case 'TND': return [seq, heads, dim];
  }
}

/** Row-major strides of a contiguous tensor in `layout`, as (b, h, s, d) element strides. */
export function contiguousStrides(layout: Layout, batch: number, heads: number, seq: number, dim: number): Strides4 {
  switch (layout) {
    case 'BNSD': return { b: heads * seq * dim, h: seq * dim, s: dim, d: 1 };
    case 'BSND':
    case 'BSH': return { b: seq * heads * dim, h: dim, s: heads * dim, d: 1 };
    case 'SBH': return { b: heads * dim, h: dim, s: batch * heads * dim, d: 1 };
    case 'TND': return { b: 0, h: dim, s: heads * dim, d: 1 };
  }
  void batch;
}
