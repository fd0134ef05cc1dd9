// The general tensor-core GEMM: C = A·B (+ bias) on Dawn's chromium-experimental-subgroup-matrix,
// every choice the ceiling study (bench/ceiling/, issue 14) sweeps made a typed option, so the
// study's winner is a configuration the library can run as it is (src/block/webgpu/gemm.ts takes
// it as a tile candidate). What each option changes and why it might matter on an NVIDIA GPU:
//   fragM x fragN   result matrices per subgroup (register blocking): fragM + fragN matrix loads
//                   feed fragM·fragN MMAs per 16-deep K slice, so workgroup-memory traffic per
//                   FLOP falls as the block grows, until the accumulators no longer fit registers;
//   sgM x sgN       subgroups per workgroup sharing each staged tile (reuse of global loads);
//   k               K per staged step (barriers and loop overhead amortised over k/16 slices);
//   operands        'staged' (global -> registers -> workgroup memory -> matrices) or 'direct'
//                   (subgroupMatrixLoad straight from the storage buffer, no workgroup memory);
//   load            staging loads of 16 bytes (vec4<u32>, 8 halves) or 4 bytes (u32);
//   layout          staged rows 'padded' (+16 bytes per row: rows start on different banks),
//                   'dense' (no padding: 2-4-way bank conflicts on 16-byte row reads) or
//                   'blocked' (each 16 x 16 sub-tile contiguous, row stride 32 bytes). XOR
//                   swizzles are not expressible: subgroupMatrixLoad only takes offset + stride;
//   stages/prefetch 1 stage without prefetch (load, barrier, math, barrier), 1 stage with the next
//                   step's global loads in registers during the math, or 2 stages (one barrier
//                   per step) with that register prefetch;
//   accumulate      f32 or f16 result matrices (f16: half the registers, less precision);
//   shape           16x16x16 or 16x8x16 matrices (NVIDIA's mma.sync is m16n8k16);
//   b               'nt': B given as W [N, K] (PyTorch Linear; a column-major right operand),
//                   'nn': B [K, N] row-major;
//   raster          workgroups walk the output in groups of `raster` tile rows (L2 reuse of B);
//   edges           bounds checks on M, N and a partial last K step (false: the host guarantees
//                   M, N, K multiples of the tile);
//   epilogue        'scratch' (each result matrix through workgroup memory: bias, f16 output,
//                   ragged edges) or 'direct' (subgroupMatrixStore to the output: f32 -> f32 or
//                   f16 -> f16, no bias, no edges);
//   scratchInTiles  the scratch epilogue's f32 matrices stored into the staging tiles, free once
//                   the K loop is done, instead of a workgroup variable of their own. Why: Dawn's
//                   pipelines get 48-56 KiB of workgroup memory per H200 SM (occupancy probe,
//                   session 14), so the 10 KiB of scratch decides whether one or two workgroups
//                   share an SM (128 x 128 at K 32: 30 KiB -> 20 KiB).
// Every workgroup variable is a multiple of 16 bytes (NVIDIA misaligned matrix loads otherwise,
// docs/GPU-NOTES.md). Shapes: A [M, K] row-major at a_off + m·a_stride (float16, or float32
// converted while staged); C [M, N] at c_off + m·c_stride; K a multiple of 8.
import { gemmParams } from './gemm-params.js';
import { emitEightOutputs } from './eight-outputs.wgsl.js';
import { emitStagedKLoop } from './staged-k-loop.wgsl.js';

export interface TensorCoreGemmOptions {
  a: 'float32' | 'float16';
  out: 'float32' | 'float16';
  bias: 'none' | 'float32' | 'float16';
  b: 'nt' | 'nn';
  sgM: number;
  sgN: number;
  fragM: number;
  fragN: number;
  shape: '16x16x16' | '16x8x16';
  k: number;
  operands: 'staged' | 'direct';
  load: 'vec4' | 'u32';
  layout: 'padded' | 'dense' | 'blocked';
  stages: 1 | 2;
  prefetch: boolean;
  accumulate: 'f32' | 'f16';
  raster: number;
  edges: boolean;
  /** Eight outputs per 16-byte store (scratch epilogue, 16-wide matrices): N, c_off, c_stride multiples of 8. */
  vecOut: boolean;
  epilogue: 'scratch' | 'direct';
  /** The scratch epilogue's matrices in the staging tiles (f32 accumulators, staged operands). */
  scratchInTiles?: boolean;
}

