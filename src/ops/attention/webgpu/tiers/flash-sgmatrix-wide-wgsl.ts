// The tensor-core tier's wide kernel (issue 14): the same FlashAttention forward as
// flash-sgmatrix-wgsl.ts, but each subgroup owns 32 query rows (two row matrices) instead of 16, so
// every K and V matrix loaded from workgroup memory feeds two MMAs, the per-block barriers and the
// S/P staging are amortised over twice the math, and the softmax runs one lane per row (no lane
// pairs, no shuffles). Costs: twice the Q and O registers per invocation (D 64: 32 + 64; D 128: 64
// + 128, which may spill) and twice the S/P workgroup memory per subgroup. It is an autotuner
// candidate (SgMatrixConfig.rowsPerSubgroup = 32): it only becomes the choice for a shape class
// where it measures faster and its output matches the default configuration's.
//
// Per key block of BC keys: the workgroup stores the prefetched K and V block (registers ->
// workgroup memory) and starts the next block's global loads; each subgroup computes S = Q·Kᵀ for
// its 32 rows (Q resident in left matrices), stores S (f32), runs the lazily rescaled softmax (the
// scale folded into exp2), writes P once as f16, and accumulates O += P·V. Row r of the subgroup
// is lane r. Supported: causal/window, softcap, ALiBi, LSE, GQA packing; not the fused block's
// source nor the MLA split form (those keep the 16-row kernel).
import { NON_FINITE_FNS } from '../../../../engines/webgpu/wgsl.js';
import type { SgMatrixKernelOptions } from './flash-sgmatrix-wgsl.js';
import { rowKeyRangeLines, tileKeyRangeLines } from './flash-tile-keys.js';
import { lazyRescaleLines, vectorKernelBindings, vectorKernelEntry, vectorPrefetchLoopHead, vectorQTileCopy, vectorRowLoaders, vectorScoreLines } from './flash-sgmatrix-vector-parts.js';

/** The 16-row kernel's options plus the row matrices per subgroup (2 = 32 rows). */
export type WideKernelOptions = SgMatrixKernelOptions & { rowFrags: 2 };

const pad16 = (n: number) => Math.ceil(n / 16) * 16;

/** Option keys this builder implements; any other key that is set (truthy) makes it refuse. */
const KNOWN = new Set(['dimQK', 'dimRope', 'dimV', 'subgroups', 'blockKeys', 'headsPerTile', 'sharedKV', 'vectorLoads', 'rescaleThreshold', 'causalOrWindow',
  'softcap', 'alibi', 'returnLse', 'rowPad', 'smemVec4', 'prefetch', 'unrolled', 'block', 'rowFrags']);

function layoutOf(o: WideKernelOptions) {
  const R = o.rowFrags;
  const dq = pad16(o.dimQK);
  const dv = pad16(o.dimV);
  const rows = 16 * R * o.subgroups;
  const kStride = dq + o.rowPad;
  const vStride = dv + o.rowPad;
  const kHalves = o.blockKeys * kStride;
  const vHalves = o.blockKeys * vStride;
  const kvHalves = Math.max(kHalves + vHalves, rows * kStride);
  const sStride = o.blockKeys + 4;
  const pStride = o.blockKeys + o.rowPad;
  const sFloats = o.subgroups * 16 * R * Math.max(sStride, 20);
  const pHalves = o.subgroups * 16 * R * pStride;
  const bytes = kvHalves * 2 + sFloats * 4 + pHalves * 2 + 32;
  return { R, dq, dv, rows, kStride, vStride, vBase: kHalves, kvHalves, sStride, pStride, sFloats, pHalves, bytes };
}

export function wideWorkgroupBytes(o: WideKernelOptions): number {
  return layoutOf(o).bytes;
}

