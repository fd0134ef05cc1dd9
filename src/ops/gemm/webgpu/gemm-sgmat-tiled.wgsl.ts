// The block's linear layers on tensor cores, the fast tile: y = x Wᵀ (+ b) through Dawn's
// chromium-experimental-subgroup-matrix (16 x 16 x 16, f16 operands, f32 accumulation), with what
// the flash tier learned on the H200 (docs/GPU-NOTES.md, issue 3 runs):
//   - 16-byte loads and 16-byte workgroup stores: tiles live in array<vec4<u32>> (8 halves per
//     element), matrix loads count offset and stride in those elements;
//   - register prefetch: the next K step's global loads are issued before this step's math, and
//     stored to workgroup memory after it, so global latency hides behind the MMAs;
//   - several subgroups per workgroup share each staged tile: a subgroup owns fragM x fragN result
//     matrices (register blocking: fragM + fragN matrix loads feed fragM * fragN MMAs);
//   - every workgroup variable a multiple of 16 bytes (NVIDIA misaligned matrix loads otherwise).
// Shapes (all row-major, element offsets and row strides from the uniforms):
//   x  [M, K] float32 (converted to f16 while staged) or float16
//   W  [N, K] float16, the PyTorch Linear layout: as the K x N right operand it is column-major
//   y  [M, N] float32 or float16 (+ bias [N], float32 or float16)
// K must be a multiple of 8 (whole 16-byte chunks; a partial last K step is zero-filled); M and N
// are free (rows and columns past them are zero-filled and never stored).
// With stages = 2 the K loop double-buffers workgroup memory (one barrier per step); with 1 it
// reuses one buffer (two barriers per step, half the memory).
import { emitEightOutputs } from './eight-outputs.wgsl.js';
import { gemmParams } from './gemm-params.js';
import { emitStagedKLoop } from './staged-k-loop.wgsl.js';

export interface SgmatTile {
  /** Subgroups along M and along N (32 invocations each). */
  sgM: number;
  sgN: number;
  /** 16 x 16 result matrices per subgroup along M and along N. */
  fragM: number;
  fragN: number;
  /** K per staged step (a multiple of 16). */
  k: number;
  stages: 1 | 2;
}

export interface SgmatTiledGemmOptions {
  a: 'float32' | 'float16';
  out: 'float32' | 'float16';
  bias: 'none' | 'float32' | 'float16';
  tile: SgmatTile;
  /** Eight outputs per 16-byte (f16) or two 16-byte (f32) stores: N, c_off and c_stride multiples of 8. */
  vecOut: boolean;
}

export const SGMAT_TILED_PARAMS = gemmParams('SgmatTiledParams');

export const SGMAT_TILED_BINDINGS = { params: 0, a: 1, w: 2, c: 3, bias: 4 } as const;

const SG = 32;
/** Workgroup memory Dawn gives every adapter (WebGPU's default maxComputeWorkgroupStorageSize). */
const WORKGROUP_BYTES = 16384 * 3;

/**
 * Candidate tiles, best first as measured on the H200 (docs/GPU-NOTES.md, block prefill runs 1-2,
 * Qwen-7B shapes, K 4096): 128 rows x 256 columns over 8 subgroups of 4 x 4 result matrices, K step
 * 32 in one stage, led: 120 TFLOP/s with float32 x (the packed QKV projection at B 8), 189 with
 * float16 x (O projection). Wider tiles re-read x less often, and converting float32 x while
 * staging is what the smaller tiles were bound by (82-90 TFLOP/s). Small grids were not tuned.
 */
export const SGMAT_TILES: readonly SgmatTile[] = [
  { sgM: 2, sgN: 4, fragM: 4, fragN: 4, k: 32, stages: 1 },
  { sgM: 4, sgN: 2, fragM: 2, fragN: 4, k: 64, stages: 1 },
  { sgM: 2, sgN: 4, fragM: 4, fragN: 2, k: 64, stages: 1 },
  { sgM: 4, sgN: 2, fragM: 4, fragN: 4, k: 32, stages: 1 },
  { sgM: 2, sgN: 4, fragM: 4, fragN: 2, k: 32, stages: 2 },
  { sgM: 4, sgN: 2, fragM: 2, fragN: 4, k: 32, stages: 2 },
  { sgM: 2, sgN: 4, fragM: 4, fragN: 2, k: 32, stages: 1 },
  { sgM: 2, sgN: 2, fragM: 4, fragN: 4, k: 32, stages: 2 },
  { sgM: 2, sgN: 2, fragM: 4, fragN: 2, k: 32, stages: 2 },
  { sgM: 2, sgN: 2, fragM: 2, fragN: 2, k: 32, stages: 2 },
];

