// The portable f32 WGSL backward (core WebGPU only: runs on any adapter, Mesa llvmpipe included),
// FlashAttention-2's backward without float atomics, in three kernels:
//   pre   one thread per query row: D = rowsum(dO ∘ O), and the row's LSE (a fully masked row's -inf
//         becomes +3e38, so P = exp(s - lse) = 0 there), packed as rowstats[row] = (lse, D);
//   kv    one workgroup per (key block of KEYS keys, kv head, batch): K and V tiles staged once; for
//         each query head of the group and each block of ROWS queries that can see the keys, Q and
//         dO are staged, every (key, row) pair recomputes P from the LSE, dP = dO·v, dS = P(dP - D),
//         and the key's threads accumulate dV += Pᵀ·dO, dK += dSᵀ·Q in registers; dBias (asked)
//         is added per tile by one owner thread per bias element (workgroups that would share
//         elements are folded into one, which walks them in order);
//   q     one workgroup per (block of ROWS queries, query head, batch): Q and dO staged once, the
//         visible K/V tiles in turn, dQ += dS·K in registers.
// Score / mask functions (ops/attention/mods) run inside final_score as in the forward; a score
// function's derivative (score_mod_slope) scales dS; a block mask's empty tiles are skipped. A
// sink needs nothing: the LSE holds it.
// Shape legend: B batch, Nq/Nkv heads, Sq/Sk lengths (per sequence), Dq (+ Dr) / Dv head dims.
// Tiles are vec4 rows zero-padded to whole vec4s, an odd number of vec4s apart (banks). Every
// output element has one writer: results are bit-identical from run to run.
import { UniformLayout } from '../../../../engines/webgpu/uniforms.js';
import { type FloatDType, arrayElement, loadFloat, loadQuad, quadElement, readBinding } from '../../../../engines/webgpu/wgsl.js';
import { type ScoreOptions, buildScoreFunction } from '../../webgpu/score.wgsl.js';
import { dropoutDeclarations } from '../../dropout/philox.wgsl.js';
import { BLOCK_STATUS_WGSL } from '../../block-mask/status.wgsl.js';
import { visibleKeySteps, visibleQuerySteps } from '../../webgpu/visible-steps.wgsl.js';

export interface BackwardTile {
  threads: number;
  /** Keys per K/V tile. */
  keys: number;
  /** Query rows per Q/dO tile. */
  rows: number;
}

export interface BackwardKernelOptions extends ScoreOptions {
  /** Storage type of q, k, v, the rope parts, out and dO (math is f32; gradients are written f32). */
  dtype: FloatDType;
  dimQK: number;
  dimRope: number;
  dimV: number;
  tile: BackwardTile;
  dropout: boolean;
}

/** What the per-pair helpers shared with the tiled kernels (tiled.wgsl.ts) read: everything but the tile. */
export type PairKernelOptions = Omit<BackwardKernelOptions, 'tile'>;

/** The kv kernel's dBias: which bias dimensions are broadcast (stride 0), and which grid axes are folded. */
export interface BiasGradOptions {
  rowsBroadcast: boolean;
  keysBroadcast: boolean;
  foldBatch: boolean;
  foldHeads: boolean;
  foldKeys: boolean;
}

export interface KvKernelOptions extends BackwardKernelOptions {
  /** Present when dBias is asked. */
  biasGrad?: BiasGradOptions;
}

/** Per-call uniforms of every backward kernel (the score uniforms are SCORE_PARAMS, bound apart). */
export const BACKWARD_PARAMS = new UniformLayout('BackwardParams', {
  q_strides: 'vec4u', // element strides (b, h, s, d); the gradients share their input's
  k_strides: 'vec4u',
  v_strides: 'vec4u',
  qr_strides: 'vec4u',
  kr_strides: 'vec4u',
  o_strides: 'vec4u', // out and dO
  lse_strides: 'vec4u', // (b, h, s, unused)
  q_off: 'u32', // element offsets of (0, 0, 0, 0) in the bound buffers
  k_off: 'u32',
  v_off: 'u32',
  qr_off: 'u32',
  kr_off: 'u32',
  o_off: 'u32',
  do_off: 'u32',
  lse_off: 'u32',
  /** Query heads per key/value head. */
  group: 'u32',
  heads_kv: 'u32',
  /** Key blocks of the longest sequence (the kv kernel's loop when key blocks are folded). */
  key_blocks: 'u32',
  batch: 'u32',
});

