// The portable tier's FlashAttention forward in f32 WGSL: no feature beyond core/compat WebGPU, so
// it runs on any adapter, Mesa llvmpipe included. Shape legend (see attention/options.ts):
//   B batch, Nq/Nkv heads, Sq/Sk lengths (per sequence), Dq (+ Dr RoPE part) / Dv head dims.
//
// One workgroup per (query block of ROWS rows, query head, batch). The query block is staged in
// workgroup memory once; K and V tiles of KEYS keys are staged in turn (K, then V in the same
// region) and each row keeps an online softmax (running max m, sum l, accumulator o): no Sq×Sk
// buffer exists. PER_ROW threads share a row: each scores KEYS/PER_ROW keys of the tile and owns
// quads of output columns (4c .. 4c+3). Tiles live in workgroup memory as vec4 rows (zero-padded
// to a multiple of 4, an odd number of vec4s apart so rows fall on different banks): one 16-byte
// load feeds 4 FMAs. Key tiles outside the window (causal, sliding) are skipped whole.
import { NEG_INF_FN, type FloatDType, arrayElement, loadFloat, loadQuad, quadElement, readBinding } from '../../../../engines/webgpu/wgsl.js';
import { UniformLayout } from '../../../../engines/webgpu/uniforms.js';
import { type ScoreOptions, buildScoreFunction } from '../score.wgsl.js';
import type { FlashBlockSource } from '../tiers/flash-block-source.js';
import { portableBlockParts } from './flash-block.wgsl.js';
import { dropoutDeclarations } from '../../dropout/philox.wgsl.js';
import { visibleKeySteps } from '../visible-steps.wgsl.js';

export interface FlashTile {
  /** Threads per workgroup. */
  threads: number;
  /** Query rows per workgroup (threads / rows threads share a row). */
  rows: number;
  /** Keys per K/V tile (a multiple of threads / rows). */
  keys: number;
}

export interface FlashOptions extends ScoreOptions {
  /** Storage type of q, k, v, qRope, kRope and the output (computation is f32 either way). */
  dtype: FloatDType;
  dimQK: number;
  /** 0 without the MLA split form. */
  dimRope: number;
  dimV: number;
  tile: FlashTile;
  returnLse: boolean;
  /**
   * Read q, k, v (and the RoPE parts) 4 elements at a time: needs head dims that are multiples of
   * 4, d contiguous, and every other stride and offset a multiple of 4 (quadLoadsFit() checks).
   */
  quadLoads: boolean;
  /**
   * Internal (the fused attention block): Q, K, V from one packed float32 QKV buffer with RoPE
   * applied while staging, optionally a float32 KV cache read and appended (flash-block.wgsl.ts).
   */
  block?: FlashBlockSource;
  /** Dropout on P before P·V (the row sums l keep every weight), factors from DROPOUT_PARAMS at FLASH_BINDINGS.dropout. */
  dropout?: boolean;
}

/** Per-call uniforms of the flash kernel (the score uniforms are SCORE_PARAMS, bound apart). */
export const FLASH_PARAMS = new UniformLayout('FlashParams', {
  q_strides: 'vec4u', // element strides (b, h, s, d)
  k_strides: 'vec4u',
  v_strides: 'vec4u',
  qr_strides: 'vec4u',
  kr_strides: 'vec4u',
  out_strides: 'vec4u',
  lse_strides: 'vec4u', // (b, h, s, unused)
  q_off: 'u32', // element offset of (0, 0, 0, 0)
  k_off: 'u32',
  v_off: 'u32',
  qr_off: 'u32',
  kr_off: 'u32',
  /** Query heads per key/value head (GQA). */
  group: 'u32',
});

export const FLASH_BINDINGS = {
  params: 0,
  meta: 1,
  q: 2,
  k: 3,
  v: 4,
  qRope: 5,
  kRope: 6,
  scoreParams: 7,
  mask: 8,
  bias: 9,
  out: 10,
  lse: 11,
  /** Captured tensors of the score/mask/sink functions and the block table (ops/attention/mods). */
  modData: 12,
  dropout: 13,
} as const;

/** Bytes of workgroup memory a tile needs for these head dims. */
export function flashWorkgroupBytes(tile: FlashTile, dimQK: number, dimV: number): number {
  const s = strides(dimQK, dimV);
  const perRow = tile.threads / tile.rows;
  return 16 * (tile.rows * s.qk + tile.keys * Math.max(s.qk, s.v)) + 4 * (tile.rows * tile.keys + 2 * tile.rows * perRow);
}

