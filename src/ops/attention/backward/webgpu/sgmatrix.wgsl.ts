// WGSL of the tensor-core backward tier: FlashAttention-2's backward on f16 inputs with every matmul
// on subgroup matrices (chromium_experimental_subgroup_matrix, 16×16×16 f16 -> f32), the
// element-wise parts (P from the LSE, dropout, dS, softcap) in f32 on the lanes. Two kernels beside
// the portable tier's pre kernel (D = rowsum(dO∘O), the LSE), with the same bindings and uniforms:
//
//   kv  one workgroup per (block of 16·NS keys, kv head, batch); subgroup s owns 16 keys and their
//       dK, dV result matrices. K and V tiles stay in workgroup memory; per query block of BR rows
//       (for each query head of the group) Q and dO are staged and each subgroup computes
//         Sᵀ = K_s·Qᵀ, Pᵀ = exp(scale·Sᵀ - lse) (window, softcap, ALiBi), dPᵀ = V_s·dOᵀ,
//         dSᵀ = Pᵀ∘(dPᵀ∘Z - D)  ->  dV_s += (P∘Z)ᵀ·dO,  dK_s += dSᵀ·Q   (P∘Z and dS rounded to f16)
//   q   one workgroup per (block of 16·NS query rows, query head, batch); subgroup s owns 16 rows,
//       their Q and dO in left matrices and their dQ result matrices; per key block of BC keys
//         S = Q_s·Kᵀ, P, dP = dO_s·Vᵀ, dS  ->  dQ_s += dS·K
//   Variants (options; which are the defaults and why: SG_BACKWARD_CONFIGS): hoist (kv: K_s, V_s kept in
//   left matrices), singleP (kv: dV's product before dPᵀ, one P buffer), pairs (kv: a subgroup pair
//   per 16 keys, one forming Sᵀ and dV, the other dPᵀ and dK; q: per 16 rows, S and dP), reverse (q).
//   Gradients are written f32 (the host casts them for float16 results), dK and dQ times scale.
//   A bool mask and an additive bias are read per pair where P is formed (mask_at / bias_at of the
//   forward's score function, in the same order: hidden, scale, softcap, + bias, - ALiBi); dBias is
//   the kv kernel's (dS before the softcap factor, see SgBiasGrad).
// Rules from docs/GPU-NOTES.md: every workgroup variable a multiple of 16 bytes, matrix offsets
// from subgroup_id, variables in loops initialised. Score and mask functions stay on the portable tier.
import type { FloatDType } from '../../../../engines/webgpu/wgsl.js';
import { SCORE_PARAMS, buildScoreFunction, scoreInputDeclarations } from '../../webgpu/score.wgsl.js';
import { buildModsWgsl } from '../../mods/wgsl.js';
import type { ModsKernelOptions } from '../../mods/plan.js';
import { dropoutDeclarations } from '../../dropout/philox.wgsl.js';
import { BLOCK_STATUS_WGSL } from '../../block-mask/status.wgsl.js';
import { BACKWARD_BINDINGS, BACKWARD_PARAMS } from './portable.wgsl.js';

export interface SgBackwardOptions {
  dimQK: number;
  dimRope: number;
  dimV: number;
  /** Subgroups per workgroup (16 keys, kv kernel, or 16 query rows, q kernel, each). */
  subgroups: number;
  /** kv kernel: query rows per block (16 or 32); q kernel: keys per block (16, 32 or 64). */
  block: number;
  causalOrWindow: boolean;
  softcap: boolean;
  /**
   * The softcap stands for a softcap() score function (AttentionProblem.softcapRule, split by
   * mods/softcap-part.ts): a function's rule on its input, so a -inf scaled score hides the pair
   * (the option would cap it to -softcap); NaN and +inf poisoned the row's LSE in the forward.
   */
  softcapFunction?: boolean;
  alibi: boolean;
  dropout: boolean;
  /**
   * Global loads of 8 halves (vec4<u32>); needs head dims that are multiples of 8 and every input's
   * element offset and (b, h, s) strides multiples of 8 (the host checks).
   */
  vectorLoads?: boolean;
  /**
   * kv kernel: K_s and V_s held in left matrices for the whole query loop instead of reloaded from
   * workgroup memory per block (16 loads fewer per 16 rows at D 128); the K/V tiles then leave
   * workgroup memory (staged once through the Q/dO area), so 4 subgroups or 64-row blocks fit.
   * Costs 2·D/16 left matrices of registers.
   */
  hoist?: boolean;
  /**
   * kv kernel: one P buffer per subgroup: dV += (P∘Z)ᵀ·dO right after P, before dPᵀ, and dSᵀ then
   * written over it (half the P memory, same barriers).
   */
  singleP?: boolean;
  /** q kernel: workgroups in reverse row order (causal: the longest rows first). */
  reverse?: boolean;
  /**
   * kv kernel: subgroups in pairs, pair p owning 16 keys: the even subgroup forms Sᵀ = K_s·Qᵀ and
   * accumulates dV, the odd one dPᵀ = V_s·dOᵀ and dK, the pair's 64 lanes share the element-wise
   * part between them. Each subgroup holds D/16 accumulators instead of 2·D/16 (register pressure
   * was the suspect for the kv kernel's 18 TFLOP/s against dQ's 44, issue 10). With hoist each keeps
   * only its own left operand (K_s or V_s) in registers. Needs an even subgroup count; one P area
   * per subgroup (the even one's (P∘Z)ᵀ, the odd one's dSᵀ), so singleP does not apply.
   * q kernel: the same split for 16 query rows: the even subgroup holds Q_s and forms S = Q_s·Kᵀ,
   * the odd one holds dO_s and forms dP = dO_s·Vᵀ, the pair's 64 lanes form dS, and each then
   * accumulates half of dQ's column chunks (dS·K) — Dq/16 left and Dq/32 result matrices per
   * subgroup where the plain layout holds (Dq + Dv)/16 and Dq/16 (the kv pairs' 1.8x came from there).
   */
  pairs?: boolean;
  /** A bool keep-mask is bound (mask_at): hidden pairs get P = 0. */
  mask?: boolean;
  /** dtype of the additive bias when there is one (bias_at). */
  bias?: FloatDType;
  /** kv kernel: dBias asked (needs `bias`). */
  biasGrad?: SgBiasGrad;
  /**
   * The call's block structure (a block mask, a dense bool mask's) is bound as a status table in
   * mod_data (block-mask/status.wgsl.ts): tiles every mask hides are skipped, and on tiles no mask
   * hides anything of the score is formed without the masks (final_score_unmasked with mods, no
   * mask_at read without).
   */
  blockTable?: boolean;
  /**
   * Score / mask functions (the backward's: mods/plan.ts backwardModsKernel): P is then formed by
   * the forward's final_score (score.wgsl.ts, every option in its order, in units of score_beta())
   * and dS carries the score function's derivative, as the portable tier's pairGradient.
   */
  mods?: ModsKernelOptions;
}

/**
 * The kv kernel's dBias = dS before the softcap factor (the bias is added after the cap), summed
 * over the bias's broadcast dimensions, deterministically (WebGPU has no float atomics):
 * - each (b, h, key) is one lane's in one workgroup, which adds its pairs in loop order into the
 *   float32 dBias (read-modify-write, the buffer zeroed first);
 * - rowsBroadcast (a bias of one row per (b, h), e.g. [B, 1, 1, Sk] padding): the block's rows of
 *   a key are summed across its lanes by a fixed xor-shuffle tree, then added per head;
 * - foldBatch / foldHeads (a bias shared by the batch / by the KV heads): the grid loses that axis
 *   and each workgroup walks it in order, so one workgroup owns every contribution to an element.
 * A bias broadcast along keys is the portable tier's (its dBias sums across the kv workgroups).
 */
export interface SgBiasGrad {
  rowsBroadcast: boolean;
  foldBatch: boolean;
  foldHeads: boolean;
  /**
   * Each dBias element meets one (b, h, i, j) pair of the call (no broadcast dimension): its lane
   * stores dS instead of adding it, so no read of the element waits in the loop (the H200 timed the
   * add at 6.86 ms for a [1, 16, 2048, 2048] bias against 2.96 without dBias, session 12 call 1).
   */
  once?: boolean;
  /**
   * Partial planes (bias-planes.ts), >= 2: the folded (b, hk) pairs are cut into this many
   * contiguous ranges, one per grid index of the folded axis (z with foldBatch, else y); range g's
   * workgroups add into plane g, at g · params.lse_strides.w floats of the bound dBias buffer.
   */
  planes?: number;
}

const SG = 32;
const PAD = 8;
const pad16 = (n: number) => Math.ceil(n / 16) * 16;

function layout(kind: 'kv' | 'q', o: SgBackwardOptions) {
  const dqp = pad16(o.dimQK);
  const drp = o.dimRope ? pad16(o.dimRope) : 0;
  const dqa = dqp + drp;
  const dvp = pad16(o.dimV);
  const kStride = dqa + PAD;
  const vStride = dvp + PAD;
  // keys (kv) or rows (q) of the workgroup; pairs: 16 keys (rows) per pair of subgroups
  const owners = 16 * (o.pairs ? o.subgroups / 2 : o.subgroups);
  const cols = o.block; // the other side of each subgroup's 16 × cols block
  const sStride = Math.max(cols, 16) + 4;
  const pStride = cols + PAD;
  // kv: K, V tiles (owners keys) + Q, dO tiles (cols rows); q: one area for Q/dO staging, then K/V tiles
  // kv hoist: K then V staged once through the block area, so it only needs the larger of the three
  // q pairs: Q then dO staged once through the block area (each held by one role), then K/V blocks
  const tileHalves = kind === 'kv'
    ? (o.hoist ? Math.max(owners * kStride, owners * vStride, cols * (kStride + vStride)) : owners * (kStride + vStride) + cols * (kStride + vStride))
    : o.pairs ? Math.max(owners * kStride, owners * vStride, cols * (kStride + vStride)) : Math.max(owners, cols) * (kStride + vStride);
  const sFloats = o.subgroups * 16 * sStride;
  // kv: two P buffers per subgroup, except singleP and pairs (whose pair shares its two); q pairs:
  // one dS per pair, read by both of its subgroups
  const pHalves = kind === 'q' && o.pairs ? owners * pStride : o.subgroups * 16 * pStride * (kind === 'kv' && !o.singleP && !o.pairs ? 2 : 1);
  const statBytes = kind === 'kv' ? 8 * cols : 0;
  const bytes = 2 * tileHalves + 4 * sFloats + 2 * pHalves + statBytes + 16;
  return { dqp, drp, dqa, dvp, kStride, vStride, owners, cols, sStride, pStride, tileHalves, sFloats, pHalves, bytes };
}