export const BACKWARD_BINDINGS = {
  params: 0,
  scoreParams: 1,
  dropout: 2,
  meta: 3,
  q: 4,
  k: 5,
  v: 6,
  qRope: 7,
  kRope: 8,
  out: 9,
  dOut: 10,
  lse: 11,
  rowstats: 12,
  mask: 13,
  bias: 14,
  grad: 15,
  gradV: 16,
  gradRope: 17,
  dBias: 18,
  /** Captured tensors of the score / mask functions (ops/attention/mods/plan.ts). */
  modData: 19,
} as const;

const odd = (n: number) => (n % 2 === 0 ? n + 1 : n);

/** Row strides (vec4s) of the Q/K and V/dO tiles. */
function strides(o: Pick<BackwardKernelOptions, 'dimQK' | 'dimRope' | 'dimV'>): { qk: number; v: number } {
  return { qk: odd(Math.ceil((o.dimQK + o.dimRope) / 4)), v: odd(Math.ceil(o.dimV / 4)) };
}

/** Workgroup bytes of the kv kernel (kind 'kv') or the q kernel (kind 'q'). */
export function backwardWorkgroupBytes(kind: 'kv' | 'q', o: Pick<BackwardKernelOptions, 'dimQK' | 'dimRope' | 'dimV' | 'tile'>, biasGrad = false): number {
  const s = strides(o);
  const { keys, rows } = o.tile;
  const tiles = kind === 'kv' ? 2 + (biasGrad ? 1 : 0) : 1;
  return 16 * (keys + rows) * (s.qk + s.v) + 4 * tiles * keys * rows + 8 * rows;
}

/** Why a tile cannot build a kernel of this kind, or undefined. */
export function checkBackwardTile(kind: 'kv' | 'q', t: BackwardTile): string | undefined {
  const owners = kind === 'kv' ? t.keys : t.rows;
  const shared = kind === 'kv' ? t.rows : t.keys;
  const per = t.threads / owners;
  if (!Number.isInteger(per) || per < 1) return `tile.threads (${t.threads}) must be a multiple of tile.${kind === 'kv' ? 'keys' : 'rows'} (${owners})`;
  if (shared % per !== 0) return `tile.${kind === 'kv' ? 'rows' : 'keys'} (${shared}) must be a multiple of the threads per ${kind === 'kv' ? 'key' : 'row'} (${per})`;
  return undefined;
}

function declarations(o: PairKernelOptions, inputs: Array<[number, string]>, quads = false): string[] {
  // quads: the inputs bound 4 elements per array element, read by NAME_quad (else NAME_at, one element)
  const elem = quads ? quadElement(o.dtype) : arrayElement(o.dtype);
  const B = BACKWARD_BINDINGS;
  const lines = [
    BACKWARD_PARAMS.wgsl(),
    `@group(0) @binding(${B.params}) var<uniform> params: BackwardParams;`,
    '// per sequence: starts q | starts k | lengths q | lengths k | ALiBi slopes (f32 bits)',
    readBinding(B.meta, 'seq_meta', 'u32'),
  ];
  for (const [binding, name] of inputs) lines.push(readBinding(binding, `${name}_buf`, elem), quads ? loadQuad(`${name}_quad`, `${name}_buf`, o.dtype) : loadFloat(`${name}_at`, `${name}_buf`, o.dtype));
  return lines;
}

/**
 * A loop staging `rows` rows of dim `dim` into `tile` (vec4 rows `stride` apart), one element per
 * step, from the parts [buffer, head] (the second part, the RoPE one, holds dims DQ and up).
 * Rows failing `valid` and the padding past `dim` are 0.
 */
