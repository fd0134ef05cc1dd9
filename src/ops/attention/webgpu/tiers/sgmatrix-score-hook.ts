// The tensor-core tier's score hook: when a call has a bool mask, an additive bias, score/mask/sink
// functions or a block table, each score goes through the shared score function of score.wgsl.ts
// (the one the portable tier and the naive path use, so every tier applies the options in the
// reference's order) instead of the tier's inline scale/softcap/ALiBi, and the key loop walks the
// block table: EMPTY key blocks are never loaded, FULL ones are scored without any mask.
// Kept apart from flash-sgmatrix-wgsl.ts so the fast path without these options stays as measured.
import { type FloatDType, NON_FINITE_FNS } from '../../../../engines/webgpu/wgsl.js';
import { buildScoreFunction } from '../score.wgsl.js';
import type { ModsKernelOptions } from '../../mods/plan.js';

/** Compile-time part of the hook (in SgMatrixKernelOptions.score). */
export interface SgScoreHook {
  mask: boolean;
  bias: FloatDType | 'none';
  /** A causal/sliding window is set (the score function checks it too). */
  windowed: boolean;
  softcap: boolean;
  alibi: boolean;
  mods?: ModsKernelOptions;
  /** Key blocks come from the block table in mod_data. */
  blockTable: boolean;
}

/** Bindings of the hook, after the tier's own (0..9). */
export const SG_SCORE_BINDINGS = { params: 10, mask: 11, bias: 12, modData: 13 } as const;

/** END of the block-table tile iterator. */
const END = '0xffffffffu';

export function hookDeclarations(h: SgScoreHook): string {
  // the tier declares the non-finite helpers itself
  const score = buildScoreFunction(
    { mask: h.mask, bias: h.bias, alibi: h.alibi, softcap: h.softcap, windowed: h.windowed, mods: h.mods, blockTable: h.blockTable },
    { group: 0, ...SG_SCORE_BINDINGS },
  ).replace(NON_FINITE_FNS, '');
  if (!h.blockTable) return score;
  return `${score}

// The next tile of BC keys the block table lists at or after position (*n, *u) (block n, tile u
// of it) that meets [lo, hi): its first key, or ${END}; (*n, *u) moves past it, *full says
// whether its block is one no mask hides anything of.
fn next_tile(r: BlockRow, n: ptr<function, u32>, u: ptr<function, u32>, lo: u32, hi: u32, full: ptr<function, bool>) -> u32 {
  let per = r.keys / BC;
  loop {
    if (*n >= r.partial + r.full) { return ${END}; }
    let k0 = block_index(r, *n) * r.keys + *u * BC;
    *full = *n >= r.partial;
    *u += 1u;
    if (*u == per) {
      *u = 0u;
      *n += 1u;
    }
    if (k0 + BC > lo && k0 < hi) { return k0; }
  }
}`;
}

/** Per-row values the hook's score lines read (after `i`, `jLo`, `jHi` are defined). */
export function hookRowSetup(h: SgScoreHook): string[] {
  return [
    '  let rowLive = i < lenQ;',
    `  let slopeNat = ${h.alibi ? 'bitcast<f32>(seqTable[4u * P.batch + b * P.alibiSb + myHead])' : '0.0'};`,
    '  // the score function returns scores in units of beta = max(1, |scale|); this tier works in log2 units',
    '  let betaLog2 = max(1.0, abs(P.scale)) * 1.4426950408889634;',
  ];
}

/**
 * The score of column c of this lane's row, in log2 units (NEG_INF when hidden; POISON_SCORE from
 * the score function, a NaN or +inf score, poisons the row). No `//` comments in these lines: the
 * unrolled form joins them into one line.
 */
export function hookScoreLines(h: SgScoreHook, c: string): string[] {
  const call = (fn: string) => `${fn}(Ss[sRow + 2u * ${c}], b, myHead, i, u32(j), lenQ, lenK, slopeNat)`;
  return [
    `let j = jSide + 2 * i32(${c});`,
    'var s = NEG_INF;',
    'if (rowLive && j >= jLo && j <= jHi) {',
    h.blockTable ? `  var x = 0.0; if (full) { x = ${call('final_score_unmasked')}; } else { x = ${call('final_score')}; }` : `  let x = ${call('final_score')};`,
    '  if (x >= POISON_SCORE) { poison = 1u; } else { s = select(NEG_INF, x * betaLog2, x > NEG_INF); }',
    '}',
    `sv[${c}] = s;`,
    'blockMax = max(blockMax, s);',
  ];
}

/** The loop header over the block table's tiles (with prefetch: the first tile's loads issued). */
export function tableLoopOpen(prefetch: boolean, prefetchLoads: (start: string) => string): string[] {
  return [
    '  let blocks = block_row(b, h0, q0);',
    '  var tn = 0u;',
    '  var tu = 0u;',
    '  var tFull = false;',
    '  var kv0 = next_tile(blocks, &tn, &tu, kvLo, kvHi, &tFull);',
    ...(prefetch ? [`  if (kv0 != ${END}) {`, prefetchLoads('kv0'), '  }'] : []),
    '  loop {',
    `    if (kv0 == ${END}) { break; }`,
    '    let full = tFull;',
  ];
}

/** With prefetch: the next listed tile's loads, issued while this one computes. */
export function tablePrefetchNext(prefetchLoads: (start: string) => string): string[] {
  return [
    '    let kvNext = next_tile(blocks, &tn, &tu, kvLo, kvHi, &tFull);',
    `    if (kvNext != ${END}) {`,
    '      // next block: global loads in flight while this one computes',
    prefetchLoads('kvNext'),
    '    }',
  ];
}

export function tableLoopClose(prefetch: boolean): string[] {
  return prefetch ? ['    kv0 = kvNext;', '  }'] : ['    kv0 = next_tile(blocks, &tn, &tu, kvLo, kvHi, &tFull);', '  }'];
}

/** O / l and the LSE with an attention sink (natural-log logit, scores here are log2 units). */
export function hookSinkFinal(): string[] {
  return [
    '  // attention sink: one more softmax term without a value (LSE = sink on a row with no key)',
    '  let sink = sink_mod(b, myHead, i, lenQ, lenK);',
    '  var inv = 0.0;',
    '  var rowLse = sink;',
    '  if (l > 0.0) {',
    '    let sink2 = sink * 1.4426950408889634;',
    '    let top = max(m, sink2);',
    '    let total = l * exp2(m - top) + exp2(sink2 - top);',
    '    inv = exp2(m - top) / total;',
    '    rowLse = (top + log2(total)) * 0.6931471805599453;',
    '  }',
  ];
}
