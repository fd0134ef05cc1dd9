// Merging partial attention by LSE on the GPU, two kernels:
//   combine  the split-KV pass's second half: one workgroup per output row (b, head, i) rescales
//            the splits' (acc, max, sum) to the common max and divides; writes the output through
//            its strides (float32 or float16) and, when asked, the LSE;
//   merge    mergeAttention() of two normalized partials (out_a, lse_a), (out_b, lse_b), element by
//            element over the flat output (so any Dv and float16 pairs work), N partials in N - 1
//            passes.
// A row that saw no key (sum 0 / every LSE -inf) gives 0 and LSE -inf, never NaN.
import { UniformLayout } from '../../../engines/webgpu/uniforms.js';
import { NEG_INF_FN, NO_SCORE } from '../../../engines/webgpu/wgsl.js';
import { quadStore, quadType } from './access.wgsl.js';

export interface CombineOptions {
  dimV: number;
  io: 'float32' | 'float16';
  lse: boolean;
  /** Threads per row (default COMBINE_WORKGROUP); more slices of the splits for few, long rows. */
  workgroupSize?: number;
}

export const COMBINE_PARAMS = new UniformLayout('CombineParams', {
  rows: 'u32', splits: 'u32', heads_q: 'u32', tokens: 'u32',
  o_off: 'u32', o_sb: 'u32', o_sh: 'u32', o_si: 'u32',
});
export const COMBINE_WORKGROUP = 256;
/** Threads of the combine for few wide rows over many splits (an MLA decode: 16 rows, 128 splits of 512). */
export const COMBINE_WIDE_WORKGROUP = 1024;

/**
 * Threads per row: COMBINE_WORKGROUP, or up to COMBINE_WIDE_WORKGROUP when fewer rows than
 * FEW_ROWS of Dv >= 512 each merge 32+ splits (256 threads are then only two slices of the splits
 * per row). Measured on the H200 (2026-12-03, session 8): MLA 16 heads at 32K, combine 13.6 against
 * 16.1 us (call 2); llama-8b's rows of 128 lost (32K f16: 13.2 against 10.1 us, call 4), hence
 * the width rule. FUSEDATTN_DECODE_COMBINE_WG overrides (the benchmarks' sweep).
 */
export function combineWorkgroupSize(rows: number, splits: number, dimV: number, maxThreads: number, override?: number): number {
  const wide = rows < FEW_ROWS && splits >= 32 && dimV >= 512;
  const want = override ?? (wide ? COMBINE_WIDE_WORKGROUP : COMBINE_WORKGROUP);
  let wg = 32;
  while (wg * 2 <= Math.min(want, maxThreads)) wg *= 2;
  return wg;
}
const FEW_ROWS = 64;

export const COMBINE_BINDINGS = { params: 0, partials: 1, out: 2, lse: 3 } as const;

/** Splits each combine thread loads before using them (one memory latency per batch, not per split). */
const COMBINE_UNROLL = 8;

/**
 * out[row] = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s, one workgroup per row (2-D grid past
 * the per-dimension limit): thread (quad c, slice) merges the splits slice, slice + SLICES, ... online
 * (its own running max, COMBINE_UNROLL splits' loads in flight at once), then slice 0 merges the
 * slices through workgroup memory: one barrier, where a max-first tree took eight and a memory
 * round trip per split (the pass cost a fixed ~9 us on the H200, issue 15).
 */
