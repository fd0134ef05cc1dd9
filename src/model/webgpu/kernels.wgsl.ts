// WGSL builders for the decoder's small kernels on WebGPU: embedding gather, RMSNorm, SwiGLU,
// residual add, bias add, RoPE in place, KV-cache append, and a plain streaming read (the bandwidth ceiling the
// decode attention kernel is measured against). Each is a pure function of a typed options object
// returning readable WGSL; the pipeline cache keys on the same object.
// Activations are f32 [rows, cols]; weights f32 or float16 bound as array<u32> and read with
// unpack2x16float (no shader-f16 feature needed). Params are UniformLayout structs.
import { UniformLayout } from '../../engines/webgpu/uniforms.js';
import { type FloatDType, arrayElement, loadFloat } from '../../engines/webgpu/wgsl.js';

/** How a weight is bound: float32, or float16 halves read as u32 pairs. */
export type WeightDType = FloatDType;

/** Threads per workgroup of the elementwise kernels: the compat-level default limit. */
export const ELEMENTWISE_WORKGROUP = 128;
/** Flat element index of 1-D work dispatched as a 2-D grid (more than 65535 workgroups of work). */
const flatIndex = `gid.x + gid.y * (nwg.x * ${ELEMENTWISE_WORKGROUP}u)`;

export const EMBED_PARAMS = new UniformLayout('EmbedParams', { rows: 'u32', cols: 'u32', part_start: 'u32', part_rows: 'u32' });

/**
 * out[r, c] = table[ids[r], c] for the ids inside this part of the table (rows part_start ..
 * part_start + part_rows - 1; big tables are split in parts that fit a storage binding, one
 * dispatch each). Dispatch (ceil(cols / 64), rows).
 */
export function buildEmbedding(o: { table: WeightDType }): string {
  return `${EMBED_PARAMS.wgsl()}
@group(0) @binding(0) var<storage, read> table: array<${arrayElement(o.table)}>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: EmbedParams;
${loadFloat('load_table', 'table', o.table)}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let r = gid.y;
  if (c >= params.cols || r >= params.rows) { return; }
  let id = ids[r];
  if (id < params.part_start || id >= params.part_start + params.part_rows) { return; }
  out[r * params.cols + c] = load_table((id - params.part_start) * params.cols + c);
}
`;
}

export const RMSNORM_PARAMS = new UniformLayout('RmsNormParams', { cols: 'u32', eps: 'f32' });

/** out[r] = x[r] / sqrt(mean(x[r]²) + eps) * weight: one workgroup per row. Dispatch (rows). */
export function buildRmsNorm(o: { weight: WeightDType; workgroupSize: number }): string {
  const wg = o.workgroupSize;
  return `${RMSNORM_PARAMS.wgsl()}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<${arrayElement(o.weight)}>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: RmsNormParams;
${loadFloat('load_weight', 'weight', o.weight)}

const WG = ${wg}u;
var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = wid.x * params.cols;
  var ss = 0.0;
  for (var i = lid.x; i < params.cols; i += WG) {
    let v = x[base + i];
    ss += v * v;
  }
  partial[lid.x] = ss;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid.x < stride) { partial[lid.x] += partial[lid.x + stride]; }
    workgroupBarrier();
  }
  let inv = inverseSqrt(partial[0] / f32(params.cols) + params.eps);
  for (var i = lid.x; i < params.cols; i += WG) {
    out[base + i] = x[base + i] * inv * load_weight(i);
  }
}
`;
}

export const ELEMENTWISE_PARAMS = new UniformLayout('ElementwiseParams', { n: 'u32', cols: 'u32' });

/**
 * Elementwise ops over n elements, dispatched as a 2-D grid of ELEMENTWISE_WORKGROUP-wide workgroups:
 *   'swiglu'   out = silu(a) * b
 *   'add'      a += b            (the residual stream, in place)
 *   'bias'     a[i] += bias[i % cols]   (bias add after a projection, in place)
 */