export function sgBackwardWorkgroupBytes(kind: 'kv' | 'q', o: SgBackwardOptions): number {
  return layout(kind, o).bytes;
}

export function sgBackwardOptionsProblem(kind: 'kv' | 'q', o: SgBackwardOptions): string | undefined {
  if (o.vectorLoads && (o.dimQK % 8 || o.dimRope % 8 || o.dimV % 8)) return 'vectorLoads needs head dims that are multiples of 8';
  if (![1, 2, 4, 8].includes(o.subgroups)) return `subgroups ${o.subgroups} must be 1, 2, 4 or 8`;
  const blocks = kind === 'kv' ? [16, 32] : [16, 32, 64];
  if (!blocks.includes(o.block)) return `block ${o.block} must be one of ${blocks.join(', ')} for the ${kind} kernel`;
  if (kind === 'q' && (o.hoist || o.singleP)) return 'hoist and singleP are kv-kernel options';
  if (kind === 'kv' && o.reverse) return 'reverse is a q-kernel option';
  if (o.pairs && o.subgroups < 2) return 'pairs needs an even number of subgroups (2, 4 or 8)';
  if (o.pairs && o.singleP) return 'pairs already keeps one P buffer per subgroup (singleP does not apply)';
  return undefined;
}

function header(o: SgBackwardOptions): string[] {
  const B = BACKWARD_BINDINGS;
  const sfx = o.vectorLoads ? 'v' : 'h';
  const elem = o.vectorLoads ? 'vec4<u32>' : 'f16';
  const lines = [
    'enable f16;',
    'enable subgroups;',
    'enable chromium_experimental_subgroup_matrix;',
    'diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);',
    '',
    BACKWARD_PARAMS.wgsl(),
    ...(o.mods ? [] : [SCORE_PARAMS.wgsl()]),
    `@group(0) @binding(${B.params}) var<uniform> params: BackwardParams;`,
    ...(o.mods ? [] : [`@group(0) @binding(${B.scoreParams}) var<uniform> sp: ScoreParams;`]),
    '// per sequence: starts q | starts k | lengths q | lengths k | ALiBi slopes (f32 bits)',
    `@group(0) @binding(${B.meta}) var<storage, read> seq_meta: array<u32>;`,
    `@group(0) @binding(${B.q}) var<storage, read> q_${sfx}: array<${elem}>;`,
    `@group(0) @binding(${B.k}) var<storage, read> k_${sfx}: array<${elem}>;`,
    `@group(0) @binding(${B.v}) var<storage, read> v_${sfx}: array<${elem}>;`,
    `@group(0) @binding(${B.dOut}) var<storage, read> do_${sfx}: array<${elem}>;`,
    `@group(0) @binding(${B.rowstats}) var<storage, read> rowstats: array<vec2<f32>>;`,
  ];
  if (o.dimRope) {
    lines.push(`@group(0) @binding(${B.qRope}) var<storage, read> qr_${sfx}: array<${elem}>;`, `@group(0) @binding(${B.kRope}) var<storage, read> kr_${sfx}: array<${elem}>;`);
  }
  if (o.dropout) lines.push(dropoutDeclarations(0, B.dropout));
  // the mask / bias bindings and loaders (the struct and sp are declared above)
  if (o.mods) {
    // the forward's score function with its struct, uniforms, mask / bias / mods data bindings
    lines.push(buildScoreFunction({ mask: !!o.mask, bias: o.bias ?? 'none', alibi: o.alibi, softcap: o.softcap, windowed: o.causalOrWindow, mods: o.mods, blockTable: o.blockTable },
      { group: 0, params: B.scoreParams, mask: B.mask, bias: B.bias, modData: B.modData }));
  } else if (o.mask || o.bias) lines.push(...scoreInputDeclarations({ mask: !!o.mask, bias: o.bias ?? 'none' }, { group: 0, params: B.scoreParams, mask: B.mask, bias: B.bias }).slice(2));
  if (o.blockTable) {
    // the status table in mod_data (declared by the score function when there are mods)
    if (!o.mods) lines.push(buildModsWgsl(undefined, { group: 0, binding: B.modData }, true));
    lines.push(BLOCK_STATUS_WGSL);
  }
  if (o.biasGrad) lines.push(`@group(0) @binding(${B.dBias}) var<storage, read_write> grad_bias: array<f32>;`);
  return lines;
}

function constants(kind: 'kv' | 'q', o: SgBackwardOptions): string[] {
  const L = layout(kind, o);
  return [
    `const NT = ${SG * o.subgroups}u;`,
    `const OWNERS = ${L.owners}u;     // ${kind === 'kv' ? 'keys' : 'query rows'} per workgroup (16 per subgroup)`,
    `const BLOCK = ${L.cols}u;       // ${kind === 'kv' ? 'query rows' : 'keys'} per block`,
    `const DQ = ${o.dimQK}u; const DQP = ${L.dqp}u; const DR = ${o.dimRope}u; const DQA = ${L.dqa}u;`,
    `const DV = ${o.dimV}u; const DVP = ${L.dvp}u;`,
    `const K_STRIDE = ${L.kStride}u; const V_STRIDE = ${L.vStride}u;   // tile rows, in halves`,
    `const S_STRIDE = ${L.sStride}u; const P_STRIDE = ${L.pStride}u;`,
    'const LSE_MASKED: f32 = 3.0e38;',
  ];
}

/** One input in a staging loop: its buffer name (q, k, v, do, qr, kr), uniform fields and head/row. */
interface Part {
  buf: string;
  strides: string;
  off: string;
  head: string;
  row: string;
}

const part = (buf: string, strides: string, off: string, head: string, row: string): Part => ({ buf, strides, off, head, row });

const elementIndex = (p: Part, col: string) =>
  `params.${p.off} + b * params.${p.strides}.x + ${p.head} * params.${p.strides}.y + (${p.row}) * params.${p.strides}.z + ${col}`;

/**
 * Copies `count` rows of width `width` (halves) into the f16 tile T at `base`, `stride` halves
 * apart: the NoPE part of `main` (padded to `mainPadded`) then the RoPE part, zeros past the data.
 * With vector loads, 8 halves per global load.
 */
function stage(o: SgBackwardOptions, base: string, stride: string, count: string, width: string, valid: string, main: Part, rope: Part | undefined, mainDim: string, mainPadded: string): string {
  if (!o.vectorLoads) {
    const load = (p: Part, col: string) => `${p.buf}_h[${elementIndex(p, col)}]`;
    return `for (var n = li; n < ${count} * ${width}; n += NT) {
      let rr = n / ${width};
      let c = n % ${width};
      var x = f16(0.0);
      if (${valid}) {
        ${rope ? `if (c < ${mainPadded}) { if (c < ${mainDim}) { x = ${load(main, 'c')}; } } else { let cr = c - ${mainPadded}; if (cr < DR) { x = ${load(rope, 'cr')}; } }`
    : `if (c < ${mainDim}) { x = ${load(main, 'c')}; }`}
      }
      T[${base} + rr * ${stride} + c] = x;
    }`;
  }
  const load = (p: Part, col: string) => `${p.buf}_v[(${elementIndex(p, col)}) / 8u]`;
  return `for (var n = li; n < ${count} * (${width} / 8u); n += NT) {
      let rr = n / (${width} / 8u);
      let c = (n % (${width} / 8u)) * 8u;
      var w = vec4<u32>();
      if (${valid}) {
        ${rope ? `if (c < ${mainPadded}) { if (c < ${mainDim}) { w = ${load(main, 'c')}; } } else { let cr = c - ${mainPadded}; if (cr < DR) { w = ${load(rope, 'cr')}; } }`
    : `if (c < ${mainDim}) { w = ${load(main, 'c')}; }`}
      }
      let at = ${base} + rr * ${stride} + c;
      let w0 = bitcast<vec2<f16>>(w.x); let w1 = bitcast<vec2<f16>>(w.y); let w2 = bitcast<vec2<f16>>(w.z); let w3 = bitcast<vec2<f16>>(w.w);
      T[at] = w0.x; T[at + 1u] = w0.y; T[at + 2u] = w1.x; T[at + 3u] = w1.y;
      T[at + 4u] = w2.x; T[at + 5u] = w2.y; T[at + 6u] = w3.x; T[at + 7u] = w3.y;
    }`;
}