function stageLoop(tile: string, stride: string, rows: string, dim: string, valid: string, row: string, parts: Array<[string, string, string]>): string {
  const index = (buf: string, head: string, d: string) =>
    `params.${buf}_off + b * params.${buf}_strides.x + ${head} * params.${buf}_strides.y + (${row}) * params.${buf}_strides.z + ${d} * params.${buf}_strides.w`;
  const pick = parts.length === 1
    ? `x = ${parts[0][2]}_at(${index(parts[0][0], parts[0][1], 'd')});`
    : `if (d < DQ) { x = ${parts[0][2]}_at(${index(parts[0][0], parts[0][1], 'd')}); } else { x = ${parts[1][2]}_at(${index(parts[1][0], parts[1][1], '(d - DQ)')}); }`;
  return `for (var e = lid; e < ${rows} * ${dim}4 * 4u; e += THREADS) {
      let r = e / (${dim}4 * 4u);
      let d = e % (${dim}4 * 4u);
      var x = 0.0;
      if (${valid} && d < ${dim}) { ${pick} }
      ${tile}[r * ${stride} + d / 4u][d % 4u] = x;
    }`;
}

function constants(o: BackwardKernelOptions): string {
  const s = strides(o);
  const dqk = o.dimQK + o.dimRope;
  return `const THREADS: u32 = ${o.tile.threads}u;
const KEYS: u32 = ${o.tile.keys}u;
const ROWS: u32 = ${o.tile.rows}u;
const DQ: u32 = ${o.dimQK}u;     // NoPE part of the query/key head dim
const DQK: u32 = ${dqk}u;    // whole query/key head dim (NoPE + RoPE)
const DV: u32 = ${o.dimV}u;
const DQK4: u32 = ${Math.ceil(dqk / 4)}u;
const DV4: u32 = ${Math.ceil(o.dimV / 4)}u;
const QK_STRIDE: u32 = ${s.qk}u;   // tile row strides, in vec4s
const V_STRIDE: u32 = ${s.v}u;
const LSE_MASKED: f32 = 3.0e38;   // the LSE of a row that sees no key: exp(s - LSE_MASKED) = 0`;
}

/**
 * The per-pair math shared by the kv and q kernels: P (dropped or not), dS = P (dP - D) with the
 * score function's and the softcap's chain rules, from qk = q·k, dpv = dO·v and the row's
 * (lse, D). Sets p, ds, dsr (dS before the softcap factor, for dBias) in the caller's vars.
 */
export function pairGradient(o: PairKernelOptions, words?: string): string {
  // words: the caller's dropout_words of (row i, key octet j >> 3), shared by the pairs of an octet
  const score = o.blockTable
    ? `var s = 0.0;
        // a block no mask hides anything of: no mask read (blockStatusCheck's \`full\`)
        if (full) { s = final_score_unmasked(qk, b, h, i, j, sq, sk, slope); } else { s = final_score(qk, b, h, i, j, sq, sk, slope); }`
    : 'let s = final_score(qk, b, h, i, j, sq, sk, slope);';
  return `if (i < sq && j < sk) {
        // final_score is in the forward's units (score_beta()); a NaN / +inf score poisons the pair
        ${score}
        if (s > NO_SCORE) {
          p = select(exp(score_beta() * s - st.x), nan_f32(), s >= POISON_SCORE);
          var dz = dpv;
${o.dropout ? `          let z = dropout_factor(${words ?? 'dropout_words(dp.seed, dp.offset, b * dp.heads + h, i, j >> 3u)'}, j & 7u, dp.threshold, dp.scale);
          dz = dpv * z;` : ''}
          dsr = p * (dz - st.y);
${o.mods?.scoreGrad ? `          // the score function's chain rule (skipped where dS is 0, so an infinite slope never makes a NaN)
          dsr = select(dsr * score_mod_slope(qk, b, h, i, j, sq, sk, slope), 0.0, dsr == 0.0);` : ''}
          ds = dsr;
${o.softcap ? '          let th = tanh(clamp(qk * sp.scale / sp.softcap, -15.0, 15.0));\n          ds = dsr * (1.0 - th * th);' : ''}
${o.dropout ? '          p = p * z;' : ''}
        }
      }`;
}

/**
 * With a block mask (blockTable): the status of the tile at query row i0, key j0 of (b, h), from
 * the status table in mod_data (block-mask/grid.ts statusTable, at blocks every kv and q tile lies
 * inside); an empty tile is skipped (uniform: the workgroup's b, h, i0, j0), a full one is scored
 * without the masks.
 */
export function blockStatusCheck(o: PairKernelOptions, indent: string): string {
  if (!o.blockTable) return '';
  return `let status = block_status(b, h, i0, j0);
${indent}if (status == 0u) { continue; }   // every pair hidden: P = dS = 0
${indent}let full = status == 2u;`;
}

