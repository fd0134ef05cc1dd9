// The block's linear layer on tensor cores: y = x Wᵀ (+ b) with float16 weights through Dawn's
// chromium-experimental-subgroup-matrix (16 x 16 x 16, f16 operands, f32 accumulation). Only real
// GPUs expose it (Mesa llvmpipe does not), so this kernel is tested on the GPU machine (bench/block-gpu.mjs
// checks it against the portable GEMM before timing).
//
//   x  [M, K] float32 (rows at a_off + m * a_stride), converted to f16 while staged
//   W  [N, K] float16 (the PyTorch Linear layout): as the right operand (K rows x N cols) it is a
//      column-major matrix with stride K, so it is staged as is, no transpose
//   y  [M, N] float32 at c_off + m * c_stride + n
// One workgroup computes a 64 x 64 tile of y with 4 subgroups of 32 invocations, each owning a
// 32 x 32 quadrant = 2 x 2 result matrices; K advances 32 at a time through f16 tiles in workgroup
// memory (row stride 40 halves = 80 bytes: rows start on different banks, and every matrix load
// starts on a 16-byte boundary). The result goes through workgroup memory so the bias add and the
// bounds checks of ragged edges stay scalar and simple.
import { gemmParams } from './gemm-params.js';

export interface SgmatGemmOptions {
  /** dtype of the bias, or 'none'. */
  bias: 'none' | 'float32' | 'float16';
  /**
   * How a subgroup finds its quadrant: the subgroup_id builtin of the extension, or
   * local_invocation_index / 32 (the same on drivers that fill subgroups in invocation order).
   */
  subgroupIndex: 'builtin' | 'invocation';
  /**
   * 16-byte loads while staging: x as vec4<f32>, W as vec4<u32> (8 halves). Needs K % 8 == 0 and
   * x's offset and row stride multiples of 4 (the host checks).
   */
  vec: boolean;
}

export const SGMAT_GEMM_PARAMS = gemmParams('SgmatGemmParams');

export const SGMAT_GEMM_BINDINGS = { params: 0, a: 1, w: 2, c: 3, bias: 4 } as const;

export const SGMAT_TILE = { m: 64, n: 64, k: 32, threads: 128, subgroupSize: 32 } as const;
const LDS = SGMAT_TILE.k + 8;

/** What the adapter must offer for this kernel (undefined: it can run). */
export function sgmatUnsupported(features: ReadonlySet<string>, adapter: { subgroupMinSize?: number; subgroupMaxSize?: number; subgroupMatrixConfigs: ReadonlyArray<{ componentType: string; resultComponentType: string; M: number; N: number; K: number }> }): string | undefined {
  for (const f of ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix']) {
    if (!features.has(f)) return `the device lacks the ${f} feature`;
  }
  if (adapter.subgroupMinSize !== SGMAT_TILE.subgroupSize || adapter.subgroupMaxSize !== SGMAT_TILE.subgroupSize) {
    return `the kernel assumes subgroups of exactly ${SGMAT_TILE.subgroupSize} invocations; the adapter has ${adapter.subgroupMinSize}..${adapter.subgroupMaxSize}`;
  }
  const fits = adapter.subgroupMatrixConfigs.some((c) => c.componentType === 'f16' && c.resultComponentType === 'f32' && c.M === 16 && c.N === 16 && c.K === 16);
  return fits ? undefined : 'the adapter has no f16 x f16 -> f32 16x16x16 subgroup-matrix configuration';
}

