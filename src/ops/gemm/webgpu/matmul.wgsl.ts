// A strided, batched f32 matmul in WGSL, for the naive attention path and for the GEMMs of the
// attention block (issue 4). Portable: core/compat WebGPU only, float16 operands read as u32 pairs.
//
//   C[z][m][n] = epilogue(alpha * sum_k A[z][m][k] * B[z][k][n]  (+ sum_k A2[z][m][k] * B2[z][k][n]))
//
// The batch index z runs over outer x inner (z = zo * inner + zi), e.g. (sequence, head). Each
// operand X has element strides (outer, inner, row, col) and an element offset:
//   A(m, k)  at a_off + zo*outer + zi*inner + (rowStartA + m)*row + k*col
//   B        is stored K x N, element (k, n) at b_off + zo*outer + (zi / b_group)*inner + (rowStartB + k)*row + n*col,
//            or N x K with transposeB (A·Bᵀ, e.g. Q·Kᵀ), element (n, k) at ... + (rowStartB + n)*row + k*col
//   C(m, n)  at c_off + zo*outer + zi*inner + (rowStartC + m)*row + n*col
// b_group divides the inner index for B (GQA: query head h reads key/value head h / group).
// `ragged` reads per-outer row starts and lengths from a table (TND varlen): M_z = lenM[zo], and
// the length of B's stored rows (N with transposeB, else K) = lenB[zo]. `splitK` adds a second
// operand pair along K (MLA: q·k + qRope·kRope without a concat).
// float16 output is OR-ed into a zeroed buffer half by half (any layout, no races): clear C first.
import { type FloatDType, arrayElement, loadFloat, readBinding } from '../../../engines/webgpu/wgsl.js';
import { UniformLayout } from '../../../engines/webgpu/uniforms.js';

export interface MatmulOptions {
  a: FloatDType;
  b: FloatDType;
  out: FloatDType;
  transposeB: boolean;
  splitK: boolean;
  ragged: boolean;
  /** A zero of A contributes nothing even where B is NaN/inf (attention's P·V: hidden keys); default false. */
  skipZeroA?: boolean;
}

/** Extra WGSL for the output: must define `fn epilogue(value: f32, zo: u32, zi: u32, m: u32, n: u32) -> f32`. */
export interface MatmulEpilogue {
  /** Declarations (bindings in @group(1), helpers) and the epilogue function. */
  wgsl: string;
}

export const MATMUL_PARAMS = new UniformLayout('MatmulParams', {
  a_strides: 'vec4u', // (outer, inner, row, col)
  b_strides: 'vec4u',
  c_strides: 'vec4u',
  a2_strides: 'vec4u',
  b2_strides: 'vec4u',
  a_off: 'u32',
  b_off: 'u32',
  c_off: 'u32',
  a2_off: 'u32',
  b2_off: 'u32',
  m: 'u32',
  n: 'u32',
  k: 'u32',
  k2: 'u32',
  /** Inner batch count (z = zo * inner + zi). */
  inner: 'u32',
  /** Outer batch count (rows of the ragged table). */
  outer: 'u32',
  b_group: 'u32',
  alpha: 'f32',
});

export const MATMUL_BINDINGS = { params: 0, ragged: 1, a: 2, b: 3, c: 4, a2: 5, b2: 6 } as const;

/** Output tile per workgroup and the K step; 8 x 8 threads, each computing 4 x 4. */
export const MATMUL_TILE = { m: 32, n: 32, k: 16 } as const;

