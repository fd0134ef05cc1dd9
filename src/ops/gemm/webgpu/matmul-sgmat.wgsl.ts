// The strided batched matmul of matmul.wgsl.ts on tensor cores: the same semantics, uniforms and
// bindings (MATMUL_PARAMS, MATMUL_BINDINGS; dispatchMatmul queues it with `tile`), so a caller
// swaps one pipeline for the other. Built for the approximate attentions' products (issue 13),
// whose operands are strided views (φ(K)ᵀ is φ(K) read with swapped strides) rather than the
// packed row-major matrices the block's GEMMs take:
//
//   C[z][m][n] = epilogue(alpha * (sum_k A(m, k) B(k, n)  (+ sum_k A2(m, k) B2(k, n))), zo, zi, m, n)
//
// Operands f32 or f16 in memory, converted to f16 while staged into workgroup memory; f32
// accumulation in 16 x 16 x 16 subgroup matrices (Dawn's chromium-experimental-subgroup-matrix);
// f32 output through a workgroup scratch tile (scalar, strided, bounds-checked stores, so any M,
// N, K and any output strides work). Staging reads one element per thread in the order the host
// says is contiguous in memory (`aContig`, `bContig`), so global loads coalesce whichever way an
// operand is transposed. No ragged tables, no f16 output.
// Workgroup variables are multiples of 16 bytes and every matrix load starts on a 16-byte
// boundary (NVIDIA misaligned matrix loads otherwise, docs/GPU-NOTES.md).
import { type FloatDType, arrayElement, loadFloat, readBinding } from '../../../engines/webgpu/wgsl.js';
import { MATMUL_BINDINGS, MATMUL_PARAMS, type MatmulEpilogue } from './matmul.wgsl.js';

export interface SgmatMatmulTile {
  /** Subgroups (of 32) along M and N. */
  sgM: number;
  sgN: number;
  /** 16 x 16 result matrices per subgroup along M and N. */
  fragM: number;
  fragN: number;
}

export interface SgmatMatmulOptions {
  a: FloatDType;
  b: FloatDType;
  transposeB: boolean;
  splitK: boolean;
  /** Which index of A is contiguous in memory (col stride 1: 'k'; row stride 1: 'm'); both pairs. */
  aContig: 'k' | 'm';
  /** Which index of B(k, n) is contiguous in memory; both pairs. */
  bContig: 'k' | 'n';
  tile: SgmatMatmulTile;
}

/** K per staged step. */
export const SGMAT_MATMUL_K = 32;

/**
 * Candidates: 64 x 64 over 4 subgroups first. A 128 x 48 tile (4 x 1 subgroups of 2 x 3 fragments)
 * failed the H200's float64 check (2.6e-2 of max |ref| at S 1025 D 64 causal, 2026-12-02, fourth
 * session) and was removed; not yet understood.
 */
export const SGMAT_MATMUL_TILES: readonly SgmatMatmulTile[] = [
  { sgM: 2, sgN: 2, fragM: 2, fragN: 2 },
  { sgM: 2, sgN: 2, fragM: 4, fragN: 2 },
  { sgM: 2, sgN: 1, fragM: 2, fragN: 2 },
];

export function sgmatMatmulSize(t: SgmatMatmulTile): { m: number; n: number; threads: number } {
  return { m: t.sgM * t.fragM * 16, n: t.sgN * t.fragN * 16, threads: t.sgM * t.sgN * 32 };
}

