// fusedattn matmul: A float32, B float32 (transposed), C float32, split K, ragged
struct MatmulParams {
  a_strides: vec4<u32>,
  b_strides: vec4<u32>,
  c_strides: vec4<u32>,
  a2_strides: vec4<u32>,
  b2_strides: vec4<u32>,
  a_off: u32,
  b_off: u32,
  c_off: u32,
  a2_off: u32,
  b2_off: u32,
  m: u32,
  n: u32,
  k: u32,
  k2: u32,
  inner: u32,
  outer: u32,
  b_group: u32,
  alpha: f32,
}
@group(0) @binding(0) var<uniform> params: MatmulParams;
// per outer batch: row starts A | row starts B | row starts C | M | rows of B
@group(0) @binding(1) var<storage, read> ragged: array<u32>;
@group(0) @binding(2) var<storage, read> a_buf: array<f32>;
@group(0) @binding(3) var<storage, read> b_buf: array<f32>;
@group(0) @binding(4) var<storage, read_write> c_buf: array<f32>;
@group(0) @binding(5) var<storage, read> a2_buf: array<f32>;
@group(0) @binding(6) var<storage, read> b2_buf: array<f32>;
fn a_at(i: u32) -> f32 { return a_buf[i]; }
fn b_at(i: u32) -> f32 { return b_buf[i]; }
fn a2_at(i: u32) -> f32 { return a2_buf[i]; }
fn b2_at(i: u32) -> f32 { return b2_buf[i]; }
struct ScoreParams {
  mask_strides: vec4<u32>,
  bias_strides: vec4<u32>,
  mask_off: u32,
  bias_off: u32,
  scale: f32,
  softcap: f32,
  win_left: i32,
  win_right: i32,
  bottom_right: u32,
  batch: u32,
  alibi_stride_b: u32,
}
@group(1) @binding(0) var<uniform> sp: ScoreParams;
@group(1) @binding(1) var<storage, read> mask_buf: array<u32>;
fn mask_at(i: u32) -> u32 { return (mask_buf[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu; }
@group(1) @binding(2) var<storage, read> bias_buf: array<f32>;
fn bias_at(i: u32) -> f32 { return bias_buf[i]; }

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

// The unit scores are kept in: softmax weights are exp(beta·(s - max)).
fn score_beta() -> f32 { return max(1.0, abs(sp.scale)); }

// Final score of query i / key j of sequence b, head h (i, j relative to the sequence), given
// qk = q·k (+ qRope·kRope); NO_SCORE when the pair is hidden.
fn final_score(qk: f32, b: u32, h: u32, i: u32, j: u32, sq: u32, sk: u32, slope: f32) -> f32 {
  let diag = select(0, i32(sk) - i32(sq), sp.bottom_right != 0u);
  let rel = i32(j) - i32(i) - diag;
  if (rel < -sp.win_left || rel > sp.win_right) { return NO_SCORE; }
  let ms = sp.mask_strides;
  if (mask_at(sp.mask_off + b * ms.x + h * ms.y + i * ms.z + j * ms.w) == 0u) { return NO_SCORE; }
  let beta = score_beta();
  var s = qk * (sp.scale / beta);
  if (is_nan(s)) { return POISON_SCORE; }
  s = (sp.softcap / beta) * tanh(clamp(s * beta / sp.softcap, -15.0, 15.0));
  let bs = sp.bias_strides;
  s = s + bias_at(sp.bias_off + b * bs.x + h * bs.y + i * bs.z + j * bs.w) / beta;
  s = s - (slope / beta) * abs(f32(i32(i) + i32(sk) - i32(sq) - i32(j)));
  // NaN or +inf: the row is poisoned; -inf from the bias (or anything not above the sentinel) means hidden
  if (nan_or_pos_inf(s)) { return POISON_SCORE; }
  if (!(s > NO_SCORE)) { return NO_SCORE; }
  return min(s, POISON_SCORE);
}
// per sequence: starts q | starts k | lengths q | lengths k | ALiBi slopes (f32 bits)
@group(1) @binding(3) var<storage, read> seq_meta: array<u32>;

// zo = sequence b, zi = query head h, m = query i, n = key j
fn epilogue(value: f32, zo: u32, zi: u32, m: u32, n: u32) -> f32 {
  let nb = sp.batch;
  let slope = bitcast<f32>(seq_meta[4u * nb + zo * sp.alibi_stride_b + zi]);
  return final_score(value, zo, zi, m, n, seq_meta[2u * nb + zo], seq_meta[3u * nb + zo], slope);
}

const TM: u32 = 32u;
const TN: u32 = 32u;
const TK: u32 = 16u;
const THREADS: u32 = 64u;

var<workgroup> a_tile: array<f32, 512>;
var<workgroup> b_tile: array<f32, 512>;

@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lv: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let z = wg.z;
  let zo = z / params.inner;
  let zi = z % params.inner;
  let mz = ragged[3u * params.outer + zo];
  let nz = ragged[4u * params.outer + zo];
  let kz = params.k;
  let row_a = ragged[zo];
  let row_b = ragged[params.outer + zo];
  let row_c = ragged[2u * params.outer + zo];
  let m0 = wg.y * TM;
  let n0 = wg.x * TN;
  if (m0 >= mz || n0 >= nz) { return; }
  let tx = lv.x;
  let ty = lv.y;
  var acc: array<f32, 16>;

  for (var k0 = 0u; k0 < kz; k0 += TK) {
    for (var e = lid; e < TM * TK; e += THREADS) {
      let r = e / TK;        // row of the A tile
      let c = e % TK;        // k within the tile
      var x = 0.0;
      if (m0 + r < mz && k0 + c < kz) {
        x = a_at(params.a_off + zo * params.a_strides.x + zi * params.a_strides.y + (row_a + m0 + r) * params.a_strides.z + (k0 + c) * params.a_strides.w);
      }
      a_tile[r * TK + c] = x;
    }
    for (var e = lid; e < TK * TN; e += THREADS) {
      let r = e / TN;        // k within the tile
      let c = e % TN;        // column of the B tile
      var x = 0.0;
      if (k0 + r < kz && n0 + c < nz) {
        x = b_at(params.b_off + zo * params.b_strides.x + (zi / params.b_group) * params.b_strides.y + (row_b + n0 + c) * params.b_strides.z + (k0 + r) * params.b_strides.w);
      }
      b_tile[r * TN + c] = x;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var u = 0u; u < 4u; u++) {
        av[u] = a_tile[(ty * 4u + u) * TK + kk];
        bv[u] = b_tile[kk * TN + tx * 4u + u];
      }
      for (var u = 0u; u < 4u; u++) {
        for (var w = 0u; w < 4u; w++) { acc[u * 4u + w] += av[u] * bv[w]; }
      }
    }
    workgroupBarrier();
  }
  for (var k0 = 0u; k0 < params.k2; k0 += TK) {
    for (var e = lid; e < TM * TK; e += THREADS) {
      let r = e / TK;        // row of the A tile
      let c = e % TK;        // k within the tile
      var x = 0.0;
      if (m0 + r < mz && k0 + c < params.k2) {
        x = a2_at(params.a2_off + zo * params.a2_strides.x + zi * params.a2_strides.y + (row_a + m0 + r) * params.a2_strides.z + (k0 + c) * params.a2_strides.w);
      }
      a_tile[r * TK + c] = x;
    }
    for (var e = lid; e < TK * TN; e += THREADS) {
      let r = e / TN;        // k within the tile
      let c = e % TN;        // column of the B tile
      var x = 0.0;
      if (k0 + r < params.k2 && n0 + c < nz) {
        x = b2_at(params.b2_off + zo * params.b2_strides.x + (zi / params.b_group) * params.b2_strides.y + (row_b + n0 + c) * params.b2_strides.z + (k0 + r) * params.b2_strides.w);
      }
      b_tile[r * TN + c] = x;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var u = 0u; u < 4u; u++) {
        av[u] = a_tile[(ty * 4u + u) * TK + kk];
        bv[u] = b_tile[kk * TN + tx * 4u + u];
      }
      for (var u = 0u; u < 4u; u++) {
        for (var w = 0u; w < 4u; w++) { acc[u * 4u + w] += av[u] * bv[w]; }
      }
    }
    workgroupBarrier();
  }

  for (var u = 0u; u < 4u; u++) {
    let m = m0 + ty * 4u + u;
    for (var w = 0u; w < 4u; w++) {
      let n = n0 + tx * 4u + w;
      if (m < mz && n < nz) {
        let value = epilogue(params.alpha * acc[u * 4u + w], zo, zi, m, n);
        let e = params.c_off + zo * params.c_strides.x + zi * params.c_strides.y + (row_c + m) * params.c_strides.z + n * params.c_strides.w;
        c_buf[e] = value;
      }
    }
  }
}