export const TENSORCORE_GEMM_PARAMS = gemmParams('TcGemmParams');

export const TENSORCORE_GEMM_BINDINGS = { params: 0, a: 1, b: 2, c: 3, bias: 4 } as const;

const SG = 32;

/** Sizes derived from the options (bytes of workgroup memory, invocations, tile, register estimate). */
export function tensorCoreGemmGeometry(o: TensorCoreGemmOptions) {
  const matN = o.shape === '16x8x16' ? 8 : 16;
  const subgroups = o.sgM * o.sgN;
  const threads = subgroups * SG;
  const m = o.sgM * o.fragM * 16;
  const n = o.sgN * o.fragN * matN;
  const pad = o.layout === 'padded' ? 1 : 0;
  // A tile: m rows of k halves; B tile: n rows of k halves ('nt') or k rows of n halves ('nn')
  const aRowVec = o.k / 8 + pad;
  const bRowVec = (o.b === 'nt' ? o.k : n) / 8 + pad;
  const aVec = m * aRowVec;
  const bVec = (o.b === 'nt' ? n : o.k) * bRowVec;
  const staged = o.operands === 'staged';
  const tileBytes = staged ? o.stages * (aVec + bVec) * 16 : 0;
  const accBytes = o.accumulate === 'f32' ? 4 : 2;
  // scratch of the epilogue: one 16 x matN result per subgroup, rows padded by 4 elements
  const cs = matN + 4;
  const scratchBytes = o.epilogue === 'scratch' ? Math.ceil((subgroups * 16 * cs * accBytes) / 16) * 16 : 0;
  // scratch in the tiles: subgroup s's 16 x cs region (in vec4 units) in a_tile while whole ones
  // fit there, the rest in b_tile
  const aliased = !!o.scratchInTiles && o.epilogue === 'scratch';
  const regionVec = (16 * cs * accBytes) / 16;
  const scratchInA = aliased ? Math.min(subgroups, Math.floor((o.stages * aVec) / regionVec)) : 0;
  const scratchInB = aliased ? subgroups - scratchInA : 0;
  const chunksA = (m * o.k) / 8 / threads;
  const chunksB = (n * o.k) / 8 / threads;
  // registers per invocation held by the accumulators (32-bit registers)
  const accRegisters = (o.fragM * o.fragN * 16 * matN * accBytes) / 4 / SG;
  const operandRegisters = ((o.fragM * 16 * 16 + o.fragN * 16 * matN) * 2) / 4 / SG;
  const prefetchRegisters = staged && (o.prefetch || o.stages === 2) ? (chunksA + chunksB) * 4 : 0;
  return {
    matN, subgroups, threads, m, n, aRowVec, bRowVec, aVec, bVec, tileBytes, cs, scratchBytes,
    bytes: tileBytes + (aliased ? 0 : scratchBytes), aliased, regionVec, scratchInA, scratchInB, chunksA, chunksB, accRegisters, operandRegisters, prefetchRegisters,
    /** Workgroup-memory bytes read by matrix loads per FLOP (staged operands). */
    smemBytesPerFlop: ((o.fragM * 16 * 16 + o.fragN * 16 * matN) * 2) / (o.fragM * o.fragN * 16 * matN * 16 * 2),
  };
}

