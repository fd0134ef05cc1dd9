// The small kernels of the unfused block (the traditional PyTorch/HF eager sequence): bias add,
// strided 4-D copy (transposes, repeat-KV, KV-cache append and gather), RoPE on a [B, N, S, D]
// tensor, scale + causal mask of the score matrix, row softmax. Each is one plain dispatch; the
// GEMMs are the shared linear layer (gemm.ts) and the runtime's batched matmul.
import { UniformLayout } from '../../engines/webgpu/uniforms.js';
import { NON_FINITE_FNS, NO_SCORE } from '../../engines/webgpu/wgsl.js';

/** Invocations per workgroup of the element-wise kernels. */
export const ELEMENTWISE_THREADS = 256;
const MAX_GRID_X = 32768;

/** A 2-D grid covering `items` invocations (more than 65535 workgroups need the second dimension). */
export function flatGrid(items: number, threads = ELEMENTWISE_THREADS): [number, number] {
  const groups = Math.max(1, Math.ceil(items / threads));
  const x = Math.min(groups, MAX_GRID_X);
  return [x, Math.ceil(groups / x)];
}

const FLAT_INDEX = `(wg.y * nwg.x + wg.x) * ${ELEMENTWISE_THREADS}u + lid`;
const FLAT_ARGS = '@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32';

export const BIAS_ADD_PARAMS = new UniformLayout('BiasAddParams', { count: 'u32', cols: 'u32' });

/** x[r, c] += bias[c] over `count` elements of rows of `cols`. */
export function buildBiasAdd(): string {
  return `${BIAS_ADD_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> params: BiasAddParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;

@compute @workgroup_size(${ELEMENTWISE_THREADS})
fn main(${FLAT_ARGS}) {
  let e = ${FLAT_INDEX};
  if (e >= params.count) { return; }
  x[e] = x[e] + bias[e % params.cols];
}
`;
}

export const COPY4D_PARAMS = new UniformLayout('Copy4dParams', {
  dims: 'vec4u',
  src_strides: 'vec4u',
  dst_strides: 'vec4u',
  src_off: 'u32',
  dst_off: 'u32',
  /** Divisor of index 1 on the source side (repeat-KV: query head h reads KV head h / group). */
  src_div1: 'u32',
  count: 'u32',
});

/** dst[i0, i1, i2, i3] = src[i0, i1 / div1, i2, i3], both sides strided. */
export function buildCopy4d(): string {
  return `${COPY4D_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> params: Copy4dParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(${ELEMENTWISE_THREADS})
fn main(${FLAT_ARGS}) {
  let e = ${FLAT_INDEX};
  if (e >= params.count) { return; }
  let n = params.dims;
  let i3 = e % n.w;
  let i2 = (e / n.w) % n.z;
  let i1 = (e / (n.w * n.z)) % n.y;
  let i0 = e / (n.w * n.z * n.y);
  let s = params.src_strides;
  let d = params.dst_strides;
  dst[params.dst_off + i0 * d.x + i1 * d.y + i2 * d.z + i3 * d.w] = src[params.src_off + i0 * s.x + (i1 / params.src_div1) * s.y + i2 * s.z + i3 * s.w];
}
`;
}

export const ROPE_PARAMS = new UniformLayout('RopeParams', {
  /** Pairs to rotate: B * N * S * D/2. */
  count: 'u32',
  seq: 'u32',
  half: 'u32',
  /** R, rows of the cos table (sin starts at R * D/2). */
  rope_rows: 'u32',
});

