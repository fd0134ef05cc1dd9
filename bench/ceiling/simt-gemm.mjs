// The study's "no tensor cores" anchor: a plain tiled GEMM on the shader cores, C = A·Wᵀ with f16
// inputs read as u32 pairs (unpack2x16float: core WGSL, no shader-f16 needed) and f32 math, 64 x 64
// tiles of 256 invocations with 4 x 4 outputs each. It runs on any adapter, llvmpipe included, which
// is what lets `gemm-sweep.mjs --smoke` exercise the whole check-then-time path off the GPU.
// A [M, K] row-major, W [N, K] row-major (PyTorch Linear), C [M, N] f16 packed in u32 pairs.
// Needs M, N multiples of 64 and K of 16.
export const SIMT_TILE = { m: 64, n: 64, k: 16, threads: 256 };

export function buildSimtGemm() {
  return `// fusedattn study anchor: SIMT f32 GEMM on f16 inputs, 64 x 64 tiles, 4 x 4 outputs per invocation
struct Params { m: u32, n: u32, k: u32, pad: u32, }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> c: array<u32>;
var<workgroup> at: array<f32, ${16 * 64}>;   // [k][m]
var<workgroup> wt: array<f32, ${16 * 64}>;   // [k][n]

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let m0 = wg.y * 64u;
  let n0 = wg.x * 64u;
  let tm = (lid / 16u) * 4u;
  let tn = (lid % 16u) * 4u;
  var acc: array<f32, 16>;
  for (var k0 = 0u; k0 < params.k; k0 += 16u) {
    // 64 rows x 16 halves = 512 pairs per operand: 2 pairs per invocation
    for (var u = 0u; u < 2u; u++) {
      let t = lid + u * 256u;
      let row = t / 8u;
      let kk = (t % 8u) * 2u;
      let x = unpack2x16float(a[((m0 + row) * params.k + k0 + kk) / 2u]);
      at[kk * 64u + row] = x.x; at[(kk + 1u) * 64u + row] = x.y;
      let y = unpack2x16float(w[((n0 + row) * params.k + k0 + kk) / 2u]);
      wt[kk * 64u + row] = y.x; wt[(kk + 1u) * 64u + row] = y.y;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
      for (var i = 0u; i < 4u; i++) {
        let av = at[kk * 64u + tm + i];
        for (var j = 0u; j < 4u; j++) { acc[i * 4u + j] += av * wt[kk * 64u + tn + j]; }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let base = ((m0 + tm + i) * params.n + n0 + tn) / 2u;
    c[base] = pack2x16float(vec2<f32>(acc[i * 4u], acc[i * 4u + 1u]));
    c[base + 1u] = pack2x16float(vec2<f32>(acc[i * 4u + 2u], acc[i * 4u + 3u]));
  }
}
`;
}