/** Why `o` cannot make a kernel (undefined: it can). Device limits are the caller's to check. */
export function tensorCoreGemmProblem(o: TensorCoreGemmOptions): string | undefined {
  const g = tensorCoreGemmGeometry(o);
  if (o.k % 16 !== 0 || o.k < 16) return `k ${o.k} must be a positive multiple of 16`;
  if (g.threads > 1024) return `${g.threads} invocations per workgroup (at most 1024)`;
  if (o.operands === 'staged' && (!Number.isInteger(g.chunksA) || !Number.isInteger(g.chunksB) || g.chunksA < 1 || g.chunksB < 1)) {
    return `the ${g.m} x ${o.k} and ${g.n} x ${o.k} tiles must split into whole 8-half chunks per invocation (${g.threads} invocations)`;
  }
  if (o.operands === 'direct' && (o.a !== 'float16' || o.edges)) return 'direct operands need float16 A and no edges (M, N, K multiples of the tile)';
  if (o.operands === 'staged' && o.stages === 2 && !o.prefetch) return 'two stages need the register prefetch';
  if (o.epilogue === 'direct' && (o.bias !== 'none' || o.edges || (o.accumulate === 'f32') !== (o.out === 'float32'))) {
    return 'the direct epilogue needs no bias, no edges and an output of the accumulator type';
  }
  if (o.raster < 1 || !Number.isInteger(o.raster)) return `raster ${o.raster} must be a positive integer`;
  if (o.load === 'u32' && o.a === 'float32') return 'u32 loads are for float16 A (float32 A is read as vec4<f32>)';
  if (o.scratchInTiles && o.epilogue === 'scratch') {
    if (o.operands !== 'staged' || o.accumulate !== 'f32' || o.shape !== '16x16x16') return 'scratch in the tiles needs staged operands, f32 accumulators and 16x16x16 matrices';
    if (g.scratchInB * g.regionVec > o.stages * g.bVec) return `the epilogue's ${g.subgroups} scratch matrices do not fit the staging tiles`;
  }
  return undefined;
}

