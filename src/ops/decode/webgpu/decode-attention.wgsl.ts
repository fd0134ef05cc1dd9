// The FIRST split-KV decode kernel pair. Superseded by split-kv.wgsl.ts (16-byte loads, a key
// per thread, 2-40x faster on the H200), and kept for one reason: it is the fallback where the
// second cannot run — head dims that are not a multiple of 4 (planDecode() gives a reason),
// so the unfused runner module still decodes them on the GPU. `firstDecodeKernel: true` in the
// runner's unfused module forces it for comparisons.
//
// Split-KV ("flash decoding") attention of new query rows against the KV cache, in two kernels:
//   partial  one workgroup per (KV head, query row, split of the keys): the G = Nq / Nkv query heads
//            that share the KV head are handled together, so each K/V element is read from memory
//            once for all of them (GQA without repeating K/V); online softmax over tiles of TK keys
//            staged in workgroup memory; writes (acc[D], max, sum) per (row, query head, split).
//   combine  one workgroup per (row, query head): rescales the splits to a common max and divides.
// Splitting the keys gives a single decode query enough workgroups to fill the GPU and stream the
// cache at memory bandwidth. No score matrix exists anywhere: memory is the cache plus
// rows x Nq x splits x (D + 2) floats.
//
// Shapes: q [rows, Nq * D] with row = t * B + b (already rotated; scale applied here);
// keys/values [capacity, B, Nkv * D] (SBH), query row (t, b) sees positions 0 .. start + t;
// partials [rows, Nq, splits, D + 2]; out [rows, Nq * D].
import { UniformLayout } from '../../../engines/webgpu/uniforms.js';

export interface DecodeAttentionOptions {
  headDim: number;
  /** Query heads per KV head (Nq / Nkv). */
  group: number;
  /** Keys staged in workgroup memory at a time. */
  tileKeys: number;
  workgroupSize: number;
}

export const DECODE_PARAMS = new UniformLayout('DecodeParams', { batch: 'u32', start: 'u32', heads_q: 'u32', heads_kv: 'u32', splits: 'u32', keys_per_split: 'u32', scale: 'f32' });

/** Bytes of workgroup memory the partial kernel declares. */
export function decodeSharedBytes(o: Pick<DecodeAttentionOptions, 'headDim' | 'group' | 'tileKeys'>): number {
  return 4 * (o.group * o.headDim + o.tileKeys * (o.headDim + 1) + o.group * o.tileKeys + 3 * o.group);
}

/** Scores of keys outside the range: finite, so no arithmetic meets an infinity. */
const NO_SCORE = '-3.0e38';