/** The visible-and-scored P of one (query i, key j) pair from qk = q·k; sets p (and th with softcap). */
function probability(o: SgBackwardOptions): string[] {
  const lines = ['var x = qk * sp.scale;'];
  // softcap() run as the option: a -inf scaled score hides the pair, as the function's rule has it
  const capHidden = o.softcapFunction ? 'capKeep' : undefined;
  if (capHidden) lines.push('let capKeep = bitcast<u32>(x) != 0xff800000u;   // before the cap');
  if (o.softcap) lines.push('th = tanh(clamp(x / sp.softcap, -15.0, 15.0));', 'x = sp.softcap * th;');
  if (o.mods) {
    // the forward's score (units of score_beta(); a NaN / +inf score poisons the pair), and the
    // score function's slope ms at it for the chain rule (modSlope)
    if (o.mods?.scoreGrad) lines.push('var ms = 1.0;');
    lines.push(`if (i < lenQ && j < lenK${capHidden ? ` && ${capHidden}` : ''}) {`,
      ...(o.blockTable
        ? ['  var s = 0.0;', '  if (full) { s = final_score_unmasked(qk, b, h, i, j, lenQ, lenK, slope); } else { s = final_score(qk, b, h, i, j, lenQ, lenK, slope); }']
        : ['  let s = final_score(qk, b, h, i, j, lenQ, lenK, slope);']),
      '  if (s > NO_SCORE) {',
      '    p = select(exp(score_beta() * s - st.x), nan_f32(), s >= POISON_SCORE);',
      ...(o.mods?.scoreGrad ? ['    ms = score_mod_slope(qk, b, h, i, j, lenQ, lenK, slope);'] : []),
      '  }', '}', '_ = x;');
    return lines;
  }
  const alibi = 'x = x - slope * abs(f32(i32(i) + i32(lenK) - i32(lenQ) - i32(j)));';
  // ALiBi after the bias, as the forward's score function orders them
  if (o.alibi && !o.bias) lines.push(alibi);
  const visible = ['i < lenQ', 'j < lenK'];
  if (o.causalOrWindow) visible.push('i32(j) - i32(i) - diag >= -sp.win_left', 'i32(j) - i32(i) - diag <= sp.win_right');
  if (capHidden) visible.push(capHidden);
  if (!o.mask && !o.bias) {
    lines.push(`if (${visible.join(' && ')}) { p = exp(x - st.x); }`);
    return lines;
  }
  // mask and bias are read for pairs in range only; a -inf bias hides the pair (P = 0; a NaN or
  // +inf one poisoned the row's LSE in the forward, so the row's other pairs give NaN)
  const inner: string[] = [];
  if (o.bias) {
    inner.push('let bs = sp.bias_strides;', 'x = x + bias_at(sp.bias_off + b * bs.x + h * bs.y + i * bs.z + j * bs.w);');
    if (o.alibi) inner.push(alibi);
    inner.push('if (x > -3.0e38) { p = exp(x - st.x); }');
  }
  else inner.push('p = exp(x - st.x);');
  const body = o.mask
    ? ['let ms = sp.mask_strides;', `if (${o.blockTable ? 'full || ' : ''}mask_at(sp.mask_off + b * ms.x + h * ms.y + i * ms.z + j * ms.w) != 0u) {`, ...inner.map((l) => `  ${l}`), '}']
    : inner;
  lines.push(`if (${visible.join(' && ')}) {`, ...body.map((l) => `  ${l}`), '}');
  return lines;
}

/** Writes a 16×16 f32 chunk staged at Sx[sBase..] (row r = lane / 2, 8 columns per lane) to a gradient. */
function writeChunk(target: 'k' | 'q', n: number, o: SgBackwardOptions, L: ReturnType<typeof layout>, kind: 'dk' | 'dv' | 'dq'): string {
  const scale = kind === 'dv' ? '' : ' * sp.scale';
  const head = target === 'k' ? 'hk' : 'h';
  const rowVar = target === 'k' ? '(startK + kv0 + ko + r)' : '(startQ + q0 + ko + r)';
  const live = target === 'k' ? 'kv0 + ko + r < lenK' : 'q0 + ko + r < lenQ';
  const main = kind === 'dv' ? ['grad_v', 'v_strides', 'DV'] : kind === 'dk' ? ['grad_k', 'k_strides', 'DQ'] : ['grad_q', 'q_strides', 'DQ'];
  const rope = kind === 'dk' ? ['grad_rope', 'kr_strides'] : ['grad_rope', 'qr_strides'];
  const idx = (buf: string, strides: string, col: string) => `${buf}[b * params.${strides}.x + ${head} * params.${strides}.y + ${rowVar} * params.${strides}.z + ${col}]`;
  const body = kind !== 'dv' && o.dimRope
    ? `if (c < DQP) { if (c < DQ) { ${idx(main[0], main[1], 'c')} = val; } } else if (c - DQP < DR) { ${idx(rope[0], rope[1], 'c - DQP')} = val; }`
    : `if (c < ${main[2]}) { ${idx(main[0], main[1], 'c')} = val; }`;
  void L;
  return `  {
    let c0 = ${n * 16}u + side * 8u;
    for (var e = 0u; e < 8u; e++) {
      let c = c0 + e;
      let val = Sx[sBase + r * S_STRIDE + side * 8u + e]${scale};
      if (${live}) { ${body} }
    }
  }`;
}

/** blockTable: the tile of rows from `i0`, keys from `j0` skipped when every mask hides it; `full` when none hides anything of it. */
function tileStatusLines(o: SgBackwardOptions, i0: string, j0: string, indent: string): string {
  if (!o.blockTable) return '';
  return `\n${indent}let status = block_status(b, h, ${i0}, ${j0});   // uniform: the workgroup's tile
${indent}if (status == 0u) { continue; }
${indent}let full = status == 2u;`;
}

/** The score function's chain rule on dS (`ds`) with its slope `ms` (skipped where dS is 0: an infinite slope never makes a NaN). */
function modSlopeLines(o: SgBackwardOptions, ds: string, ms: string): string[] {
  return o.mods?.scoreGrad ? [`if (${ds} != 0.0) { ${ds} = ${ds} * ${ms}; }`] : [];
}

/**
 * dBias lines of the kv kernels' element loop, after dS (`ds`, before the softcap factor) of row
 * i, key `j` (relative to the sequence): added to the element, or (rowsBroadcast) summed over the
 * block's rows by an xor tree across the BLOCK lanes that share the key, into db_rows[e].
 */
function biasGradLines(o: SgBackwardOptions, block: number, ds: string, j: string): string[] {
  const g = o.biasGrad;
  if (!g) return [];
  if (!g.rowsBroadcast) {
    return [`if (i < lenQ && ${j} < lenK && ${ds} != 0.0) { let gs = sp.bias_strides; grad_bias[${planeBase(o)}b * gs.x + h * gs.y + i * gs.z + (${j}) * gs.w] ${g.once ? '=' : '+='} ${ds}; }`];
  }
  const steps: string[] = [];
  for (let m = 1; m < block; m *= 2) steps.push(`rs += subgroupShuffleXor(rs, ${m}u);`);
  return [`var rs = ${ds};`, ...steps, 'db_rows[e] += rs;'];
}

/** The dBias index's plane offset (SgBiasGrad.planes), '' without planes. */
function planeBase(o: Pick<SgBackwardOptions, 'biasGrad'>): string {
  return (o.biasGrad?.planes ?? 1) > 1 ? 'plane_base + ' : '';
}

/** rowsBroadcast: the per-head sums' registers (before the head's query blocks) and their flush (after them). */
function biasRowsDeclare(o: SgBackwardOptions): string {
  return o.biasGrad?.rowsBroadcast ? '    var db_rows = array<f32, KEYS_PER_LANE>();' : '';
}
function biasRowsFlush(o: SgBackwardOptions): string {
  if (!o.biasGrad?.rowsBroadcast) return '';
  return `    // the head's sums over every query row of keys kr0 .. (one lane per key group adds them)
    if (col == 0u) {
      for (var e = 0u; e < KEYS_PER_LANE; e++) {
        let j = kv0 + ko + kr0 + e;
        if (j < lenK && db_rows[e] != 0.0) { let gs = sp.bias_strides; grad_bias[${planeBase(o)}b * gs.x + h * gs.y + j * gs.w] += db_rows[e]; }
      }
    }`;
}

/**
 * foldBatch / foldHeads: the kv kernel's body as a loop over the folded axes (the grid has 1 there),
 * so one workgroup adds every contribution to a dBias element in order. The body's first lines
 * name b and hk from the grid, and an empty key block returns: rewritten to the loops and continue.
 */
function foldKvAxes(wgsl: string, o: SgBackwardOptions): string {
  const g = o.biasGrad;
  if (!g || (!g.foldBatch && !g.foldHeads)) return wgsl;
  const axes = '  let b = wg.z;\n  let hk = wg.y;\n';
  const skip = 'if (kv0 >= lenK) { return; }';
  const end = wgsl.lastIndexOf('\n}\n');
  if (!wgsl.includes(axes) || !wgsl.includes(skip) || end < 0) throw new Error('foldKvAxes: the kv kernel\'s entry lines changed');
  const planes = g.planes ?? 1;
  if (planes > 1) {
    // range `plane` of the folded pairs fold_i = fb · FH + fh, in order, into plane `plane` of dBias
    const heads = g.foldHeads ? 'params.heads_kv' : '1u';
    const ranged = `  let fold_n = ${g.foldBatch ? 'sp.batch' : '1u'} * ${heads};
  let fold_per = (fold_n + ${planes - 1}u) / ${planes}u;
  let plane = ${g.foldBatch ? 'wg.z' : 'wg.y'};
  let plane_base = plane * params.lse_strides.w;
  for (var fold_i = plane * fold_per; fold_i < min(fold_n, (plane + 1u) * fold_per); fold_i++) {
  workgroupBarrier();   // the previous (b, hk)'s tiles, Sx and seqW are fully read
  let b = ${g.foldBatch ? `fold_i / ${heads}` : 'wg.z'};
  let hk = ${g.foldHeads ? `fold_i % ${heads}` : 'wg.y'};
`;
    return wgsl.slice(0, end).replace(axes, ranged).replace(skip, 'if (kv0 >= lenK) { continue; }') + '\n  }\n}\n';
  }
  const loops = `  for (var fb = ${g.foldBatch ? '0u' : 'wg.z'}; fb < ${g.foldBatch ? 'sp.batch' : 'wg.z + 1u'}; fb++) {
  for (var fh = ${g.foldHeads ? '0u' : 'wg.y'}; fh < ${g.foldHeads ? 'params.heads_kv' : 'wg.y + 1u'}; fh++) {
  workgroupBarrier();   // the previous (b, hk)'s tiles, Sx and seqW are fully read
  let b = fb;
  let hk = fh;
`;
  return wgsl.slice(0, end).replace(axes, loops).replace(skip, 'if (kv0 >= lenK) { continue; }') + '\n  }\n  }\n}\n';
}

