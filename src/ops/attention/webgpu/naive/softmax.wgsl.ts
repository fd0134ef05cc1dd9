// Step 2 of the naive path: softmax of each score row in place (S -> P), in f32, and the LSE.
// Rows whose scores are all NO_SCORE (hidden) become all zeros with LSE -inf, as in the reference;
// a row holding POISON_SCORE (a NaN or +inf score) becomes all NaN, LSE NaN. Scores are in units of
// beta (score.wgsl.ts): weights exp(beta·(s - max)), LSE beta·max + log(sum).
// One workgroup of 64 threads per (query i, head h, sequence b).
import { NEG_INF_FN, NON_FINITE_FNS, NO_SCORE, POISON_SCORE, readBinding } from '../../../../engines/webgpu/wgsl.js';
import { UniformLayout } from '../../../../engines/webgpu/uniforms.js';

export interface SoftmaxOptions {
  returnLse: boolean;
}

export const SOFTMAX_PARAMS = new UniformLayout('SoftmaxParams', {
  /** Element strides of the score buffer for (b, h, i); j has stride 1. */
  s_strides: 'vec4u',
  lse_strides: 'vec4u',
  batch: 'u32',
  /** max(1, |scale|): the unit of the scores. */
  beta: 'f32',
});

export const SOFTMAX_BINDINGS = { params: 0, meta: 1, scores: 2, lse: 3 } as const;

export function buildSoftmax(o: SoftmaxOptions): string {
  const B = SOFTMAX_BINDINGS;
  return `// fusedattn naive attention, step 2: row softmax in place${o.returnLse ? ' + LSE' : ''}
${SOFTMAX_PARAMS.wgsl()}
@group(0) @binding(${B.params}) var<uniform> params: SoftmaxParams;
// per sequence: starts q | starts k | lengths q | lengths k | ...
${readBinding(B.meta, 'seq_meta', 'u32')}
@group(0) @binding(${B.scores}) var<storage, read_write> s_buf: array<f32>;
${o.returnLse ? `@group(0) @binding(${B.lse}) var<storage, read_write> lse_buf: array<f32>;\n${NEG_INF_FN}` : ''}

const NO_SCORE: f32 = ${NO_SCORE};
const POISON_SCORE: f32 = ${POISON_SCORE};
${NON_FINITE_FNS}
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

  var mx = NO_SCORE;
  for (var j = lid; j < sk; j += THREADS) { mx = max(mx, s_buf[base + j]); }
  red[lid] = mx;
  workgroupBarrier();
  for (var half = THREADS / 2u; half > 0u; half /= 2u) {
    if (lid < half) { red[lid] = max(red[lid], red[lid + half]); }
    workgroupBarrier();
  }
  let row_max = red[0];
  let poisoned = row_max >= POISON_SCORE;
  let beta = params.beta;
  workgroupBarrier();

  var sum = 0.0;
  for (var j = lid; j < sk; j += THREADS) {
    let x = s_buf[base + j];
    sum += select(0.0, weight(beta * (x - row_max)), x > NO_SCORE);
  }
  red[lid] = sum;
  workgroupBarrier();
  for (var half = THREADS / 2u; half > 0u; half /= 2u) {
    if (lid < half) { red[lid] += red[lid + half]; }
    workgroupBarrier();
  }
  let total = red[0];
  let inv = select(0.0, 1.0 / total, total > 0.0);
  for (var j = lid; j < sk; j += THREADS) {
    let x = s_buf[base + j];
    s_buf[base + j] = select(select(0.0, weight(beta * (x - row_max)) * inv, x > NO_SCORE), nan_f32(), poisoned);
  }
${o.returnLse ? `  if (lid == 0u) {
    let start_q = seq_meta[b];
    lse_buf[b * params.lse_strides.x + h * params.lse_strides.y + (start_q + i) * params.lse_strides.z] = select(select(neg_inf(), beta * row_max + log(total), total > 0.0), nan_f32(), poisoned);
  }` : ''}
}
`;
}
