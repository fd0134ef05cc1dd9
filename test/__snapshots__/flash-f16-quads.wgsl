// fusedattn portable flash forward: float16 storage read by quads, f32 math, Dq 48 + Dr 16, Dv 36
struct FlashParams {
  q_strides: vec4<u32>,
  k_strides: vec4<u32>,
  v_strides: vec4<u32>,
  qr_strides: vec4<u32>,
  kr_strides: vec4<u32>,
  out_strides: vec4<u32>,
  lse_strides: vec4<u32>,
  q_off: u32,
  k_off: u32,
  v_off: u32,
  qr_off: u32,
  kr_off: u32,
  group: u32,
}
@group(0) @binding(0) var<uniform> params: FlashParams;
// per sequence: starts q | starts k | lengths q | lengths k | ALiBi slopes (f32 bits)
@group(0) @binding(1) var<storage, read> seq_meta: array<u32>;
@group(0) @binding(2) var<storage, read> q_buf: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read> k_buf: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read> v_buf: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read> qr_buf: array<vec2<u32>>;
@group(0) @binding(6) var<storage, read> kr_buf: array<vec2<u32>>;
@group(0) @binding(10) var<storage, read_write> out_buf: array<u32>;
@group(0) @binding(11) var<storage, read_write> lse_buf: array<f32>;
fn neg_inf() -> f32 {
  var bits = 0xff800000u;
  return bitcast<f32>(bits);
}
fn q_quad(i: u32) -> vec4<f32> {
  let w = q_buf[i];
  return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
fn k_quad(i: u32) -> vec4<f32> {
  let w = k_buf[i];
  return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
fn v_quad(i: u32) -> vec4<f32> {
  let w = v_buf[i];
  return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
fn qr_quad(i: u32) -> vec4<f32> {
  let w = qr_buf[i];
  return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
fn kr_quad(i: u32) -> vec4<f32> {
  let w = kr_buf[i];
  return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}

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
@group(0) @binding(7) var<uniform> sp: ScoreParams;
@group(0) @binding(8) var<storage, read> mask_buf: array<u32>;
fn mask_at(i: u32) -> u32 { return (mask_buf[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu; }
@group(0) @binding(9) var<storage, read> bias_buf: array<u32>;
fn bias_at(i: u32) -> f32 { return unpack2x16float(bias_buf[i >> 1u])[i & 1u]; }

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

const THREADS: u32 = 64u;
const ROWS: u32 = 16u;
const KEYS: u32 = 16u;
const PER_ROW: u32 = 4u;   // threads sharing one query row
const KEYS_PER_THREAD: u32 = 4u;
const DQ: u32 = 48u;    // NoPE part of the query/key head dim
const DQK: u32 = 64u;   // whole query/key head dim (NoPE + RoPE)
const DV: u32 = 36u;
const DQK4: u32 = 16u;   // vec4s per query/key row
const DV4: u32 = 9u;    // vec4s per value row
const QUADS_PER_THREAD: u32 = 3u;
const QK_STRIDE: u32 = 17u;   // row strides in the tiles, in vec4s
const V_STRIDE: u32 = 9u;

var<workgroup> q_tile: array<vec4<f32>, 272>;
var<workgroup> kv_tile: array<vec4<f32>, 272>;
var<workgroup> p_tile: array<f32, 256>;
var<workgroup> part_max: array<f32, 64>;
var<workgroup> part_sum: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wg.z;
  let h = wg.y;
  let i0 = wg.x * ROWS;
  let nb = sp.batch;
  let start_q = seq_meta[b];
  let start_k = seq_meta[nb + b];
  let sq = seq_meta[2u * nb + b];
  let sk = seq_meta[3u * nb + b];
  if (i0 >= sq) { return; }   // the grid covers the longest sequence
  let hk = h / params.group;
  let slope = bitcast<f32>(seq_meta[4u * nb + b * sp.alibi_stride_b + h]);
  let row = lid / PER_ROW;
  let lane = lid % PER_ROW;
  let i = i0 + row;
  let row_valid = i < sq;

  // key tiles this block can see: the window of its first row to the window of its last
  var j_lo = 0;
  var j_hi = i32(sk) - 1;
  let diag = select(0, i32(sk) - i32(sq), sp.bottom_right != 0u);
  let i_last = min(i0 + ROWS, sq) - 1u;
  j_lo = max(j_lo, diag + i32(i0) - sp.win_left);
  j_hi = min(j_hi, diag + i32(i_last) + sp.win_right);
  var t_first = 0u;
  var t_end = 0u;
  if (j_hi >= j_lo) {
    t_first = u32(j_lo) / KEYS;
    t_end = u32(j_hi) / KEYS + 1u;
  }

  for (var e = lid; e < ROWS * DQK4; e += THREADS) {
    let r = e / DQK4;
    let d4 = e % DQK4;
    var x = vec4<f32>();
    if (i0 + r < sq) { if (d4 < DQ / 4u) { x = q_quad((params.q_off + b * params.q_strides.x + h * params.q_strides.y + (start_q + i0 + r) * params.q_strides.z) / 4u + d4); } else { x = qr_quad((params.qr_off + b * params.qr_strides.x + h * params.qr_strides.y + (start_q + i0 + r) * params.qr_strides.z) / 4u + (d4 - DQ / 4u)); } }
    q_tile[r * QK_STRIDE + d4] = x;
  }

  let beta = score_beta();   // weights are exp(beta·(s - m)): scores are in units of beta
  var m = NO_SCORE;   // running max of the row's scores (NO_SCORE: none seen yet; POISON_SCORE: NaN row)
  var l = 0.0;        // running sum of exp(score - m)
  var acc: array<vec4<f32>, QUADS_PER_THREAD>;
  var s: array<f32, KEYS_PER_THREAD>;

  for (var t = t_first; t < t_end; t++) {
    let j0 = t * KEYS;
    workgroupBarrier();   // the previous tile's V (or the query block) is fully read / written
    for (var e = lid; e < KEYS * DQK4; e += THREADS) {
      let r = e / DQK4;
      let d4 = e % DQK4;
      var x = vec4<f32>();
      if (j0 + r < sk) { if (d4 < DQ / 4u) { x = k_quad((params.k_off + b * params.k_strides.x + hk * params.k_strides.y + (start_k + j0 + r) * params.k_strides.z) / 4u + d4); } else { x = kr_quad((params.kr_off + b * params.kr_strides.x + hk * params.kr_strides.y + (start_k + j0 + r) * params.kr_strides.z) / 4u + (d4 - DQ / 4u)); } }
      kv_tile[r * QK_STRIDE + d4] = x;
    }
    workgroupBarrier();

    // scores of this thread's keys j0 + lane + PER_ROW * u
    for (var u = 0u; u < KEYS_PER_THREAD; u++) { s[u] = 0.0; }
    for (var d4 = 0u; d4 < DQK4; d4++) {
      let q4 = q_tile[row * QK_STRIDE + d4];
      for (var u = 0u; u < KEYS_PER_THREAD; u++) {
        s[u] += dot(q4, kv_tile[(lane + PER_ROW * u) * QK_STRIDE + d4]);
      }
    }
    var tile_max = NO_SCORE;
    for (var u = 0u; u < KEYS_PER_THREAD; u++) {
      let j = j0 + lane + PER_ROW * u;
      var x = NO_SCORE;
      if (row_valid && j < sk) { x = final_score(s[u], b, h, i, j, sq, sk, slope); }
      s[u] = x;
      tile_max = max(tile_max, x);
    }
    part_max[row * PER_ROW + lane] = tile_max;
    workgroupBarrier();   // K fully read: V may overwrite it

    for (var e = lid; e < KEYS * DV4; e += THREADS) {
      let r = e / DV4;
      let d4 = e % DV4;
      var x = vec4<f32>();
      if (j0 + r < sk) { x = v_quad((params.v_off + b * params.v_strides.x + hk * params.v_strides.y + (start_k + j0 + r) * params.v_strides.z) / 4u + d4); }
      kv_tile[r * V_STRIDE + d4] = x;
    }
    var m_new = m;
    for (var c = 0u; c < PER_ROW; c++) { m_new = max(m_new, part_max[row * PER_ROW + c]); }
    var psum = 0.0;
    for (var u = 0u; u < KEYS_PER_THREAD; u++) {
      let p = select(0.0, weight(beta * (s[u] - m_new)), s[u] > NO_SCORE);
      p_tile[row * KEYS + lane + PER_ROW * u] = p;
      psum += p;
    }
    part_sum[row * PER_ROW + lane] = psum;
    workgroupBarrier();

    // exp(NO_SCORE - m_new) is 0 once the row has a score, 1 while it has none (then l = o = 0)
    let alpha = weight(beta * (m - m_new));
    var tile_sum = 0.0;
    for (var c = 0u; c < PER_ROW; c++) { tile_sum += part_sum[row * PER_ROW + c]; }
    l = l * alpha + tile_sum;
    m = m_new;
    for (var v = 0u; v < QUADS_PER_THREAD; v++) { acc[v] *= alpha; }
    for (var jj = 0u; jj < KEYS; jj++) {
      let p = p_tile[row * KEYS + jj];
      // a key of weight 0 adds nothing, even a NaN/inf value (0·NaN would be NaN)
      if (p == 0.0) { continue; }
      for (var v = 0u; v < QUADS_PER_THREAD; v++) {
        let quad = lane + PER_ROW * v;
        if (quad < DV4) { acc[v] += p * kv_tile[jj * V_STRIDE + quad]; }
      }
    }
  }

  if (!row_valid) { return; }
  // a row that saw no key (window, mask or -inf bias hid them all) outputs 0 and LSE -inf
  let inv = select(0.0, 1.0 / l, l > 0.0);
  let poisoned = m >= POISON_SCORE;   // a NaN or +inf score: the row is NaN
  let ob = b * params.out_strides.x + h * params.out_strides.y + (start_q + i) * params.out_strides.z;
  for (var v = 0u; v < QUADS_PER_THREAD; v++) {
    let col = 4u * (lane + PER_ROW * v);
    if (col < DV) {
      let val = select(acc[v] * inv, vec4<f32>(nan_f32()), poisoned);
      let e = ob + col;   // output rows are contiguous (d stride 1)
      // Dv even: e is even and columns come in whole pairs
      out_buf[e >> 1u] = pack2x16float(val.xy);
      if (col + 2u < DV) { out_buf[(e >> 1u) + 1u] = pack2x16float(val.zw); }
    }
  }
  if (lane == 0u) {
    lse_buf[b * params.lse_strides.x + h * params.lse_strides.y + (start_q + i) * params.lse_strides.z] = select(select(neg_inf(), beta * m + log(l), l > 0.0), nan_f32(), poisoned);
  }
}
