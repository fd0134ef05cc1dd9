// WGSL of the approximate attentions' elementwise and reduction kernels; the products are the
// strided batched matmul (ops/gemm/webgpu/matmul.wgsl.ts). Every intermediate is f32, one plane
// per (batch, query head) = bh: features φ [bh][S][F], [V | 1] [bh][Sk][Dv+1], states
// [bh][chunk][F][Dv+1], numerators [bh][S][Dv+1]. q, k, v, out keep their layout and dtype.
import { type FloatDType, arrayElement, loadFloat, readBinding } from '../../../engines/webgpu/wgsl.js';
import { UniformLayout } from '../../../engines/webgpu/uniforms.js';
import type { ModsKernelOptions } from '../../attention/mods/plan.js';
import { buildModsWgsl, needsModData } from '../../attention/mods/wgsl.js';

/** One uniform block for every kernel here (fields a kernel does not use stay 0). */
export const APPROX_PARAMS = new UniformLayout('ApproxParams', {
  /** Element strides (b, h, s, d) of the input read (q, k or v), or of the output written. */
  x_strides: 'vec4u',
  x_off: 'u32',
  heads: 'u32',
  /** Query heads per key/value head: plane bh reads input head (bh % heads) / group. */
  group: 'u32',
  seq: 'u32',
  /** Columns of a row: D (features, V) or F (Performer rows). */
  cols: 'u32',
  /** Rows in the whole dispatch (rows kernels). */
  rows: 'u32',
  /** Chunks (prefix scan), or the key/value heads (Performer keys). */
  chunks: 'u32',
  /** Words of one chunk state (prefix scan). */
  words: 'u32',
  /** Half of scale, |x|²·scale/2 (Performer keys), and the dim of an input row. */
  half_scale: 'f32',
  dim: 'u32',
  has_pre: 'u32',
  dv: 'u32',
});

/** The uniform block's bytes; fields left out are 0 (group 1). */
export function packApproxParams(values: Partial<Parameters<typeof APPROX_PARAMS.pack>[0]>): ArrayBuffer {
  return APPROX_PARAMS.pack({
    x_strides: [0, 0, 0, 0], x_off: 0, heads: 0, group: 1, seq: 0, cols: 0, rows: 0, chunks: 0, words: 0, half_scale: 0, dim: 0, has_pre: 0, dv: 0, ...values,
  } as Parameters<typeof APPROX_PARAMS.pack>[0]);
}

/** Element (b, head, s, d) of the bound input. */
const INPUT: string = 'fn input_at(b: u32, head: u32, s: u32, d: u32) -> f32 {\n  return x_at(ap.x_off + b * ap.x_strides.x + head * ap.x_strides.y + s * ap.x_strides.z + d * ap.x_strides.w);\n}';

/** The uniform block, the input x (binding 1, when `dtype` is given) and `extra` declarations. */
const header = (dtype: FloatDType | undefined, extra = '') => `${APPROX_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> ap: ApproxParams;
${dtype ? `${readBinding(1, 'x_buf', arrayElement(dtype))}
${loadFloat('x_at', 'x_buf', dtype)}
${INPUT}` : ''}
${extra}`;


export interface FeatureKernelOptions {
  dtype: FloatDType;
  /** φ as a score function of (score = x, kv = d). */
  map: ModsKernelOptions;
  /** φ stored as float16 pairs (halfPairs below); default float32. */
  half?: boolean;
}

/**
 * Float16 output as packed pairs: one thread per u32 word (two elements, pack2x16float, no
 * shader-f16 needed), each plane padded to whole words (ap.words per plane), so no word is shared
 * by two planes (two workgroups). Halves the intermediates' traffic for the tensor-core products,
 * which stage their operands as f16 anyway (the same rounding, earlier).
 */
function halfPairs(cols: string): string {
  return `@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let word = wg.x * 256u + li;
  let bh = wg.y;
  let n = ap.seq * ${cols};
  if (2u * word >= n) { return; }
  var pair = vec2<f32>(element(bh, 2u * word), 0.0);
  if (2u * word + 1u < n) { pair.y = element(bh, 2u * word + 1u); }
  out_half[bh * ap.words + word] = pack2x16float(pair);
}
`;
}

