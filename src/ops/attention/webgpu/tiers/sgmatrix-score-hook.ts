// The tensor-core tier's score hook: what a call with a bool mask, an additive bias, score/mask/sink
// functions or a block table adds to the 16-row kernel (flash-sgmatrix-wgsl.ts). The scores keep
// the plain kernel's inline path (sgmatrix-score-lines.ts: log2 units, the window from jLo/jHi)
// and add only what the call has: the bias, the mask tests, the score function in log2 units
// (mods/log2-units.ts), their row-invariant parts hoisted ahead of the key loop. A sink alone
// adds nothing per score, only its term in the final normalisation (hookSinkFinal). With a block
// table the key loop walks the listed tiles (EMPTY ones are never loaded) and FULL tiles score
// without any mask test: the plain lines exactly when there is no bias or score function (with
// the softcap option, its NaN test behind the window test: ScoreAdditions.visibleNaN).
import { scoreInputDeclarations } from '../score.wgsl.js';
import type { ModsKernelOptions } from '../../mods/plan.js';
import { type InlineProgram, buildModsWgsl, inlineProgram, tensorHeaderLets, tensorLoadFromHeader } from '../../mods/wgsl.js';
import { scoreProgramInLog2 } from '../../mods/log2-units.js';
import type { ScoreAdditions } from './sgmatrix-score-lines.js';
import type { FloatDType } from '../../../../engines/webgpu/wgsl.js';

/** Compile-time part of the hook (in SgMatrixKernelOptions.score). */
export interface SgScoreHook {
  mask: boolean;
  bias: FloatDType | 'none';
  /** A causal/sliding window is set (equals the kernel's causalOrWindow; jLo/jHi apply it). */
  windowed: boolean;
  softcap: boolean;
  alibi: boolean;
  mods?: ModsKernelOptions;
  /** Key blocks come from the block table in mod_data. */
  blockTable: boolean;
  /**
   * 'exp2': the score/mask functions' tanh as sign(x)·(1 - t)/(1 + t), t = exp2(-2|x|·log2 e),
   * the division as a reciprocal square root of (1 + t)² (two MUFU-class operations; absolute
   * error ~1e-7). Absent: WGSL's tanh. The default since the H200 timed a softcap function at
   * 1.22x causal this way against 1.59x with WGSL's tanh (FUSEDATTN_SGMATRIX_TANH=builtin: the latter).
   */
  tanh?: 'exp2';
}

/** tanh(x) from exp2 and inverseSqrt, see SgScoreHook.tanh; |x| large gives t = 0, exactly ±1. */
const tanhExp2 = (x: string) => `tanh_exp2(${x})`;
export const TANH_EXP2_WGSL = `// tanh(x) = sign(x)·(1 - t)/(1 + t), t = e^(-2|x|) in (0, 1]: no overflow, 1/(1 + t) as inverseSqrt((1 + t)²)
fn tanh_exp2(x: f32) -> f32 {
  let t = exp2(-2.8853900817779268 * abs(x));
  let d = 1.0 + t;
  return sign(x) * (1.0 - t) * inverseSqrt(d * d);
}`;

/** Bindings of the hook, after the tier's own (0..9). */
export const SG_SCORE_BINDINGS = { params: 10, mask: 11, bias: 12, modData: 13 } as const;

/** END of the block-table tile iterator. */
const END = '0xffffffffu';

export function hookDeclarations(h: SgScoreHook): string {
  const inputs = scoreInputDeclarations(h, { group: 0, ...SG_SCORE_BINDINGS }).join('\n');
  const mods = buildModsWgsl(h.mods, { group: 0, binding: SG_SCORE_BINDINGS.modData }, h.blockTable, true);
  const parts = mods ? [inputs, mods] : [inputs];
  if (h.tanh === 'exp2') parts.push(TANH_EXP2_WGSL);
  if (h.blockTable) {
    parts.push(`// The next tile of BC keys the block table lists at or after position (*n, *u) (block n, tile u
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
}`);
  }
  return parts.join('\n\n');
}

/** WGSL of the mods' variables in main (after `i` and `myHead`); `kv` is the key `j` of a score. */
const MOD_VARS = { b: 'mv_b', h: 'mv_h', q: 'mv_q', kv: 'j', qLen: 'mv_q_len', kvLen: 'mv_kv_len', score: 's' } as const;

/** The score and mask functions written out inline, split into per-row and per-score lets. */
function inlineMods(h: SgScoreHook): { score?: InlineProgram; mask?: InlineProgram } {
  const m = h.mods;
  // captured tensors read through their headers, loaded once per row (hookRowSetup)
  const overrides = { load: (t: number, args: string[]) => tensorLoadFromHeader(m!.tensors[t], t, 'mt', args), tanh: h.tanh === 'exp2' ? tanhExp2 : undefined };
  return {
    score: m?.score ? inlineProgram(scoreProgramInLog2(m.score), 'ms_', MOD_VARS, ['score', 'kv'], overrides) : undefined,
    mask: m?.mask ? inlineProgram(m.mask, 'mm_', MOD_VARS, ['kv'], overrides) : undefined,
  };
}

/** Per-row values the hook's score lines read (after `i`, `myHead`, `lenQ`, `lenK` are defined). */
export function hookRowSetup(h: SgScoreHook): string[] {
  const lines: string[] = [];
  const row = (what: 'mask' | 'bias') =>
    `  let ${what}Row = sp.${what}_off + b * sp.${what}_strides.x + myHead * sp.${what}_strides.y + i * sp.${what}_strides.z;`;
  if (h.mask) lines.push(row('mask'));
  if (h.bias !== 'none') lines.push(row('bias'));
  // the host binds the score params with every hook: keep them in the kernel's layout
  if (!h.mask && h.bias === 'none') lines.push('  _ = &sp;');
  const mods = inlineMods(h);
  if (mods.score || mods.mask) {
    lines.push('  // the score / mask functions\' variables, and what of them is the same for every key of the row');
    lines.push('  let mv_b = i32(b); let mv_h = i32(myHead); let mv_q = i32(i); let mv_q_len = i32(lenQ); let mv_kv_len = i32(lenK);');
    h.mods!.tensors.forEach((slot, t) => { for (const line of tensorHeaderLets(slot, t, 'mt')) lines.push(`  ${line}`); });
    for (const p of [mods.mask, mods.score]) for (const line of p?.invariant ?? []) lines.push(`  ${line}`);
  }
  return lines;
}

/**
 * What the hook adds to the plain per-score lines: on a tile where a mask may hide pairs
 * (`masked`: every tile without a block table, PARTIAL ones with it) the mask tests too.
 */
export function hookAdditions(h: SgScoreHook, masked: boolean): ScoreAdditions {
  const mods = inlineMods(h);
  // the one addition a sink alone or a FULL tile makes with the softcap option (no cost: the NaN
  // test moves behind the window test)
  const add: ScoreAdditions = h.softcap ? { visibleNaN: true } : {};
  if (h.bias !== 'none') add.bias = 'bias_at(biasRow + u32(j) * sp.bias_strides.w)';
  if (masked) {
    const keep: string[] = [];
    if (h.mask) keep.push('mask_at(maskRow + u32(j) * sp.mask_strides.w) != 0u');
    if (mods.mask) {
      add.before = mods.mask.varying;
      keep.push(mods.mask.result);
    }
    if (keep.length) add.keep = keep;
  }
  if (mods.score) add.mod = { lets: mods.score.varying, result: mods.score.result };
  return add;
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