/** Sizes derived from a tile. */
export function tileGeometry(t: SgmatTile) {
  const subgroups = t.sgM * t.sgN;
  const threads = subgroups * SG;
  const m = t.sgM * t.fragM * 16;
  const n = t.sgN * t.fragN * 16;
  const lds = t.k + 8; // halves per staged row: rows start 16 bytes apart on different banks
  const chunksA = (m * t.k) / 8 / threads;
  const chunksW = (n * t.k) / 8 / threads;
  const tileBytes = t.stages * (m + n) * lds * 2;
  // row stride of the f32 result scratch (16 rows per subgroup): 20 floats spread the epilogue's
  // reads over the banks; 16 where 20 would not fit 48 KiB
  const cs = tileBytes + subgroups * 16 * 20 * 4 <= WORKGROUP_BYTES ? 20 : 16;
  const bytes = tileBytes + subgroups * 16 * cs * 4;
  return { subgroups, threads, m, n, lds, chunksA, chunksW, cs, bytes };
}

/** Why `t` cannot make a kernel (undefined: it can). */
export function sgmatTileProblem(t: SgmatTile): string | undefined {
  const g = tileGeometry(t);
  if (t.k % 16 !== 0 || t.k < 16) return `tile.k ${t.k} must be a positive multiple of 16`;
  if (!Number.isInteger(g.chunksA) || !Number.isInteger(g.chunksW) || g.chunksA < 1 || g.chunksW < 1) {
    return `the ${g.m} x ${t.k} and ${g.n} x ${t.k} tiles must split into whole 8-half chunks per invocation (${g.threads} invocations)`;
  }
  return undefined;
}