/** φ(x) of every element of q or k into φ [bh][seq][cols]; one thread per element (or pair: o.half). */
export function buildFeatures(o: FeatureKernelOptions): string {
  if (o.half) {
    return `// fusedattn linear attention: elementwise feature map, float16 pairs
${header(o.dtype, '@group(0) @binding(2) var<storage, read_write> out_half: array<u32>;')}
${buildModsWgsl(o.map, { group: 0, binding: 3 })}

fn element(bh: u32, e: u32) -> f32 {
  let s = e / ap.cols;
  let d = e % ap.cols;
  let b = bh / ap.heads;
  let head = (bh % ap.heads) / ap.group;
  return score_mod(input_at(b, head, s, d), b, head, s, d, ap.seq, ap.seq);
}

${halfPairs('ap.cols')}`;
  }
  return `// fusedattn linear attention: elementwise feature map
${header(o.dtype, '@group(0) @binding(2) var<storage, read_write> phi: array<f32>;')}
${buildModsWgsl(o.map, { group: 0, binding: 3 })}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let e = wg.x * 256u + li;
  let bh = wg.y;
  if (e >= ap.seq * ap.cols) { return; }
  let s = e / ap.cols;
  let d = e % ap.cols;
  let b = bh / ap.heads;
  let head = (bh % ap.heads) / ap.group;
  phi[bh * ap.seq * ap.cols + e] = score_mod(input_at(b, head, s, d), b, head, s, d, ap.seq, ap.seq);
}
`;
}

/** Whether the feature kernel binds mod_data. */
export function featuresBindData(o: FeatureKernelOptions): boolean {
  return needsModData(o.map, false);
}

/** [V | 1] [bh][seq][cols + 1] from v (head (bh % heads) / group); one thread per element (or pair: o.half). */
export function buildAugment(o: { dtype: FloatDType; half?: boolean }): string {
  if (o.half) {
    return `// fusedattn linear attention: [V | 1], float16 pairs
${header(o.dtype, '@group(0) @binding(2) var<storage, read_write> out_half: array<u32>;')}

fn element(bh: u32, e: u32) -> f32 {
  let w = ap.cols + 1u;
  let s = e / w;
  let d = e % w;
  var value = 1.0;
  if (d < ap.cols) { value = input_at(bh / ap.heads, (bh % ap.heads) / ap.group, s, d); }
  return value;
}

${halfPairs('(ap.cols + 1u)')}`;
  }
  return `// fusedattn linear attention: [V | 1]
${header(o.dtype, '@group(0) @binding(2) var<storage, read_write> aug: array<f32>;')}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let w = ap.cols + 1u;
  let e = wg.x * 256u + li;
  let bh = wg.y;
  if (e >= ap.seq * w) { return; }
  let s = e / w;
  let d = e % w;
  var value = 1.0;
  if (d < ap.cols) { value = input_at(bh / ap.heads, (bh % ap.heads) / ap.group, s, d); }
  aug[bh * ap.seq * w + e] = value;
}
`;
}

/**
 * Performer rows of X·Wᵀ (X·Wᵀ·sqrt(scale), [rows][cols]), one workgroup per row. Queries: the row
 * becomes exp(· − row max) in place. Keys: r = row max − scale·|k|²/2 and the half norm go to
 * `stats` [rows][2] (the row's input k is read for the norm).
 */
export function buildPerformerRows(o: { dtype: FloatDType; keys: boolean }): string {
  return `// fusedattn Performer: per-row stabiliser${o.keys ? ' and log weight of each key' : ', then exp'}
${header(o.keys ? o.dtype : undefined, `@group(0) @binding(2) var<storage, read_write> xw: array<f32>;${o.keys ? '\n@group(0) @binding(3) var<storage, read_write> stats: array<f32>;' : ''}`)}

var<workgroup> part: array<f32, 64>;
var<workgroup> part2: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = wg.x + wg.y * 65535u;
  if (row >= ap.rows) { return; }
  let base = row * ap.cols;
  var top = -3.0e38;
  for (var c = li; c < ap.cols; c += 64u) { top = max(top, xw[base + c]); }
  var norm = 0.0;
${o.keys ? `  // rows are (b, key head, s): the input row of k for the norm
  let s = row % ap.seq;
  let plane = row / ap.seq;
  for (var d = li; d < ap.dim; d += 64u) {
    let x = input_at(plane / ap.heads, plane % ap.heads, s, d);
    norm += x * x;
  }` : ''}
  part[li] = top;
  part2[li] = norm;
  workgroupBarrier();
  for (var stride = 32u; stride > 0u; stride >>= 1u) {
    if (li < stride) {
      part[li] = max(part[li], part[li + stride]);
      part2[li] += part2[li + stride];
    }
    workgroupBarrier();
  }
  let row_max = part[0];
${o.keys ? `  if (li == 0u) {
    let half_norm = part2[0] * ap.half_scale;
    stats[2u * row] = row_max - half_norm;
    stats[2u * row + 1u] = half_norm;
  }` : '  for (var c = li; c < ap.cols; c += 64u) { xw[base + c] = exp(xw[base + c] - row_max); }'}
}
`;
}

