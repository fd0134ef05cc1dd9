// fusedattn naive attention, step 2: row softmax in place + LSE
struct SoftmaxParams {
  s_strides: vec4<u32>,
  lse_strides: vec4<u32>,
  batch: u32,
  beta: f32,
}
@group(0) @binding(0) var<uniform> params: SoftmaxParams;
// per sequence: starts q | starts k | lengths q | lengths k | ...
@group(0) @binding(1) var<storage, read> seq_meta: array<u32>;
@group(0) @binding(2) var<storage, read_write> s_buf: array<f32>;
@group(0) @binding(3) var<storage, read_write> lse_buf: array<f32>;
fn neg_inf() -> f32 {
  var bits = 0xff800000u;
  return bitcast<f32>(bits);
}

const NO_SCORE: f32 = -3.0e38;
const POISON_SCORE: f32 = 3.0e38;
fn nan_or_pos_inf(x: f32) -> bool {
  let bits = bitcast<u32>(x);
  return (bits & 0x7fffffffu) > 0x7f800000u || bits == 0x7f800000u;
}
fn is_nan(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}
fn nan_f32() -> f32 {
  var bits = 0x7fc00000u;
  return bitcast<f32>(bits);
}
// exp(x) for x <= 0, the online softmax's weight: the argument is clamped at -200 (exp gives 0
// there in f32 anyway) because some exp implementations (Mesa llvmpipe) return NaN for a huge
// negative finite argument, which a huge finite scale produces.
fn weight(x: f32) -> f32 {
  return exp(max(x, -200.0));
}
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
  if (lid == 0u) {
    let start_q = seq_meta[b];
    lse_buf[b * params.lse_strides.x + h * params.lse_strides.y + (start_q + i) * params.lse_strides.z] = select(select(neg_inf(), beta * row_max + log(total), total > 0.0), nan_f32(), poisoned);
  }
}