export function buildMatmul(o: MatmulOptions, epilogue?: MatmulEpilogue): string {
  const B = MATMUL_BINDINGS;
  const atomicOut = o.out === 'float16';
  const decl = [
    MATMUL_PARAMS.wgsl(),
    `@group(0) @binding(${B.params}) var<uniform> params: MatmulParams;`,
    ...(o.ragged ? ['// per outer batch: row starts A | row starts B | row starts C | M | rows of B', readBinding(B.ragged, 'ragged', 'u32')] : []),
    readBinding(B.a, 'a_buf', arrayElement(o.a)),
    readBinding(B.b, 'b_buf', arrayElement(o.b)),
    `@group(0) @binding(${B.c}) var<storage, read_write> c_buf: array<${o.out === 'float32' ? 'f32' : 'atomic<u32>'}>;`,
    ...(o.splitK ? [readBinding(B.a2, 'a2_buf', arrayElement(o.a)), readBinding(B.b2, 'b2_buf', arrayElement(o.b))] : []),
    loadFloat('a_at', 'a_buf', o.a),
    loadFloat('b_at', 'b_buf', o.b),
    ...(o.splitK ? [loadFloat('a2_at', 'a2_buf', o.a), loadFloat('b2_at', 'b2_buf', o.b)] : []),
    epilogue?.wgsl ?? 'fn epilogue(value: f32, zo: u32, zi: u32, m: u32, n: u32) -> f32 { return value; }',
  ];

  // one pass over K for operand pair (x, y): stage A and B tiles, then 4 x 4 FMAs per thread
  const kPass = (x: 'a' | 'a2', y: 'b' | 'b2', kLen: string) => {
    const bIndex = o.transposeB
      ? `params.${y}_off + zo * params.${y}_strides.x + (zi / params.b_group) * params.${y}_strides.y + (row_b + n0 + c) * params.${y}_strides.z + (k0 + r) * params.${y}_strides.w`
      : `params.${y}_off + zo * params.${y}_strides.x + (zi / params.b_group) * params.${y}_strides.y + (row_b + k0 + r) * params.${y}_strides.z + (n0 + c) * params.${y}_strides.w`;
    return `  for (var k0 = 0u; k0 < ${kLen}; k0 += TK) {
    for (var e = lid; e < TM * TK; e += THREADS) {
      let r = e / TK;        // row of the A tile
      let c = e % TK;        // k within the tile
      var x = 0.0;
      if (m0 + r < mz && k0 + c < ${kLen}) {
        x = ${x}_at(params.${x}_off + zo * params.${x}_strides.x + zi * params.${x}_strides.y + (row_a + m0 + r) * params.${x}_strides.z + (k0 + c) * params.${x}_strides.w);
      }
      a_tile[r * TK + c] = x;
    }
    for (var e = lid; e < TK * TN; e += THREADS) {
      let r = e / TN;        // k within the tile
      let c = e % TN;        // column of the B tile
      var x = 0.0;
      if (k0 + r < ${kLen} && n0 + c < nz) {
        x = ${y}_at(${bIndex});
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
        ${o.skipZeroA ? 'if (av[u] == 0.0) { continue; } ' : ''}for (var w = 0u; w < 4u; w++) { acc[u * 4u + w] += av[u] * bv[w]; }
      }
    }
    workgroupBarrier();
  }`;
  };

  const kz = o.transposeB || !o.ragged ? 'params.k' : 'ragged[4u * params.outer + zo]';
  const nz = o.transposeB && o.ragged ? 'ragged[4u * params.outer + zo]' : 'params.n';
  const store = atomicOut
    ? `atomicOr(&c_buf[e >> 1u], (pack2x16float(vec2<f32>(value, 0.0)) & 0xffffu) << ((e & 1u) * 16u));`
    : 'c_buf[e] = value;';

  return `// fusedattn matmul: A ${o.a}, B ${o.b}${o.transposeB ? ' (transposed)' : ''}, C ${o.out}${o.splitK ? ', split K' : ''}${o.ragged ? ', ragged' : ''}
${decl.join('\n')}

const TM: u32 = ${MATMUL_TILE.m}u;
const TN: u32 = ${MATMUL_TILE.n}u;
const TK: u32 = ${MATMUL_TILE.k}u;
const THREADS: u32 = 64u;

var<workgroup> a_tile: array<f32, ${MATMUL_TILE.m * MATMUL_TILE.k}>;
var<workgroup> b_tile: array<f32, ${MATMUL_TILE.k * MATMUL_TILE.n}>;

@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lv: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let z = wg.z;
  let zo = z / params.inner;
  let zi = z % params.inner;
  let mz = ${o.ragged ? 'ragged[3u * params.outer + zo]' : 'params.m'};
  let nz = ${nz};
  let kz = ${kz};
  let row_a = ${o.ragged ? 'ragged[zo]' : '0u'};
  let row_b = ${o.ragged ? 'ragged[params.outer + zo]' : '0u'};
  let row_c = ${o.ragged ? 'ragged[2u * params.outer + zo]' : '0u'};
  let m0 = wg.y * TM;
  let n0 = wg.x * TN;
  if (m0 >= mz || n0 >= nz) { return; }
  let tx = lv.x;
  let ty = lv.y;
  var acc: array<f32, 16>;

${kPass('a', 'b', 'kz')}
${o.splitK ? kPass('a2', 'b2', 'params.k2') : ''}

  for (var u = 0u; u < 4u; u++) {
    let m = m0 + ty * 4u + u;
    for (var w = 0u; w < 4u; w++) {
      let n = n0 + tx * 4u + w;
      if (m < mz && n < nz) {
        let value = epilogue(params.alpha * acc[u * 4u + w], zo, zi, m, n);
        let e = params.c_off + zo * params.c_strides.x + zi * params.c_strides.y + (row_c + m) * params.c_strides.z + n * params.c_strides.w;
        ${store}
      }
    }
  }
}
`;
}