/** Why these options cannot make a wide kernel, or undefined. */
export function wideOptionsProblem(o: WideKernelOptions): string | undefined {
  for (const [key, value] of Object.entries(o)) if (!KNOWN.has(key) && value) return `the 32-row kernel does not implement option ${key}`;
  if (o.block) return 'the 32-row kernel has no block source';
  if (o.dimRope) return 'the 32-row kernel has no MLA split form';
  if (!o.vectorLoads || !o.smemVec4 || !o.prefetch || o.sharedKV) return 'the 32-row kernel needs vector loads, vec4 tiles, prefetch and separate K/V tiles';
  if (o.blockKeys % 16 !== 0 || o.blockKeys < 16 || o.blockKeys > 64) return `blockKeys ${o.blockKeys} must be 16..64, a multiple of 16`;
  if (![1, 2, 4].includes(o.subgroups)) return `subgroups ${o.subgroups} must be 1, 2 or 4`;
  if (o.subgroups % o.headsPerTile !== 0) return `headsPerTile ${o.headsPerTile} must divide subgroups ${o.subgroups}`;
  const L = layoutOf(o);
  const nt = 32 * o.subgroups;
  if ((o.blockKeys * (L.dq / 8)) % nt || (o.blockKeys * (L.dv / 8)) % nt) return 'prefetch needs K/V tiles that divide evenly among the invocations';
  return undefined;
}

