// The unfused WebGPU backward's own kernels (its matmuls are the GEMM family's strided matmul):
//   dscores   per score row, in place over the materialised [B, Nq, Sq, Sk] P and dP buffers:
//             dP ∘= Z, D = Σ P·dP, dS = P (dP - D) into dP, P ∘= Z (what dV needs) into P
//   group-sum dK / dV of GQA: the per-query-head partials [B, Nq, Sk, D] summed over each group
//             into the key/value layout (one thread per output element, a fixed order)
import { UniformLayout } from '../../../../engines/webgpu/uniforms.js';
import { readBinding } from '../../../../engines/webgpu/wgsl.js';
import { dropoutDeclarations } from '../../dropout/philox.wgsl.js';

export const DSCORES_PARAMS = new UniformLayout('DscoresParams', {
  s_strides: 'vec4u', // (b, h, i, unused) of the score buffers; j has stride 1
  batch: 'u32',
});

export const DSCORES_BINDINGS = { params: 0, meta: 1, probs: 2, grads: 3, dropout: 4 } as const;

export function buildDscores(o: { dropout: boolean }): string {
  const B = DSCORES_BINDINGS;
  return `// fusedattn unfused backward: dS = P ∘ (dP - rowsum(P ∘ dP)) per row${o.dropout ? ', with dropout' : ''}
${DSCORES_PARAMS.wgsl()}
@group(0) @binding(${B.params}) var<uniform> params: DscoresParams;
${readBinding(B.meta, 'seq_meta', 'u32')}
@group(0) @binding(${B.probs}) var<storage, read_write> p_buf: array<f32>;
@group(0) @binding(${B.grads}) var<storage, read_write> g_buf: array<f32>;
${o.dropout ? dropoutDeclarations(0, B.dropout) : ''}
const THREADS: u32 = 64u;
var<workgroup> red: array<f32, THREADS>;

@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wg.z;
  let h = wg.y;
  let i = wg.x;
  let nb = params.batch;
  let sq = seq_meta[2u * nb + b];
  let sk = seq_meta[3u * nb + b];
  if (i >= sq) { return; }
  let base = b * params.s_strides.x + h * params.s_strides.y + i * params.s_strides.z;
  var d = 0.0;
  for (var j = lid; j < sk; j += THREADS) {
    var g = g_buf[base + j];
${o.dropout ? `    let z = dropout_factor(dropout_words(dp.seed, dp.offset, b * dp.heads + h, i, j >> 3u), j & 7u, dp.threshold, dp.scale);
    g = g * z;
    g_buf[base + j] = g;` : ''}
    d += p_buf[base + j] * g;
  }
  red[lid] = d;
  workgroupBarrier();
  for (var half = THREADS / 2u; half > 0u; half /= 2u) {
    if (lid < half) { red[lid] += red[lid + half]; }
    workgroupBarrier();
  }
  let total = red[0];
  for (var j = lid; j < sk; j += THREADS) {
    let p = p_buf[base + j];
    g_buf[base + j] = p * (g_buf[base + j] - total);
${o.dropout ? '    p_buf[base + j] = p * dropout_factor(dropout_words(dp.seed, dp.offset, b * dp.heads + h, i, j >> 3u), j & 7u, dp.threshold, dp.scale);' : ''}
  }
}
`;
}

export const GROUP_SUM_PARAMS = new UniformLayout('GroupSumParams', {
  src_strides: 'vec4u', // (b, query head, s, d) of the partials
  dst_strides: 'vec4u', // (b, kv head, s, d) of the gradient
  batch: 'u32',
  heads_kv: 'u32',
  group: 'u32',
  dim: 'u32',
  rows: 'u32', // longest key length
});

export const GROUP_SUM_BINDINGS = { params: 0, meta: 1, src: 2, dst: 3 } as const;

export function buildGroupSum(): string {
  const B = GROUP_SUM_BINDINGS;
  return `// fusedattn unfused backward: dK / dV summed over the query heads of each GQA group
${GROUP_SUM_PARAMS.wgsl()}
@group(0) @binding(${B.params}) var<uniform> params: GroupSumParams;
${readBinding(B.meta, 'seq_meta', 'u32')}
${readBinding(B.src, 'src', 'f32')}
@group(0) @binding(${B.dst}) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let d = gid.x;
  let s = gid.y;
  let bh = gid.z;
  let b = bh / params.heads_kv;
  let hk = bh % params.heads_kv;
  let sk = seq_meta[3u * params.batch + b];
  if (d >= params.dim || s >= sk) { return; }
  var sum = 0.0;
  for (var g = 0u; g < params.group; g++) {
    let st = params.src_strides;
    sum += src[b * st.x + (hk * params.group + g) * st.y + s * st.z + d * st.w];
  }
  let dt = params.dst_strides;
  dst[b * dt.x + hk * dt.y + (seq_meta[params.batch + b] + s) * dt.z + d * dt.w] = sum;
}
`;
}