export function buildDecodePartial(o: DecodeAttentionOptions): string {
  const { headDim: D, group: G, tileKeys: TK, workgroupSize: WG } = o;
  const acc = Math.ceil((G * D) / WG);
  return `${DECODE_PARAMS.wgsl()}
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> keys: array<f32>;
@group(0) @binding(2) var<storage, read> values: array<f32>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;
@group(0) @binding(4) var<uniform> params: DecodeParams;

const D = ${D}u;
const G = ${G}u;
const TK = ${TK}u;
const WG = ${WG}u;
const ACC = ${acc}u; // outputs (head, dim) owned by each thread
// key rows are padded by one float so the threads of a score step, which read one key each,
// hit different memory banks
const K_STRIDE = D + 1u;

var<workgroup> q_tile: array<f32, ${G * D}>;
var<workgroup> k_tile: array<f32, ${TK * (D + 1)}>;
var<workgroup> p_tile: array<f32, ${G * TK}>;
var<workgroup> run_max: array<f32, ${G}>;
var<workgroup> run_sum: array<f32, ${G}>;
var<workgroup> rescale: array<f32, ${G}>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let kv_head = wid.x;
  let row = wid.y;
  let split = wid.z;
  let b = row % params.batch;
  let visible = params.start + row / params.batch + 1u;
  let lo = split * params.keys_per_split;
  let hi = min(lo + params.keys_per_split, visible);
  let position_stride = params.batch * params.heads_kv * D;
  let kv_base = (b * params.heads_kv + kv_head) * D;
  let q_base = (row * params.heads_q + kv_head * G) * D;

  for (var i = lid.x; i < G * D; i += WG) { q_tile[i] = q[q_base + i] * params.scale; }
  if (lid.x < G) {
    run_max[lid.x] = ${NO_SCORE};
    run_sum[lid.x] = 0.0;
  }
  var acc: array<f32, ACC>;
  for (var a = 0u; a < ACC; a++) { acc[a] = 0.0; }
  workgroupBarrier();

  for (var j0 = lo; j0 < hi; j0 += TK) {
    let n = min(TK, hi - j0);
    for (var i = lid.x; i < TK * D; i += WG) {
      let j = i / D;
      var k = 0.0;
      if (j < n) { k = keys[(j0 + j) * position_stride + kv_base + i % D]; }
      k_tile[j * K_STRIDE + i % D] = k;
    }
    workgroupBarrier();
    for (var e = lid.x; e < G * TK; e += WG) {
      let h = e / TK;
      let j = e % TK;
      var s = ${NO_SCORE};
      if (j < n) {
        s = 0.0;
        for (var d = 0u; d < D; d++) { s += q_tile[h * D + d] * k_tile[j * K_STRIDE + d]; }
      }
      p_tile[e] = s;
    }
    workgroupBarrier();
    if (lid.x < G) {
      let h = lid.x;
      var m = run_max[h];
      for (var j = 0u; j < n; j++) { m = max(m, p_tile[h * TK + j]); }
      let c = exp(run_max[h] - m);
      var sum = 0.0;
      for (var j = 0u; j < TK; j++) {
        var p = 0.0;
        if (j < n) { p = exp(p_tile[h * TK + j] - m); }
        p_tile[h * TK + j] = p;
        sum += p;
      }
      run_sum[h] = run_sum[h] * c + sum;
      run_max[h] = m;
      rescale[h] = c;
    }
    workgroupBarrier();
    for (var a = 0u; a < ACC; a++) {
      let o = lid.x + a * WG;
      if (o < G * D) {
        let h = o / D;
        let d = o % D;
        var v = acc[a] * rescale[h];
        for (var j = 0u; j < n; j++) { v += p_tile[h * TK + j] * values[(j0 + j) * position_stride + kv_base + d]; }
        acc[a] = v;
      }
    }
    workgroupBarrier();
  }

  let part_stride = D + 2u;
  for (var a = 0u; a < ACC; a++) {
    let o = lid.x + a * WG;
    if (o < G * D) {
      let h = o / D;
      partials[((row * params.heads_q + kv_head * G + h) * params.splits + split) * part_stride + o % D] = acc[a];
    }
  }
  if (lid.x < G) {
    let at = ((row * params.heads_q + kv_head * G + lid.x) * params.splits + split) * part_stride + D;
    partials[at] = run_max[lid.x];
    partials[at + 1u] = run_sum[lid.x];
  }
}
`;
}

export const COMBINE_PARAMS = new UniformLayout('CombineParams', { row_heads: 'u32', splits: 'u32' });
export const COMBINE_WORKGROUP = 64;

/** out[(row, h), d] = sum_s e^(m_s - M) acc_s[d] / sum_s e^(m_s - M) l_s. Dispatch 2-D over row x head. */
export function buildDecodeCombine(o: { headDim: number }): string {
  return `${COMBINE_PARAMS.wgsl()}
@group(0) @binding(0) var<storage, read> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: CombineParams;

const D = ${o.headDim}u;

@compute @workgroup_size(${COMBINE_WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let rh = wid.x + wid.y * nwg.x;
  if (rh >= params.row_heads) { return; }
  let base = rh * params.splits * (D + 2u);
  var m = ${NO_SCORE};
  for (var s = 0u; s < params.splits; s++) { m = max(m, partials[base + s * (D + 2u) + D]); }
  var denominator = 0.0;
  for (var s = 0u; s < params.splits; s++) {
    let at = base + s * (D + 2u);
    denominator += exp(partials[at + D] - m) * partials[at + D + 1u];
  }
  for (var d = lid.x; d < D; d += ${COMBINE_WORKGROUP}u) {
    var numerator = 0.0;
    for (var s = 0u; s < params.splits; s++) {
      let at = base + s * (D + 2u);
      numerator += exp(partials[at + D] - m) * partials[at + d];
    }
    out[rh * D + d] = numerator / denominator;
  }
}
`;
}

/**
 * How to split `keys` visible positions: enough workgroups (Nkv x rows x splits) to fill a GPU of
 * `targetWorkgroups`, each split a whole number of tiles.
 */
export function chooseSplits(keys: number, kvHeads: number, rows: number, tileKeys: number, targetWorkgroups = 256): { splits: number; keysPerSplit: number } {
  const tiles = Math.max(1, Math.ceil(keys / tileKeys));
  const wanted = Math.max(1, Math.ceil(targetWorkgroups / (kvHeads * rows)));
  const tilesPerSplit = Math.ceil(tiles / Math.min(wanted, tiles));
  const keysPerSplit = tilesPerSplit * tileKeys;
  return { splits: Math.ceil(Math.max(keys, 1) / keysPerSplit), keysPerSplit };
}