/** The WGSL source; the pipeline cache key is the options object itself. */
export function buildFlashSgMatrixWide(o: WideKernelOptions): string {
  const problem = wideOptionsProblem(o);
  if (problem) throw new Error(`buildFlashSgMatrixWide: ${problem}`);
  const L = layoutOf(o);
  const R = L.R;
  const NT = 32 * o.subgroups;
  const BC = o.blockKeys;
  const chunksQK = L.dq / 16;
  const chunksV = L.dv / 16;
  const chunksBC = BC / 16;
  const pfK = (BC * (L.dq / 8)) / NT;
  const pfV = (BC * (L.dv / 8)) / NT;
  const lines: string[] = [];
  const add = (s: string) => lines.push(s);
  const mat = (use: 'left' | 'right', major: string, offset: string, stride: string) =>
    `subgroupMatrixLoad<subgroup_matrix_${use}<f16, 16, 16>, ${major}>(&KVs, (${offset}) / 8u, ${stride} / 8u)`;
  const rowsOf = Array.from({ length: R }, (_, r) => r);

  add(`// fusedattn flash forward, tensor cores, ${16 * R} query rows per subgroup (wide kernel)`);
  for (const line of vectorKernelBindings(o.returnLse)) add(line);
  add('');
  add(`const NT = ${NT}u;`);
  add(`const ROWS = ${L.rows}u;          // query rows per workgroup (${16 * R} per subgroup)`);
  add(`const SG_ROWS = ${16 * R}u;`);
  add(`const ROWS_PER_HEAD = ${L.rows / o.headsPerTile}u;`);
  add(`const BC = ${BC}u;`);
  add(`const DQ = ${o.dimQK}u; const DQP = ${L.dq}u;`);
  add(`const DV = ${o.dimV}u; const DVP = ${L.dv}u;`);
  add(`const K_STRIDE = ${L.kStride}u; const V_STRIDE = ${L.vStride}u; const V_BASE = ${L.vBase}u;`);
  add(`const S_STRIDE = ${L.sStride}u; const P_STRIDE = ${L.pStride}u;`);
  add(`const THRESHOLD = ${o.rescaleThreshold.toFixed(1)};`);
  add('const NEG_INF = -3.0e38;');
  add(NON_FINITE_FNS);
  add('');
  add(`var<workgroup> KVs: array<vec4<u32>, ${L.kvHalves / 8}>;   // K tile, V tile (Q tile at the start)`);
  add(`var<workgroup> Ss: array<f32, ${L.sFloats}>;    // per subgroup: S block, then O chunks`);
  add(`var<workgroup> Ps: array<f16, ${L.pHalves}>;    // per subgroup: P block`);
  add('var<workgroup> rescaleFlag: array<atomic<u32>, 4>;   // 16 bytes: see the alignment rule in docs/GPU-NOTES.md');
  add('var<workgroup> seqW: vec4<u32>;');
  add('');
  for (const line of vectorRowLoaders()) add(line);
  add('');
  for (const line of vectorKernelEntry(NT, o.causalOrWindow, o.headsPerTile)) add(line);
  add('  let sg = subgroupId;');
  add('  let myHead = h0 + (sg * SG_ROWS) / ROWS_PER_HEAD;');
  add('  let myRow0 = q0 + (sg * SG_ROWS) % ROWS_PER_HEAD;');
  for (const line of tileKeyRangeLines(o.causalOrWindow)) add(line);
  add('');
  add('  // Q tile -> workgroup memory -> left matrices kept for the whole loop');
  for (const line of vectorQTileCopy()) add(line);
  add('  workgroupBarrier();');
  for (const r of rowsOf) for (let c = 0; c < chunksQK; c++) add(`  let qm${r}_${c} = ${mat('left', 'row_major', `(sg * SG_ROWS + ${16 * r}u) * K_STRIDE + ${c * 16}u`, 'K_STRIDE')};`);
  for (const r of rowsOf) for (let n = 0; n < chunksV; n++) add(`  var om${r}_${n} = subgroup_matrix_result<f32, 16, 16>();`);
  add('  workgroupBarrier();');
  add('');
  add('  // softmax state of row `lane` of this subgroup');
  add('  let i = myRow0 + lane;');
  add('  var m = NEG_INF;');
  add('  var l = 0.0;');
  add('  var poison = 0u;   // 1: row `lane` saw a NaN or +inf score (its output and LSE are NaN)');
  for (const line of rowKeyRangeLines(o)) add(line);
  add('  let sBase = sg * SG_ROWS * S_STRIDE;');
  add('  let pBase = sg * SG_ROWS * P_STRIDE;');
  for (const line of vectorPrefetchLoopHead(pfK, pfV)) add(line);
  add(`    // S = Q·Kᵀ for the ${16 * R} rows: each K matrix feeds ${R} MMAs`);
  for (let n = 0; n < chunksBC; n++) {
    add('    {');
    for (const r of rowsOf) add(`      var s${r} = subgroup_matrix_result<f32, 16, 16>();`);
    for (let c = 0; c < chunksQK; c++) {
      add(`      let km${c} = ${mat('right', 'col_major', `${n * 16}u * K_STRIDE + ${c * 16}u`, 'K_STRIDE')};`);
      for (const r of rowsOf) add(`      s${r} = subgroupMatrixMultiplyAccumulate(qm${r}_${c}, km${c}, s${r});`);
    }
    for (const r of rowsOf) add(`      subgroupMatrixStore<row_major>(&Ss, sBase + ${16 * r}u * S_STRIDE + ${n * 16}u, s${r}, S_STRIDE);`);
    add('    }');
  }
  add('    workgroupBarrier();');
  add('    // softmax of row `lane` over the block');
  add('    let sRow = sBase + lane * S_STRIDE;');
  add('    let pRow = pBase + lane * P_STRIDE;');
  add(`    var sv: array<f32, ${BC}>;`);
  add('    var blockMax = NEG_INF;');
  add('    for (var c = 0u; c < BC; c++) {');
  add('      var s = Ss[sRow + c];');
  for (const line of vectorScoreLines(o, 'kv0 + c')) add(line);
  add('    }');
  for (const line of lazyRescaleLines()) add(line);
  add('    var sum = 0.0;');
  add('    for (var c = 0u; c < BC; c++) {');
  add('      let p = select(0.0, exp2(sv[c] - m), sv[c] != NEG_INF);');
  add('      sum += p;');
  add('      Ps[pRow + c] = f16(p);   // P written once, as f16');
  add('    }');
  add('    l += sum;');
  add('    if (workgroupUniformLoad(&rescaleFlag[0]) != 0u) {');
  add('      // some row\'s max grew past the threshold: scale O rows through workgroup memory; lane pair');
  add('      // (2q, 2q+1) scales row q of a 16-row chunk, whose alpha lane (16·frag + q) holds');
  for (const r of rowsOf) {
    add(`      let a${r} = subgroupShuffle(alpha, ${16 * r}u + lane / 2u);`);
    for (let n = 0; n < chunksV; n++) {
      add(`      subgroupMatrixStore<row_major>(&Ss, sBase, om${r}_${n}, S_STRIDE);`);
      add('      workgroupBarrier();');
      add(`      for (var k = 0u; k < 8u; k++) { Ss[sBase + (lane / 2u) * S_STRIDE + (lane % 2u) * 8u + k] *= a${r}; }`);
      add('      workgroupBarrier();');
      add(`      om${r}_${n} = subgroupMatrixLoad<subgroup_matrix_result<f32, 16, 16>, row_major>(&Ss, sBase, S_STRIDE);`);
      add('      workgroupBarrier();');
    }
  }
  add('    }');
  add(`    // O += P·V: each V matrix feeds ${R} MMAs`);
  for (const r of rowsOf) for (let c = 0; c < chunksBC; c++) {
    add(`    let pm${r}_${c} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Ps, pBase + ${16 * r}u * P_STRIDE + ${c * 16}u, P_STRIDE);`);
  }
  for (let n = 0; n < chunksV; n++) {
    for (let c = 0; c < chunksBC; c++) {
      add('    {');
      add(`      let vm = ${mat('right', 'row_major', `V_BASE + ${c * 16}u * V_STRIDE + ${n * 16}u`, 'V_STRIDE')};`);
      for (const r of rowsOf) add(`      om${r}_${n} = subgroupMatrixMultiplyAccumulate(pm${r}_${c}, vm, om${r}_${n});`);
      add('    }');
    }
  }
  add('    workgroupBarrier();');
  add('    if (li == 0u) { atomicStore(&rescaleFlag[0], 0u); }');
  add('  }');
  add('');
  add('  // O / l -> output (f16) through workgroup memory, one 16 x 16 chunk at a time: lane pair');
  add('  // (2q, 2q+1) writes row q of the chunk, 8 columns each');
  add('  let inv = select(0.0, 1.0 / l, l > 0.0);');
  for (const r of rowsOf) {
    add('  {');
    add(`    let q = ${16 * r}u + lane / 2u;`);
    add('    let rowInv = subgroupShuffle(inv, q);');
    add('    let rowPoisoned = subgroupShuffle(poison, q) != 0u;');
    add('    let rowI = myRow0 + q;');
    add('    let live = rowI < lenQ;');
    add('    let oRow = b * P.oSb + (startQ + rowI) * P.oSs + myHead * P.oSh;');
    for (let n = 0; n < chunksV; n++) {
      add(`    subgroupMatrixStore<row_major>(&Ss, sBase, om${r}_${n}, S_STRIDE);`);
      add('    workgroupBarrier();');
      add('    for (var k = 0u; k < 8u; k++) {');
      add(`      let d = ${n * 16}u + (lane % 2u) * 8u + k;`);
      add('      if (live && d < DV) { O[oRow + d] = f16(select(Ss[sBase + (lane / 2u) * S_STRIDE + (lane % 2u) * 8u + k] * rowInv, nan_f32(), rowPoisoned)); }');
      add('    }');
      add('    workgroupBarrier();');
    }
    add('  }');
  }
  if (o.returnLse) {
    add('  if (i < lenQ) {');
    add('    LSE[b * P.lseSb + myHead * P.lseSh + (startQ + i) * P.lseSs] = select(select(bitcast<f32>(0xff800000u | P.zero), (m + log2(l)) * 0.6931471805599453, l > 0.0), nan_f32(), poison != 0u);');
    add('  }');
  }
  add('}');
  return lines.join('\n') + '\n';
}
