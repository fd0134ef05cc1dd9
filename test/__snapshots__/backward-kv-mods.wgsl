// fusedattn portable backward, kv: dK, dV per key block (float32 storage, f32 math)
struct BackwardParams {
  q_strides: vec4<u32>,
  k_strides: vec4<u32>,
  v_strides: vec4<u32>,
  qr_strides: vec4<u32>,
  kr_strides: vec4<u32>,
  o_strides: vec4<u32>,
  lse_strides: vec4<u32>,
  q_off: u32,
  k_off: u32,
  v_off: u32,
  qr_off: u32,
  kr_off: u32,
  o_off: u32,
  do_off: u32,
  lse_off: u32,
  group: u32,
  heads_kv: u32,
  key_blocks: u32,
  batch: u32,
}
@group(0) @binding(0) var<uniform> params: BackwardParams;
// per sequence: starts q | starts k | lengths q | lengths k | ALiBi slopes (f32 bits)
@group(0) @binding(3) var<storage, read> seq_meta: array<u32>;
@group(0) @binding(4) var<storage, read> q_buf: array<f32>;
fn q_at(i: u32) -> f32 { return q_buf[i]; }
@group(0) @binding(5) var<storage, read> k_buf: array<f32>;
fn k_at(i: u32) -> f32 { return k_buf[i]; }
@group(0) @binding(6) var<storage, read> v_buf: array<f32>;
fn v_at(i: u32) -> f32 { return v_buf[i]; }
@group(0) @binding(10) var<storage, read> do_buf: array<f32>;
fn do_at(i: u32) -> f32 { return do_buf[i]; }
@group(0) @binding(12) var<storage, read> rowstats: array<vec2<f32>>;
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
@group(0) @binding(1) var<uniform> sp: ScoreParams;
@group(0) @binding(13) var<storage, read> mask_buf: array<u32>;
fn mask_at(i: u32) -> u32 { return (mask_buf[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu; }

// captured tensors and block table of the score/mask functions (layout: ops/attention/mods/plan.ts)
@group(0) @binding(19) var<storage, read> mod_data: array<u32>;

// captured tensor 0 (float, rank 2); every index clamped into its dimension
fn mod_tensor_0(i0: i32, i1: i32) -> f32 {
  var flat = 0u;
  flat += u32(clamp(i0, 0, i32(mod_data[5u]) - 1)) * mod_data[9u];
  flat += u32(clamp(i1, 0, i32(mod_data[6u]) - 1)) * mod_data[10u];
  return bitcast<f32>(mod_data[mod_data[4u] + flat]);
}

// captured tensor 1 (int, rank 1); every index clamped into its dimension
fn mod_tensor_1(i0: i32) -> i32 {
  var flat = 0u;
  flat += u32(clamp(i0, 0, i32(mod_data[14u]) - 1)) * mod_data[18u];
  return bitcast<i32>(mod_data[mod_data[13u] + flat]);
}

fn score_mod(score: f32, b: u32, h: u32, q: u32, kv: u32, q_len: u32, kv_len: u32) -> f32 {
  let v_b = i32(b);
  let v_h = i32(h);
  let v_q = i32(q);
  let v_kv = i32(kv);
  let v_q_len = i32(q_len);
  let v_kv_len = i32(kv_len);
  let s0 = v_kv;
  let s1 = v_q;
  let s2 = (s0 > s1);
  let s3 = score;
  let s4 = 0.500000000;
  let s5 = (s3 * s4);
  let s6 = -1.00000000;
  let s7 = max(s5, s6);
  let s8 = tanh(clamp(s3, -15.0, 15.0));
  let s9 = exp(s8);
  let s10 = select(s9, s7, s2);
  let s11 = (s0 - s1);
  let s12 = 4i;
  let s13 = (s11 + s12);
  let s14 = v_h;
  let s15 = mod_tensor_0(s13, s14);
  let s16 = (s10 + s15);
  return s16;
}

fn score_mod_grad(score: f32, b: u32, h: u32, q: u32, kv: u32, q_len: u32, kv_len: u32) -> f32 {
  let v_b = i32(b);
  let v_h = i32(h);
  let v_q = i32(q);
  let v_kv = i32(kv);
  let v_q_len = i32(q_len);
  let v_kv_len = i32(kv_len);
  let s0 = v_kv;
  let s1 = v_q;
  let s2 = (s0 > s1);
  let s3 = score;
  let s4 = 0.500000000;
  let s5 = (s3 * s4);
  let s6 = -1.00000000;
  let s7 = (s5 >= s6);
  let s8 = 0.00000000;
  let s9 = select(s8, s4, s7);
  let s10 = 1.00000000;
  let s11 = tanh(clamp(s3, -15.0, 15.0));
  let s12 = (s11 * s11);
  let s13 = (s10 - s12);
  let s14 = exp(s11);
  let s15 = (s13 * s14);
  let s16 = select(s15, s9, s2);
  return s16;
}

fn mask_mod(b: u32, h: u32, q: u32, kv: u32, q_len: u32, kv_len: u32) -> bool {
  let v_b = i32(b);
  let v_h = i32(h);
  let v_q = i32(q);
  let v_kv = i32(kv);
  let v_q_len = i32(q_len);
  let v_kv_len = i32(kv_len);
  let m0 = v_kv;
  let m1 = v_q;
  let m2 = (m0 - m1);
  let m3 = v_kv_len;
  let m4 = v_q_len;
  let m5 = (m3 - m4);
  let m6 = (m2 - m5);
  let m7 = 0i;
  let m8 = (m6 <= m7);
  let m9 = mod_tensor_1(m1);
  let m10 = mod_tensor_1(m0);
  let m11 = (m9 == m10);
  let m12 = (m8 && m11);
  return m12;
}

struct BlockRow {
  base: u32,      // word of the row's first key-block index
  partial: u32,   // key blocks where the mask is evaluated
  full: u32,      // key blocks every pair of which is visible (no mask evaluation)
  keys: u32,      // keys per block
}

fn block_row(b: u32, h: u32, q0: u32) -> BlockRow {
  let t = mod_data[0];
  let tb = mod_data[t];
  let th = mod_data[t + 1u];
  let qt = mod_data[t + 2u];
  let kt = mod_data[t + 3u];
  let row = (select(b, 0u, tb == 1u) * th + select(h, 0u, th == 1u)) * qt + min(q0 / mod_data[t + 4u], qt - 1u);
  let rows = tb * th * qt;
  return BlockRow(t + 8u + 2u * rows + row * kt, mod_data[t + 8u + 2u * row], mod_data[t + 9u + 2u * row], mod_data[t + 5u]);
}

fn block_index(r: BlockRow, n: u32) -> u32 {
  return mod_data[r.base + n];
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

// The unit scores are kept in: softmax weights are exp(beta·(s - max)). With a softcap the scores
// are bounded by it, so natural units serve (beta = 1): units of a huge beta would put the capped
// scores and the bias near float32's subnormals, which GPUs flush to zero (seen on the H200).
fn score_beta() -> f32 { return max(1.0, abs(sp.scale)); }
// scale / beta, exactly and without a division: scale itself, or its sign when |scale| > 1
fn score_alpha() -> f32 { return select(sign(sp.scale), sp.scale, abs(sp.scale) <= 1.0); }
// x / beta without leaving the range where WGSL's division is accurate (|divisor| <= 2^126): on the
// H200 a division by beta = 1e38 gave 0. Both are scaled by 2^-64 first when beta is that large.
fn per_beta(x: f32, beta: f32) -> f32 { return select(x / beta, (x * 5.421011e-20) / (beta * 5.421011e-20), beta > 1.0e30); }

// Final score of query i / key j of sequence b, head h (i, j relative to the sequence), given
// qk = q·k (+ qRope·kRope); NO_SCORE when the pair is hidden.
fn final_score(qk: f32, b: u32, h: u32, i: u32, j: u32, sq: u32, sk: u32, slope: f32) -> f32 {
  let diag = select(0, i32(sk) - i32(sq), sp.bottom_right != 0u);
  let rel = i32(j) - i32(i) - diag;
  if (rel < -sp.win_left || rel > sp.win_right) { return NO_SCORE; }
  let ms = sp.mask_strides;
  if (mask_at(sp.mask_off + b * ms.x + h * ms.y + i * ms.z + j * ms.w) == 0u) { return NO_SCORE; }
  if (!mask_mod(b, h, i, j, sq, sk)) { return NO_SCORE; }
  let beta = score_beta();
  var s = qk * score_alpha();
  // NaN or +inf: the row is poisoned; -inf from the bias (or anything not above the sentinel) means hidden
  if (nan_or_pos_inf(s)) { return POISON_SCORE; }
  if (!(s > NO_SCORE)) { return NO_SCORE; }
  // the score function sees visible, finite scores, in natural units
  s = per_beta(score_mod(s * beta, b, h, i, j, sq, sk), beta);
  if (nan_or_pos_inf(s)) { return POISON_SCORE; }
  if (!(s > NO_SCORE)) { return NO_SCORE; }
  return min(s, POISON_SCORE);
}

// d(score function)/d(score) at the score it sees (natural units) of a visible pair: the backward's
// chain rule dL/ds = dL/ds' · m'(s)
fn score_mod_slope(qk: f32, b: u32, h: u32, i: u32, j: u32, sq: u32, sk: u32, slope: f32) -> f32 {
  let beta = score_beta();
  var s = qk * score_alpha();
  return score_mod_grad(s * beta, b, h, i, j, sq, sk);
}

// The same on a key block no mask hides any pair of (block tables): no mask is read.
fn final_score_unmasked(qk: f32, b: u32, h: u32, i: u32, j: u32, sq: u32, sk: u32, slope: f32) -> f32 {
  let diag = select(0, i32(sk) - i32(sq), sp.bottom_right != 0u);
  let rel = i32(j) - i32(i) - diag;
  if (rel < -sp.win_left || rel > sp.win_right) { return NO_SCORE; }
  let beta = score_beta();
  var s = qk * score_alpha();
  // NaN or +inf: the row is poisoned; -inf from the bias (or anything not above the sentinel) means hidden
  if (nan_or_pos_inf(s)) { return POISON_SCORE; }
  if (!(s > NO_SCORE)) { return NO_SCORE; }
  // the score function sees visible, finite scores, in natural units
  s = per_beta(score_mod(s * beta, b, h, i, j, sq, sk), beta);
  if (nan_or_pos_inf(s)) { return POISON_SCORE; }
  if (!(s > NO_SCORE)) { return NO_SCORE; }
  return min(s, POISON_SCORE);
}
// status of the tile holding query row i0 / key j0 of (b, h): 0 empty, 1 partial, 2 full
fn block_status(b: u32, h: u32, i0: u32, j0: u32) -> u32 {
  let t = mod_data[0];
  let qt = mod_data[t + 2u];
  let kt = mod_data[t + 3u];
  let row = (select(b, 0u, mod_data[t] == 1u) * mod_data[t + 1u] + select(h, 0u, mod_data[t + 1u] == 1u)) * qt + min(i0 / mod_data[t + 4u], qt - 1u);
  let n = row * kt + min(j0 / mod_data[t + 5u], kt - 1u);
  return (mod_data[t + 8u + n / 4u] >> (8u * (n % 4u))) & 0xffu;
}
@group(0) @binding(15) var<storage, read_write> grad_k: array<f32>;
@group(0) @binding(16) var<storage, read_write> grad_v: array<f32>;



const THREADS: u32 = 128u;
const KEYS: u32 = 16u;
const ROWS: u32 = 16u;
const DQ: u32 = 40u;     // NoPE part of the query/key head dim
const DQK: u32 = 40u;    // whole query/key head dim (NoPE + RoPE)
const DV: u32 = 40u;
const DQK4: u32 = 10u;
const DV4: u32 = 10u;
const QK_STRIDE: u32 = 11u;   // tile row strides, in vec4s
const V_STRIDE: u32 = 11u;
const LSE_MASKED: f32 = 3.0e38;   // the LSE of a row that sees no key: exp(s - LSE_MASKED) = 0
const PER_KEY: u32 = 8u;          // threads sharing one key
const ROWS_PER_THREAD: u32 = 2u;
const DK_QUADS: u32 = 2u;
const DV_QUADS: u32 = 2u;

var<workgroup> k_tile: array<vec4<f32>, 176>;
var<workgroup> v_tile: array<vec4<f32>, 176>;
var<workgroup> q_tile: array<vec4<f32>, 176>;
var<workgroup> do_tile: array<vec4<f32>, 176>;
var<workgroup> p_tile: array<f32, 256>;    // P∘Z as [key][row]
var<workgroup> ds_tile: array<f32, 256>;   // dS (softcap factor applied)

var<workgroup> row_stats: array<vec2<f32>, 16>;

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let nb = sp.batch;
  let jj = lid / PER_KEY;   // this thread's key in the tile
  let lane = lid % PER_KEY;
  for (var b = wg.z; b < wg.z + 1u; b++) {
  for (var hk = wg.y; hk < wg.y + 1u; hk++) {
  for (var kb = wg.x; kb < wg.x + 1u; kb++) {
    let start_q = seq_meta[b];
    let start_k = seq_meta[nb + b];
    let sq = seq_meta[2u * nb + b];
    let sk = seq_meta[3u * nb + b];
    let j0 = kb * KEYS;
    if (j0 >= sk) { continue; }   // the grid covers the longest sequence
    let j = j0 + jj;
    workgroupBarrier();   // the previous unit's tiles are fully read
    for (var e = lid; e < KEYS * DQK4 * 4u; e += THREADS) {
      let r = e / (DQK4 * 4u);
      let d = e % (DQK4 * 4u);
      var x = 0.0;
      if (j0 + r < sk && d < DQK) { x = k_at(params.k_off + b * params.k_strides.x + hk * params.k_strides.y + (start_k + j0 + r) * params.k_strides.z + d * params.k_strides.w); }
      k_tile[r * QK_STRIDE + d / 4u][d % 4u] = x;
    }
    for (var e = lid; e < KEYS * DV4 * 4u; e += THREADS) {
      let r = e / (DV4 * 4u);
      let d = e % (DV4 * 4u);
      var x = 0.0;
      if (j0 + r < sk && d < DV) { x = v_at(params.v_off + b * params.v_strides.x + hk * params.v_strides.y + (start_k + j0 + r) * params.v_strides.z + d * params.v_strides.w); }
      v_tile[r * V_STRIDE + d / 4u][d % 4u] = x;
    }
    var dk_acc: array<vec4<f32>, DK_QUADS>;
    var dv_acc: array<vec4<f32>, DV_QUADS>;
    for (var v = 0u; v < DK_QUADS; v++) { dk_acc[v] = vec4<f32>(); }
    for (var v = 0u; v < DV_QUADS; v++) { dv_acc[v] = vec4<f32>(); }
    // the queries that can see keys j0 .. j_last (window), in blocks aligned to ROWS
    let diag = select(0, i32(sk) - i32(sq), sp.bottom_right != 0u);
    let j_last = min(j0 + KEYS, sk) - 1u;
    let i_lo = max(0, i32(j0) - diag - sp.win_right);
    let i_hi = min(i32(sq) - 1, i32(j_last) - diag + sp.win_left);
    var t_first = 0u;
    var t_end = 0u;
    if (i_hi >= i_lo) {
      t_first = u32(i_lo) / ROWS;
      t_end = u32(i_hi) / ROWS + 1u;
    }
    for (var h = hk * params.group; h < (hk + 1u) * params.group; h++) {
      let slope = 0.0;
      for (var t = t_first; t < t_end; t++) {
        let i0 = t * ROWS;
        let status = block_status(b, h, i0, j0);
        if (status == 0u) { continue; }   // every pair hidden: P = dS = 0
        let full = status == 2u;
        workgroupBarrier();   // the previous block's Q, dO, P and dS are fully read
        for (var e = lid; e < ROWS * DQK4 * 4u; e += THREADS) {
      let r = e / (DQK4 * 4u);
      let d = e % (DQK4 * 4u);
      var x = 0.0;
      if (i0 + r < sq && d < DQK) { x = q_at(params.q_off + b * params.q_strides.x + h * params.q_strides.y + (start_q + i0 + r) * params.q_strides.z + d * params.q_strides.w); }
      q_tile[r * QK_STRIDE + d / 4u][d % 4u] = x;
    }
        for (var e = lid; e < ROWS * DV4 * 4u; e += THREADS) {
      let r = e / (DV4 * 4u);
      let d = e % (DV4 * 4u);
      var x = 0.0;
      if (i0 + r < sq && d < DV) { x = do_at(params.do_off + b * params.o_strides.x + h * params.o_strides.y + (start_q + i0 + r) * params.o_strides.z + d * params.o_strides.w); }
      do_tile[r * V_STRIDE + d / 4u][d % 4u] = x;
    }
        for (var r = lid; r < ROWS; r += THREADS) {
          let li = b * params.lse_strides.x + h * params.lse_strides.y + (start_q + i0 + r) * params.lse_strides.z;
          row_stats[r] = select(vec2<f32>(LSE_MASKED, 0.0), rowstats[li], i0 + r < sq);
        }
        workgroupBarrier();
        for (var u = 0u; u < ROWS_PER_THREAD; u++) {
          let r = lane + PER_KEY * u;
          let i = i0 + r;
          var qk = 0.0;
          for (var d4 = 0u; d4 < DQK4; d4++) { qk += dot(k_tile[jj * QK_STRIDE + d4], q_tile[r * QK_STRIDE + d4]); }
          var dpv = 0.0;
          for (var d4 = 0u; d4 < DV4; d4++) { dpv += dot(v_tile[jj * V_STRIDE + d4], do_tile[r * V_STRIDE + d4]); }
          let st = row_stats[r];
          var p = 0.0;
          var ds = 0.0;
          var dsr = 0.0;
      if (i < sq && j < sk) {
        // final_score is in the forward's units (score_beta()); a NaN / +inf score poisons the pair
        var s = 0.0;
        // a block no mask hides anything of: no mask read (blockStatusCheck's `full`)
        if (full) { s = final_score_unmasked(qk, b, h, i, j, sq, sk, slope); } else { s = final_score(qk, b, h, i, j, sq, sk, slope); }
        if (s > NO_SCORE) {
          p = select(exp(score_beta() * s - st.x), nan_f32(), s >= POISON_SCORE);
          var dz = dpv;

          dsr = p * (dz - st.y);
          // the score function's chain rule (skipped where dS is 0, so an infinite slope never makes a NaN)
          dsr = select(dsr * score_mod_slope(qk, b, h, i, j, sq, sk, slope), 0.0, dsr == 0.0);
          ds = dsr;


        }
      }
          p_tile[jj * ROWS + r] = p;
          ds_tile[jj * ROWS + r] = ds;
          _ = dsr;
        }
        workgroupBarrier();
        // dV += (P∘Z)ᵀ·dO and dK += dSᵀ·Q for this thread's key and quads
        for (var r = 0u; r < ROWS; r++) {
          let pv = p_tile[jj * ROWS + r];
          let dsv = ds_tile[jj * ROWS + r];
          for (var v = 0u; v < DV_QUADS; v++) {
            let c = lane + PER_KEY * v;
            if (c < DV4) { dv_acc[v] += pv * do_tile[r * V_STRIDE + c]; }
          }
          for (var v = 0u; v < DK_QUADS; v++) {
            let c = lane + PER_KEY * v;
            if (c < DQK4) { dk_acc[v] += dsv * q_tile[r * QK_STRIDE + c]; }
          }
        }

      }
    }
    if (j < sk) {
      for (var v = 0u; v < DK_QUADS; v++) {
      let c = lane + PER_KEY * v;
      let val = dk_acc[v] * sp.scale;
      for (var e = 0u; e < 4u; e++) {
        let d = 4u * c + e;
        if (d < DQK) { grad_k[b * params.k_strides.x + hk * params.k_strides.y + (start_k + j) * params.k_strides.z + d] = val[e]; }
      }
    }
      for (var v = 0u; v < DV_QUADS; v++) {
      let c = lane + PER_KEY * v;
      let val = dv_acc[v] * 1.0;
      for (var e = 0u; e < 4u; e++) {
        let d = 4u * c + e;
        if (d < DV) { grad_v[b * params.v_strides.x + hk * params.v_strides.y + (start_k + j) * params.v_strides.z + d] = val[e]; }
      }
    }
    }
  }
  }
  }
}