export function buildSgmatTiledGemm(o: SgmatTiledGemmOptions): string {
  const problem = sgmatTileProblem(o.tile);
  if (problem) throw new Error(`buildSgmatTiledGemm: ${problem}`);
  const t = o.tile;
  const g = tileGeometry(t);
  const B = SGMAT_TILED_BINDINGS;
  const bias = o.bias !== 'none';
  const ldv = g.lds / 8; // row stride in vec4<u32> elements
  const chunksPerRow = t.k / 8;
  const frags: Array<[number, number]> = [];
  for (let i = 0; i < t.fragM; i++) for (let j = 0; j < t.fragN; j++) frags.push([i, j]);
  const lines: string[] = [];
  const add = (s: string) => lines.push(s);

  add(`// fusedattn linear on subgroup matrices (tiled): y = x Wᵀ${bias ? ' + b' : ''}, ${g.m} x ${g.n} tiles, K step ${t.k}, ${t.stages} stage(s), x ${o.a}, y ${o.out}`);
  add('enable f16;');
  add('enable subgroups;');
  add('enable chromium_experimental_subgroup_matrix;');
  add('diagnostic(off, chromium.subgroup_matrix_uniformity);');
  add('');
  add(SGMAT_TILED_PARAMS.wgsl());
  add(`@group(0) @binding(${B.params}) var<uniform> params: SgmatTiledParams;`);
  add(`@group(0) @binding(${B.a}) var<storage, read> a: array<${o.a === 'float32' ? 'vec4<f32>' : 'vec4<u32>'}>;`);
  add(`@group(0) @binding(${B.w}) var<storage, read> w: array<vec4<u32>>;`);
  const cElem = o.vecOut ? (o.out === 'float32' ? 'vec4<f32>' : 'vec4<u32>') : (o.out === 'float32' ? 'f32' : 'f16');
  add(`@group(0) @binding(${B.c}) var<storage, read_write> c: array<${cElem}>;`);
  if (bias) add(`@group(0) @binding(${B.bias}) var<storage, read> bias: array<${o.bias === 'float16' ? 'f16' : 'f32'}>;`);
  add('');
  add(`const TM = ${g.m}u; const TN = ${g.n}u; const TK = ${t.k}u;`);
  add(`const LDS = ${g.lds}u;   // halves per staged row`);
  add(`const LDV = ${ldv}u;    // the same in vec4<u32> elements`);
  add(`const NT = ${g.threads}u;`);
  add(`const CS = ${g.cs}u;    // row stride of the f32 result scratch`);
  add('');
  add(`var<workgroup> a_tile: array<vec4<u32>, ${t.stages * g.m * ldv}>;   // [stage][m][k]`);
  add(`var<workgroup> w_tile: array<vec4<u32>, ${t.stages * g.n * ldv}>;   // [stage][n][k]`);
  add(`var<workgroup> c_tile: array<f32, ${g.subgroups * 16 * g.cs}>;      // per subgroup: one 16 x 16 result at a time`);
  add('');
  add('/** Halves k .. k+7 of row m of x (k % 8 == 0), zero outside the matrix. */');
  add('fn load_a(m: u32, k: u32) -> vec4<u32> {');
  add('  if (m >= params.m || k >= params.k) { return vec4<u32>(); }');
  if (o.a === 'float32') {
    add('  let i = (params.a_off + m * params.a_stride + k) / 4u;');
    add('  let x0 = a[i];');
    add('  let x1 = a[i + 1u];');
    add('  return vec4<u32>(pack2x16float(x0.xy), pack2x16float(x0.zw), pack2x16float(x1.xy), pack2x16float(x1.zw));');
  } else {
    add('  return a[(params.a_off + m * params.a_stride + k) / 8u];');
  }
  add('}');
  add('');
  add('/** Halves k .. k+7 of row n of W, zero outside the matrix. */');
  add('fn load_w(n: u32, k: u32) -> vec4<u32> {');
  add('  if (n >= params.n || k >= params.k) { return vec4<u32>(); }');
  add('  return w[(n * params.k + k) / 8u];');
  add('}');
  add('');
  add(`@compute @workgroup_size(${g.threads})`);
  add('fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,');
  add('        @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32) {');
  add('  let m0 = wg.y * TM;');
  add('  let n0 = wg.x * TN;');
  add(`  let sm = (sg / ${t.sgN}u) * ${t.fragM * 16}u;   // this subgroup's rows and columns in the tile`);
  add(`  let sn = (sg % ${t.sgN}u) * ${t.fragN * 16}u;`);
  for (const [i, j] of frags) add(`  var acc_${i}_${j} = subgroup_matrix_result<f32, 16, 16>();`);
  // chunk u of this invocation: row t / chunksPerRow, halves (t % chunksPerRow) * 8
  const fetch = (k0: string) => {
    for (let u = 0; u < g.chunksA; u++) add(`    ra${u} = load_a(m0 + (lid + ${u * g.threads}u) / ${chunksPerRow}u, ${k0} + ((lid + ${u * g.threads}u) % ${chunksPerRow}u) * 8u);`);
    for (let u = 0; u < g.chunksW; u++) add(`    rw${u} = load_w(n0 + (lid + ${u * g.threads}u) / ${chunksPerRow}u, ${k0} + ((lid + ${u * g.threads}u) % ${chunksPerRow}u) * 8u);`);
  };
  const store = (stage: string) => {
    // chunk t sits at row t / chunksPerRow, element t % chunksPerRow: LDV per row
    for (let u = 0; u < g.chunksA; u++) add(`    a_tile[${stage} * ${g.m * ldv}u + ((lid + ${u * g.threads}u) / ${chunksPerRow}u) * LDV + (lid + ${u * g.threads}u) % ${chunksPerRow}u] = ra${u};`);
    for (let u = 0; u < g.chunksW; u++) add(`    w_tile[${stage} * ${g.n * ldv}u + ((lid + ${u * g.threads}u) / ${chunksPerRow}u) * LDV + (lid + ${u * g.threads}u) % ${chunksPerRow}u] = rw${u};`);
  };
  const compute = (stage: string) => {
    for (let kk = 0; kk < t.k; kk += 16) {
      add('    {');
      for (let i = 0; i < t.fragM; i++) {
        add(`      let a${i} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&a_tile, ${stage} * ${g.m * ldv}u + (sm + ${i * 16}u) * LDV + ${kk / 8}u, LDV);`);
      }
      for (let j = 0; j < t.fragN; j++) {
        // W rows are n: as the K x N right operand the staged tile is column-major
        add(`      let b${j} = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&w_tile, ${stage} * ${g.n * ldv}u + (sn + ${j * 16}u) * LDV + ${kk / 8}u, LDV);`);
      }
      for (const [i, j] of frags) add(`      acc_${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, acc_${i}_${j});`);
      add('    }');
    }
  };
  add('');
  for (let u = 0; u < g.chunksA; u++) add(`  var ra${u} = vec4<u32>();`);
  for (let u = 0; u < g.chunksW; u++) add(`  var rw${u} = vec4<u32>();`);
  add('  let steps = (params.k + TK - 1u) / TK;');
  emitStagedKLoop({ add, fetch, store, compute }, t.stages);
  add('');
  add('  // epilogue: each result matrix through this subgroup\'s scratch; lane pair (2r, 2r+1) writes row r,');
  add('  // 8 columns each, with the bias and the bounds of ragged edges');
  add('  let sbase = sg * 16u * CS;');
  add('  let r = lane / 2u;');
  add('  let side = lane % 2u;');
  const biasAt = (n: string) => (bias ? ` + f32(bias[${n}])` : '');
  for (const [i, j] of frags) {
    add(`  subgroupMatrixStore<row_major>(&c_tile, sbase, acc_${i}_${j}, CS);`);
    add('  workgroupBarrier();');
    add('  {');
    add(`    let m = m0 + sm + ${i * 16}u + r;`);
    add(`    let n = n0 + sn + ${j * 16}u + side * 8u;`);
    add('    let src = sbase + r * CS + side * 8u;');
    if (o.vecOut) {
      add('    if (m < params.m && n < params.n) {');
      for (let e = 0; e < 8; e++) add(`      let v${e} = c_tile[src + ${e}u]${biasAt(`n + ${e}u`)};`);
      emitEightOutputs(add, o.out);
      add('    }');
    } else {
      add('    if (m < params.m) {');
      add('      for (var e = 0u; e < 8u; e++) {');
      add(`        if (n + e < params.n) { c[params.c_off + m * params.c_stride + n + e] = ${o.out === 'float32' ? '' : 'f16('}c_tile[src + e]${biasAt('n + e')}${o.out === 'float32' ? '' : ')'}; }`);
      add('      }');
      add('    }');
    }
    add('  }');
    add('  workgroupBarrier();');
  }
  add('}');
  return lines.join('\n') + '\n';
}