/** Row strides in vec4s: enough for the head dim, odd so that rows start on different banks. */
function strides(dimQK: number, dimV: number): { qk: number; v: number } {
  const odd = (n: number) => (n % 2 === 0 ? n + 1 : n);
  return { qk: odd(Math.ceil(dimQK / 4)), v: odd(Math.ceil(dimV / 4)) };
}

export function checkTile(tile: FlashTile): string | undefined {
  const perRow = tile.threads / tile.rows;
  if (!Number.isInteger(perRow) || perRow < 1) return `tile.threads (${tile.threads}) must be a multiple of tile.rows (${tile.rows})`;
  if (tile.keys % perRow !== 0) return `tile.keys (${tile.keys}) must be a multiple of threads per row (${perRow})`;
  return undefined;
}

export function buildFlash(o: FlashOptions): string {
  const bad = checkTile(o.tile);
  if (bad) throw new Error(`buildFlash: ${bad}`);
  const dqk = o.dimQK + o.dimRope;
  const perRow = o.tile.threads / o.tile.rows;
  const quadsPerThread = Math.ceil(Math.ceil(o.dimV / 4) / perRow);
  const st = strides(dqk, o.dimV);
  const rope = o.dimRope > 0;
  const quads = o.quadLoads;
  if (quads && (o.dimQK % 4 !== 0 || o.dimRope % 4 !== 0 || o.dimV % 4 !== 0)) throw new Error('buildFlash: quadLoads needs head dims that are multiples of 4');
  const elem = quads ? quadElement(o.dtype) : arrayElement(o.dtype);
  const load = quads ? loadQuad : loadFloat;
  const at = quads ? 'quad' : 'at';
  // float16 output with odd Dv: two halves of one u32 word can belong to rows of different
  // workgroups, so halves are OR-ed into a zeroed buffer atomically.
  const atomicOut = o.dtype === 'float16' && o.dimV % 2 === 1;
  const outType = o.dtype === 'float32' ? 'f32' : atomicOut ? 'atomic<u32>' : 'u32';
  const B = FLASH_BINDINGS;
  if (o.block && (o.dtype !== 'float32' || rope || o.dimQK !== o.dimV || o.returnLse || o.mask || o.bias !== 'none' || o.alibi || !o.windowed || o.mods || o.blockTable)) {
    throw new Error('buildFlash: the block source takes float32, Dq = Dv, causal, no RoPE part, LSE, mask, bias, ALiBi or mods');
  }
  const block = o.block ? portableBlockParts(o.block, o.dimQK, quads) : undefined;

  const bindings = block ? [
    FLASH_PARAMS.wgsl(),
    `@group(0) @binding(${B.params}) var<uniform> params: FlashParams;`,
    block.declarations,
    `@group(0) @binding(${B.out}) var<storage, read_write> out_buf: array<${outType}>;`,
  ] : [
    FLASH_PARAMS.wgsl(),
    `@group(0) @binding(${B.params}) var<uniform> params: FlashParams;`,
    '// per sequence: starts q | starts k | lengths q | lengths k | ALiBi slopes (f32 bits)',
    readBinding(B.meta, 'seq_meta', 'u32'),
    readBinding(B.q, 'q_buf', elem),
    readBinding(B.k, 'k_buf', elem),
    readBinding(B.v, 'v_buf', elem),
    ...(rope ? [readBinding(B.qRope, 'qr_buf', elem), readBinding(B.kRope, 'kr_buf', elem)] : []),
    `@group(0) @binding(${B.out}) var<storage, read_write> out_buf: array<${outType}>;`,
    ...(o.returnLse ? [`@group(0) @binding(${B.lse}) var<storage, read_write> lse_buf: array<f32>;`] : []),
    ...(o.returnLse && !o.mods?.sink ? [NEG_INF_FN] : []),
    ...(o.dropout ? [dropoutDeclarations(0, B.dropout)] : []),
    load(`q_${at}`, 'q_buf', o.dtype),
    load(`k_${at}`, 'k_buf', o.dtype),
    load(`v_${at}`, 'v_buf', o.dtype),
    ...(rope ? [load(`qr_${at}`, 'qr_buf', o.dtype), load(`kr_${at}`, 'kr_buf', o.dtype)] : []),
  ];

  // The three staging loops (query block once; K and V tiles per step). Element (row, d): the NoPE
  // part from q/k, the RoPE part from qRope/kRope (the MLA split form, summed in the same dot
  // product without a concat). Rows past the sequence and the padding to whole vec4s stay 0.
  const rowIndex = (buf: string, head: string, row: string) =>
    `params.${buf}_off + b * params.${buf}_strides.x + ${head} * params.${buf}_strides.y + ${row} * params.${buf}_strides.z`;
  const scalarLoop = (tile: string, stride: string, rows: string, dim: string, valid: string, rowExpr: string, parts: Array<[string, string, string]>) => {
    // parts: [buffer, head, first d of the part]; the last part runs to `dim`
    const pick = parts.map(([buf, head, first], n) => {
      const d = first === '0u' ? 'd' : `(d - ${first})`;
      const read = `x = ${buf}_at(${rowIndex(buf, head, rowExpr)} + ${d} * params.${buf}_strides.w);`;
      return parts.length === 1 ? read : n === 0 ? `if (d < DQ) { ${read} }` : `else { ${read} }`;
    }).join(' ');
    return `for (var e = lid; e < ${rows} * ${dim}4 * 4u; e += THREADS) {
      let r = e / (${dim}4 * 4u);
      let d = e % (${dim}4 * 4u);
      var x = 0.0;
      if (${valid} && d < ${dim}) { ${pick} }
      ${tile}[r * ${stride} + d / 4u][d % 4u] = x;
    }`;
  };
  const quadLoop = (tile: string, stride: string, rows: string, dim: string, valid: string, rowExpr: string, parts: Array<[string, string, string]>) => {
    const pick = parts.map(([buf, head, first], n) => {
      const d4 = first === '0u' ? 'd4' : `(d4 - ${first} / 4u)`;
      const read = `x = ${buf}_quad((${rowIndex(buf, head, rowExpr)}) / 4u + ${d4});`;
      return parts.length === 1 ? read : n === 0 ? `if (d4 < DQ / 4u) { ${read} }` : `else { ${read} }`;
    }).join(' ');
    return `for (var e = lid; e < ${rows} * ${dim}4; e += THREADS) {
      let r = e / ${dim}4;
      let d4 = e % ${dim}4;
      var x = vec4<f32>();
      if (${valid}) { ${pick} }
      ${tile}[r * ${stride} + d4] = x;
    }`;
  };
  const loop = quads ? quadLoop : scalarLoop;
  const qParts: Array<[string, string, string]> = rope ? [['q', 'h', '0u'], ['qr', 'h', 'DQ']] : [['q', 'h', '0u']];
  const kParts: Array<[string, string, string]> = rope ? [['k', 'hk', '0u'], ['kr', 'hk', 'DQ']] : [['k', 'hk', '0u']];
  const loadQBlock = block?.loadQ ?? loop('q_tile', 'QK_STRIDE', 'ROWS', 'DQK', 'i0 + r < sq', '(start_q + i0 + r)', qParts);
  const loadKTile = block?.loadK ?? loop('kv_tile', 'QK_STRIDE', 'KEYS', 'DQK', 'j0 + r < sk', '(start_k + j0 + r)', kParts);
  const loadVTile = block?.loadV ?? loop('kv_tile', 'V_STRIDE', 'KEYS', 'DV', 'j0 + r < sk', '(start_k + j0 + r)', [['v', 'hk', '0u']]);

  // writes column col + c of the row (c = 0..3) from val[c]; only columns < DV
  const storeOut = o.dtype === 'float32'
    ? ['for (var c = 0u; c < 4u; c++) {', '  if (col + c < DV) { out_buf[e + c] = val[c]; }', '}']
    : atomicOut
      ? [
        'for (var c = 0u; c < 4u; c++) {',
        '  if (col + c < DV) {',
        '    let h = pack2x16float(vec2<f32>(val[c], 0.0)) & 0xffffu;',
        '    atomicOr(&out_buf[(e + c) >> 1u], h << (((e + c) & 1u) * 16u));',
        '  }',
        '}',
      ]
      : [
        '// Dv even: e is even and columns come in whole pairs',
        'out_buf[e >> 1u] = pack2x16float(val.xy);',
        'if (col + 2u < DV) { out_buf[(e >> 1u) + 1u] = pack2x16float(val.zw); }',
      ];

  return `// fusedattn portable flash forward: ${o.dtype} storage${quads ? ' read by quads' : ''}, f32 math, Dq ${o.dimQK}${rope ? ` + Dr ${o.dimRope}` : ''}, Dv ${o.dimV}
${bindings.join('\n')}

${buildScoreFunction(o, { group: 0, params: B.scoreParams, mask: B.mask, bias: B.bias, modData: B.modData })}

const THREADS: u32 = ${o.tile.threads}u;
const ROWS: u32 = ${o.tile.rows}u;
const KEYS: u32 = ${o.tile.keys}u;
const PER_ROW: u32 = ${perRow}u;   // threads sharing one query row
const KEYS_PER_THREAD: u32 = ${o.tile.keys / perRow}u;
const DQ: u32 = ${o.dimQK}u;    // NoPE part of the query/key head dim
const DQK: u32 = ${dqk}u;   // whole query/key head dim (NoPE + RoPE)
const DV: u32 = ${o.dimV}u;
const DQK4: u32 = ${Math.ceil(dqk / 4)}u;   // vec4s per query/key row
const DV4: u32 = ${Math.ceil(o.dimV / 4)}u;    // vec4s per value row
const QUADS_PER_THREAD: u32 = ${quadsPerThread}u;
const QK_STRIDE: u32 = ${st.qk}u;   // row strides in the tiles, in vec4s
const V_STRIDE: u32 = ${st.v}u;

var<workgroup> q_tile: array<vec4<f32>, ${o.tile.rows * st.qk}>;
var<workgroup> kv_tile: array<vec4<f32>, ${o.tile.keys * Math.max(st.qk, st.v)}>;
var<workgroup> p_tile: array<f32, ${o.tile.rows * o.tile.keys}>;
var<workgroup> part_max: array<f32, ${o.tile.rows * perRow}>;
var<workgroup> part_sum: array<f32, ${o.tile.rows * perRow}>;

@compute @workgroup_size(${o.tile.threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wg.z;
  let h = wg.y;
  let i0 = wg.x * ROWS;
${block?.sequence ?? `  let nb = sp.batch;
  let start_q = seq_meta[b];
  let start_k = seq_meta[nb + b];
  let sq = seq_meta[2u * nb + b];
  let sk = seq_meta[3u * nb + b];`}
  if (i0 >= sq) { return; }   // the grid covers the longest sequence
  let hk = h / params.group;
  let slope = ${o.alibi ? 'bitcast<f32>(seq_meta[4u * nb + b * sp.alibi_stride_b + h])' : '0.0'};
  let row = lid / PER_ROW;
  let lane = lid % PER_ROW;
  let i = i0 + row;
  let row_valid = i < sq;

  // key tiles this block can see: the window of its first row to the window of its last
${visibleKeySteps(o.windowed, 'ROWS', 'KEYS')}

  ${loadQBlock.replace(/\n    /g, '\n  ')}
${block ? `${block.append}\n` : ''}
  let beta = score_beta();   // weights are exp(beta·(s - m)): scores are in units of beta
  var m = NO_SCORE;   // running max of the row's scores (NO_SCORE: none seen yet; POISON_SCORE: NaN row)
  var l = 0.0;        // running sum of exp(score - m)
  var acc: array<vec4<f32>, QUADS_PER_THREAD>;
  var s: array<f32, KEYS_PER_THREAD>;

${o.blockTable ? `  // key blocks of the block table (partial ones, then full ones), each KEYS keys at a time
  let blocks = block_row(b, h, i0);
  let tiles_per_block = blocks.keys / KEYS;
  for (var n = 0u; n < blocks.partial + blocks.full; n++) {
  let full = n >= blocks.partial;
  for (var u_t = 0u; u_t < tiles_per_block; u_t++) {
    let t = block_index(blocks, n) * tiles_per_block + u_t;
    if (t < t_first || t >= t_end) { continue; }` : '  for (var t = t_first; t < t_end; t++) {'}
    let j0 = t * KEYS;
    workgroupBarrier();   // the previous tile's V (or the query block) is fully read / written
    ${loadKTile}
    workgroupBarrier();

    // scores of this thread's keys j0 + lane + PER_ROW * u
    for (var u = 0u; u < KEYS_PER_THREAD; u++) { s[u] = 0.0; }
    for (var d4 = 0u; d4 < DQK4; d4++) {
      let q4 = q_tile[row * QK_STRIDE + d4];
      for (var u = 0u; u < KEYS_PER_THREAD; u++) {
        s[u] += dot(q4, kv_tile[(lane + PER_ROW * u) * QK_STRIDE + d4]);
      }
    }
    var tile_max = NO_SCORE;
    for (var u = 0u; u < KEYS_PER_THREAD; u++) {
      let j = j0 + lane + PER_ROW * u;
      var x = NO_SCORE;
      if (row_valid && j < sk) {${o.blockTable ? `
        if (full) { x = final_score_unmasked(s[u], b, h, i, j, sq, sk, slope); } else { x = final_score(s[u], b, h, i, j, sq, sk, slope); }
      ` : ' x = final_score(s[u], b, h, i, j, sq, sk, slope); '}}
      s[u] = x;
      tile_max = max(tile_max, x);
    }
    part_max[row * PER_ROW + lane] = tile_max;
    workgroupBarrier();   // K fully read: V may overwrite it

    ${loadVTile}
    var m_new = m;
    for (var c = 0u; c < PER_ROW; c++) { m_new = max(m_new, part_max[row * PER_ROW + c]); }
    var psum = 0.0;
    for (var u = 0u; u < KEYS_PER_THREAD; u++) {
      let p = select(0.0, weight(beta * (s[u] - m_new)), s[u] > NO_SCORE);
${o.dropout ? `      // dropout: P·V sees the kept weights scaled by 1 / keepProb, the row sum l all of them
      let jd = j0 + lane + PER_ROW * u;
      p_tile[row * KEYS + lane + PER_ROW * u] = p * dropout_factor(dropout_words(dp.seed, dp.offset, b * dp.heads + h, i, jd >> 3u), jd & 7u, dp.threshold, dp.scale);`
    : '      p_tile[row * KEYS + lane + PER_ROW * u] = p;'}
      psum += p;
    }
    part_sum[row * PER_ROW + lane] = psum;
    workgroupBarrier();

    // exp(NO_SCORE - m_new) is 0 once the row has a score, 1 while it has none (then l = o = 0)
    let alpha = weight(beta * (m - m_new));
    var tile_sum = 0.0;
    for (var c = 0u; c < PER_ROW; c++) { tile_sum += part_sum[row * PER_ROW + c]; }
    l = l * alpha + tile_sum;
    m = m_new;
    for (var v = 0u; v < QUADS_PER_THREAD; v++) { acc[v] *= alpha; }
    for (var jj = 0u; jj < KEYS; jj++) {
      let p = p_tile[row * KEYS + jj];
      // a key of weight 0 adds nothing, even a NaN/inf value (0·NaN would be NaN)
      if (p == 0.0) { continue; }
      for (var v = 0u; v < QUADS_PER_THREAD; v++) {
        let quad = lane + PER_ROW * v;
        if (quad < DV4) { acc[v] += p * kv_tile[jj * V_STRIDE + quad]; }
      }
    }
  }${o.blockTable ? '\n  }' : ''}

  if (!row_valid) { return; }
  // a row that saw no key (window, mask or -inf bias hid them all) outputs 0 and LSE -inf
${o.mods?.sink ? `  // attention sink: one more softmax term e^sink without a value (LSE = sink on a row with no
  // key); m is in units of beta, the sink in natural units
  let sink = sink_mod(b, h, i, sq, sk);
  var inv = 0.0;
  var row_lse = sink;
  if (l > 0.0) {
    let top = max(beta * m, sink);
    let total = l * weight(beta * m - top) + weight(sink - top);
    inv = weight(beta * m - top) / total;
    row_lse = top + log(total);
  }` : '  let inv = select(0.0, 1.0 / l, l > 0.0);'}
  let poisoned = m >= POISON_SCORE;   // a NaN or +inf score: the row is NaN
  let ob = b * params.out_strides.x + h * params.out_strides.y + (start_q + i) * params.out_strides.z;
  for (var v = 0u; v < QUADS_PER_THREAD; v++) {
    let col = 4u * (lane + PER_ROW * v);
    if (col < DV) {
      let val = select(acc[v] * inv, vec4<f32>(nan_f32()), poisoned);
      let e = ob + col;   // output rows are contiguous (d stride 1)
${storeOut.map((line) => `      ${line}`).join('\n')}
    }
  }
${o.returnLse ? `  if (lane == 0u) {
    lse_buf[b * params.lse_strides.x + h * params.lse_strides.y + (start_q + i) * params.lse_strides.z] = ${o.mods?.sink ? 'select(row_lse, nan_f32(), poisoned)' : 'select(select(neg_inf(), beta * m + log(l), l > 0.0), nan_f32(), poisoned)'};
  }` : ''}
}
`;
}
