// The fused block's own attention kernel. Why it stays beside the library's flash tiers and the
// split-KV decode kernel: it is the fallback for the block calls neither takes — decode of more than
// 8 sequences or without a cache (the decode path needs both), a KV cache view that does not start
// on a 16-byte boundary, head dims the flash tiers' packed-QKV source refuses — and the
// `attentionKernel: 'tiled' | 'rows'` option keeps it measurable against them (bench/block.mjs).
//
// FlashAttention forward that reads Q, K and V straight out of
// the packed QKV buffer of the GEMM before it (no split, transpose or concat), applies RoPE while
// staging Q and K tiles (no RoPE kernel), shares each KV head among its Nq/Nkv query heads by
// index (GQA without repeating K/V), and, with a KV cache, reads the earlier positions from the
// cache and writes the new tokens' rotated K and V into it.
//
// Shapes (see ../config.ts for the legend):
//   qkv    [rows, W], row r = b*row_b + s*row_s, columns Q (Nq D) | K (Nkv D) | V (Nkv D), raw (not rotated)
//   rope   cos [R, D/2] then sin [R, D/2]; position p uses table row p - rope_base
//   step   u32 [start, rope_base]: token s of x is at position start + s (a storage buffer, so a
//          recorded scope can replay decode steps after the caller rewrites it)
//   cache  keys / values [capacity, B, Nkv D] after RoPE: positions < start are read, start.. written
//   out    [rows, Nq D], same row order as qkv
// Causal: token s sees keys 0 .. past + s, with past = start (cache) or 0 (no cache: the tokens
// attend only to each other). One workgroup per (block of ROWS tokens, query head, sequence); the
// online softmax is the portable flash tier's (no S x L buffer anywhere). The workgroup of query
// head h = hk * group writes KV head hk's new rows to the cache; no workgroup reads positions >= start
// from the cache, so the writes race with nothing.
import { UniformLayout } from '../../engines/webgpu/uniforms.js';
import { NON_FINITE_FNS, NO_SCORE } from '../../engines/webgpu/wgsl.js';

import { type BlockAttentionOptions, type BlockAttentionTile, rowsCore, tiledCore, tileShape } from './attention-core.wgsl.js';

export { type BlockAttentionOptions, type BlockAttentionTile, tileShape };

export const BLOCK_ATTENTION_PARAMS = new UniformLayout('BlockAttentionParams', {
  row_b: 'u32',
  row_s: 'u32',
  /** W, the packed row width. */
  qkv_width: 'u32',
  /** Nq D, the output row width. */
  out_width: 'u32',
  /** S, new tokens per sequence. */
  seq: 'u32',
  batch: 'u32',
  /** Nkv D, the cache row width. */
  kv_width: 'u32',
  /** First column of K and of V in a packed row. */
  k_col: 'u32',
  v_col: 'u32',
  /** Nq / Nkv. */
  group: 'u32',
  scale: 'f32',
  /** Element offsets of the cache bindings (bindings start at aligned offsets). */
  kc_off: 'u32',
  vc_off: 'u32',
  /** R, rows of the cos table (sin starts at R * D/2). */
  rope_rows: 'u32',
  /** Key splits per query block (options.split), else 1. */
  splits: 'u32',
  /** Nq. */
  heads: 'u32',
});

/** With options.split, binding `out` is the partial workspace [B, Nq, S, splits, D + 2]. */
export const BLOCK_ATTENTION_BINDINGS = { params: 0, qkv: 1, rope: 2, step: 3, out: 4, kCache: 5, vCache: 6 } as const;

/** Tiles from the preferred to the smallest; the first that fits the device's workgroup memory is used. */
export const BLOCK_ATTENTION_TILES: readonly BlockAttentionTile[] = [
  { kind: 'tiled', tx: 8, ty: 8, rt: 4, kt: 4 },
  { kind: 'tiled', tx: 8, ty: 4, rt: 4, kt: 4 },
  { kind: 'tiled', tx: 8, ty: 4, rt: 2, kt: 2 },
  { kind: 'tiled', tx: 4, ty: 4, rt: 2, kt: 2 },
  { kind: 'tiled', tx: 4, ty: 2, rt: 2, kt: 2 },
];

/** The first kernel measured on the H200 (see docs/GPU-NOTES.md), kept for comparison. */
export const BLOCK_ATTENTION_ROWS_TILES: readonly BlockAttentionTile[] = [
  { kind: 'rows', threads: 128, rows: 32, keys: 32 },
  { kind: 'rows', threads: 64, rows: 16, keys: 32 },
  { kind: 'rows', threads: 64, rows: 16, keys: 16 },
  { kind: 'rows', threads: 32, rows: 8, keys: 16 },
  { kind: 'rows', threads: 16, rows: 4, keys: 8 },
];

