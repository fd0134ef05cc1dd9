// The decode step's append as a dispatch of its own, ahead of the pipelined partial kernel (which
// reads the cache only): the new tokens' keys and values go into the cache (converted to its dtype;
// int8 quantized with one scale per row, as the general kernel does when it appends), and with RoPE
// the keys and the queries are rotated for their positions, the queries into a buffer of their own
// that the attention then reads. A row's chunks are spread over up to a workgroup of threads (int8:
// the row's max reduced through workgroup memory). The general kernel appends inside its attention
// dispatch, which keeps it off the pipelined kernel (issue 15: the runner's and the block's decode
// steps always append).
//   rows i of sequence b sit at position lengths[b] + len_add + i; with RoPE they use table row
//   position - meta[rope_at] (split-kv.wgsl.ts's rule); the bindings and uniforms are the decode
//   kernels' (SPLIT_KV_BINDINGS, SPLIT_KV_PARAMS; `out` is the rotated query rows, o_* their strides).
import { ACCESS_HELPERS, type StoredDType, chunkStorer, int8QuantizedChunk, quadLoad, quadStore, quadType, wordType } from './access.wgsl.js';
import { SPLIT_KV_BINDINGS, SPLIT_KV_PARAMS, cacheAtFn, ropeQuad } from './split-kv.wgsl.js';

export interface DecodeAppendOptions {
  dim: number;
  cache: StoredDType;
  io: 'float32' | 'float16';
  paged: boolean;
  /** Rotate the new keys and the queries (the query rows are written to `out` either way). */
  rope: boolean;
  /** Elements per cache store (4, 8 or 16; divides dim). */
  chunk: number;
}

export const DECODE_APPEND_WORKGROUP = 64;

/** Why `o` cannot make a kernel, or undefined. */
export function decodeAppendUnsupported(o: DecodeAppendOptions): string | undefined {
  if (o.dim % o.chunk !== 0 || o.chunk % 4 !== 0) return `the head dim (${o.dim}) must be a multiple of the store chunk (${o.chunk}), itself of 4`;
  if (o.rope && o.dim % 8 !== 0) return `RoPE needs a head dim that is a multiple of 8, got ${o.dim}`;
  return undefined;
}

/** Threads per new row (its chunks, up to a workgroup) and rows per workgroup. */
export function decodeAppendLayout(o: Pick<DecodeAppendOptions, 'dim' | 'chunk'>): { perRow: number; rowsPerGroup: number } {
  const chunks = o.dim / o.chunk;
  const perRow = Math.min(chunks, DECODE_APPEND_WORKGROUP);
  return { perRow, rowsPerGroup: Math.floor(DECODE_APPEND_WORKGROUP / perRow) };
}