/** kv: dK, dV (and dkRope) of 16·NS keys per workgroup. */
export function buildSgBackwardKv(o: SgBackwardOptions): string {
  const problem = sgBackwardOptionsProblem('kv', o);
  if (problem) throw new Error(`buildSgBackwardKv: ${problem}`);
  if (o.biasGrad && !o.bias) throw new Error('buildSgBackwardKv: biasGrad needs bias');
  return foldKvAxes(o.pairs ? buildSgBackwardKvPairs(o) : buildSgBackwardKvPlain(o), o);
}

function buildSgBackwardKvPlain(o: SgBackwardOptions): string {
  const L = layout('kv', o);
  const B = BACKWARD_BINDINGS;
  const chunksQ = L.dqa / 16;
  const chunksV = L.dvp / 16;
  const chunksB = L.cols / 16;
  const lanesPerCol = SG / L.cols; // 2 (BR 16) or 1 (BR 32)
  const keysPerLane = 16 / lanesPerCol;
  const lines = header(o);
  lines.push(`@group(0) @binding(${B.grad}) var<storage, read_write> grad_k: array<f32>;`);
  lines.push(`@group(0) @binding(${B.gradV}) var<storage, read_write> grad_v: array<f32>;`);
  if (o.dimRope) lines.push(`@group(0) @binding(${B.gradRope}) var<storage, read_write> grad_rope: array<f32>;`);
  lines.push('', ...constants('kv', o));
  lines.push(`const KEYS_PER_LANE = ${keysPerLane}u;`);
  if (o.hoist) lines.push(`const Q_BASE = 0u; const DO_BASE = ${L.cols * L.kStride}u;   // K, V staged once at 0 before the loop`);
  else lines.push(`const K_BASE = 0u; const V_BASE = ${L.owners * L.kStride}u; const Q_BASE = ${L.owners * (L.kStride + L.vStride)}u; const DO_BASE = ${L.owners * (L.kStride + L.vStride) + L.cols * L.kStride}u;`);
  lines.push(`var<workgroup> T: array<f16, ${L.tileHalves}>;      // K tile | V tile | Q block | dO block`);
  lines.push(`var<workgroup> Sx: array<f32, ${L.sFloats}>;     // per subgroup: Sᵀ, then dPᵀ, then output chunks`);
  lines.push(`var<workgroup> Pt: array<f16, ${L.pHalves}>;     // per subgroup: (P∘Z)ᵀ | dSᵀ`);
  lines.push(`var<workgroup> stats: array<vec2<f32>, ${L.cols}>;   // (lse, D) of the block's rows`);
  lines.push('var<workgroup> seqW: vec4<u32>;');
  lines.push('');
  lines.push(`@compute @workgroup_size(${SG * o.subgroups})`);
  lines.push('fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32,');
  lines.push('        @builtin(subgroup_id) subgroupId: u32, @builtin(subgroup_invocation_id) lane: u32) {');
  lines.push(`  let b = wg.z;
  let hk = wg.y;
  let nb = sp.batch;
  if (li == 0u) { seqW = vec4<u32>(seq_meta[b], seq_meta[nb + b], seq_meta[2u * nb + b], seq_meta[3u * nb + b]); }
  let seq = workgroupUniformLoad(&seqW);
  let startQ = seq.x; let startK = seq.y; let lenQ = seq.z; let lenK = seq.w;
  let kv0 = wg.x * OWNERS;
  if (kv0 >= lenK) { return; }
  let sg = subgroupId;   // matrix offsets come from the subgroup id (uniformity)
  let ko = sg * 16u;     // this subgroup's keys: kv0 + ko .. + 15
  let sBase = sg * 16u * S_STRIDE;
  let pBase = sg * 16u * P_STRIDE * ${o.singleP ? 1 : 2}u;   // singleP: one P buffer per subgroup
  let dsBase = pBase${o.singleP ? '' : ' + 16u * P_STRIDE'};
  ${stage(o, o.hoist ? '0u' : 'K_BASE', 'K_STRIDE', 'OWNERS', 'DQA', 'kv0 + rr < lenK', part('k', 'k_strides', 'k_off', 'hk', 'startK + kv0 + rr'), o.dimRope ? part('kr', 'kr_strides', 'kr_off', 'hk', 'startK + kv0 + rr') : undefined, 'DQ', 'DQP')}`);
  if (o.hoist) {
    // K_s then V_s into left matrices kept for the whole loop, both staged through the same area
    lines.push('  workgroupBarrier();');
    for (let c = 0; c < chunksQ; c++) lines.push(`  let km${c} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&T, ko * K_STRIDE + ${c * 16}u, K_STRIDE);`);
    lines.push('  workgroupBarrier();');
  }
  lines.push(`  ${stage(o, o.hoist ? '0u' : 'V_BASE', 'V_STRIDE', 'OWNERS', 'DVP', 'kv0 + rr < lenK', part('v', 'v_strides', 'v_off', 'hk', 'startK + kv0 + rr'), undefined, 'DV', 'DVP')}`);
  if (o.hoist) {
    lines.push('  workgroupBarrier();');
    for (let c = 0; c < chunksV; c++) lines.push(`  let vm${c} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&T, ko * V_STRIDE + ${c * 16}u, V_STRIDE);`);
    // the loop's first barrier orders these loads before the Q/dO staging overwrites the area
  }
  const kLeft = (c: number) => (o.hoist ? `km${c}` : `subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&T, K_BASE + ko * K_STRIDE + ${c * 16}u, K_STRIDE)`);
  const vLeft = (c: number) => (o.hoist ? `vm${c}` : `subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&T, V_BASE + ko * V_STRIDE + ${c * 16}u, V_STRIDE)`);
  for (let n = 0; n < chunksQ; n++) lines.push(`  var dk${n} = subgroup_matrix_result<f32, 16, 16>();`);
  for (let n = 0; n < chunksV; n++) lines.push(`  var dv${n} = subgroup_matrix_result<f32, 16, 16>();`);
  lines.push(`  // the queries that can see keys kv0 .. kLast, in blocks aligned to BLOCK
  let diag = select(0, i32(lenK) - i32(lenQ), sp.bottom_right != 0u);
  let kLast = min(kv0 + OWNERS, lenK) - 1u;
  let iLo = max(0, i32(kv0) - diag - sp.win_right);
  let iHi = min(i32(lenQ) - 1, i32(kLast) - diag + sp.win_left);
  var tFirst = 0u;
  var tEnd = 0u;
  if (iHi >= iLo) {
    tFirst = u32(iLo) / BLOCK;
    tEnd = u32(iHi) / BLOCK + 1u;
  }
  // element-wise lane mapping: query column col of the block, keys kr0 .. kr0 + KEYS_PER_LANE - 1
  let col = lane % BLOCK;
  let kr0 = (lane / BLOCK) * KEYS_PER_LANE;
  for (var h = hk * params.group; h < (hk + 1u) * params.group; h++) {
    let slope = ${o.alibi ? 'bitcast<f32>(seq_meta[4u * nb + b * sp.alibi_stride_b + h])' : '0.0'};${biasRowsDeclare(o) ? `\n${biasRowsDeclare(o)}` : ''}
    for (var t = tFirst; t < tEnd; t++) {
      let i0 = t * BLOCK;${tileStatusLines(o, 'i0', 'kv0', '      ')}
      workgroupBarrier();   // the previous block's tiles are fully read
      ${stage(o, 'Q_BASE', 'K_STRIDE', 'BLOCK', 'DQA', 'i0 + rr < lenQ', part('q', 'q_strides', 'q_off', 'h', 'startQ + i0 + rr'), o.dimRope ? part('qr', 'qr_strides', 'qr_off', 'h', 'startQ + i0 + rr') : undefined, 'DQ', 'DQP')}
      ${stage(o, 'DO_BASE', 'V_STRIDE', 'BLOCK', 'DVP', 'i0 + rr < lenQ', part('do', 'o_strides', 'do_off', 'h', 'startQ + i0 + rr'), undefined, 'DV', 'DVP')}
      for (var r = li; r < BLOCK; r += NT) {
        let ri = b * params.lse_strides.x + h * params.lse_strides.y + (startQ + i0 + r) * params.lse_strides.z;
        stats[r] = select(vec2<f32>(LSE_MASKED, 0.0), rowstats[ri], i0 + r < lenQ);
      }
      workgroupBarrier();`);
  // Sᵀ = K_s·Qᵀ
  for (let n = 0; n < chunksB; n++) {
    lines.push('      {', '        var s = subgroup_matrix_result<f32, 16, 16>();');
    for (let c = 0; c < chunksQ; c++) {
      lines.push(`        s = subgroupMatrixMultiplyAccumulate(${kLeft(c)}, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&T, Q_BASE + ${n * 16}u * K_STRIDE + ${c * 16}u, K_STRIDE), s);`);
    }
    lines.push(`        subgroupMatrixStore<row_major>(&Sx, sBase + ${n * 16}u, s, S_STRIDE);`, '      }');
  }
  lines.push(`      workgroupBarrier();
      let i = i0 + col;
      let st = stats[col];
      var pv = array<f32, ${keysPerLane}>();
      var zv = array<f32, ${keysPerLane}>();${o.mods?.scoreGrad ? `\n      var mv = array<f32, ${keysPerLane}>();` : ''}
      ${o.softcap ? `var tv = array<f32, ${keysPerLane}>();` : ''}
      ${o.dropout ? `var words = array<vec4<u32>, ${keysPerLane / 8}>();
      for (var w = 0u; w < ${keysPerLane / 8}u; w++) { words[w] = dropout_words(dp.seed, dp.offset, b * dp.heads + h, i, ((kv0 + ko + kr0) >> 3u) + w); }` : ''}
      for (var e = 0u; e < KEYS_PER_LANE; e++) {
        let kr = kr0 + e;
        let j = kv0 + ko + kr;
        let qk = Sx[sBase + kr * S_STRIDE + col];
        var p = 0.0;
        var th = 0.0;
        ${probability(o).join('\n        ')}
        let z = ${o.dropout ? 'dropout_factor(words[e >> 3u], e & 7u, dp.threshold, dp.scale)' : '1.0'};
        pv[e] = p;${o.mods?.scoreGrad ? '\n        mv[e] = ms;' : ''}
        zv[e] = z;
        ${o.softcap ? 'tv[e] = th;' : '_ = th;'}
        Pt[pBase + kr * P_STRIDE + col] = f16(p * z);
      }
      workgroupBarrier();   // Sᵀ read: dPᵀ may overwrite it${o.singleP ? '; (P∘Z)ᵀ visible to the matrix loads' : ''}`);
  const dvProducts = () => {
    for (let kc = 0; kc < chunksB; kc++) {
      lines.push('      {', `        let pl = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Pt, pBase + ${kc * 16}u, P_STRIDE);`);
      for (let n = 0; n < chunksV; n++) {
        lines.push(`        dv${n} = subgroupMatrixMultiplyAccumulate(pl, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&T, DO_BASE + ${kc * 16}u * V_STRIDE + ${n * 16}u, V_STRIDE), dv${n});`);
      }
      lines.push('      }');
    }
  };
  // singleP: (P∘Z)ᵀ is consumed now, so dSᵀ can take its place after the next barrier
  if (o.singleP) dvProducts();
  for (let n = 0; n < chunksB; n++) {
    lines.push('      {', '        var s = subgroup_matrix_result<f32, 16, 16>();');
    for (let c = 0; c < chunksV; c++) {
      lines.push(`        s = subgroupMatrixMultiplyAccumulate(${vLeft(c)}, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&T, DO_BASE + ${n * 16}u * V_STRIDE + ${c * 16}u, V_STRIDE), s);`);
    }
    lines.push(`        subgroupMatrixStore<row_major>(&Sx, sBase + ${n * 16}u, s, S_STRIDE);`, '      }');
  }
  lines.push(`      workgroupBarrier();
      for (var e = 0u; e < KEYS_PER_LANE; e++) {
        let kr = kr0 + e;
        let dpz = Sx[sBase + kr * S_STRIDE + col] * zv[e];
        var ds = pv[e] * (dpz - st.y);${modSlopeLines(o, 'ds', 'mv[e]').map((l) => `\n        ${l}`).join('')}${biasGradLines(o, L.cols, 'ds', 'kv0 + ko + kr').map((l) => `\n        ${l}`).join('')}
        ${o.softcap ? 'ds = ds * (1.0 - tv[e] * tv[e]);' : ''}
        Pt[dsBase + kr * P_STRIDE + col] = f16(ds);
      }
      workgroupBarrier();   // (P∘Z)ᵀ and dSᵀ visible to the matrix loads`);
  for (let kc = 0; kc < chunksB; kc++) {
    lines.push('      {');
    if (!o.singleP) lines.push(`        let pl = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Pt, pBase + ${kc * 16}u, P_STRIDE);`);
    lines.push(`        let dl = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Pt, dsBase + ${kc * 16}u, P_STRIDE);`);
    for (let n = 0; n < chunksV && !o.singleP; n++) {
      lines.push(`        dv${n} = subgroupMatrixMultiplyAccumulate(pl, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&T, DO_BASE + ${kc * 16}u * V_STRIDE + ${n * 16}u, V_STRIDE), dv${n});`);
    }
    for (let n = 0; n < chunksQ; n++) {
      lines.push(`        dk${n} = subgroupMatrixMultiplyAccumulate(dl, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&T, Q_BASE + ${kc * 16}u * K_STRIDE + ${n * 16}u, K_STRIDE), dk${n});`);
    }
    lines.push('      }');
  }
  lines.push('    }');
  if (o.biasGrad?.rowsBroadcast) lines.push(biasRowsFlush(o));
  lines.push('  }');
  lines.push('  // dK·scale and dV out, one 16-column chunk at a time through this subgroup\'s slice of Sx');
  lines.push('  let r = lane / 2u;', '  let side = lane % 2u;');
  const out = (name: string, n: number, kind: 'dk' | 'dv') => {
    lines.push('  workgroupBarrier();', `  subgroupMatrixStore<row_major>(&Sx, sBase, ${name}${n}, S_STRIDE);`, '  workgroupBarrier();');
    lines.push(writeChunk('k', n, o, L, kind));
  };
  for (let n = 0; n < chunksQ; n++) out('dk', n, 'dk');
  for (let n = 0; n < chunksV; n++) out('dv', n, 'dv');
  lines.push('}');
  return lines.join('\n') + '\n';
}

