// The fused block's attention kernel: FlashAttention forward that reads Q, K and V straight out of
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
import { UniformLayout } from '../../backends/webgpu/uniforms.js';
import { NO_SCORE } from '../../backends/webgpu/wgsl.js';

export interface BlockAttentionTile {
  threads: number;
  /** Query rows (tokens) per workgroup. */
  rows: number;
  /** Keys per K/V tile (a multiple of threads / rows). */
  keys: number;
}

export interface BlockAttentionOptions {
  headDim: number;
  cache: boolean;
  tile: BlockAttentionTile;
  /**
   * Split the keys over params.splits workgroups per query block ("flash decoding"): each writes
   * its unnormalised partial (m, l, acc) to a workspace and block-attention-combine merges them.
   * For decode, where (query blocks x heads x batch) workgroups are too few to fill a GPU.
   */
  split: boolean;
}

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
  { threads: 128, rows: 32, keys: 32 },
  { threads: 64, rows: 16, keys: 32 },
  { threads: 64, rows: 16, keys: 16 },
  { threads: 32, rows: 8, keys: 16 },
  { threads: 16, rows: 4, keys: 8 },
];

/** Row stride of the Q and K/V tiles in workgroup memory: odd, so rows fall on different banks. */
function tileStride(headDim: number): number {
  return headDim + 1;
}

export function blockAttentionWorkgroupBytes(tile: BlockAttentionTile, headDim: number): number {
  const perRow = tile.threads / tile.rows;
  return 4 * (tile.rows * tileStride(headDim) + tile.keys * tileStride(headDim) + tile.rows * tile.keys + 2 * tile.rows * perRow);
}

