// The tensor-core tier's pairs kernel (issue 14): the FlashAttention forward of
// flash-sgmatrix-wgsl.ts with a subgroup *pair* per 16 query rows, each subgroup holding half of the
// rows' Q matrices and half of their O accumulators. The backward's pairs layout (the same split of
// accumulators over two subgroups) took its dK/dV pass 1.8x and its dQ pass 1.5x faster on the H200
// (2026-12-02, fifth session): per subgroup the 16-row kernel holds Dq/16 + Dv/16 matrices (16 at
// D 128), this one half of that, so twice the subgroups fit a workgroup (8: 256 invocations) and
// the registers no longer bound occupancy. It is an autotuner candidate (SgMatrixConfig.pairs):
// it becomes the choice only where it measures faster and matches the default's output.
//
// Per key block of BC keys (role = subgroup % 2, pair = subgroup / 2):
//   1. the workgroup stores the prefetched K and V block and starts the next block's global loads;
//   2. each role forms a partial S over its half of the head dim, S_role = Q_s[:, half]·K[:, half]ᵀ,
//      into its own slice of workgroup memory;
//   3. the pair's 64 lanes (4 per row) add the two partials and run the lazily rescaled softmax
//      (the scale folded into exp2), writing P once as f16 to the pair's slice;
//   4. each role accumulates its half of O's columns, O[:, half] += P·V[:, half].
// The row state (max, sum, poison) lives in the 4 lanes of one role; the O rescale factor and the
// final 1/l go through workgroup memory to the other role. Supported: causal/window, softcap (WGSL's
// tanh), ALiBi, LSE, GQA packing; not the block source, the MLA split form, dropout, the score hook.
import { NON_FINITE_FNS } from '../../../../engines/webgpu/wgsl.js';
import type { SgMatrixKernelOptions } from './flash-sgmatrix-wgsl.js';
import { rowKeyRangeLines, tileKeyRangeLines } from './flash-tile-keys.js';
import { lazyRescaleLines, vectorKernelBindings, vectorKernelEntry, vectorPrefetchLoopHead, vectorQTileCopy, vectorRowLoaders, vectorScoreLines } from './flash-sgmatrix-vector-parts.js';

/** The 16-row kernel's options with a subgroup pair per 16 rows. */
export type PairsKernelOptions = SgMatrixKernelOptions & { rowPairs: true };

const pad16 = (n: number) => Math.ceil(n / 16) * 16;

/** Option keys this builder implements; any other key that is set (truthy) makes it refuse. */
const KNOWN = new Set(['dimQK', 'dimRope', 'dimV', 'subgroups', 'blockKeys', 'headsPerTile', 'sharedKV', 'vectorLoads', 'rescaleThreshold', 'causalOrWindow',
  'softcap', 'alibi', 'returnLse', 'rowPad', 'smemVec4', 'prefetch', 'unrolled', 'block', 'rowPairs']);

function layoutOf(o: PairsKernelOptions) {
  const dq = pad16(o.dimQK);
  const dv = pad16(o.dimV);
  const pairs = o.subgroups / 2;
  const rows = 16 * pairs;
  const kStride = dq + o.rowPad;
  const vStride = dv + o.rowPad;
  const kHalves = o.blockKeys * kStride;
  const vHalves = o.blockKeys * vStride;
  const kvHalves = Math.max(kHalves + vHalves, rows * kStride);
  const sStride = Math.max(o.blockKeys, 16) + 4;
  const pStride = o.blockKeys + o.rowPad;
  const sFloats = o.subgroups * 16 * sStride; // per subgroup: its partial S, then O chunks
  const pHalves = rows * pStride; // per pair: P
  const rowFloats = rows * 4; // per row: alpha, 1/l, poison, (pad)
  const bytes = kvHalves * 2 + sFloats * 4 + pHalves * 2 + rowFloats * 4 + 16 + 16;
  const chunksQK = dq / 16;
  const chunksV = dv / 16;
  // role 0: Q chunks [0, qSplit) and O chunks [0, vSplit); role 1 the rest
  const qSplit = Math.ceil(chunksQK / 2);
  const vSplit = Math.ceil(chunksV / 2);
  return { dq, dv, pairs, rows, kStride, vStride, vBase: kHalves, kvHalves, sStride, pStride, sFloats, pHalves, rowFloats, bytes, chunksQK, chunksV, qSplit, vSplit };
}

export function pairsWorkgroupBytes(o: PairsKernelOptions): number {
  return layoutOf(o).bytes;
}