const kParts: Array<[string, string, string]> = [['k', 'hk', 'k'], ['kr', 'hk', 'kr']];
const qParts: Array<[string, string, string]> = [['q', 'h', 'q'], ['qr', 'h', 'qr']];

export function common(o: PairKernelOptions, quads = false): string[] {
  const B = BACKWARD_BINDINGS;
  const rope = o.dimRope > 0;
  const lines = declarations(o, [[B.q, 'q'], [B.k, 'k'], [B.v, 'v'], ...(rope ? [[B.qRope, 'qr'], [B.kRope, 'kr']] as Array<[number, string]> : []), [B.dOut, 'do']], quads);
  lines.push(`@group(0) @binding(${B.rowstats}) var<storage, read> rowstats: array<vec2<f32>>;`);
  if (o.dropout) lines.push(dropoutDeclarations(0, B.dropout));
  lines.push(buildScoreFunction(o, { group: 0, params: B.scoreParams, mask: B.mask, bias: B.bias, modData: B.modData }));
  if (o.blockTable) lines.push(BLOCK_STATUS_WGSL);
  return lines;
}

/**
 * The start of a kernel with one workgroup per (block of `block` query rows, query head, batch):
 * the block's sequence (seq_meta), its kv head and ALiBi slope; workgroups past the sequence return.
 */
export function queryBlockStart(o: Pick<PairKernelOptions, 'alibi'>, block: string): string {
  return `  let nb = sp.batch;
  let b = wg.z;
  let h = wg.y;
  let i0 = wg.x * ${block};
  let start_q = seq_meta[b];
  let start_k = seq_meta[nb + b];
  let sq = seq_meta[2u * nb + b];
  let sk = seq_meta[3u * nb + b];
  if (i0 >= sq) { return; }   // the grid covers the longest sequence
  let hk = h / params.group;
  let slope = ${o.alibi ? 'bitcast<f32>(seq_meta[4u * nb + b * sp.alibi_stride_b + h])' : '0.0'};`;
}

/** Writes the accumulator quads `acc` (owner `owner`, quads lane + PER * v) of row `row` to grad buffers. */
function writeGrad(acc: string, quads: string, per: string, dimAll: string, split: boolean, buf: string, strides: string, head: string, row: string, scale: string): string {
  const at = (s: string) => `b * params.${s}.x + ${head} * params.${s}.y + (${row}) * params.${s}.z`;
  return `for (var v = 0u; v < ${quads}; v++) {
      let c = lane + ${per} * v;
      let val = ${acc}[v] * ${scale};
      for (var e = 0u; e < 4u; e++) {
        let d = 4u * c + e;
        ${split ? `if (d < DQ) { ${buf}[${at(strides)} + d] = val[e]; } else if (d < DQK) { grad_rope[${at(strides.replace('_strides', 'r_strides'))} + d - DQ] = val[e]; }`
    : `if (d < ${dimAll}) { ${buf}[${at(strides)} + d] = val[e]; }`}
      }
    }`;
}

/** pre: rowstats = (LSE or +3e38 for fully masked rows, D = rowsum(dO ∘ O)). */
/** The pre kernel's threads per query row and rows per workgroup (workgroup of 256). */
export const PRE_THREADS_PER_ROW = 16;
export const PRE_ROWS = 16;