export function buildBlockAttention(o: BlockAttentionOptions): string {
  const D = o.headDim;
  const half = D / 2;
  const { threads, rows, keys } = o.tile;
  const perRow = threads / rows;
  if (!Number.isInteger(perRow) || keys % perRow !== 0) throw new Error(`buildBlockAttention: bad tile ${JSON.stringify(o.tile)}`);
  const pairsPerThread = Math.ceil(half / perRow);
  const stride = tileStride(D);
  // The per-thread scores s0.. and accumulators a0.. are named variables written out statement by
  // statement (no arrays indexed in loops), so the shader compiler keeps them in registers.
  const keysPerThread = keys / perRow;
  const eachKey = (f: (u: number) => string) => Array.from({ length: keysPerThread }, (_, u) => f(u)).join('\n');
  const eachPair = (f: (v: number) => string) => Array.from({ length: pairsPerThread }, (_, v) => f(v)).join('\n');
  // pair v of lane: columns 2 (lane + PER_ROW v) and + 1; present in every lane when PER_ROW divides D/2
  const pairGuard = (v: number, body: string) => (half % perRow === 0 ? body : `if (lane + ${perRow * v}u < HALF) { ${body} }`);
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

  return `// fusedattn block attention: packed QKV, RoPE in-kernel, GQA by index, D ${D}${o.cache ? ', KV cache read + write' : ''}
${BLOCK_ATTENTION_PARAMS.wgsl()}
@group(0) @binding(${B.params}) var<uniform> params: BlockAttentionParams;
@group(0) @binding(${B.qkv}) var<storage, read> qkv: array<f32>;
@group(0) @binding(${B.rope}) var<storage, read> rope: array<f32>;
@group(0) @binding(${B.step}) var<storage, read> step: array<u32>;
@group(0) @binding(${B.out}) var<storage, read_write> out: array<f32>;
${cacheDecl}

const D: u32 = ${D}u;
const HALF: u32 = ${half}u;
const THREADS: u32 = ${threads}u;
const ROWS: u32 = ${rows}u;
const KEYS: u32 = ${keys}u;
const PER_ROW: u32 = ${perRow}u;          // threads sharing one query row
const STRIDE: u32 = ${stride}u;           // odd row stride of the tiles
const NO_SCORE: f32 = ${NO_SCORE};

var<workgroup> q_tile: array<f32, ${rows * stride}>;
var<workgroup> kv_tile: array<f32, ${keys * stride}>;
var<workgroup> p_tile: array<f32, ${rows * keys}>;
var<workgroup> part_max: array<f32, ${rows * perRow}>;
var<workgroup> part_sum: array<f32, ${rows * perRow}>;

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
  let row = lid / PER_ROW;
  let lane = lid % PER_ROW;
  let i = i0 + row;
  let row_valid = i < params.seq;

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
  var m = NO_SCORE;   // running max (NO_SCORE: nothing seen yet)
  var l = 0.0;        // running sum of exp(score - m)
${eachPair((v) => `  var a${v} = vec2<f32>(0.0);`)}

  for (var tile = tile_begin; tile < tiles; tile++) {
    let j0 = tile * KEYS;
    workgroupBarrier();   // the previous V tile (or the query block) is fully read / written
    for (var e = lid; e < KEYS * D; e += THREADS) {
      let kj = j0 + e / D;
      let d = e % D;
      var x = 0.0;
      if (kj < n_keys) {
        ${loadKey}
      }
      kv_tile[(e / D) * STRIDE + d] = x;
    }
    workgroupBarrier();

    // scores of this thread's keys j0 + lane + PER_ROW u
${eachKey((u) => `    var s${u} = 0.0;`)}
    for (var d = 0u; d < D; d++) {
      let qd = q_tile[row * STRIDE + d];
${eachKey((u) => `      s${u} += qd * kv_tile[(lane + ${perRow * u}u) * STRIDE + d];`)}
    }
    var tile_max = NO_SCORE;
${eachKey((u) => `    if (!row_valid || j0 + lane + ${perRow * u}u > past + i) { s${u} = NO_SCORE; }
    tile_max = max(tile_max, s${u});`)}
    part_max[row * PER_ROW + lane] = tile_max;
    workgroupBarrier();   // K fully read: V may overwrite it

    for (var e = lid; e < KEYS * D; e += THREADS) {
      let kj = j0 + e / D;
      let d = e % D;
      var x = 0.0;
      if (kj < n_keys) {
        ${loadValue}
      }
      kv_tile[(e / D) * STRIDE + d] = x;
    }
    var m_new = m;
    for (var c = 0u; c < PER_ROW; c++) { m_new = max(m_new, part_max[row * PER_ROW + c]); }
    var psum = 0.0;
${eachKey((u) => `    let p${u} = select(0.0, exp(s${u} - m_new), s${u} > NO_SCORE);
    p_tile[row * KEYS + lane + ${perRow * u}u] = p${u};
    psum += p${u};`)}
    part_sum[row * PER_ROW + lane] = psum;
    workgroupBarrier();

    let alpha = exp(m - m_new);
    var tile_sum = 0.0;
    for (var c = 0u; c < PER_ROW; c++) { tile_sum += part_sum[row * PER_ROW + c]; }
    l = l * alpha + tile_sum;
    m = m_new;
${eachPair((v) => `    a${v} *= alpha;`)}
    for (var jj = 0u; jj < KEYS; jj++) {
      let p = p_tile[row * KEYS + jj];
      let base = jj * STRIDE + 2u * lane;
${eachPair((v) => `      ${pairGuard(v, `a${v} += p * vec2<f32>(kv_tile[base + ${2 * perRow * v}u], kv_tile[base + ${2 * perRow * v + 1}u]);`)}`)}
    }
  }

  if (!row_valid) { return; }
${o.split ? `  // unnormalised partial of this split: m, l, then acc (a split that saw no key has l = 0)
  let pb = (((b * params.heads + h) * params.seq + i) * params.splits + split) * (D + 2u);
  if (lane == 0u) {
    out[pb] = m;
    out[pb + 1u] = l;
  }
  let ob = pb + 2u + 2u * lane;
${eachPair((v) => `  ${pairGuard(v, `out[ob + ${2 * perRow * v}u] = a${v}.x; out[ob + ${2 * perRow * v + 1}u] = a${v}.y;`)}`)}` : `  // every row sees at least its own key, so l > 0
  let inv = 1.0 / l;
  let ob = new_row(b, i) * params.out_width + h * D + 2u * lane;
${eachPair((v) => `  ${pairGuard(v, `out[ob + ${2 * perRow * v}u] = a${v}.x * inv; out[ob + ${2 * perRow * v + 1}u] = a${v}.y * inv;`)}`)}`}
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
    let w = select(0.0, exp(partial[p] - mx), partial[p + 1u] > 0.0);
    num += w * partial[p + 2u + d];
    den += w * partial[p + 1u];
  }
  out[(b * params.row_b + i * params.row_s) * params.out_width + h * D + d] = num / den;
}
`;
}