/**
 * kv, pairs layout: subgroup sg is role sg % 2 of pair sg / 2, the pair owning keys kv0 + 16·pair.
 * Per query block: role 0 Sᵀ = K_s·Qᵀ, role 1 dPᵀ = V_s·dOᵀ (each into its own Sx slice) | barrier |
 * the pair's 64 lanes: P, Z, dS from both slices -> (P∘Z)ᵀ into role 0's Pt slice, dSᵀ into role
 * 1's | barrier | role 0 dV += (P∘Z)ᵀ·dO, role 1 dK += dSᵀ·Q. Every Sx/Pt slice is the subgroup's
 * own (sg·16 rows), so the arrays are sized by subgroups while K/V tiles are sized by pairs.
 */
function buildSgBackwardKvPairs(o: SgBackwardOptions): string {
  const L = layout('kv', o);
  const B = BACKWARD_BINDINGS;
  const chunksQ = L.dqa / 16;
  const chunksV = L.dvp / 16;
  const chunksB = L.cols / 16;
  const chunksMax = Math.max(chunksQ, chunksV);
  // 16 keys × BLOCK queries over 64 lanes: query col = pl % BLOCK, keys kr0 .. kr0 + KPL - 1
  const keysPerLane = (16 * L.cols) / (2 * SG); // 4 (BR 16) or 8 (BR 32)
  const words = Math.max(1, keysPerLane / 8);
  const lines = header(o);
  lines.push(`@group(0) @binding(${B.grad}) var<storage, read_write> grad_k: array<f32>;`);
  lines.push(`@group(0) @binding(${B.gradV}) var<storage, read_write> grad_v: array<f32>;`);
  if (o.dimRope) lines.push(`@group(0) @binding(${B.gradRope}) var<storage, read_write> grad_rope: array<f32>;`);
  lines.push('', ...constants('kv', o));
  lines.push(`const KEYS_PER_LANE = ${keysPerLane}u;   // of the pair's 16 keys, per lane of its 64`);
  if (o.hoist) lines.push(`const Q_BASE = 0u; const DO_BASE = ${L.cols * L.kStride}u;   // K, V staged once at 0 before the loop`);
  else lines.push(`const K_BASE = 0u; const V_BASE = ${L.owners * L.kStride}u; const Q_BASE = ${L.owners * (L.kStride + L.vStride)}u; const DO_BASE = ${L.owners * (L.kStride + L.vStride) + L.cols * L.kStride}u;`);
  lines.push(`var<workgroup> T: array<f16, ${L.tileHalves}>;      // K tile | V tile (OWNERS = 16 per pair) | Q block | dO block`);
  lines.push(`var<workgroup> Sx: array<f32, ${L.sFloats}>;     // per subgroup: Sᵀ (role 0) or dPᵀ (role 1), then output chunks`);
  lines.push(`var<workgroup> Pt: array<f16, ${L.pHalves}>;     // per subgroup: (P∘Z)ᵀ (role 0) or dSᵀ (role 1)`);
  lines.push(`var<workgroup> stats: array<vec2<f32>, ${L.cols}>;   // (lse, D) of the block's rows`);
  lines.push('var<workgroup> seqW: vec4<u32>;');
  lines.push('');
  lines.push(`@compute @workgroup_size(${SG * o.subgroups})`);
  lines.push('fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32,');
  lines.push('        @builtin(subgroup_id) subgroupId: u32, @builtin(subgroup_invocation_id) lane: u32) {');
  lines.push(`  let b = wg.z;
  let hk = wg.y;
  let nb = sp.batch;
  if (li == 0u) { seqW = vec4<u32>(seq_meta[b], seq_meta[nb + b], seq_meta[2u * nb + b], seq_meta[3u * nb + b]); }
  let seq = workgroupUniformLoad(&seqW);
  let startQ = seq.x; let startK = seq.y; let lenQ = seq.z; let lenK = seq.w;
  let kv0 = wg.x * OWNERS;
  if (kv0 >= lenK) { return; }
  let sg = subgroupId;   // matrix offsets come from the subgroup id (uniformity)
  let role = sg % 2u;    // 0: Sᵀ and dV, 1: dPᵀ and dK
  let pair = sg / 2u;
  let ko = pair * 16u;   // the pair's keys: kv0 + ko .. + 15
  let sBase = sg * 16u * S_STRIDE;   // this subgroup's slice (last: (NS-1)·16·S_STRIDE + 16·S_STRIDE = Sx size)
  let pBase = sg * 16u * P_STRIDE;   // likewise for Pt
  let sPair = pair * 32u * S_STRIDE;  // role 0's slice of the pair (Sᵀ); role 1's (dPᵀ) 16 rows on
  let pPair = pair * 32u * P_STRIDE;  // role 0's Pt slice ((P∘Z)ᵀ); role 1's (dSᵀ) 16 rows on
  ${stage(o, o.hoist ? '0u' : 'K_BASE', 'K_STRIDE', 'OWNERS', 'DQA', 'kv0 + rr < lenK', part('k', 'k_strides', 'k_off', 'hk', 'startK + kv0 + rr'), o.dimRope ? part('kr', 'kr_strides', 'kr_off', 'hk', 'startK + kv0 + rr') : undefined, 'DQ', 'DQP')}`);
  const leftOf = (which: 'k' | 'v', c: number, base: string) => which === 'k'
    ? `subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&T, ${base} + ko * K_STRIDE + ${c * 16}u, K_STRIDE)`
    : `subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&T, ${base} + ko * V_STRIDE + ${c * 16}u, V_STRIDE)`;
  if (o.hoist) {
    // each role keeps only its own left operand: K_s (role 0, chunksQ) or V_s (role 1, chunksV),
    // K then V staged through the same area at 0
    for (let c = 0; c < chunksMax; c++) lines.push(`  var am${c} = subgroup_matrix_left<f16, 16, 16>();`);
    lines.push('  workgroupBarrier();');
    lines.push('  if (role == 0u) {');
    for (let c = 0; c < chunksQ; c++) lines.push(`    am${c} = ${leftOf('k', c, '0u')};`);
    lines.push('  }', '  workgroupBarrier();');
  }
  lines.push(`  ${stage(o, o.hoist ? '0u' : 'V_BASE', 'V_STRIDE', 'OWNERS', 'DVP', 'kv0 + rr < lenK', part('v', 'v_strides', 'v_off', 'hk', 'startK + kv0 + rr'), undefined, 'DV', 'DVP')}`);
  if (o.hoist) {
    lines.push('  workgroupBarrier();', '  if (role == 1u) {');
    for (let c = 0; c < chunksV; c++) lines.push(`    am${c} = ${leftOf('v', c, '0u')};`);
    lines.push('  }');
    // the loop's first barrier orders these loads before the Q/dO staging overwrites the area
  }
  const kLeft = (c: number) => (o.hoist ? `am${c}` : leftOf('k', c, 'K_BASE'));
  const vLeft = (c: number) => (o.hoist ? `am${c}` : leftOf('v', c, 'V_BASE'));
  // role 0: dV (chunksV), role 1: dK (chunksQ)
  for (let n = 0; n < chunksMax; n++) lines.push(`  var acc${n} = subgroup_matrix_result<f32, 16, 16>();`);
  lines.push(`  // the queries that can see keys kv0 .. kLast, in blocks aligned to BLOCK
  let diag = select(0, i32(lenK) - i32(lenQ), sp.bottom_right != 0u);
  let kLast = min(kv0 + OWNERS, lenK) - 1u;
  let iLo = max(0, i32(kv0) - diag - sp.win_right);
  let iHi = min(i32(lenQ) - 1, i32(kLast) - diag + sp.win_left);
  var tFirst = 0u;
  var tEnd = 0u;
  if (iHi >= iLo) {
    tFirst = u32(iLo) / BLOCK;
    tEnd = u32(iHi) / BLOCK + 1u;
  }
  // element-wise lane mapping over the pair's 64 lanes
  let pl = role * 32u + lane;
  let col = pl % BLOCK;
  let kr0 = (pl / BLOCK) * KEYS_PER_LANE;
  for (var h = hk * params.group; h < (hk + 1u) * params.group; h++) {
    let slope = ${o.alibi ? 'bitcast<f32>(seq_meta[4u * nb + b * sp.alibi_stride_b + h])' : '0.0'};${biasRowsDeclare(o) ? `\n${biasRowsDeclare(o)}` : ''}
    for (var t = tFirst; t < tEnd; t++) {
      let i0 = t * BLOCK;${tileStatusLines(o, 'i0', 'kv0', '      ')}
      workgroupBarrier();   // the previous block's tiles and P areas are fully read
      ${stage(o, 'Q_BASE', 'K_STRIDE', 'BLOCK', 'DQA', 'i0 + rr < lenQ', part('q', 'q_strides', 'q_off', 'h', 'startQ + i0 + rr'), o.dimRope ? part('qr', 'qr_strides', 'qr_off', 'h', 'startQ + i0 + rr') : undefined, 'DQ', 'DQP')}
      ${stage(o, 'DO_BASE', 'V_STRIDE', 'BLOCK', 'DVP', 'i0 + rr < lenQ', part('do', 'o_strides', 'do_off', 'h', 'startQ + i0 + rr'), undefined, 'DV', 'DVP')}
      for (var r = li; r < BLOCK; r += NT) {
        let ri = b * params.lse_strides.x + h * params.lse_strides.y + (startQ + i0 + r) * params.lse_strides.z;
        stats[r] = select(vec2<f32>(LSE_MASKED, 0.0), rowstats[ri], i0 + r < lenQ);
      }
      workgroupBarrier();
      if (role == 0u) {`);
  // role 0: Sᵀ = K_s·Qᵀ; role 1: dPᵀ = V_s·dOᵀ
  const scores = (chunks: number, left: (c: number) => string, base: string, stride: string) => {
    for (let n = 0; n < chunksB; n++) {
      lines.push('        {', '          var s = subgroup_matrix_result<f32, 16, 16>();');
      for (let c = 0; c < chunks; c++) {
        lines.push(`          s = subgroupMatrixMultiplyAccumulate(${left(c)}, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&T, ${base} + ${n * 16}u * ${stride} + ${c * 16}u, ${stride}), s);`);
      }
      lines.push(`          subgroupMatrixStore<row_major>(&Sx, sBase + ${n * 16}u, s, S_STRIDE);`, '        }');
    }
  };
  scores(chunksQ, kLeft, 'Q_BASE', 'K_STRIDE');
  lines.push('      } else {');
  scores(chunksV, vLeft, 'DO_BASE', 'V_STRIDE');
  lines.push(`      }
      workgroupBarrier();   // Sᵀ and dPᵀ of every pair visible to both of its subgroups
      let i = i0 + col;
      let st = stats[col];
      ${o.dropout ? `var words = array<vec4<u32>, ${words}>();
      for (var w = 0u; w < ${words}u; w++) { words[w] = dropout_words(dp.seed, dp.offset, b * dp.heads + h, i, ((kv0 + ko + kr0) >> 3u) + w); }` : ''}
      for (var e = 0u; e < KEYS_PER_LANE; e++) {
        let kr = kr0 + e;
        let j = kv0 + ko + kr;
        let qk = Sx[sPair + kr * S_STRIDE + col];
        var p = 0.0;
        var th = 0.0;
        ${probability(o).join('\n        ')}
        ${o.dropout ? 'let ez = (kr0 & 7u) + e;   // key kr within the octets of words[]' : ''}
        let z = ${o.dropout ? 'dropout_factor(words[ez >> 3u], ez & 7u, dp.threshold, dp.scale)' : '1.0'};
        var ds = p * (Sx[sPair + 16u * S_STRIDE + kr * S_STRIDE + col] * z - st.y);${modSlopeLines(o, 'ds', 'ms').map((l) => `\n        ${l}`).join('')}${biasGradLines(o, L.cols, 'ds', 'j').map((l) => `\n        ${l}`).join('')}
        ${o.softcap ? 'ds = ds * (1.0 - th * th);' : '_ = th;'}
        Pt[pPair + kr * P_STRIDE + col] = f16(p * z);
        Pt[pPair + 16u * P_STRIDE + kr * P_STRIDE + col] = f16(ds);
      }
      workgroupBarrier();   // (P∘Z)ᵀ and dSᵀ visible to the matrix loads
      if (role == 0u) {`);
  // role 0: dV += (P∘Z)ᵀ·dO; role 1: dK += dSᵀ·Q (left operand: this subgroup's own Pt slice)
  const accumulate = (chunks: number, base: string, stride: string) => {
    for (let kc = 0; kc < chunksB; kc++) {
      lines.push('        {', `          let pm = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Pt, pBase + ${kc * 16}u, P_STRIDE);`);
      for (let n = 0; n < chunks; n++) {
        lines.push(`          acc${n} = subgroupMatrixMultiplyAccumulate(pm, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&T, ${base} + ${kc * 16}u * ${stride} + ${n * 16}u, ${stride}), acc${n});`);
      }
      lines.push('        }');
    }
  };
  accumulate(chunksV, 'DO_BASE', 'V_STRIDE');
  lines.push('      } else {');
  accumulate(chunksQ, 'Q_BASE', 'K_STRIDE');
  lines.push('      }', '    }');
  if (o.biasGrad?.rowsBroadcast) lines.push(biasRowsFlush(o));
  lines.push('  }');
  lines.push('  // role 0: dV out, role 1: dK·scale, one 16-column chunk at a time through the subgroup\'s own Sx slice');
  lines.push('  let r = lane / 2u;', '  let side = lane % 2u;');
  // barriers stay in uniform control flow: the chunk loop runs to the larger count on every subgroup
  for (let n = 0; n < chunksMax; n++) {
    lines.push('  workgroupBarrier();');
    const store = (cond: string) => lines.push(`  if (${cond}) { subgroupMatrixStore<row_major>(&Sx, sBase, acc${n}, S_STRIDE); }`);
    store(n < chunksV && n < chunksQ ? 'true' : n < chunksV ? 'role == 0u' : 'role == 1u');
    lines.push('  workgroupBarrier();');
    if (n < chunksV) lines.push('  if (role == 0u)', writeChunk('k', n, o, L, 'dv'));
    if (n < chunksQ) lines.push('  if (role == 1u)', writeChunk('k', n, o, L, 'dk'));
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

/**
 * q kernels: the entry point's first lines, through the workgroup's first row q0 (an empty tile
 * returns) and the query head's KV head hk.
 */
function qEntryLines(o: SgBackwardOptions): string[] {
  const nwgParam = o.reverse ? ' @builtin(num_workgroups) nwg: vec3<u32>,' : '';
  return [
    `@compute @workgroup_size(${SG * o.subgroups})`,
    `fn main(@builtin(workgroup_id) wg: vec3<u32>,${nwgParam} @builtin(local_invocation_index) li: u32,`,
    '        @builtin(subgroup_id) subgroupId: u32, @builtin(subgroup_invocation_id) lane: u32) {',
    `  let b = wg.z;
  let h = wg.y;
  let nb = sp.batch;
  if (li == 0u) { seqW = vec4<u32>(seq_meta[b], seq_meta[nb + b], seq_meta[2u * nb + b], seq_meta[3u * nb + b]); }
  let seq = workgroupUniformLoad(&seqW);
  let startQ = seq.x; let startK = seq.y; let lenQ = seq.z; let lenK = seq.w;
  let q0 = ${o.reverse ? '(nwg.x - 1u - wg.x)' : 'wg.x'} * OWNERS;   // reverse: causal rows see the most keys last, so they start first
  if (q0 >= lenQ) { return; }
  let hk = h / params.group;`,
  ];
}

/**
 * q kernels (plain and pairs): row i's (LSE, D) into st, and the key blocks [tFirst, tEnd) the
 * workgroup's rows can see (needs i, q0, lenQ, lenK, h, b and startQ declared before).
 */
function qRowStatsAndKeyBlocks(o: SgBackwardOptions): string {
  return `  var st = vec2<f32>(LSE_MASKED, 0.0);
  if (i < lenQ) { st = rowstats[b * params.lse_strides.x + h * params.lse_strides.y + (startQ + i) * params.lse_strides.z]; }
  // key blocks the workgroup's rows can see
  let diag = select(0, i32(lenK) - i32(lenQ), sp.bottom_right != 0u);
  let qLast = min(q0 + OWNERS, lenQ) - 1u;
  var jLo = 0;
  var jHi = i32(lenK) - 1;
  ${o.causalOrWindow ? `jLo = max(jLo, diag + i32(q0) - sp.win_left);
  jHi = min(jHi, diag + i32(qLast) + sp.win_right);` : '_ = qLast;'}
  var tFirst = 0u;
  var tEnd = 0u;
  if (jHi >= jLo) {
    tFirst = u32(jLo) / BLOCK;
    tEnd = u32(jHi) / BLOCK + 1u;
  }`;
}

/** q kernels: the key block j0's K (and K rope) and V rows staged at K_BASE and V_BASE. */
function qKeyBlockStaging(o: SgBackwardOptions): string {
  return `    ${stage(o, 'K_BASE', 'K_STRIDE', 'BLOCK', 'DQA', 'j0 + rr < lenK', part('k', 'k_strides', 'k_off', 'hk', 'startK + j0 + rr'), o.dimRope ? part('kr', 'kr_strides', 'kr_off', 'hk', 'startK + j0 + rr') : undefined, 'DQ', 'DQP').replace(/\brr\b/g, 'kk')}
    ${stage(o, 'V_BASE', 'V_STRIDE', 'BLOCK', 'DVP', 'j0 + rr < lenK', part('v', 'v_strides', 'v_off', 'hk', 'startK + j0 + rr'), undefined, 'DV', 'DVP').replace(/\brr\b/g, 'kk')}`;
}

/** q: dQ (and dqRope) of 16·NS query rows per workgroup. */
export function buildSgBackwardQ(o: SgBackwardOptions): string {
  const problem = sgBackwardOptionsProblem('q', o);
  if (problem) throw new Error(`buildSgBackwardQ: ${problem}`);
  if (o.pairs) return buildSgBackwardQPairs(o);
  const L = layout('q', o);
  const B = BACKWARD_BINDINGS;
  const chunksQ = L.dqa / 16;
  const chunksV = L.dvp / 16;
  const chunksB = L.cols / 16;
  const keysPerLane = L.cols / 2; // lanes 0-15: first half of the block's keys, 16-31 the second
  const lines = header(o);
  lines.push(`@group(0) @binding(${B.grad}) var<storage, read_write> grad_q: array<f32>;`);
  if (o.dimRope) lines.push(`@group(0) @binding(${B.gradRope}) var<storage, read_write> grad_rope: array<f32>;`);
  lines.push('', ...constants('q', o));
  const area = Math.max(L.owners, L.cols);
  lines.push(`const K_BASE = 0u; const V_BASE = ${area * L.kStride}u;   // K/V tiles; Q and dO staged there first`);
  lines.push(`const KEYS_PER_LANE = ${keysPerLane}u;`);
  lines.push(`var<workgroup> T: array<f16, ${L.tileHalves}>;`);
  lines.push(`var<workgroup> Sx: array<f32, ${L.sFloats}>;     // per subgroup: S, then dP, then output chunks`);
  lines.push(`var<workgroup> Pt: array<f16, ${L.pHalves}>;     // per subgroup: dS`);
  lines.push('var<workgroup> seqW: vec4<u32>;');
  lines.push('');
  lines.push(...qEntryLines(o));
  lines.push(`  let sg = subgroupId;
  let ko = sg * 16u;     // this subgroup's rows: q0 + ko .. + 15
  let sBase = sg * 16u * S_STRIDE;
  let pBase = sg * 16u * P_STRIDE;
  let slope = ${o.alibi ? 'bitcast<f32>(seq_meta[4u * nb + b * sp.alibi_stride_b + h])' : '0.0'};
  // Q and dO of the workgroup's rows -> left matrices kept for the whole loop
  ${stage(o, 'K_BASE', 'K_STRIDE', 'OWNERS', 'DQA', 'q0 + rr < lenQ', part('q', 'q_strides', 'q_off', 'h', 'startQ + q0 + rr'), o.dimRope ? part('qr', 'qr_strides', 'qr_off', 'h', 'startQ + q0 + rr') : undefined, 'DQ', 'DQP')}
  ${stage(o, 'V_BASE', 'V_STRIDE', 'OWNERS', 'DVP', 'q0 + rr < lenQ', part('do', 'o_strides', 'do_off', 'h', 'startQ + q0 + rr'), undefined, 'DV', 'DVP')}
  workgroupBarrier();`);
  for (let c = 0; c < chunksQ; c++) lines.push(`  let qm${c} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&T, K_BASE + ko * K_STRIDE + ${c * 16}u, K_STRIDE);`);
  for (let c = 0; c < chunksV; c++) lines.push(`  let om${c} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&T, V_BASE + ko * V_STRIDE + ${c * 16}u, V_STRIDE);`);
  for (let n = 0; n < chunksQ; n++) lines.push(`  var dq${n} = subgroup_matrix_result<f32, 16, 16>();`);
  lines.push(`  // element-wise lane mapping: row rr of the subgroup's 16, keys half * KEYS_PER_LANE .. + KEYS_PER_LANE - 1
  let rr = lane % 16u;
  let half = lane / 16u;
  let i = q0 + ko + rr;
${qRowStatsAndKeyBlocks(o)}
  for (var t = tFirst; t < tEnd; t++) {
    let j0 = t * BLOCK;${tileStatusLines(o, 'q0', 'j0', '    ')}
    workgroupBarrier();   // Q/dO staging (first block) or the previous block's tiles fully read
${qKeyBlockStaging(o)}
    workgroupBarrier();`);
  for (let n = 0; n < chunksB; n++) {
    lines.push('    {', '      var s = subgroup_matrix_result<f32, 16, 16>();');
    for (let c = 0; c < chunksQ; c++) {
      lines.push(`      s = subgroupMatrixMultiplyAccumulate(qm${c}, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&T, K_BASE + ${n * 16}u * K_STRIDE + ${c * 16}u, K_STRIDE), s);`);
    }
    lines.push(`      subgroupMatrixStore<row_major>(&Sx, sBase + ${n * 16}u, s, S_STRIDE);`, '    }');
  }
  lines.push(`    workgroupBarrier();
    var pv = array<f32, ${keysPerLane}>();
    var zv = array<f32, ${keysPerLane}>();${o.mods?.scoreGrad ? `\n    var mv = array<f32, ${keysPerLane}>();` : ''}
    ${o.softcap ? `var tv = array<f32, ${keysPerLane}>();` : ''}
    ${o.dropout ? `var words = array<vec4<u32>, ${Math.max(1, keysPerLane / 8)}>();
    for (var w = 0u; w < ${Math.max(1, keysPerLane / 8)}u; w++) { words[w] = dropout_words(dp.seed, dp.offset, b * dp.heads + h, i, ((j0 + half * KEYS_PER_LANE) >> 3u) + w); }` : ''}
    for (var e = 0u; e < KEYS_PER_LANE; e++) {
      let jj = half * KEYS_PER_LANE + e;
      let j = j0 + jj;
      let qk = Sx[sBase + rr * S_STRIDE + jj];
      var p = 0.0;
      var th = 0.0;
      ${probability(o).join('\n      ')}
      pv[e] = p;${o.mods?.scoreGrad ? '\n      mv[e] = ms;' : ''}
      zv[e] = ${o.dropout ? 'dropout_factor(words[e >> 3u], e & 7u, dp.threshold, dp.scale)' : '1.0'};
      ${o.softcap ? 'tv[e] = th;' : '_ = th;'}
    }
    workgroupBarrier();   // S read: dP may overwrite it`);
  for (let n = 0; n < chunksB; n++) {
    lines.push('    {', '      var s = subgroup_matrix_result<f32, 16, 16>();');
    for (let c = 0; c < chunksV; c++) {
      lines.push(`      s = subgroupMatrixMultiplyAccumulate(om${c}, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&T, V_BASE + ${n * 16}u * V_STRIDE + ${c * 16}u, V_STRIDE), s);`);
    }
    lines.push(`      subgroupMatrixStore<row_major>(&Sx, sBase + ${n * 16}u, s, S_STRIDE);`, '    }');
  }
  lines.push(`    workgroupBarrier();
    for (var e = 0u; e < KEYS_PER_LANE; e++) {
      let jj = half * KEYS_PER_LANE + e;
      var ds = pv[e] * (Sx[sBase + rr * S_STRIDE + jj] * zv[e] - st.y);${modSlopeLines(o, 'ds', 'mv[e]').map((l) => `\n      ${l}`).join('')}
      ${o.softcap ? 'ds = ds * (1.0 - tv[e] * tv[e]);' : ''}
      Pt[pBase + rr * P_STRIDE + jj] = f16(ds);
    }
    workgroupBarrier();   // dS visible to the matrix loads`);
  for (let kc = 0; kc < chunksB; kc++) {
    lines.push('    {', `      let dl = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Pt, pBase + ${kc * 16}u, P_STRIDE);`);
    for (let n = 0; n < chunksQ; n++) {
      lines.push(`      dq${n} = subgroupMatrixMultiplyAccumulate(dl, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&T, K_BASE + ${kc * 16}u * K_STRIDE + ${n * 16}u, K_STRIDE), dq${n});`);
    }
    lines.push('    }');
  }
  lines.push('  }');
  lines.push('  // dQ·scale out, one 16-column chunk at a time');
  lines.push('  let r = lane / 2u;', '  let side = lane % 2u;');
  for (let n = 0; n < chunksQ; n++) {
    lines.push('  workgroupBarrier();', `  subgroupMatrixStore<row_major>(&Sx, sBase, dq${n}, S_STRIDE);`, '  workgroupBarrier();');
    lines.push(writeChunk('q', n, o, L, 'dq'));
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

/**
 * q, pairs layout: subgroup sg is role sg % 2 of pair sg / 2, the pair owning query rows q0 + 16·pair.
 * Role 0 holds Q_s, role 1 dO_s (left matrices for the whole key loop). Per key block: role 0
 * S = Q_s·Kᵀ, role 1 dP = dO_s·Vᵀ (each into its own Sx slice) | barrier | the pair's 64 lanes: P,
 * Z, dS -> the pair's Pt slice | barrier | both: dQ chunks += dS·K, role 0 the first half of the
 * chunks, role 1 the rest.
 */
function buildSgBackwardQPairs(o: SgBackwardOptions): string {
  const L = layout('q', o);
  const B = BACKWARD_BINDINGS;
  const chunksQ = L.dqa / 16;
  const chunksV = L.dvp / 16;
  const chunksB = L.cols / 16;
  const chunksLeft = Math.max(chunksQ, chunksV);
  const dqSplit = Math.ceil(chunksQ / 2); // role 0: dQ chunks [0, dqSplit), role 1: [dqSplit, chunksQ)
  const chunksOf = (role: 0 | 1) => (role === 0 ? dqSplit : chunksQ - dqSplit);
  const firstOf = (role: 0 | 1) => (role === 0 ? 0 : dqSplit);
  // 16 rows × BLOCK keys over the pair's 64 lanes: row pl % 16, keys (pl / 16)·KPL .. + KPL - 1
  const keysPerLane = (16 * L.cols) / (2 * SG); // 4 (block 16), 8 (32), 16 (64)
  const words = Math.max(1, Math.ceil(keysPerLane / 8));
  const lines = header(o);
  lines.push(`@group(0) @binding(${B.grad}) var<storage, read_write> grad_q: array<f32>;`);
  if (o.dimRope) lines.push(`@group(0) @binding(${B.gradRope}) var<storage, read_write> grad_rope: array<f32>;`);
  lines.push('', ...constants('q', o));
  lines.push(`const K_BASE = 0u; const V_BASE = ${L.cols * L.kStride}u;   // K/V block tiles; Q then dO staged once at 0 before the loop`);
  lines.push(`const KEYS_PER_LANE = ${keysPerLane}u;   // of the block's keys, per lane of the pair's 64`);
  lines.push(`var<workgroup> T: array<f16, ${L.tileHalves}>;`);
  lines.push(`var<workgroup> Sx: array<f32, ${L.sFloats}>;     // per subgroup: S (role 0) or dP (role 1), then output chunks`);
  lines.push(`var<workgroup> Pt: array<f16, ${L.pHalves}>;     // per pair: dS`);
  lines.push('var<workgroup> seqW: vec4<u32>;');
  lines.push('');
  lines.push(...qEntryLines(o));
  lines.push(`  let sg = subgroupId;   // matrix offsets come from the subgroup id (uniformity)
  let role = sg % 2u;    // 0: Q_s and S, 1: dO_s and dP
  let pair = sg / 2u;
  let ko = pair * 16u;   // the pair's rows: q0 + ko .. + 15
  let sBase = sg * 16u * S_STRIDE;    // this subgroup's Sx slice
  let sPair = pair * 32u * S_STRIDE;  // role 0's slice of the pair (S); role 1's (dP) 16 rows on
  let pPair = pair * 16u * P_STRIDE;  // the pair's dS
  let slope = ${o.alibi ? 'bitcast<f32>(seq_meta[4u * nb + b * sp.alibi_stride_b + h])' : '0.0'};
  ${stage(o, '0u', 'K_STRIDE', 'OWNERS', 'DQA', 'q0 + rr < lenQ', part('q', 'q_strides', 'q_off', 'h', 'startQ + q0 + rr'), o.dimRope ? part('qr', 'qr_strides', 'qr_off', 'h', 'startQ + q0 + rr') : undefined, 'DQ', 'DQP')}`);
  for (let c = 0; c < chunksLeft; c++) lines.push(`  var am${c} = subgroup_matrix_left<f16, 16, 16>();`);
  lines.push('  workgroupBarrier();', '  if (role == 0u) {');
  for (let c = 0; c < chunksQ; c++) lines.push(`    am${c} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&T, ko * K_STRIDE + ${c * 16}u, K_STRIDE);`);
  lines.push('  }', '  workgroupBarrier();');
  lines.push(`  ${stage(o, '0u', 'V_STRIDE', 'OWNERS', 'DVP', 'q0 + rr < lenQ', part('do', 'o_strides', 'do_off', 'h', 'startQ + q0 + rr'), undefined, 'DV', 'DVP')}`);
  lines.push('  workgroupBarrier();', '  if (role == 1u) {');
  for (let c = 0; c < chunksV; c++) lines.push(`    am${c} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&T, ko * V_STRIDE + ${c * 16}u, V_STRIDE);`);
  lines.push('  }');
  // the loop's first barrier orders these loads before the K/V staging overwrites the area
  for (let n = 0; n < dqSplit; n++) lines.push(`  var dq${n} = subgroup_matrix_result<f32, 16, 16>();`);
  lines.push(`  // element-wise lane mapping over the pair's 64 lanes
  let pl = role * 32u + lane;
  let rr = pl % 16u;
  let ks = (pl / 16u) * KEYS_PER_LANE;   // first of this lane's keys in the block
  let i = q0 + ko + rr;
${qRowStatsAndKeyBlocks(o)}
  for (var t = tFirst; t < tEnd; t++) {
    let j0 = t * BLOCK;${tileStatusLines(o, 'q0', 'j0', '    ')}
    workgroupBarrier();   // the Q/dO loads (first block) or the previous block's tiles and dS fully read
${qKeyBlockStaging(o)}
    workgroupBarrier();
    if (role == 0u) {`);
  // role 0: S = Q_s·Kᵀ; role 1: dP = dO_s·Vᵀ, each into its own slice
  const scores = (chunks: number, base: string, stride: string) => {
    for (let n = 0; n < chunksB; n++) {
      lines.push('      {', '        var s = subgroup_matrix_result<f32, 16, 16>();');
      for (let c = 0; c < chunks; c++) {
        lines.push(`        s = subgroupMatrixMultiplyAccumulate(am${c}, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&T, ${base} + ${n * 16}u * ${stride} + ${c * 16}u, ${stride}), s);`);
      }
      lines.push(`        subgroupMatrixStore<row_major>(&Sx, sBase + ${n * 16}u, s, S_STRIDE);`, '      }');
    }
  };
  scores(chunksQ, 'K_BASE', 'K_STRIDE');
  lines.push('    } else {');
  scores(chunksV, 'V_BASE', 'V_STRIDE');
  lines.push(`    }
    workgroupBarrier();   // S and dP of every pair visible to both of its subgroups
    ${o.dropout ? `var words = array<vec4<u32>, ${words}>();
    for (var w = 0u; w < ${words}u; w++) { words[w] = dropout_words(dp.seed, dp.offset, b * dp.heads + h, i, ((j0 + ks) >> 3u) + w); }` : ''}
    for (var e = 0u; e < KEYS_PER_LANE; e++) {
      let jj = ks + e;
      let j = j0 + jj;
      let qk = Sx[sPair + rr * S_STRIDE + jj];
      var p = 0.0;
      var th = 0.0;
      ${probability(o).join('\n      ')}
      ${o.dropout ? 'let ez = (ks & 7u) + e;   // key jj within the octets of words[]' : ''}
      let z = ${o.dropout ? 'dropout_factor(words[ez >> 3u], ez & 7u, dp.threshold, dp.scale)' : '1.0'};
      var ds = p * (Sx[sPair + 16u * S_STRIDE + rr * S_STRIDE + jj] * z - st.y);${modSlopeLines(o, 'ds', 'ms').map((l) => `\n      ${l}`).join('')}
      ${o.softcap ? 'ds = ds * (1.0 - th * th);' : '_ = th;'}
      Pt[pPair + rr * P_STRIDE + jj] = f16(ds);
    }
    workgroupBarrier();   // dS visible to the matrix loads
    if (role == 0u) {`);
  const accumulate = (role: 0 | 1) => {
    for (let kc = 0; kc < chunksB; kc++) {
      lines.push('      {', `        let dl = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Pt, pPair + ${kc * 16}u, P_STRIDE);`);
      for (let n = 0; n < chunksOf(role); n++) {
        lines.push(`        dq${n} = subgroupMatrixMultiplyAccumulate(dl, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&T, K_BASE + ${kc * 16}u * K_STRIDE + ${(firstOf(role) + n) * 16}u, K_STRIDE), dq${n});`);
      }
      lines.push('      }');
    }
  };
  accumulate(0);
  lines.push('    } else {');
  accumulate(1);
  lines.push('    }', '  }');
  lines.push('  // dQ·scale out, one 16-column chunk at a time: role 0 its first chunks, role 1 the rest, each through its own Sx slice');
  lines.push('  let r = lane / 2u;', '  let side = lane % 2u;');
  // barriers stay in uniform control flow: the loop runs to role 0's (larger or equal) count on both
  for (let n = 0; n < dqSplit; n++) {
    lines.push('  workgroupBarrier();');
    lines.push(`  if (${n < chunksOf(1) ? 'true' : 'role == 0u'}) { subgroupMatrixStore<row_major>(&Sx, sBase, dq${n}, S_STRIDE); }`);
    lines.push('  workgroupBarrier();');
    lines.push('  if (role == 0u)', writeChunk('q', firstOf(0) + n, o, L, 'dq'));
    if (n < chunksOf(1)) lines.push('  if (role == 1u)', writeChunk('q', firstOf(1) + n, o, L, 'dq'));
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}