export function buildElementwise(o: { op: 'swiglu' | 'add' | 'bias'; bias?: WeightDType }): string {
  // the params follow the buffers: binding 3 for swiglu, 2 for the in-place ops
  const params = (binding: number) => `${ELEMENTWISE_PARAMS.wgsl()}
@group(0) @binding(${binding}) var<uniform> params: ElementwiseParams;`;
  const entry = (body: string) => `
@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${flatIndex};
  if (i >= params.n) { return; }
  ${body}
}
`;
  switch (o.op) {
    case 'swiglu':
      return `@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
${params(3)}
${entry('let g = gate[i];\n  out[i] = g / (1.0 + exp(-g)) * up[i];')}`;
    case 'add':
      return `@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
${params(2)}
${entry('x[i] += y[i];')}`;
    case 'bias':
      return `@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<${arrayElement(o.bias ?? 'float32')}>;
${params(2)}
${loadFloat('load_bias', 'bias', o.bias ?? 'float32')}
${entry('x[i] += load_bias(i % params.cols);')}`;
  }
}

export const ROPE_PARAMS = new UniformLayout('RopeParams', { rows: 'u32', batch: 'u32', heads: 'u32', half: 'u32', table_rows: 'u32' });

/**
 * RoPE in place on x [rows, heads * D] with row = t * batch + b, D = 2 * half ("rotate half" pairs
 * (i, i + half)); the table holds cos [table_rows, half] then sin [table_rows, half] for the step's
 * positions (row t for token t). One thread per pair.
 */
export function buildRope(): string {
  return `${ROPE_PARAMS.wgsl()}
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<uniform> params: RopeParams;

@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let pair = ${flatIndex};
  if (pair >= params.rows * params.heads * params.half) { return; }
  let i = pair % params.half;
  let row_head = pair / params.half;
  let t = row_head / params.heads / params.batch;
  let base = row_head * 2u * params.half;
  let c = table[t * params.half + i];
  let s = table[(params.table_rows + t) * params.half + i];
  let a = x[base + i];
  let b = x[base + i + params.half];
  x[base + i] = a * c - b * s;
  x[base + i + params.half] = b * c + a * s;
}
`;
}

export const KV_APPEND_PARAMS = new UniformLayout('KvAppendParams', { n: 'u32', position_floats: 'u32' });

/**
 * The new tokens' keys and values (rows t * B + b, [rows, Nkv * D] each) into the SBH caches at
 * position start (read from the step buffer, so a recorded step replays at the next position):
 * the rows are one contiguous block at start * position_floats. One thread per float.
 */
export function buildKvAppend(): string {
  return `${KV_APPEND_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> params: KvAppendParams;
@group(0) @binding(1) var<storage, read> k_new: array<f32>;
@group(0) @binding(2) var<storage, read> v_new: array<f32>;
@group(0) @binding(3) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(5) var<storage, read> step: array<u32>;

@compute @workgroup_size(${ELEMENTWISE_WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = ${flatIndex};
  if (i >= params.n) { return; }
  let at = step[0] * params.position_floats + i;
  k_cache[at] = k_new[i];
  v_cache[at] = v_new[i];
}
`;
}

export const STREAM_PARAMS = new UniformLayout('StreamParams', { n4: 'u32', per_thread: 'u32' });

/**
 * The bandwidth ceiling: a grid-stride read of the whole buffer with 16-byte loads, `unroll` of them
 * issued back to back per thread before any is used (several loads in flight, as a good memory-bound
 * kernel has), one sum written per thread so the reads cannot be optimised away. `per_thread` counts
 * groups of `unroll` loads. Bytes written are negligible.
 */
export function buildStreamRead(o: { workgroupSize: number; unroll?: number }): string {
  const U = o.unroll ?? 1;
  const loads = Array.from({ length: U }, (_, u) => `    let i${u} = base + ${u}u * threads;
    if (i${u} < params.n4) { acc${u} += src[i${u}]; }`).join('\n');
  return `${STREAM_PARAMS.wgsl()}
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> sums: array<f32>;
@group(0) @binding(2) var<uniform> params: StreamParams;

@compute @workgroup_size(${o.workgroupSize})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let threads = nwg.x * ${o.workgroupSize}u;
${Array.from({ length: U }, (_, u) => `  var acc${u} = vec4<f32>(0.0);`).join('\n')}
  for (var k = 0u; k < params.per_thread; k++) {
    let base = gid.x + k * ${U}u * threads;
${loads}
  }
  let acc = ${Array.from({ length: U }, (_, u) => `acc${u}`).join(' + ')};
  sums[gid.x] = acc.x + acc.y + acc.z + acc.w;
}
`;
}