export function buildBackwardPre(o: Pick<BackwardKernelOptions, 'dtype' | 'dimV'>): string {
  const B = BACKWARD_BINDINGS;
  const full = { ...o, dimQK: 0, dimRope: 0, tile: { threads: 64, keys: 1, rows: 64 }, dropout: false, mask: false, bias: 'none', alibi: false, softcap: false, windowed: false } as BackwardKernelOptions;
  const index = (buf: string) => `params.${buf}_off + b * params.o_strides.x + h * params.o_strides.y + (start_q + i) * params.o_strides.z + c * params.o_strides.w`;
  return `// fusedattn portable backward, pre: D = rowsum(dO ∘ O) and the LSE per query row (${o.dtype} storage)
${declarations(full, [[B.out, 'o'], [B.dOut, 'do']]).join('\n')}
@group(0) @binding(${B.lse}) var<storage, read> lse_buf: array<f32>;
@group(0) @binding(${B.rowstats}) var<storage, read_write> rowstats: array<vec2<f32>>;

// PRE_THREADS threads per row, each summing every PRE_THREADS-th column, then the row's partials
// added in a fixed order: consecutive threads read consecutive elements (one thread walking a
// whole row left a warp's loads 32 rows apart: 2.4 ms for B4 H32 S4096 D128 f16 on the H200, a
// 256 MiB read). Workgroups walk the row groups with a stride, so any length fits the grid.
const PRE_THREADS = ${PRE_THREADS_PER_ROW}u;
const PRE_ROWS = ${PRE_ROWS}u;
var<workgroup> partial: array<f32, ${PRE_ROWS * PRE_THREADS_PER_ROW}>;
var<workgroup> seqW: vec2<u32>;

@compute @workgroup_size(${PRE_ROWS * PRE_THREADS_PER_ROW})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wg.z;
  let h = wg.y;
  if (lid == 0u) { seqW = vec2<u32>(seq_meta[b], seq_meta[2u * params.batch + b]); }
  let seq = workgroupUniformLoad(&seqW);
  let start_q = seq.x;
  let sq = seq.y;
  let r = lid / PRE_THREADS;
  let c0 = lid % PRE_THREADS;
  for (var i0 = wg.x * PRE_ROWS; i0 < sq; i0 += nwg.x * PRE_ROWS) {
    let i = i0 + r;
    var d = 0.0;
    if (i < sq) {
      for (var c = c0; c < ${o.dimV}u; c += PRE_THREADS) { d += o_at(${index('o')}) * do_at(${index('do')}); }
    }
    partial[lid] = d;
    workgroupBarrier();
    if (c0 == 0u && i < sq) {
      var sum = 0.0;
      for (var t = 0u; t < PRE_THREADS; t++) { sum += partial[r * PRE_THREADS + t]; }
      let li = b * params.lse_strides.x + h * params.lse_strides.y + (start_q + i) * params.lse_strides.z;
      let l = lse_buf[params.lse_off + li];
      // -inf: the row saw no key (its gradients are 0); as +3e38, exp(s - lse) is 0 without an
      // infinity. A NaN LSE (a poisoned row) stays NaN, and so do the row's gradients.
      rowstats[li] = vec2<f32>(select(l, LSE_MASKED, bitcast<u32>(l) == 0xff800000u), sum);
    }
    workgroupBarrier();
  }
}

const LSE_MASKED: f32 = 3.0e38;
`;
}