/** Per key plane (b, key head): G = max_j r_j into stats_g[plane]; one workgroup per plane. */
export function buildPlaneMax(): string {
  return `// fusedattn Performer: one stabiliser per key head
${APPROX_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> ap: ApproxParams;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> plane_max: array<f32>;

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let plane = wg.x;
  var top = -3.0e38;
  for (var s = li; s < ap.seq; s += 256u) { top = max(top, stats[2u * (plane * ap.seq + s)]); }
  part[li] = top;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride >>= 1u) {
    if (li < stride) { part[li] = max(part[li], part[li + stride]); }
    workgroupBarrier();
  }
  if (li == 0u) { plane_max[plane] = part[0]; }
}
`;
}

/** Performer key features φ [bh][seq][cols] = exp(X·Wᵀ − |k|²/2 − G) from the key head's rows. */
export function buildPerformerKeys(): string {
  return `// fusedattn Performer: key features with one stabiliser per key head
${APPROX_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> ap: ApproxParams;
@group(0) @binding(2) var<storage, read_write> xw: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> plane_max: array<f32>;
@group(0) @binding(5) var<storage, read_write> phi: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let e = wg.x * 256u + li;
  let bh = wg.y;
  if (e >= ap.seq * ap.cols) { return; }
  let s = e / ap.cols;
  // key plane of query plane bh: (b, (h / group))
  let plane = (bh / ap.heads) * ap.chunks + (bh % ap.heads) / ap.group;
  let row = plane * ap.seq + s;
  phi[bh * ap.seq * ap.cols + e] = exp(xw[row * ap.cols + e % ap.cols] - stats[2u * row + 1u] - plane_max[plane]);
}
`;
}

/**
 * A walk over the chunk states [bh][chunk][words], one thread per word, in chunk order (the same
 * bits every run):
 *   'exclusive'  causal: each state replaced by the sum of the states before it (+ the pre-state,
 *                the keys before the first chunk), in place;
 *   'total'      non-causal, the state split over key chunks (so a few heads of long sequences
 *                still fill the GPU): total[bh] = the sum of the chunks' states.
 */
export function buildChunkScan(o: { mode: 'exclusive' | 'total' }): string {
  const total = o.mode === 'total';
  return `// fusedattn ${total ? "linear attention: the key chunks' states summed" : 'causal linear attention: states of the keys before each chunk'}
${APPROX_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> ap: ApproxParams;
@group(0) @binding(2) var<storage, ${total ? 'read' : 'read_write'}> states: array<f32>;
@group(0) @binding(3) var<storage, read_write> ${total ? 'total' : 'pre'}: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let e = wg.x * 256u + li;
  let bh = wg.y;
  if (e >= ap.words) { return; }
  var acc = ${total ? '0.0' : 'select(0.0, pre[bh * ap.words + e], ap.has_pre != 0u)'};
  let base = bh * ap.chunks * ap.words + e;
  for (var c = 0u; c < ap.chunks; c++) {
    let state = states[base + c * ap.words];${total ? '' : `
    states[base + c * ap.words] = acc;`}
    acc += state;
  }${total ? `
  total[bh * ap.words + e] = acc;` : ''}
}
`;
}

/**
 * out = num[:, :Dv] / num[:, Dv] (0 where the normaliser is 0), written in q's layout and dtype:
 * one thread per output element (float32) or word (two float16 halves), positions decoded from
 * the output's strides, largest first.
 */
export function buildNormalize(o: { out: FloatDType }): string {
  const f16 = o.out === 'float16';
  return `// fusedattn linear attention: normalise into the output
${APPROX_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> ap: ApproxParams;
@group(0) @binding(2) var<storage, read_write> num: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<${f16 ? 'u32' : 'f32'}>;
// the output's dims in stride order (largest first): stride and which of b, h, s, d it is
@group(0) @binding(4) var<storage, read> order: array<vec2<u32>, 4>;

fn value_at(e: u32) -> f32 {
  var rest = e;
  var idx = vec4<u32>();
  for (var k = 0u; k < 4u; k++) {
    let dim = order[k];
    idx[dim.y] = rest / dim.x;
    rest = rest % dim.x;
  }
  let w = ap.dv + 1u;
  let row = ((idx.x * ap.heads + idx.y) * ap.seq + idx.z) * w;
  let den = num[row + ap.dv];
  return select(0.0, num[row + idx.w] / den, den != 0.0);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let e = (wg.x + wg.y * 65535u) * 256u + li;
${f16 ? `  if (2u * e >= ap.rows) { return; }
  var pair = vec2<f32>(value_at(2u * e), 0.0);
  if (2u * e + 1u < ap.rows) { pair.y = value_at(2u * e + 1u); }
  out[e] = pack2x16float(pair);` : `  if (e >= ap.rows) { return; }
  out[e] = value_at(e);`}
}
`;
}

/** The causal mask of a chunk's own scores: key t of the chunk is visible to row r iff t <= r. */
export const CAUSAL_CHUNK_EPILOGUE = 'fn epilogue(value: f32, zo: u32, zi: u32, m: u32, n: u32) -> f32 { return select(value, 0.0, n > m); }';