/** The WGSL source; the pipeline cache key is the options object itself. */
export function buildTensorCoreGemm(o: TensorCoreGemmOptions): string {
  const problem = tensorCoreGemmProblem(o);
  if (problem) throw new Error(`buildTensorCoreGemm: ${problem}`);
  const g = tensorCoreGemmGeometry(o);
  const B = TENSORCORE_GEMM_BINDINGS;
  const MN = g.matN;
  const acc = o.accumulate;
  const bias = o.bias !== 'none';
  const staged = o.operands === 'staged';
  const nt = o.b === 'nt';
  const lines: string[] = [];
  const add = (s: string) => lines.push(s);
  const left = 'subgroup_matrix_left<f16, 16, 16>';
  const right = `subgroup_matrix_right<f16, ${MN}, 16>`;
  const result = `subgroup_matrix_result<${acc}, ${MN}, 16>`;

  add(`// fusedattn tensor-core GEMM: C = A·B${bias ? ' + bias' : ''}, ${g.m} x ${g.n} tiles over ${o.sgM} x ${o.sgN} subgroups of ${o.fragM} x ${o.fragN} ${o.shape} matrices,`);
  add(`// K step ${o.k}, ${o.operands} operands${staged ? ` (${o.load} loads, ${o.layout} rows, ${o.stages} stage(s), prefetch ${o.prefetch})` : ''}, ${acc} accumulation, B ${o.b}, A ${o.a}, C ${o.out}`);
  add('enable f16;');
  add('enable subgroups;');
  add('enable chromium_experimental_subgroup_matrix;');
  add('diagnostic(off, chromium.subgroup_matrix_uniformity);');
  add('');
  add(TENSORCORE_GEMM_PARAMS.wgsl());
  add(`@group(0) @binding(${B.params}) var<uniform> params: TcGemmParams;`);
  const aElem = o.a === 'float32' ? 'vec4<f32>' : o.load === 'u32' && staged ? 'u32' : 'vec4<u32>';
  const bElem = o.load === 'u32' && staged ? 'u32' : 'vec4<u32>';
  add(`@group(0) @binding(${B.a}) var<storage, read> a: array<${aElem}>;`);
  add(`@group(0) @binding(${B.b}) var<storage, read> w: array<${bElem}>;`);
  let cElem: string;
  if (o.epilogue === 'direct') cElem = acc;
  else if (o.vecOut && MN === 16) cElem = o.out === 'float32' ? 'vec4<f32>' : 'vec4<u32>';
  else cElem = o.out === 'float32' ? 'f32' : 'f16';
  add(`@group(0) @binding(${B.c}) var<storage, read_write> c: array<${cElem}>;`);
  if (bias) add(`@group(0) @binding(${B.bias}) var<storage, read> bias: array<${o.bias === 'float16' ? 'f16' : 'f32'}>;`);
  add('');
  add(`const TM = ${g.m}u; const TN = ${g.n}u; const TK = ${o.k}u;`);
  add(`const NT = ${g.threads}u;`);
  if (staged) {
    add(`const A_LD = ${g.aRowVec}u;   // A tile row stride in vec4<u32> (8 halves)`);
    add(`const B_LD = ${g.bRowVec}u;   // B tile row stride in vec4<u32>`);
    add(`var<workgroup> a_tile: array<vec4<u32>, ${o.stages * g.aVec}>;`);
    add(`var<workgroup> b_tile: array<vec4<u32>, ${o.stages * g.bVec}>;`);
  }
  if (o.epilogue === 'scratch') {
    add(`const CS = ${g.cs}u;   // row stride of the result scratch`);
    if (!g.aliased) add(`var<workgroup> c_tile: array<${acc}, ${g.scratchBytes / (acc === 'f32' ? 4 : 2)}>;`);
  }
  add('');

  if (staged) {
    // global loads of 8 halves: row `r`, halves `k .. k+7` of A; of W (nt) or of B row k (nn)
    add('fn load_a(m: u32, k: u32) -> vec4<u32> {');
    if (o.edges) add('  if (m >= params.m || k >= params.k) { return vec4<u32>(); }');
    if (o.a === 'float32') {
      add('  let i = (params.a_off + m * params.a_stride + k) / 4u;');
      add('  let x0 = a[i];');
      add('  let x1 = a[i + 1u];');
      add('  return vec4<u32>(pack2x16float(x0.xy), pack2x16float(x0.zw), pack2x16float(x1.xy), pack2x16float(x1.zw));');
    } else if (o.load === 'u32') {
      add('  let i = (params.a_off + m * params.a_stride + k) / 2u;');
      add('  return vec4<u32>(a[i], a[i + 1u], a[i + 2u], a[i + 3u]);');
    } else {
      add('  return a[(params.a_off + m * params.a_stride + k) / 8u];');
    }
    add('}');
    add(nt ? 'fn load_b(n: u32, k: u32) -> vec4<u32> {   // halves k..k+7 of row n of W [N, K]'
      : 'fn load_b(k: u32, n: u32) -> vec4<u32> {   // halves n..n+7 of row k of B [K, N]');
    if (o.edges) add(nt ? '  if (n >= params.n || k >= params.k) { return vec4<u32>(); }' : '  if (k >= params.k || n >= params.n) { return vec4<u32>(); }');
    const idx = nt ? 'n * params.k + k' : 'k * params.n + n';
    if (o.load === 'u32') {
      add(`  let i = (${idx}) / 2u;`);
      add('  return vec4<u32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]);');
    } else {
      add(`  return w[(${idx}) / 8u];`);
    }
    add('}');
    add('');
  }

  add(`@compute @workgroup_size(${g.threads})`);
  add('fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32,');
  add('        @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32) {');
  if (o.raster > 1) {
    add(`  // grouped order: ${o.raster} tile rows walk the columns together, so B tiles are reused from L2`);
    add('  let tilesM = (params.m + TM - 1u) / TM;');
    add('  let linear = wg.y * nwg.x + wg.x;');
    add(`  let perGroup = ${o.raster}u * nwg.x;`);
    add('  let firstM = (linear / perGroup) * ' + `${o.raster}u;`);
    add(`  let groupRows = min(tilesM - firstM, ${o.raster}u);`);
    add('  let m0 = (firstM + (linear % perGroup) % groupRows) * TM;');
    add('  let n0 = ((linear % perGroup) / groupRows) * TN;');
  } else {
    add('  let m0 = wg.y * TM;');
    add('  let n0 = wg.x * TN;');
  }
  add(`  let sm = (sg / ${o.sgN}u) * ${o.fragM * 16}u;   // this subgroup's rows and columns in the tile`);
  add(`  let sn = (sg % ${o.sgN}u) * ${o.fragN * MN}u;`);
  const frags: Array<[number, number]> = [];
  for (let i = 0; i < o.fragM; i++) for (let j = 0; j < o.fragN; j++) frags.push([i, j]);
  for (const [i, j] of frags) add(`  var acc_${i}_${j} = ${result}();`);

  // offsets (vec4 units) of matrix loads from the staged tiles
  const aOffset = (stage: string, row: string, kk: number) => {
    if (o.layout === 'blocked') return `${stage} * ${g.aVec}u + ((${row}) / 16u * ${o.k / 16}u + ${kk / 16}u) * 32u`;
    return `${stage} * ${g.aVec}u + (${row}) * A_LD + ${kk / 8}u`;
  };
  const aStride = o.layout === 'blocked' ? '2u' : 'A_LD';
  const bOffset = (stage: string, col: string, kk: number) => {
    if (nt) {
      // W rows are columns n of B: element (k, n) at n * stride + k, a column-major right matrix
      if (o.layout === 'blocked') return `${stage} * ${g.bVec}u + ((${col}) / 16u * ${o.k / 16}u + ${kk / 16}u) * 32u + ((${col}) % 16u) * 2u`;
      return `${stage} * ${g.bVec}u + (${col}) * B_LD + ${kk / 8}u`;
    }
    if (o.layout === 'blocked') return `${stage} * ${g.bVec}u + (${kk / 16}u * ${g.n / 16}u + (${col}) / 16u) * 32u + ((${col}) % 16u) / 8u`;
    return `${stage} * ${g.bVec}u + ${kk}u * B_LD + (${col}) / 8u`;
  };
  const bStride = o.layout === 'blocked' ? '2u' : 'B_LD';
  const bMajor = nt ? 'col_major' : 'row_major';

  const compute = (stage: string) => {
    for (let kk = 0; kk < o.k; kk += 16) {
      add('    {');
      for (let i = 0; i < o.fragM; i++) {
        add(`      let a${i} = subgroupMatrixLoad<${left}, row_major>(&a_tile, ${aOffset(stage, `sm + ${i * 16}u`, kk)}, ${aStride});`);
      }
      for (let j = 0; j < o.fragN; j++) {
        add(`      let b${j} = subgroupMatrixLoad<${right}, ${bMajor}>(&b_tile, ${bOffset(stage, `sn + ${j * MN}u`, kk)}, ${bStride});`);
      }
      for (const [i, j] of frags) add(`      acc_${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, acc_${i}_${j});`);
      add('    }');
    }
  };

  if (staged) {
    // chunk t of a tile: row t / chunksPerRow, 8 halves at (t % chunksPerRow) * 8
    const aCpr = o.k / 8;
    const bCpr = (nt ? o.k : g.n) / 8;
    const aDst = (stage: string, t: string) => (o.layout === 'blocked'
      ? `${stage} * ${g.aVec}u + ((${t}) / ${aCpr}u / 16u * ${o.k / 16}u + (${t}) % ${aCpr}u / 2u) * 32u + ((${t}) / ${aCpr}u % 16u) * 2u + (${t}) % 2u`
      : `${stage} * ${g.aVec}u + ((${t}) / ${aCpr}u) * A_LD + (${t}) % ${aCpr}u`);
    const bDst = (stage: string, t: string) => {
      if (o.layout !== 'blocked') return `${stage} * ${g.bVec}u + ((${t}) / ${bCpr}u) * B_LD + (${t}) % ${bCpr}u`;
      // rows r (W rows for nt, k for nn), 16 x 16 blocks ordered row-block major
      const blocksPerRow = nt ? o.k / 16 : g.n / 16;
      return `${stage} * ${g.bVec}u + ((${t}) / ${bCpr}u / 16u * ${blocksPerRow}u + (${t}) % ${bCpr}u / 2u) * 32u + ((${t}) / ${bCpr}u % 16u) * 2u + (${t}) % 2u`;
    };
    const aSrc = (k0: string, t: string) => `load_a(m0 + (${t}) / ${aCpr}u, ${k0} + ((${t}) % ${aCpr}u) * 8u)`;
    const bSrc = (k0: string, t: string) => (nt
      ? `load_b(n0 + (${t}) / ${bCpr}u, ${k0} + ((${t}) % ${bCpr}u) * 8u)`
      : `load_b(${k0} + (${t}) / ${bCpr}u, n0 + ((${t}) % ${bCpr}u) * 8u)`);
    const tOf = (u: number) => `lid + ${u * g.threads}u`;
    const fetch = (k0: string) => {
      for (let u = 0; u < g.chunksA; u++) add(`    ra${u} = ${aSrc(k0, tOf(u))};`);
      for (let u = 0; u < g.chunksB; u++) add(`    rb${u} = ${bSrc(k0, tOf(u))};`);
    };
    const store = (stage: string) => {
      for (let u = 0; u < g.chunksA; u++) add(`    a_tile[${aDst(stage, tOf(u))}] = ra${u};`);
      for (let u = 0; u < g.chunksB; u++) add(`    b_tile[${bDst(stage, tOf(u))}] = rb${u};`);
    };
    const storeDirect = (k0: string) => {
      for (let u = 0; u < g.chunksA; u++) add(`    a_tile[${aDst('0u', tOf(u))}] = ${aSrc(k0, tOf(u))};`);
      for (let u = 0; u < g.chunksB; u++) add(`    b_tile[${bDst('0u', tOf(u))}] = ${bSrc(k0, tOf(u))};`);
    };
    add('  let steps = (params.k + TK - 1u) / TK;');
    if (!o.prefetch) {
      add('  for (var s = 0u; s < steps; s++) {');
      add('    workgroupBarrier();   // the previous step\'s math is done with the tiles');
      storeDirect('s * TK');
      add('    workgroupBarrier();');
      compute('0u');
      add('  }');
    } else {
      for (let u = 0; u < g.chunksA; u++) add(`  var ra${u} = vec4<u32>();`);
      for (let u = 0; u < g.chunksB; u++) add(`  var rb${u} = vec4<u32>();`);
      emitStagedKLoop({ add, fetch, store, compute }, o.stages);
    }
  } else {
    // direct: every matrix straight from the storage buffers (offsets and strides in vec4<u32>)
    add('  let lda = params.a_stride / 8u;');
    add(nt ? '  let ldb = params.k / 8u;' : '  let ldb = params.n / 8u;');
    add('  for (var k0 = 0u; k0 < params.k; k0 += TK) {');
    for (let kk = 0; kk < o.k; kk += 16) {
      add('    {');
      for (let i = 0; i < o.fragM; i++) {
        add(`      let a${i} = subgroupMatrixLoad<${left}, row_major>(&a, (params.a_off + (m0 + sm + ${i * 16}u) * params.a_stride + k0 + ${kk}u) / 8u, lda);`);
      }
      for (let j = 0; j < o.fragN; j++) {
        const off = nt ? `((n0 + sn + ${j * MN}u) * params.k + k0 + ${kk}u) / 8u` : `((k0 + ${kk}u) * params.n + n0 + sn + ${j * MN}u) / 8u`;
        add(`      let b${j} = subgroupMatrixLoad<${right}, ${bMajor}>(&w, ${off}, ldb);`);
      }
      for (const [i, j] of frags) add(`      acc_${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, acc_${i}_${j});`);
      add('    }');
    }
    add('  }');
  }
  add('');

  if (o.epilogue === 'direct') {
    add('  // epilogue: each result matrix straight to C');
    for (const [i, j] of frags) {
      add(`  subgroupMatrixStore<row_major>(&c, params.c_off + (m0 + sm + ${i * 16}u) * params.c_stride + n0 + sn + ${j * MN}u, acc_${i}_${j}, params.c_stride);`);
    }
    add('}');
    return lines.join('\n') + '\n';
  }
  const per = MN / 2; // columns per invocation: lane pair (2r, 2r+1) writes row r
  add(`  // epilogue: each result matrix through this subgroup's scratch; lane pair (2r, 2r+1) writes row r, ${per} columns each`);
  add('  let r = lane / 2u;');
  add('  let side = lane % 2u;');
  const biasAt = (n: string) => (bias ? ` + f32(bias[${n}])` : '');
  const vec = o.vecOut && MN === 16;
  // where this subgroup's scratch lives: [array, base of its region, scalar read of element q]
  type Place = { tile: string; base: string; read: (q: string) => string; read4?: (q: string) => string };
  const places: Array<{ when?: string; place: Place }> = [];
  if (!g.aliased) {
    add('  let sbase = sg * 16u * CS;');
    places.push({ place: { tile: 'c_tile', base: 'sbase', read: (q) => `f32(c_tile[${q}])` } });
  } else {
    // the tiles are vec4<u32>: matrix offsets and strides count 16-byte units, reads bitcast f32s
    const viaTile = (tile: string, base: string): Place => ({
      tile, base,
      read: (q) => `bitcast<f32>(${tile}[${base} + (${q}) / 4u][(${q}) % 4u])`,
      read4: (q) => `bitcast<vec4<f32>>(${tile}[${base} + (${q}) / 4u])`,
    });
    add('  workgroupBarrier();   // every subgroup is done with the staged tiles the scratch reuses');
    if (g.scratchInA > 0) places.push({ when: g.scratchInB > 0 ? `sg < ${g.scratchInA}u` : undefined, place: viaTile('a_tile', `sg * ${g.regionVec}u`) });
    if (g.scratchInB > 0) places.push({ when: g.scratchInA > 0 ? 'else' : undefined, place: viaTile('b_tile', `(sg - ${g.scratchInA}u) * ${g.regionVec}u`) });
  }
  const inEachPlace = (body: (p: Place) => void) => {
    for (const { when, place } of places) {
      if (when === 'else') add('  else {');
      else if (when) add(`  if (${when}) {`);
      body(place);
      if (when) add('  }');
    }
  };
  const strideCS = g.aliased ? `${g.cs / 4}u` : 'CS';
  for (const [i, j] of frags) {
    inEachPlace((p) => add(`  subgroupMatrixStore<row_major>(&${p.tile}, ${p.base}, acc_${i}_${j}, ${strideCS});`));
    add('  workgroupBarrier();');
    inEachPlace((p) => {
      // q: this lane's first scalar in the region (for the aliased tiles, relative to p.base)
      const q = g.aliased ? 'q' : 'src';
      add('  {');
      add(`    let m = m0 + sm + ${i * 16}u + r;`);
      add(`    let n = n0 + sn + ${j * MN}u + side * ${per}u;`);
      add(g.aliased ? `    let q = r * CS + side * ${per}u;` : `    let src = sbase + r * CS + side * ${per}u;`);
      if (vec) {
        add(o.edges ? '    if (m < params.m && n < params.n) {' : '    {');
        if (p.read4) {
          add(`      let lo = ${p.read4(q)};`);
          add(`      let hi = ${p.read4(`${q} + 4u`)};`);
          for (let e = 0; e < 8; e++) add(`      let v${e} = ${e < 4 ? 'lo' : 'hi'}[${e % 4}]${biasAt(`n + ${e}u`)};`);
        } else {
          for (let e = 0; e < 8; e++) add(`      let v${e} = ${p.read(`${q} + ${e}u`)}${biasAt(`n + ${e}u`)};`);
        }
        emitEightOutputs(add, o.out);
        add('    }');
      } else {
        add(o.edges ? '    if (m < params.m) {' : '    {');
        add(`      for (var e = 0u; e < ${per}u; e++) {`);
        const value = `${p.read(`${q} + e`)}${biasAt('n + e')}`;
        const store = `c[params.c_off + m * params.c_stride + n + e] = ${o.out === 'float32' ? value : `f16(${value})`};`;
        add(o.edges ? `        if (n + e < params.n) { ${store} }` : `        ${store}`);
        add('      }');
        add('    }');
      }
      add('  }');
    });
    add('  workgroupBarrier();');
  }
  add('}');
  return lines.join('\n') + '\n';
}