/** RoPE in place on x [B, N, S, D] (contiguous), token s at position step[0] + s. */
export function buildRopeBnsd(): string {
  return `${ROPE_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> params: RopeParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> rope: array<f32>;
@group(0) @binding(3) var<storage, read> step: array<u32>;   // [start, rope_base]

@compute @workgroup_size(${ELEMENTWISE_THREADS})
fn main(${FLAT_ARGS}) {
  let e = ${FLAT_INDEX};
  if (e >= params.count) { return; }
  let i = e % params.half;
  let row = e / params.half;             // (b, n, s) flattened
  let s = row % params.seq;
  let trow = step[0] + s - step[1];
  let c = rope[trow * params.half + i];
  let sn = rope[(params.rope_rows + trow) * params.half + i];
  let base = row * 2u * params.half;
  let x1 = x[base + i];
  let x2 = x[base + i + params.half];
  x[base + i] = x1 * c - x2 * sn;
  x[base + i + params.half] = x2 * c + x1 * sn;
}
`;
}

export const SCALE_MASK_PARAMS = new UniformLayout('ScaleMaskParams', {
  count: 'u32',
  seq: 'u32',
  keys: 'u32',
  /** 1: the first step[0] keys are cached positions (query s sees keys <= start + s). */
  cached: 'u32',
  scale: 'f32',
});

/** scores [BN, S, L] in place: scale, then keys after the query's position get NO_SCORE. */
export function buildScaleMask(): string {
  return `${SCALE_MASK_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> params: ScaleMaskParams;
@group(0) @binding(1) var<storage, read_write> scores: array<f32>;
@group(0) @binding(2) var<storage, read> step: array<u32>;

@compute @workgroup_size(${ELEMENTWISE_THREADS})
fn main(${FLAT_ARGS}) {
  let e = ${FLAT_INDEX};
  if (e >= params.count) { return; }
  let j = e % params.keys;
  let i = (e / params.keys) % params.seq;
  let past = select(0u, step[0], params.cached != 0u);
  scores[e] = select(scores[e] * params.scale, ${NO_SCORE}, j > past + i);
}
`;
}

export const SOFTMAX_ROWS_PARAMS = new UniformLayout('SoftmaxRowsParams', { rows: 'u32', cols: 'u32' });
const SOFTMAX_THREADS = 64;

/** Softmax of each row of x [rows, cols] in place; one workgroup per row. */
export function buildSoftmaxRows(): string {
  return `${SOFTMAX_ROWS_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> params: SoftmaxRowsParams;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

const THREADS: u32 = ${SOFTMAX_THREADS}u;
var<workgroup> part: array<f32, ${SOFTMAX_THREADS}>;
${NON_FINITE_FNS}

@compute @workgroup_size(${SOFTMAX_THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg.y * nwg.x + wg.x;
  if (row >= params.rows) { return; }
  let base = row * params.cols;
  var mx = ${NO_SCORE};
  for (var j = lid; j < params.cols; j += THREADS) { mx = max(mx, x[base + j]); }
  part[lid] = mx;
  workgroupBarrier();
  for (var w = THREADS / 2u; w > 0u; w /= 2u) {
    if (lid < w) { part[lid] = max(part[lid], part[lid + w]); }
    workgroupBarrier();
  }
  mx = part[0];
  workgroupBarrier();
  var sum = 0.0;
  for (var j = lid; j < params.cols; j += THREADS) {
    // NaN or +inf: NaN, so the row comes out NaN (README "Failure behaviour"), never a silent 0
    let p = select(select(0.0, exp(x[base + j] - mx), x[base + j] > ${NO_SCORE}), nan_f32(), nan_or_pos_inf(x[base + j]));
    x[base + j] = p;
    sum += p;
  }
  part[lid] = sum;
  workgroupBarrier();
  for (var w = THREADS / 2u; w > 0u; w /= 2u) {
    if (lid < w) { part[lid] = part[lid] + part[lid + w]; }
    workgroupBarrier();
  }
  let inv = 1.0 / part[0];
  for (var j = lid; j < params.cols; j += THREADS) { x[base + j] = x[base + j] * inv; }
}
`;
}

/** A grid of one workgroup per row, for `rows` rows. */
export function rowGrid(rows: number): [number, number] {
  const x = Math.min(rows, MAX_GRID_X);
  return [x, Math.ceil(rows / x)];
}