/** kv: dK, dV (and dkRope, dBias) per key block. */
export function buildBackwardKv(o: KvKernelOptions): string {
  const bad = checkBackwardTile('kv', o.tile);
  if (bad) throw new Error(`buildBackwardKv: ${bad}`);
  const B = BACKWARD_BINDINGS;
  const rope = o.dimRope > 0;
  const per = o.tile.threads / o.tile.keys;
  const s = strides(o);
  const bg = o.biasGrad;
  const targetRows = bg && !bg.rowsBroadcast ? o.tile.rows : 1;
  const targetKeys = bg && !bg.keysBroadcast ? o.tile.keys : 1;
  const loop = (axis: string, folded: boolean | undefined, wgAxis: string, count: string) =>
    folded ? `for (var ${axis} = 0u; ${axis} < ${count}; ${axis}++)` : `for (var ${axis} = ${wgAxis}; ${axis} < ${wgAxis} + 1u; ${axis}++)`;
  return `// fusedattn portable backward, kv: dK, dV${rope ? ', dkRope' : ''}${bg ? ', dBias' : ''} per key block (${o.dtype} storage, f32 math)
${common(o).join('\n')}
@group(0) @binding(${B.grad}) var<storage, read_write> grad_k: array<f32>;
@group(0) @binding(${B.gradV}) var<storage, read_write> grad_v: array<f32>;
${rope ? `@group(0) @binding(${B.gradRope}) var<storage, read_write> grad_rope: array<f32>;` : ''}
${bg ? `@group(0) @binding(${B.dBias}) var<storage, read_write> grad_bias: array<f32>;` : ''}

${constants(o)}
const PER_KEY: u32 = ${per}u;          // threads sharing one key
const ROWS_PER_THREAD: u32 = ${o.tile.rows / per}u;
const DK_QUADS: u32 = ${Math.ceil(Math.ceil((o.dimQK + o.dimRope) / 4) / per)}u;
const DV_QUADS: u32 = ${Math.ceil(Math.ceil(o.dimV / 4) / per)}u;

var<workgroup> k_tile: array<vec4<f32>, ${o.tile.keys * s.qk}>;
var<workgroup> v_tile: array<vec4<f32>, ${o.tile.keys * s.v}>;
var<workgroup> q_tile: array<vec4<f32>, ${o.tile.rows * s.qk}>;
var<workgroup> do_tile: array<vec4<f32>, ${o.tile.rows * s.v}>;
var<workgroup> p_tile: array<f32, ${o.tile.keys * o.tile.rows}>;    // P∘Z as [key][row]
var<workgroup> ds_tile: array<f32, ${o.tile.keys * o.tile.rows}>;   // dS (softcap factor applied)
${bg ? `var<workgroup> db_tile: array<f32, ${o.tile.keys * o.tile.rows}>;   // dS for dBias` : ''}
var<workgroup> row_stats: array<vec2<f32>, ${o.tile.rows}>;

@compute @workgroup_size(${o.tile.threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let nb = sp.batch;
  let jj = lid / PER_KEY;   // this thread's key in the tile
  let lane = lid % PER_KEY;
  ${loop('b', bg?.foldBatch, 'wg.z', 'nb')} {
  ${loop('hk', bg?.foldHeads, 'wg.y', 'params.heads_kv')} {
  ${loop('kb', bg?.foldKeys, 'wg.x', 'params.key_blocks')} {
    let start_q = seq_meta[b];
    let start_k = seq_meta[nb + b];
    let sq = seq_meta[2u * nb + b];
    let sk = seq_meta[3u * nb + b];
    let j0 = kb * KEYS;
    if (j0 >= sk) { continue; }   // the grid covers the longest sequence
    let j = j0 + jj;
    workgroupBarrier();   // the previous unit's tiles are fully read
    ${stageLoop('k_tile', 'QK_STRIDE', 'KEYS', 'DQK', 'j0 + r < sk', 'start_k + j0 + r', rope ? kParts : [kParts[0]])}
    ${stageLoop('v_tile', 'V_STRIDE', 'KEYS', 'DV', 'j0 + r < sk', 'start_k + j0 + r', [['v', 'hk', 'v']])}
    var dk_acc: array<vec4<f32>, DK_QUADS>;
    var dv_acc: array<vec4<f32>, DV_QUADS>;
    for (var v = 0u; v < DK_QUADS; v++) { dk_acc[v] = vec4<f32>(); }
    for (var v = 0u; v < DV_QUADS; v++) { dv_acc[v] = vec4<f32>(); }
    // the queries that can see keys j0 .. j_last (window), in blocks aligned to ROWS
${visibleQuerySteps('KEYS', 'ROWS', '    ')}
    for (var h = hk * params.group; h < (hk + 1u) * params.group; h++) {
      let slope = ${o.alibi ? 'bitcast<f32>(seq_meta[4u * nb + b * sp.alibi_stride_b + h])' : '0.0'};
      for (var t = t_first; t < t_end; t++) {
        let i0 = t * ROWS;
        ${blockStatusCheck(o, '        ')}
        workgroupBarrier();   // the previous block's Q, dO, P and dS are fully read
        ${stageLoop('q_tile', 'QK_STRIDE', 'ROWS', 'DQK', 'i0 + r < sq', 'start_q + i0 + r', rope ? qParts : [qParts[0]])}
        ${stageLoop('do_tile', 'V_STRIDE', 'ROWS', 'DV', 'i0 + r < sq', 'start_q + i0 + r', [['o', 'h', 'do']]).replace(/params\.o_off/g, 'params.do_off')}
        for (var r = lid; r < ROWS; r += THREADS) {
          let li = b * params.lse_strides.x + h * params.lse_strides.y + (start_q + i0 + r) * params.lse_strides.z;
          row_stats[r] = select(vec2<f32>(LSE_MASKED, 0.0), rowstats[li], i0 + r < sq);
        }
        workgroupBarrier();
        for (var u = 0u; u < ROWS_PER_THREAD; u++) {
          let r = lane + PER_KEY * u;
          let i = i0 + r;
          var qk = 0.0;
          for (var d4 = 0u; d4 < DQK4; d4++) { qk += dot(k_tile[jj * QK_STRIDE + d4], q_tile[r * QK_STRIDE + d4]); }
          var dpv = 0.0;
          for (var d4 = 0u; d4 < DV4; d4++) { dpv += dot(v_tile[jj * V_STRIDE + d4], do_tile[r * V_STRIDE + d4]); }
          let st = row_stats[r];
          var p = 0.0;
          var ds = 0.0;
          var dsr = 0.0;
      ${pairGradient(o)}
          p_tile[jj * ROWS + r] = p;
          ds_tile[jj * ROWS + r] = ds;
          ${bg ? 'db_tile[jj * ROWS + r] = dsr;' : '_ = dsr;'}
        }
        workgroupBarrier();
        // dV += (P∘Z)ᵀ·dO and dK += dSᵀ·Q for this thread's key and quads
        for (var r = 0u; r < ROWS; r++) {
          let pv = p_tile[jj * ROWS + r];
          let dsv = ds_tile[jj * ROWS + r];
          for (var v = 0u; v < DV_QUADS; v++) {
            let c = lane + PER_KEY * v;
            if (c < DV4) { dv_acc[v] += pv * do_tile[r * V_STRIDE + c]; }
          }
          for (var v = 0u; v < DK_QUADS; v++) {
            let c = lane + PER_KEY * v;
            if (c < DQK4) { dk_acc[v] += dsv * q_tile[r * QK_STRIDE + c]; }
          }
        }
${bg ? `        // dBias: each bias element of the tile has one owner thread (the same one in every block and unit)
        for (var e = lid; e < ${targetRows * targetKeys}u; e += THREADS) {
          let tr = e / ${targetKeys}u;
          let tk = e % ${targetKeys}u;
          var sum = 0.0;
          for (var r = ${bg.rowsBroadcast ? '0u' : 'tr'}; r < ${bg.rowsBroadcast ? 'ROWS' : 'tr + 1u'}; r++) {
            for (var kk = ${bg.keysBroadcast ? '0u' : 'tk'}; kk < ${bg.keysBroadcast ? 'KEYS' : 'tk + 1u'}; kk++) { sum += db_tile[kk * ROWS + r]; }
          }
          let bs = sp.bias_strides;
          let bi = i0 + ${bg.rowsBroadcast ? '0u' : 'tr'};
          let bj = j0 + ${bg.keysBroadcast ? '0u' : 'tk'};
          if (bi < sq && bj < sk) { grad_bias[b * bs.x + h * bs.y + bi * bs.z + bj * bs.w] += sum; }
        }` : ''}
      }
    }
    if (j < sk) {
      ${writeGrad('dk_acc', 'DK_QUADS', 'PER_KEY', 'DQK', rope, 'grad_k', 'k_strides', 'hk', 'start_k + j', 'sp.scale')}
      ${writeGrad('dv_acc', 'DV_QUADS', 'PER_KEY', 'DV', false, 'grad_v', 'v_strides', 'hk', 'start_k + j', '1.0')}
    }
  }
  }
  }
}
`;
}

/** q: dQ (and dqRope) per block of query rows. */
export function buildBackwardQ(o: BackwardKernelOptions): string {
  const bad = checkBackwardTile('q', o.tile);
  if (bad) throw new Error(`buildBackwardQ: ${bad}`);
  const B = BACKWARD_BINDINGS;
  const rope = o.dimRope > 0;
  const per = o.tile.threads / o.tile.rows;
  const s = strides(o);
  return `// fusedattn portable backward, q: dQ${rope ? ', dqRope' : ''} per block of query rows (${o.dtype} storage, f32 math)
${common(o).join('\n')}
@group(0) @binding(${B.grad}) var<storage, read_write> grad_q: array<f32>;
${rope ? `@group(0) @binding(${B.gradRope}) var<storage, read_write> grad_rope: array<f32>;` : ''}

${constants(o)}
const PER_ROW: u32 = ${per}u;          // threads sharing one query row
const KEYS_PER_THREAD: u32 = ${o.tile.keys / per}u;
const DQ_QUADS: u32 = ${Math.ceil(Math.ceil((o.dimQK + o.dimRope) / 4) / per)}u;

var<workgroup> q_tile: array<vec4<f32>, ${o.tile.rows * s.qk}>;
var<workgroup> do_tile: array<vec4<f32>, ${o.tile.rows * s.v}>;
var<workgroup> k_tile: array<vec4<f32>, ${o.tile.keys * s.qk}>;
var<workgroup> v_tile: array<vec4<f32>, ${o.tile.keys * s.v}>;
var<workgroup> ds_tile: array<f32, ${o.tile.rows * o.tile.keys}>;   // dS as [row][key]
var<workgroup> row_stats: array<vec2<f32>, ${o.tile.rows}>;

@compute @workgroup_size(${o.tile.threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${queryBlockStart(o, 'ROWS')}
  let row = lid / PER_ROW;
  let lane = lid % PER_ROW;
  let i = i0 + row;
  ${stageLoop('q_tile', 'QK_STRIDE', 'ROWS', 'DQK', 'i0 + r < sq', 'start_q + i0 + r', rope ? qParts : [qParts[0]])}
  ${stageLoop('do_tile', 'V_STRIDE', 'ROWS', 'DV', 'i0 + r < sq', 'start_q + i0 + r', [['o', 'h', 'do']]).replace(/params\.o_off/g, 'params.do_off')}
  for (var r = lid; r < ROWS; r += THREADS) {
    let li = b * params.lse_strides.x + h * params.lse_strides.y + (start_q + i0 + r) * params.lse_strides.z;
    row_stats[r] = select(vec2<f32>(LSE_MASKED, 0.0), rowstats[li], i0 + r < sq);
  }
  var dq_acc: array<vec4<f32>, DQ_QUADS>;
  for (var v = 0u; v < DQ_QUADS; v++) { dq_acc[v] = vec4<f32>(); }
  // key tiles this block can see: the window of its first row to the window of its last
${visibleKeySteps(o.windowed, 'ROWS', 'KEYS')}
  for (var t = t_first; t < t_end; t++) {
    let j0 = t * KEYS;
    ${blockStatusCheck(o, '    ')}
    workgroupBarrier();   // the previous tile's K, V and dS are fully read (and Q, dO staged)
    ${stageLoop('k_tile', 'QK_STRIDE', 'KEYS', 'DQK', 'j0 + r < sk', 'start_k + j0 + r', rope ? kParts : [kParts[0]])}
    ${stageLoop('v_tile', 'V_STRIDE', 'KEYS', 'DV', 'j0 + r < sk', 'start_k + j0 + r', [['v', 'hk', 'v']])}
    workgroupBarrier();
    let st = row_stats[row];
    for (var u = 0u; u < KEYS_PER_THREAD; u++) {
      let jj = lane + PER_ROW * u;
      let j = j0 + jj;
      var qk = 0.0;
      for (var d4 = 0u; d4 < DQK4; d4++) { qk += dot(q_tile[row * QK_STRIDE + d4], k_tile[jj * QK_STRIDE + d4]); }
      var dpv = 0.0;
      for (var d4 = 0u; d4 < DV4; d4++) { dpv += dot(do_tile[row * V_STRIDE + d4], v_tile[jj * V_STRIDE + d4]); }
      var p = 0.0;
      var ds = 0.0;
      var dsr = 0.0;
      ${pairGradient(o)}
      ds_tile[row * KEYS + jj] = ds;
      _ = p;
      _ = dsr;
    }
    workgroupBarrier();
    for (var jj = 0u; jj < KEYS; jj++) {
      let dsv = ds_tile[row * KEYS + jj];
      for (var v = 0u; v < DQ_QUADS; v++) {
        let c = lane + PER_ROW * v;
        if (c < DQK4) { dq_acc[v] += dsv * k_tile[jj * QK_STRIDE + c]; }
      }
    }
  }
  if (i < sq) {
    ${writeGrad('dq_acc', 'DQ_QUADS', 'PER_ROW', 'DQK', rope, 'grad_q', 'q_strides', 'h', 'start_q + i', 'sp.scale')}
  }
}
`;
}

/** f32 -> f16 pairs (gradients of float16 inputs left on the GPU). */
export function buildCastHalf(): string {
  return `// fusedattn: float32 -> float16 bits, two per word (the last word's high half 0 for odd counts)
struct CastParams { count: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<uniform> cp: CastParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let w = gid.x + gid.y * groups.x * 256u;
  if (2u * w >= cp.count) { return; }
  let hi = select(0.0, src[2u * w + 1u], 2u * w + 1u < cp.count);
  dst[w] = pack2x16float(vec2<f32>(src[2u * w], hi));
}
`;
}