export function buildSgmatMatmul(o: SgmatMatmulOptions, epilogue?: MatmulEpilogue): string {
  const B = MATMUL_BINDINGS;
  const { m: TM, n: TN, threads } = sgmatMatmulSize(o.tile);
  const TK = SGMAT_MATMUL_K;
  const LDA = TK + 8; // halves per staged A row: 80 bytes, rows start on different banks
  const LDB = TN + 8; // halves per staged B row (k), 16-byte multiple since TN is a multiple of 16
  const { fragM, fragN } = o.tile;
  const frags: Array<[number, number]> = [];
  for (let i = 0; i < fragM; i++) for (let j = 0; j < fragN; j++) frags.push([i, j]);

  const kPass = (x: 'a' | 'a2', y: 'b' | 'b2', kLen: string) => {
    const aPos = o.aContig === 'k' ? 'let r = e / TK;\n      let kk = e % TK;' : 'let r = e % TM;\n      let kk = e / TM;';
    const bPos = o.bContig === 'n' ? 'let kk = e / TN;\n      let c = e % TN;' : 'let kk = e % TK;\n      let c = e / TK;';
    const bIndex = o.transposeB
      ? `${y}_base + (n0 + c) * params.${y}_strides.z + (k0 + kk) * params.${y}_strides.w`
      : `${y}_base + (k0 + kk) * params.${y}_strides.z + (n0 + c) * params.${y}_strides.w`;
    return `  {
    let ${x}_base = params.${x}_off + zo * params.${x}_strides.x + zi * params.${x}_strides.y;
    let ${y}_base = params.${y}_off + zo * params.${y}_strides.x + (zi / params.b_group) * params.${y}_strides.y;
    for (var k0 = 0u; k0 < ${kLen}; k0 += TK) {
      for (var e = lid; e < TM * TK; e += THREADS) {
        ${aPos.replace('\n      ', '\n        ')}
        var v = 0.0;
        if (m0 + r < params.m && k0 + kk < ${kLen}) { v = ${x}_at(${x}_base + (m0 + r) * params.${x}_strides.z + (k0 + kk) * params.${x}_strides.w); }
        a_tile[r * LDA + kk] = f16(v);
      }
      for (var e = lid; e < TK * TN; e += THREADS) {
        ${bPos.replace('\n      ', '\n        ')}
        var v = 0.0;
        if (k0 + kk < ${kLen} && n0 + c < params.n) { v = ${y}_at(${bIndex}); }
        b_tile[kk * LDB + c] = f16(v);
      }
      workgroupBarrier();
      for (var s = 0u; s < TK; s += 16u) {
${Array.from({ length: fragM }, (_, i) => `        let l${i} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&a_tile, (sm + ${16 * i}u) * LDA + s, LDA);`).join('\n')}
${Array.from({ length: fragN }, (_, j) => `        let r${j} = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&b_tile, s * LDB + sn + ${16 * j}u, LDB);`).join('\n')}
${frags.map(([i, j]) => `        acc${i}${j} = subgroupMatrixMultiplyAccumulate(l${i}, r${j}, acc${i}${j});`).join('\n')}
      }
      workgroupBarrier();
    }
  }`;
  };

  return `// fusedattn matmul on subgroup matrices: A ${o.a}${o.aContig === 'm' ? ' (m-contiguous)' : ''}, B ${o.b}${o.transposeB ? ' (transposed)' : ''}, C float32${o.splitK ? ', split K' : ''}; ${TM} x ${TN} tiles, f16 x f16 -> f32
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium.subgroup_matrix_uniformity);

${MATMUL_PARAMS.wgsl()}
@group(0) @binding(${B.params}) var<uniform> params: MatmulParams;
${readBinding(B.a, 'a_buf', arrayElement(o.a))}
${readBinding(B.b, 'b_buf', arrayElement(o.b))}
@group(0) @binding(${B.c}) var<storage, read_write> c_buf: array<f32>;
${o.splitK ? `${readBinding(B.a2, 'a2_buf', arrayElement(o.a))}\n${readBinding(B.b2, 'b2_buf', arrayElement(o.b))}` : ''}
${loadFloat('a_at', 'a_buf', o.a)}
${loadFloat('b_at', 'b_buf', o.b)}
${o.splitK ? `${loadFloat('a2_at', 'a2_buf', o.a)}\n${loadFloat('b2_at', 'b2_buf', o.b)}` : ''}
${epilogue?.wgsl ?? 'fn epilogue(value: f32, zo: u32, zi: u32, m: u32, n: u32) -> f32 { return value; }'}

const TM: u32 = ${TM}u;
const TN: u32 = ${TN}u;
const TK: u32 = ${TK}u;
const LDA: u32 = ${LDA}u;
const LDB: u32 = ${LDB}u;
const THREADS: u32 = ${threads}u;

var<workgroup> a_tile: array<f16, ${TM * LDA}>;   // [m][k]
var<workgroup> b_tile: array<f16, ${TK * LDB}>;   // [k][n]
var<workgroup> c_tile: array<f32, ${TM * TN}>;    // [m][n]

@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let sg = lid / 32u;
  let z = wg.z;
  let zo = z / params.inner;
  let zi = z % params.inner;
  let m0 = wg.y * TM;
  let n0 = wg.x * TN;
  // this subgroup's block of result matrices (no early return: every invocation reaches the barriers)
  let sm = (sg / ${o.tile.sgN}u) * ${fragM * 16}u;
  let sn = (sg % ${o.tile.sgN}u) * ${fragN * 16}u;
${frags.map(([i, j]) => `  var acc${i}${j} = subgroup_matrix_result<f32, 16, 16>();`).join('\n')}

${kPass('a', 'b', 'params.k')}
${o.splitK ? kPass('a2', 'b2', 'params.k2') : ''}

${frags.map(([i, j]) => `  subgroupMatrixStore<row_major>(&c_tile, (sm + ${16 * i}u) * TN + sn + ${16 * j}u, acc${i}${j}, TN);`).join('\n')}
  workgroupBarrier();
  for (var e = lid; e < TM * TN; e += THREADS) {
    let m = m0 + e / TN;
    let n = n0 + e % TN;
    if (m < params.m && n < params.n) {
      c_buf[params.c_off + zo * params.c_strides.x + zi * params.c_strides.y + m * params.c_strides.z + n * params.c_strides.w] =
        epilogue(params.alpha * c_tile[e], zo, zi, m, n);
    }
  }
}
`;
}