export function buildDecodeAppend(o: DecodeAppendOptions): string {
  const why = decodeAppendUnsupported(o);
  if (why) throw new Error(`buildDecodeAppend: ${why}`);
  const B = SPLIT_KV_BINDINGS;
  const E = o.chunk;
  const V = E / 4;
  const int8 = o.cache === 'int8';
  const { perRow, rowsPerGroup } = decodeAppendLayout(o);
  const chunks = o.dim / E;
  const vs = Array.from({ length: V }, (_, v) => v);
  const keyQuad = (c: string) => (o.rope ? `fresh_rot(base, ${c}, t)` : quadLoad(o.io, `fresh[base / 4u + ${c}]`));
  return `${SPLIT_KV_PARAMS.wgsl()}
@group(0) @binding(${B.params}) var<uniform> params: DecodeParams;
@group(0) @binding(${B.q}) var<storage, read> q: array<${quadType(o.io)}>;
@group(0) @binding(${B.keys}) var<storage, read_write> keys: array<${wordType(o.cache, E)}>;
@group(0) @binding(${B.values}) var<storage, read_write> values: array<${wordType(o.cache, E)}>;
${int8 ? `@group(0) @binding(${B.kScales}) var<storage, read_write> k_scales: array<f32>;
@group(0) @binding(${B.vScales}) var<storage, read_write> v_scales: array<f32>;
var<workgroup> row_max: array<f32, ${DECODE_APPEND_WORKGROUP}>;` : ''}
@group(0) @binding(${B.meta}) var<storage, read> seqs: array<u32>;
@group(0) @binding(${B.append}) var<storage, read> fresh: array<${quadType(o.io)}>;
@group(0) @binding(${B.out}) var<storage, read_write> out: array<${quadType(o.io)}>;
${o.rope ? `@group(0) @binding(${B.rope}) var<storage, read> rope: array<vec4<f32>>;` : ''}

${ACCESS_HELPERS}
${chunkStorer('store_k', 'keys', o.cache, E)}
${chunkStorer('store_v', 'values', o.cache, E)}
${o.rope ? `${ropeQuad('q_rot', 'q', o.io, o.dim / 4)}\n${ropeQuad('fresh_rot', 'fresh', o.io, o.dim / 4)}` : ''}

${cacheAtFn(o.paged)}

/** Chunk c of a new row at element base: a key rotated for table row t (with RoPE), a value as it is. */
fn new_chunk(key: bool, base: u32, c: u32, t: u32) -> array<vec4<f32>, ${V}> {
  if (key) { return array<vec4<f32>, ${V}>(${vs.map((v) => keyQuad(`c * ${V}u + ${v}u`)).join(', ')}); }
  return array<vec4<f32>, ${V}>(${vs.map((v) => quadLoad(o.io, `fresh[base / 4u + c * ${V}u + ${v}u]`)).join(', ')});
}

// ${perRow} threads per row (chunks lane, lane + ${perRow}, ...), ${rowsPerGroup} row(s) per workgroup:
// a thread per row walked its row's chunks one memory latency after another (40-50 us a step on
// the H200 for llama-8b's 48 new rows, session 8 call 5)
@compute @workgroup_size(${DECODE_APPEND_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  // rows: per (sequence, token), the query heads, then the new keys, then the new values
  let per = params.heads_q + 2u * params.heads_kv;
  let total = params.batch * params.tokens * per;
  let slot = li / ${perRow}u;
  let lane = li % ${perRow}u;
  let x = (wid.x + wid.y * nwg.x) * ${rowsPerGroup}u + slot;
  let live = slot < ${rowsPerGroup}u && x < total;
  let xc = min(x, total - 1u);
  let h = xc % per;
  let i = (xc / per) % params.tokens;
  let b = xc / (per * params.tokens);
  let p = seqs[params.len_at + b * params.len_sb] + params.len_add + i;
  let t = ${o.rope ? 'p - seqs[params.rope_at]' : '0u'};
  let is_q = h < params.heads_q;
  let is_k = !is_q && h < params.heads_q + params.heads_kv;
  let kvh = select(h - params.heads_q - params.heads_kv, h - params.heads_q, is_k);
  if (live && is_q) {
    let base = params.q_off + b * params.q_sb + h * params.q_sh + i * params.q_si;
    let o = (params.o_off + b * params.o_sb + h * params.o_sh + i * params.o_si) / 4u;
    for (var c = lane; c < ${o.dim / 4}u; c += ${perRow}u) {
      out[o + c] = ${quadStore(o.io, o.rope ? 'q_rot(base, c, t)' : quadLoad(o.io, 'q[base / 4u + c]'))};
    }
  }
  let base = select(params.av_off + b * params.av_sb + kvh * params.av_sh + i * params.av_si, params.ak_off + b * params.ak_sb + kvh * params.ak_sh + i * params.ak_si, is_k);
  let row = select(cache_at(b, kvh, p, params.v_off, params.v_sp, params.v_sh, params.v_spos), cache_at(b, kvh, p, params.k_off, params.k_sp, params.k_sh, params.k_spos), is_k);
${int8 ? `  // the row's max: this thread's chunks, then the row's threads through workgroup memory
  var mx = 0.0;
  if (live && !is_q) {
    for (var c = lane; c < ${chunks}u; c += ${perRow}u) {
      let nc = new_chunk(is_k, base, c, t);
${vs.map((v) => `      mx = max(mx, max(max(abs(nc[${v}].x), abs(nc[${v}].y)), max(abs(nc[${v}].z), abs(nc[${v}].w))));`).join('\n')}
    }
  }
  row_max[li] = mx;
  workgroupBarrier();` : ''}
  if (live && !is_q) {
${int8 ? `    var m = 0.0;
    for (var j = 0u; j < ${perRow}u; j++) { m = max(m, row_max[slot * ${perRow}u + j]); }
    let s = m * (1.0 / 127.0);
    let inv = select(0.0, 1.0 / s, s > 0.0);
    if (lane == 0u) {
      if (is_k) { k_scales[cache_at(b, kvh, p, params.ks_off, params.s_sp, params.s_sh, params.s_spos)] = s; }
      else { v_scales[cache_at(b, kvh, p, params.vs_off, params.s_sp, params.s_sh, params.s_spos)] = s; }
    }` : ''}
    for (var c = lane; c < ${chunks}u; c += ${perRow}u) {
      let nc = new_chunk(is_k, base, c, t);
      let y = ${int8 ? int8QuantizedChunk((v) => `nc[${v}]`, V, 'inv') : `array<vec4<f32>, ${V}>(${vs.map((v) => `nc[${v}]`).join(', ')})`};
      if (is_k) { store_k(row + c * ${E}u, y); } else { store_v(row + c * ${E}u, y); }
    }
  }
}
`;
}