/** Why these options cannot make a pairs kernel, or undefined. */
export function pairsOptionsProblem(o: PairsKernelOptions): string | undefined {
  for (const [key, value] of Object.entries(o)) if (!KNOWN.has(key) && value) return `the pairs kernel does not implement option ${key}`;
  if (o.block) return 'the pairs kernel has no block source';
  if (o.dimRope) return 'the pairs kernel has no MLA split form';
  if (!o.vectorLoads || !o.smemVec4 || !o.prefetch || o.sharedKV) return 'the pairs kernel needs vector loads, vec4 tiles, prefetch and separate K/V tiles';
  if (o.blockKeys % 16 !== 0 || o.blockKeys < 16 || o.blockKeys > 64) return `blockKeys ${o.blockKeys} must be 16..64, a multiple of 16`;
  if (![2, 4, 8].includes(o.subgroups)) return `subgroups ${o.subgroups} must be 2, 4 or 8 (pairs)`;
  if ((o.subgroups / 2) % o.headsPerTile !== 0) return `headsPerTile ${o.headsPerTile} must divide the pairs (${o.subgroups / 2})`;
  if (o.rowPad % 8 !== 0) return `rowPad ${o.rowPad} must be a multiple of 8`;
  const L = layoutOf(o);
  const nt = 32 * o.subgroups;
  if ((o.blockKeys * (L.dq / 8)) % nt || (o.blockKeys * (L.dv / 8)) % nt) return 'prefetch needs K/V tiles that divide evenly among the invocations';
  return undefined;
}