export function buildSgmatGemm(o: SgmatGemmOptions): string {
  const T = SGMAT_TILE;
  const B = SGMAT_GEMM_BINDINGS;
  const tiles = ['00', '01', '10', '11'];
  const bias = o.bias !== 'none';
  return `// fusedattn linear on subgroup matrices: y = x Wᵀ${bias ? ' + b' : ''}, f16 x f16 -> f32, 64 x 64 tiles
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium.subgroup_matrix_uniformity);

${SGMAT_GEMM_PARAMS.wgsl()}
@group(0) @binding(${B.params}) var<uniform> params: SgmatGemmParams;
@group(0) @binding(${B.a}) var<storage, read> a: array<${o.vec ? 'vec4<f32>' : 'f32'}>;
@group(0) @binding(${B.w}) var<storage, read> w: array<${o.vec ? 'vec4<u32>' : 'f16'}>;
@group(0) @binding(${B.c}) var<storage, read_write> c: array<f32>;
${bias ? `@group(0) @binding(${B.bias}) var<storage, read> bias: array<${o.bias === 'float16' ? 'f16' : 'f32'}>;` : ''}

const TM: u32 = ${T.m}u;
const TN: u32 = ${T.n}u;
const TK: u32 = ${T.k}u;
const LDS: u32 = ${LDS}u;    // row stride of the staged tiles, in halves
const THREADS: u32 = ${T.threads}u;

var<workgroup> a_tile: array<f16, ${T.m * LDS}>;   // [m][k]
var<workgroup> w_tile: array<f16, ${T.n * LDS}>;   // [n][k]
var<workgroup> c_tile: array<f32, ${T.m * T.n}>;   // [m][n]

@compute @workgroup_size(${T.threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32${o.subgroupIndex === 'builtin' ? ', @builtin(subgroup_id) sg: u32' : ''}) {
${o.subgroupIndex === 'builtin' ? '' : `  let sg = lid / ${T.subgroupSize}u;
`}  let m0 = wg.y * TM;
  let n0 = wg.x * TN;
  let qm = (sg / 2u) * 32u;   // this subgroup's quadrant
  let qn = (sg % 2u) * 32u;
${tiles.map((t) => `  var acc${t} = subgroup_matrix_result<f32, 16, 16>();`).join('\n')}

  for (var k0 = 0u; k0 < params.k; k0 += TK) {
${o.vec ? `    // 4 floats of x per load, converted to halves
    for (var e = lid; e < TM * TK / 4u; e += THREADS) {
      let r = e / (TK / 4u);
      let c = 4u * (e % (TK / 4u));
      var x = vec4<f32>(0.0);
      if (m0 + r < params.m && k0 + c < params.k) { x = a[(params.a_off + (m0 + r) * params.a_stride + k0 + c) / 4u]; }
      let at = r * LDS + c;
      a_tile[at] = f16(x.x);
      a_tile[at + 1u] = f16(x.y);
      a_tile[at + 2u] = f16(x.z);
      a_tile[at + 3u] = f16(x.w);
    }
    // 8 halves of W per load
    for (var e = lid; e < TN * TK / 8u; e += THREADS) {
      let r = e / (TK / 8u);
      let c = 8u * (e % (TK / 8u));
      var x = vec4<u32>(0u);
      if (n0 + r < params.n && k0 + c < params.k) { x = w[((n0 + r) * params.k + k0 + c) / 8u]; }
      let at = r * LDS + c;
      for (var q = 0u; q < 4u; q++) {
        let h2 = bitcast<vec2<f16>>(x[q]);
        w_tile[at + 2u * q] = h2.x;
        w_tile[at + 2u * q + 1u] = h2.y;
      }
    }` : `    for (var e = lid; e < TM * TK; e += THREADS) {
      let r = e / TK;
      let kk = e % TK;
      var x = 0.0;
      if (m0 + r < params.m && k0 + kk < params.k) { x = a[params.a_off + (m0 + r) * params.a_stride + k0 + kk]; }
      a_tile[r * LDS + kk] = f16(x);
    }
    for (var e = lid; e < TN * TK; e += THREADS) {
      let r = e / TK;
      let kk = e % TK;
      var x = 0.0h;
      if (n0 + r < params.n && k0 + kk < params.k) { x = w[(n0 + r) * params.k + k0 + kk]; }
      w_tile[r * LDS + kk] = x;
    }`}
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk += 16u) {
      let a0 = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&a_tile, qm * LDS + kk, LDS);
      let a1 = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&a_tile, (qm + 16u) * LDS + kk, LDS);
      // W tile rows are n: as the K x N right operand it is column-major with stride LDS
      let b0 = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&w_tile, qn * LDS + kk, LDS);
      let b1 = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&w_tile, (qn + 16u) * LDS + kk, LDS);
      acc00 = subgroupMatrixMultiplyAccumulate(a0, b0, acc00);
      acc01 = subgroupMatrixMultiplyAccumulate(a0, b1, acc01);
      acc10 = subgroupMatrixMultiplyAccumulate(a1, b0, acc10);
      acc11 = subgroupMatrixMultiplyAccumulate(a1, b1, acc11);
    }
    workgroupBarrier();
  }

  subgroupMatrixStore<row_major>(&c_tile, qm * TN + qn, acc00, TN);
  subgroupMatrixStore<row_major>(&c_tile, qm * TN + qn + 16u, acc01, TN);
  subgroupMatrixStore<row_major>(&c_tile, (qm + 16u) * TN + qn, acc10, TN);
  subgroupMatrixStore<row_major>(&c_tile, (qm + 16u) * TN + qn + 16u, acc11, TN);
  workgroupBarrier();
  for (var e = lid; e < TM * TN; e += THREADS) {
    let r = e / TN;
    let col = e % TN;
    if (m0 + r < params.m && n0 + col < params.n) {
      c[params.c_off + (m0 + r) * params.c_stride + n0 + col] = c_tile[e]${bias ? ' + f32(bias[n0 + col])' : ''};
    }
  }
}
`;
}