/** The study's reference point: the block's measured best tile (128 x 256, K 32, one stage, prefetch). */
export const TENSORCORE_GEMM_BASE: TensorCoreGemmOptions = {
  a: 'float16', out: 'float16', bias: 'none', b: 'nt',
  sgM: 2, sgN: 4, fragM: 4, fragN: 4, shape: '16x16x16', k: 32,
  operands: 'staged', load: 'vec4', layout: 'padded', stages: 1, prefetch: true,
  accumulate: 'f32', raster: 1, edges: true, vecOut: true, epilogue: 'scratch',
};

/** A short readable name of a configuration (what the study's rows and tables print). */
export function tensorCoreGemmName(o: TensorCoreGemmOptions): string {
  const g = tensorCoreGemmGeometry(o);
  const parts = [`${g.m}x${g.n}`, `sg${o.sgM}x${o.sgN}`, `f${o.fragM}x${o.fragN}`, `k${o.k}`];
  if (o.shape !== '16x16x16') parts.push(o.shape);
  if (o.operands === 'direct') parts.push('direct');
  else {
    parts.push(o.stages === 2 ? 's2' : o.prefetch ? 'pf' : 'nopf');
    if (o.load !== 'vec4') parts.push(o.load);
    if (o.layout !== 'padded') parts.push(o.layout);
  }
  if (o.accumulate !== 'f32') parts.push('acc16');
  if (o.b !== 'nt') parts.push(o.b);
  if (o.raster > 1) parts.push(`r${o.raster}`);
  if (!o.edges) parts.push('noedge');
  if (o.epilogue !== 'scratch') parts.push('epi-direct');
  else if (o.scratchInTiles) parts.push('cs-in-tiles');
  return parts.join(' ');
}