/** The WGSL source; the pipeline cache key is the options object itself. */
export function buildFlashSgMatrixPairs(o: PairsKernelOptions): string {
  const problem = pairsOptionsProblem(o);
  if (problem) throw new Error(`buildFlashSgMatrixPairs: ${problem}`);
  const L = layoutOf(o);
  const NT = 32 * o.subgroups;
  const BC = o.blockKeys;
  const chunksBC = BC / 16;
  const colsPerLane = BC / 4;
  const pfK = (BC * (L.dq / 8)) / NT;
  const pfV = (BC * (L.dv / 8)) / NT;
  const qCount = [L.qSplit, L.chunksQK - L.qSplit];
  const vCount = [L.vSplit, L.chunksV - L.vSplit];
  const qFirst = [0, L.qSplit];
  const vFirst = [0, L.vSplit];
  const lines: string[] = [];
  const add = (s: string) => lines.push(s);
  const mat = (use: 'left' | 'right', major: string, offset: string, stride: string) =>
    `subgroupMatrixLoad<subgroup_matrix_${use}<f16, 16, 16>, ${major}>(&KVs, (${offset}) / 8u, ${stride} / 8u)`;
  /** `body(role)` for each role, as `if (role == 0u) { … } else { … }`. */
  const byRole = (indent: string, body: (role: 0 | 1) => void) => {
    add(`${indent}if (role == 0u) {`);
    body(0);
    add(`${indent}} else {`);
    body(1);
    add(`${indent}}`);
  };

  add(`// fusedattn flash forward, tensor cores, a subgroup pair per 16 query rows (pairs kernel)`);
  for (const line of vectorKernelBindings(o.returnLse)) add(line);
  add('');
  add(`const NT = ${NT}u;`);
  add(`const ROWS = ${L.rows}u;          // query rows per workgroup (16 per subgroup pair)`);
  add(`const ROWS_PER_HEAD = ${L.rows / o.headsPerTile}u;`);
  add(`const BC = ${BC}u;`);
  add(`const COLS_PER_LANE = ${colsPerLane}u;   // of a row's BC scores, per lane of its 4`);
  add(`const DQ = ${o.dimQK}u; const DQP = ${L.dq}u;`);
  add(`const DV = ${o.dimV}u; const DVP = ${L.dv}u;`);
  add(`const K_STRIDE = ${L.kStride}u; const V_STRIDE = ${L.vStride}u; const V_BASE = ${L.vBase}u;`);
  add(`const S_STRIDE = ${L.sStride}u; const P_STRIDE = ${L.pStride}u;`);
  add(`const THRESHOLD = ${o.rescaleThreshold.toFixed(1)};`);
  add('const NEG_INF = -3.0e38;');
  add(NON_FINITE_FNS);
  add('');
  add(`var<workgroup> KVs: array<vec4<u32>, ${L.kvHalves / 8}>;   // K tile, V tile (Q tile at the start)`);
  add(`var<workgroup> Ss: array<f32, ${L.sFloats}>;    // per subgroup: its partial S, then O chunks`);
  add(`var<workgroup> Ps: array<f16, ${L.pHalves}>;    // per pair: P block`);
  add(`var<workgroup> rowW: array<vec4<f32>, ${L.rows}>;   // per row of the workgroup: (alpha, 1/l, poison, 0)`);
  add('var<workgroup> rescaleFlag: array<atomic<u32>, 4>;   // 16 bytes: see the alignment rule in docs/GPU-NOTES.md');
  add('var<workgroup> seqW: vec4<u32>;');
  add('');
  for (const line of vectorRowLoaders()) add(line);
  add('');
  for (const line of vectorKernelEntry(NT, o.causalOrWindow, o.headsPerTile)) add(line);
  add('  let sg = subgroupId;   // matrix offsets come from the subgroup id (uniformity)');
  add('  let role = sg % 2u;');
  add('  let pair = sg / 2u;');
  add('  let myHead = h0 + (pair * 16u) / ROWS_PER_HEAD;');
  add('  let myRow0 = q0 + (pair * 16u) % ROWS_PER_HEAD;');
  for (const line of tileKeyRangeLines(o.causalOrWindow)) add(line);
  add('');
  add('  // Q tile -> workgroup memory -> each role\'s half of the row matrices, kept for the whole loop');
  for (const line of vectorQTileCopy()) add(line);
  add('  workgroupBarrier();');
  for (let c = 0; c < qCount[0]; c++) add(`  var qm${c} = subgroup_matrix_left<f16, 16, 16>();`);
  byRole('  ', (role) => {
    for (let c = 0; c < qCount[role]; c++) add(`    qm${c} = ${mat('left', 'row_major', `pair * 16u * K_STRIDE + ${(qFirst[role] + c) * 16}u`, 'K_STRIDE')};`);
  });
  for (let n = 0; n < vCount[0]; n++) add(`  var om${n} = subgroup_matrix_result<f32, 16, 16>();`);
  add('  workgroupBarrier();');
  add('');
  add('  // softmax state of row r of the pair, held by its 4 lanes (pl = 4r .. 4r + 3, all in one role)');
  add('  let pl = role * 32u + lane;');
  add('  let r = pl / 4u;');
  add('  let quarter = pl % 4u;');
  add('  let i = myRow0 + r;');
  add('  var m = NEG_INF;');
  add('  var l = 0.0;');
  add('  var poison = 0u;   // 1: row r saw a NaN or +inf score (its output and LSE are NaN)');
  for (const line of rowKeyRangeLines(o)) add(line);
  add('  let sBase = sg * 16u * S_STRIDE;     // this subgroup\'s slice');
  add('  let sPair = pair * 32u * S_STRIDE;   // role 0\'s partial S; role 1\'s 16 rows on');
  add('  let pPair = pair * 16u * P_STRIDE;   // the pair\'s P');
  add('  let wRow = pair * 16u;               // the pair\'s rows in rowW');
  for (const line of vectorPrefetchLoopHead(pfK, pfV)) add(line);
  add('    // partial S = Q_s[:, half]·K[:, half]ᵀ into this subgroup\'s slice');
  byRole('    ', (role) => {
    for (let n = 0; n < chunksBC; n++) {
      add('      {');
      add('        var s = subgroup_matrix_result<f32, 16, 16>();');
      for (let c = 0; c < qCount[role]; c++) {
        add(`        s = subgroupMatrixMultiplyAccumulate(qm${c}, ${mat('right', 'col_major', `${n * 16}u * K_STRIDE + ${(qFirst[role] + c) * 16}u`, 'K_STRIDE')}, s);`);
      }
      add(`        subgroupMatrixStore<row_major>(&Ss, sBase + ${n * 16}u, s, S_STRIDE);`);
      add('      }');
    }
  });
  add('    workgroupBarrier();   // both partials of every pair visible to its 64 lanes');
  add('    // softmax of row r over columns quarter, quarter + 4, ... (interleaved: fewer bank conflicts)');
  add('    let sRow = sPair + r * S_STRIDE + quarter;');
  add('    let pRow = pPair + r * P_STRIDE + quarter;');
  add(`    var sv: array<f32, ${colsPerLane}>;`);
  add('    var blockMax = NEG_INF;');
  add('    for (var c = 0u; c < COLS_PER_LANE; c++) {');
  add('      var s = Ss[sRow + 4u * c] + Ss[sRow + 16u * S_STRIDE + 4u * c];');
  for (const line of vectorScoreLines(o, 'kv0 + quarter + 4u * c')) add(line);
  add('    }');
  add('    blockMax = max(blockMax, subgroupShuffleXor(blockMax, 1u));');
  add('    blockMax = max(blockMax, subgroupShuffleXor(blockMax, 2u));');
  for (const line of lazyRescaleLines()) add(line);
  add('    var sum = 0.0;');
  add('    for (var c = 0u; c < COLS_PER_LANE; c++) {');
  add('      let p = select(0.0, exp2(sv[c] - m), sv[c] != NEG_INF);');
  add('      sum += p;');
  add('      Ps[pRow + 4u * c] = f16(p);   // P written once, as f16');
  add('    }');
  add('    sum += subgroupShuffleXor(sum, 1u);');
  add('    l += sum + subgroupShuffleXor(sum, 2u);');
  add('    if (quarter == 0u) { rowW[wRow + r].x = alpha; }');
  add('    // the uniform load is a workgroup barrier: P and alpha of both roles are visible after it');
  add('    if (workgroupUniformLoad(&rescaleFlag[0]) != 0u) {');
  add('      // some row\'s max grew past the threshold: scale this role\'s O chunks through workgroup memory;');
  add('      // lane pair (2q, 2q+1) scales row q, whose alpha rowW holds (the row\'s lanes may be the other role\'s)');
  add('      let a = rowW[wRow + lane / 2u].x;');
  for (let n = 0; n < vCount[0]; n++) {
    // barriers stay in uniform control flow: the loop runs to role 0's (larger or equal) count on both
    const both = n < vCount[1];
    add(`      ${both ? '' : 'if (role == 0u) { '}subgroupMatrixStore<row_major>(&Ss, sBase, om${n}, S_STRIDE);${both ? '' : ' }'}`);
    add('      workgroupBarrier();');
    add(`      ${both ? '' : 'if (role == 0u) { '}for (var k = 0u; k < 8u; k++) { Ss[sBase + (lane / 2u) * S_STRIDE + (lane % 2u) * 8u + k] *= a; }${both ? '' : ' }'}`);
    add('      workgroupBarrier();');
    add(`      ${both ? '' : 'if (role == 0u) { '}om${n} = subgroupMatrixLoad<subgroup_matrix_result<f32, 16, 16>, row_major>(&Ss, sBase, S_STRIDE);${both ? '' : ' }'}`);
    add('      workgroupBarrier();');
  }
  add('    }');
  add('    // O[:, half] += P·V[:, half]');
  for (let c = 0; c < chunksBC; c++) {
    add(`    let pm${c} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Ps, pPair + ${c * 16}u, P_STRIDE);`);
  }
  byRole('    ', (role) => {
    for (let n = 0; n < vCount[role]; n++) {
      for (let c = 0; c < chunksBC; c++) {
        add(`      om${n} = subgroupMatrixMultiplyAccumulate(pm${c}, ${mat('right', 'row_major', `V_BASE + ${c * 16}u * V_STRIDE + ${(vFirst[role] + n) * 16}u`, 'V_STRIDE')}, om${n});`);
      }
    }
  });
  add('    workgroupBarrier();');
  add('    if (li == 0u) { atomicStore(&rescaleFlag[0], 0u); }');
  add('  }');
  add('');
  add('  // O / l -> output (f16) through workgroup memory, one 16-column chunk at a time: lane pair');
  add('  // (2q, 2q+1) writes row q of the chunk, 8 columns each, with the row\'s 1/l and poison from rowW');
  add('  if (quarter == 0u) { rowW[wRow + r] = vec4<f32>(0.0, select(0.0, 1.0 / l, l > 0.0), f32(poison), 0.0); }');
  add('  let q = lane / 2u;');
  add('  let side = lane % 2u;');
  add('  let rowI = myRow0 + q;');
  add('  let live = rowI < lenQ;');
  add('  let oRow = b * P.oSb + (startQ + rowI) * P.oSs + myHead * P.oSh;');
  for (let n = 0; n < vCount[0]; n++) {
    const both = n < vCount[1];
    add('  workgroupBarrier();');
    add(`  ${both ? '' : 'if (role == 0u) { '}subgroupMatrixStore<row_major>(&Ss, sBase, om${n}, S_STRIDE);${both ? '' : ' }'}`);
    add('  workgroupBarrier();');
    add(`  ${both ? '' : 'if (role == 0u) '}{`);
    add('    let w = rowW[wRow + q];');
    add(`    let c0 = select(${(vFirst[1] + n) * 16}u, ${(vFirst[0] + n) * 16}u, role == 0u) + side * 8u;`);
    add('    for (var k = 0u; k < 8u; k++) {');
    add('      let d = c0 + k;');
    add('      if (live && d < DV) { O[oRow + d] = f16(select(Ss[sBase + q * S_STRIDE + side * 8u + k] * w.y, nan_f32(), w.z != 0.0)); }');
    add('    }');
    add('  }');
  }
  if (o.returnLse) {
    add('  if (quarter == 0u && i < lenQ) {');
    add('    LSE[b * P.lseSb + myHead * P.lseSh + (startQ + i) * P.lseSs] = select(select(bitcast<f32>(0xff800000u | P.zero), (m + log2(l)) * 0.6931471805599453, l > 0.0), nan_f32(), poison != 0u);');
    add('  }');
  }
  add('}');
  return lines.join('\n') + '\n';
}
