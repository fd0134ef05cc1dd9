// fusedattn matmul: A float32, B float16, C float16, ragged
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
@group(0) @binding(3) var<storage, read> b_buf: array<u32>;
@group(0) @binding(4) var<storage, read_write> c_buf: array<atomic<u32>>;
fn a_at(i: u32) -> f32 { return a_buf[i]; }
fn b_at(i: u32) -> f32 { return unpack2x16float(b_buf[i >> 1u])[i & 1u]; }
fn epilogue(value: f32, zo: u32, zi: u32, m: u32, n: u32) -> f32 { return value; }

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
  let nz = params.n;
  let kz = ragged[4u * params.outer + zo];
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
        x = b_at(params.b_off + zo * params.b_strides.x + (zi / params.b_group) * params.b_strides.y + (row_b + k0 + r) * params.b_strides.z + (n0 + c) * params.b_strides.w);
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
        atomicOr(&c_buf[e >> 1u], (pack2x16float(vec2<f32>(value, 0.0)) & 0xffffu) << ((e & 1u) * 16u));
      }
    }
  }
}