export function buildCombine(o: CombineOptions): string {
  const D4 = o.dimV / 4;
  const WG = o.workgroupSize ?? COMBINE_WORKGROUP;
  const QW = Math.min(D4, WG);
  const slices = Math.max(1, Math.floor(WG / QW));
  const U = COMBINE_UNROLL;
  const units = Array.from({ length: U }, (_, u) => u);
  return `${COMBINE_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> params: CombineParams;
@group(0) @binding(1) var<storage, read> partials: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<${quadType(o.io)}>;
${o.lse ? '@group(0) @binding(3) var<storage, read_write> lse: array<f32>;' : ''}

const D4 = ${D4}u;
const QW = ${QW}u;
const SLICES = ${slices}u;
const NO_SCORE = ${NO_SCORE};
var<workgroup> slice_acc: array<vec4<f32>, ${slices * QW}>;
var<workgroup> slice_ml: array<vec2<f32>, SLICES>;
${NEG_INF_FN}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }
  let base = row * params.splits * (D4 + 1u);
  let slice = lid.x / QW;
  let live = slice < SLICES;
  // row = (b * Nq + head) * Sq + i
  let i = row % params.tokens;
  let head = (row / params.tokens) % params.heads_q;
  let b = row / (params.tokens * params.heads_q);
  let o = (params.o_off + b * params.o_sb + head * params.o_sh + i * params.o_si) / 4u;
  // several quads per thread only where one slice covers the row (no barrier in the loop then)
  ${slices === 1 ? 'for (var c = lid.x % QW; c < D4; c += QW) {' : '{\n    let c = lid.x % QW;'}
    var m = NO_SCORE;
    var l = 0.0;
    var acc = vec4<f32>(0.0);
    if (live) {
      for (var s0 = slice; s0 < params.splits; s0 += SLICES * ${U}u) {
${units.map((u) => `        let at${u} = base + min(s0 + SLICES * ${u}u, params.splits - 1u) * (D4 + 1u);
        let ml${u} = partials[at${u} + D4];
        let x${u} = partials[at${u} + c];`).join('\n')}
${units.map((u) => `        if (s0 + SLICES * ${u}u < params.splits) {
          let mn = max(m, ml${u}.x);
          let f = exp(m - mn);
          let g = exp(ml${u}.x - mn);
          acc = acc * f + x${u} * g;
          l = l * f + ml${u}.y * g;
          m = mn;
        }`).join('\n')}
      }
    }
${slices === 1 ? `    let inv = select(0.0, 1.0 / l, l > 0.0);
    out[o + c] = ${quadStore(o.io, 'acc * inv')};
${o.lse ? '    if (c == 0u) { lse[row] = select(neg_inf(), m + log(l), l > 0.0); }' : ''}` : `    if (live) {
      slice_acc[lid.x] = acc;
      if (c == 0u) { slice_ml[slice] = vec2<f32>(m, l); }
    }
    workgroupBarrier();
    if (slice == 0u) {
      var top = NO_SCORE;
      for (var t = 0u; t < SLICES; t++) { top = max(top, slice_ml[t].x); }
      var sum = vec4<f32>(0.0);
      var den = 0.0;
      for (var t = 0u; t < SLICES; t++) {
        let w = exp(slice_ml[t].x - top);
        sum += w * slice_acc[t * QW + c];
        den += w * slice_ml[t].y;
      }
      let inv = select(0.0, 1.0 / den, den > 0.0);
      out[o + c] = ${quadStore(o.io, 'sum * inv')};
${o.lse ? '      if (c == 0u) { lse[row] = select(neg_inf(), top + log(den), den > 0.0); }' : ''}
    }`}
  }
}
`;
}

export interface MergeKernelOptions {
  io: 'float32' | 'float16';
  /** Output rows are [B, Sq, Nq] (BSND) rather than [B, Nq, Sq]: the LSE index is permuted. */
  bsnd: boolean;
}

export const MERGE_PARAMS = new UniformLayout('MergeParams', {
  elements: 'u32', dim: 'u32', heads_q: 'u32', tokens: 'u32',
  a_off: 'u32', b_off: 'u32', la_off: 'u32', lb_off: 'u32',
});
export const MERGE_WORKGROUP = 256;

/**
 * One thread per output element (float16: per pair of elements, one u32 word); the LSE of a row
 * is written by the thread holding the row's element 0.
 */
export function buildMerge(o: MergeKernelOptions): string {
  const f16 = o.io === 'float16';
  const load = (buf: string, off: string) => (f16 ? `fn ${buf}_at(e: u32) -> f32 { let x = e + params.${off}; return unpack2x16float(${buf}[x >> 1u])[x & 1u]; }` : `fn ${buf}_at(e: u32) -> f32 { return ${buf}[e + params.${off}]; }`);
  const elem = f16 ? 'u32' : 'f32';
  const perThread = f16 ? 2 : 1;
  return `${MERGE_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> params: MergeParams;
@group(0) @binding(1) var<storage, read> oa: array<${elem}>;
@group(0) @binding(2) var<storage, read> ob: array<${elem}>;
@group(0) @binding(3) var<storage, read> la: array<f32>;
@group(0) @binding(4) var<storage, read> lb: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<${elem}>;
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;
${NEG_INF_FN}
${load('oa', 'a_off')}
${load('ob', 'b_off')}

fn lse_index(row: u32) -> u32 {
${o.bsnd ? `  // rows are (b, i, head): the LSE is [B, Nq, Sq]
  let head = row % params.heads_q;
  let bi = row / params.heads_q;
  return ((bi / params.tokens) * params.heads_q + head) * params.tokens + bi % params.tokens;` : '  return row;'}
}

/** Element e of the merged output; writes the row's LSE from its element 0. */
fn merged(e: u32) -> f32 {
  let row = e / params.dim;
  let li = lse_index(row);
  let x = la[li + params.la_off];
  let y = lb[li + params.lb_off];
  let m = max(x, y);
  if (m == neg_inf()) {
    if (e % params.dim == 0u) { lse[li] = neg_inf(); }
    return 0.0;
  }
  let wa = exp(x - m);
  let wb = exp(y - m);
  let total = wa + wb;
  if (e % params.dim == 0u) { lse[li] = m + log(total); }
  var acc = 0.0;
  if (wa > 0.0) { acc += wa * oa_at(e); }
  if (wb > 0.0) { acc += wb * ob_at(e); }
  return acc / total;
}

@compute @workgroup_size(${MERGE_WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = gid.x + gid.y * nwg.x * ${MERGE_WORKGROUP}u;
  let e = t * ${perThread}u;
  if (e >= params.elements) { return; }
${f16 ? `  let x0 = merged(e);
  var x1 = 0.0;
  if (e + 1u < params.elements) { x1 = merged(e + 1u); }
  out[t] = pack2x16float(vec2<f32>(x0, x1));` : '  out[t] = merged(e);'}
}
`;
}
