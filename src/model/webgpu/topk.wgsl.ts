// The k largest logits of each row on the GPU, so a decode step reads back a few numbers instead of
// the whole vocabulary (600 KB per token at 150k tokens). One workgroup per (chunk of a row, row):
// it stages the chunk in workgroup memory, then takes its maximum k times (ties: the lower index),
// removing each winner. The host merges the chunks' lists (model/sampling.ts): the k largest of a
// row are among the k largest of each chunk. NaN logits are counted per chunk, so the host can
// refuse them as the CPU path does. Greedy decoding is k = 1.
//
//   logits  [rows, n] float32
//   out     [rows, chunks, 2k + 1] u32: k value bits (largest first), k indices, NaN count
import { UniformLayout } from '../../engines/webgpu/uniforms.js';

export interface TopKOptions {
  k: number;
  workgroupSize: number;
  /** Logits per workgroup (a multiple of workgroupSize). */
  chunk: number;
}

export const TOPK_MAX = 64;
export const TOPK_PARAMS = new UniformLayout('TopKParams', { n: 'u32', chunks: 'u32' });

export function buildTopK(o: TopKOptions): string {
  const { k: K, workgroupSize: WG, chunk: C } = o;
  if (K < 1 || K > TOPK_MAX) throw new Error(`buildTopK: k must be 1..${TOPK_MAX}, got ${K}`);
  return `${TOPK_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> params: TopKParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

const K = ${K}u;
const WG = ${WG}u;
const C = ${C}u;
// logits as bits (a NaN pattern marks taken and padding entries; bits survive where a float NaN may not)
var<workgroup> values: array<u32, C>;
var<workgroup> best_value: array<f32, WG>;
var<workgroup> best_index: array<u32, WG>;
var<workgroup> nans: atomic<u32>;

fn neg_inf() -> f32 {
  var bits = 0xff800000u;
  return bitcast<f32>(bits);
}

// taken (and padding) entries hold this NaN pattern: NaN logits were replaced by -inf on load
const TAKEN = 0x7fc00001u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let chunk = wid.x;
  let row = wid.y;
  let first = chunk * C;
  if (lid.x == 0u) { atomicStore(&nans, 0u); }
  workgroupBarrier();
  var count = 0u;
  for (var i = lid.x; i < C; i += WG) {
    var bits = TAKEN;
    if (first + i < params.n) {
      bits = bitcast<u32>(logits[row * params.n + first + i]);
      // NaN: exponent all ones, mantissa not zero (a float compare may be folded away)
      if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0u) {
        count += 1u;
        bits = 0xff800000u; // -inf
      }
    }
    values[i] = bits;
  }
  if (count > 0u) { atomicAdd(&nans, count); }
  let base = (row * params.chunks + chunk) * (2u * K + 1u);
  for (var r = 0u; r < K; r++) {
    workgroupBarrier();
    var bv = neg_inf();
    var bi = 0xffffffffu;
    for (var i = lid.x; i < C; i += WG) {
      let bits = values[i];
      let v = bitcast<f32>(bits);
      // strictly greater: the first (lowest) index wins ties within a thread's ascending walk
      if (bits != TAKEN && (v > bv || bi == 0xffffffffu)) { bv = v; bi = i; }
    }
    best_value[lid.x] = bv;
    best_index[lid.x] = bi;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
      if (lid.x < stride) {
        let ov = best_value[lid.x + stride];
        let oi = best_index[lid.x + stride];
        let mv = best_value[lid.x];
        let mi = best_index[lid.x];
        if (oi != 0xffffffffu && (mi == 0xffffffffu || ov > mv || (ov == mv && oi < mi))) {
          best_value[lid.x] = ov;
          best_index[lid.x] = oi;
        }
      }
      workgroupBarrier();
    }
    if (lid.x == 0u) {
      let i = best_index[0];
      out[base + r] = bitcast<u32>(best_value[0]);
      if (i == 0xffffffffu) {
        out[base + K + r] = 0xffffffffu;
      } else {
        out[base + K + r] = first + i;
        values[i] = TAKEN;
      }
    }
  }
  workgroupBarrier();
  if (lid.x == 0u) { out[base + 2u * K] = atomicLoad(&nans); }
}
`;
}