/** Row stride of the Q and K/V tiles in workgroup memory: odd, so rows fall on different banks. */
function tileStride(headDim: number): number {
  return headDim + 1;
}

/** Threads that share one query row's statistics (the partial max / sum slots per row). */
function rowThreads(t: BlockAttentionTile): number {
  return t.kind === 'rows' ? t.threads / t.rows : t.tx;
}

export function blockAttentionWorkgroupBytes(tile: BlockAttentionTile, headDim: number): number {
  const { rows, keys } = tileShape(tile);
  const pStride = tile.kind === 'rows' ? keys : keys + 1;
  return 4 * (rows * tileStride(headDim) + keys * tileStride(headDim) + rows * pStride + 2 * rows * rowThreads(tile));
}

export function buildBlockAttention(o: BlockAttentionOptions): string {
  const D = o.headDim;
  const { threads, rows, keys } = tileShape(o.tile);
  const stride = tileStride(D);
  const core = o.tile.kind === 'rows' ? rowsCore(o, o.tile) : tiledCore(o, o.tile);
  const B = BLOCK_ATTENTION_BINDINGS;
  const cacheDecl = o.cache
    ? `@group(0) @binding(${B.kCache}) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(${B.vCache}) var<storage, read_write> v_cache: array<f32>;`
    : '';
  // a key or value of position j: from the cache below `past`, else from the packed buffer
  const loadKey = o.cache
    ? `if (kj < past) { x = k_cache[params.kc_off + (kj * params.batch + b) * params.kv_width + hk * D + d]; }
        else { x = rotated(new_row(b, kj - past) * params.qkv_width + params.k_col + hk * D, d, start + kj - past - rope_base); }`
    : 'x = rotated(new_row(b, kj) * params.qkv_width + params.k_col + hk * D, d, start + kj - rope_base);';
  const loadValue = o.cache
    ? `if (kj < past) { x = v_cache[params.vc_off + (kj * params.batch + b) * params.kv_width + hk * D + d]; }
        else { x = qkv[new_row(b, kj - past) * params.qkv_width + params.v_col + hk * D + d]; }`
    : 'x = qkv[new_row(b, kj) * params.qkv_width + params.v_col + hk * D + d];';
  const cacheWrite = o.cache
    ? `  // the first query head of each KV head writes that head's new rows to the cache (split 0)
  if (h % params.group == 0u${o.split ? ' && split == 0u' : ''}) {
    for (var e = lid; e < ROWS * D; e += THREADS) {
      let t = i0 + e / D;
      let d = e % D;
      if (t < params.seq) {
        let r = new_row(b, t);
        let c = ((start + t) * params.batch + b) * params.kv_width + hk * D + d;
        k_cache[params.kc_off + c] = rotated(r * params.qkv_width + params.k_col + hk * D, d, start + t - rope_base);
        v_cache[params.vc_off + c] = qkv[r * params.qkv_width + params.v_col + hk * D + d];
      }
    }
  }
`
    : '';
  const tileLoad = (what: string) => `    for (var e = lid; e < KEYS * D; e += THREADS) {
      let kj = j0 + e / D;
      let d = e % D;
      var x = 0.0;
      if (kj < n_keys) {
        ${what}
      }
      kv_tile[(e / D) * STRIDE + d] = x;
    }`;

  return `// fusedattn block attention (${o.tile.kind} tile): packed QKV, RoPE in-kernel, GQA by index, D ${D}${o.cache ? ', KV cache read + write' : ''}${o.split ? ', split keys' : ''}
${BLOCK_ATTENTION_PARAMS.wgsl()}
@group(0) @binding(${B.params}) var<uniform> params: BlockAttentionParams;
@group(0) @binding(${B.qkv}) var<storage, read> qkv: array<f32>;
@group(0) @binding(${B.rope}) var<storage, read> rope: array<f32>;
@group(0) @binding(${B.step}) var<storage, read> step: array<u32>;
@group(0) @binding(${B.out}) var<storage, read_write> out: array<f32>;
${cacheDecl}

const D: u32 = ${D}u;
const HALF: u32 = ${D / 2}u;
const THREADS: u32 = ${threads}u;
const ROWS: u32 = ${rows}u;
const KEYS: u32 = ${keys}u;
const STRIDE: u32 = ${stride}u;           // odd row stride of the Q and K/V tiles
const NO_SCORE: f32 = ${NO_SCORE};
${NON_FINITE_FNS}
// the online-softmax weight of score s under row max m: 0 for a hidden key, NaN for a NaN or +inf
// score (the row then comes out NaN, README "Failure behaviour"), whatever max() made of it
fn weight_of(s: f32, m: f32) -> f32 {
  if (nan_or_pos_inf(s)) { return nan_f32(); }
  return select(0.0, exp(s - m), s > NO_SCORE);
}
${core.constants}

var<workgroup> q_tile: array<f32, ${rows * stride}>;
var<workgroup> kv_tile: array<f32, ${keys * stride}>;
${core.workgroup}

/** Packed row of token s of sequence b. */
fn new_row(b: u32, s: u32) -> u32 {
  return b * params.row_b + s * params.row_s;
}

/** Element d of the head vector starting at qkv[base], rotated with RoPE table row trow (rotate half). */
fn rotated(base: u32, d: u32, trow: u32) -> f32 {
  let i = d % HALF;
  let c = rope[trow * HALF + i];
  let s = rope[(params.rope_rows + trow) * HALF + i];
  if (d < HALF) { return qkv[base + d] * c - qkv[base + d + HALF] * s; }
  return qkv[base + d] * c + qkv[base + d - HALF] * s;
}

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wg.z;
  let h = wg.y;
${o.split ? `  let split = wg.x % params.splits;
  let i0 = (wg.x / params.splits) * ROWS;` : '  let i0 = wg.x * ROWS;'}
  if (i0 >= params.seq) { return; }
  let start = step[0];
  let rope_base = step[1];
  let past = ${o.cache ? 'start' : '0u'};     // keys read from the cache
  let hk = h / params.group;
${core.threadSetup}

${cacheWrite}
  // the query block, rotated and scaled
  for (var e = lid; e < ROWS * D; e += THREADS) {
    let r = e / D;
    let d = e % D;
    let t = i0 + r;
    var x = 0.0;
    if (t < params.seq) { x = rotated(new_row(b, t) * params.qkv_width + h * D, d, start + t - rope_base) * params.scale; }
    q_tile[r * STRIDE + d] = x;
  }

  // causal: this block's last token sees keys 0 .. past + last
  let n_keys = past + min(i0 + ROWS, params.seq);
${o.split ? `  // this split's share of the key tiles
  let all_tiles = (n_keys + KEYS - 1u) / KEYS;
  let chunk = (all_tiles + params.splits - 1u) / params.splits;
  let tile_begin = min(all_tiles, split * chunk);
  let tiles = min(all_tiles, tile_begin + chunk);` : `  let tile_begin = 0u;
  let tiles = (n_keys + KEYS - 1u) / KEYS;`}
${core.state}

  for (var tile = tile_begin; tile < tiles; tile++) {
    let j0 = tile * KEYS;
    workgroupBarrier();   // the previous V tile (or the query block) is fully read / written
${tileLoad(loadKey)}
    workgroupBarrier();
${core.scores}
    workgroupBarrier();   // K fully read: V may overwrite it
${tileLoad(loadValue)}
${core.probabilities}
    workgroupBarrier();
${core.accumulate}
  }

${core.output(o.split)}
}
`;
}

export const BLOCK_COMBINE_PARAMS = new UniformLayout('BlockCombineParams', {
  /** B * Nq * S * D outputs. */
  count: 'u32',
  heads: 'u32',
  seq: 'u32',
  splits: 'u32',
  row_b: 'u32',
  row_s: 'u32',
  out_width: 'u32',
});

export const BLOCK_COMBINE_THREADS = 256;

/**
 * Merges the splits of the partial workspace: out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s
 * with M the largest m_s. One invocation per output element; dispatch flatGrid(count).
 */
export function buildBlockCombine(o: { headDim: number }): string {
  const D = o.headDim;
  return `// fusedattn block attention: merge the key splits
${BLOCK_COMBINE_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> params: BlockCombineParams;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const D: u32 = ${D}u;
${NON_FINITE_FNS}

@compute @workgroup_size(${BLOCK_COMBINE_THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = (wg.y * nwg.x + wg.x) * ${BLOCK_COMBINE_THREADS}u + lid;
  if (e >= params.count) { return; }
  let d = e % D;
  let row = e / D;                       // ((b * Nq + h) * S + i)
  let i = row % params.seq;
  let h = (row / params.seq) % params.heads;
  let b = row / (params.seq * params.heads);
  let base = row * params.splits * (D + 2u);
  var mx = ${NO_SCORE};
  for (var s = 0u; s < params.splits; s++) { mx = max(mx, partial[base + s * (D + 2u)]); }
  var num = 0.0;
  var den = 0.0;
  for (var s = 0u; s < params.splits; s++) {
    let p = base + s * (D + 2u);
    // a split that saw no key has l = 0; one that saw a NaN has l = NaN, which must stay
    let w = select(0.0, exp(partial[p] - mx), partial[p + 1u] > 0.0 || is_nan(partial[p + 1u]));
    num += w * partial[p + 2u + d];
    den += w * partial[p + 1u];
  }
  out[(b * params.row_b + i * params.row_s) * params.out_width + h * D + d] = num / den;
}
`;
}
