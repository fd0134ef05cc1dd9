// WGSL builder of the tensor-core tier: FlashAttention forward on f16 inputs with QKᵀ and P·V on
// subgroup matrices (chromium_experimental_subgroup_matrix, 16×16×16 f16 -> f32), softmax in f32.
//
// One workgroup = NS subgroups of 32 invocations; each subgroup owns 16 query rows of one head, so a
// workgroup covers 16·NS rows: HP query heads of one GQA group × (16·NS/HP) positions, sharing
// every K/V tile it loads (GQA packing). Per key block of BC keys:
//   1. the workgroup copies K (and V) rows into workgroup memory, zero-filling rows past Sk and
//      columns past D, so odd sizes need no special case in the matrix code;
//   2. each subgroup computes S = Q·Kᵀ (16 × BC) with Q kept in left matrices for the whole loop and
//      Kᵀ loaded as column-major right matrices, and stores S (f32) to its slice of workgroup memory;
//   3. scalar softmax: two lanes per row, scale/softcap/ALiBi/window applied, P = exp2(s - m) written
//      as f16; rows keep a stale max m (lazy rescaling, the FlashAttention-4 trick): m moves only when a
//      block's max exceeds it by more than THRESHOLD (log2 units), so P <= 2^THRESHOLD fits f16, and the
//      O accumulators (opaque matrices that cannot be scaled per row) are rescaled through workgroup
//      memory only then — rare after the first block;
//   4. O += P·V on result matrices (f32).
// At the end O/l is written as f16 and LSE = (m + log2 l)·ln 2; l = 0 (fully masked row) gives 0 / -inf.
import { NON_FINITE_FNS } from '../../../../engines/webgpu/wgsl.js';
import { type FlashBlockSource, blockSourceCacheAppend, blockSourceDeclarations, blockSourceProblem, blockSourceSequence } from './flash-block-source.js';
import { paramsStructWgsl } from './flash-params.js';
import { rowKeyRangeLines, tileKeyRangeLines } from './flash-tile-keys.js';
import { dropoutDeclarations } from '../../dropout/philox.wgsl.js';
import { FAST_DROPOUT_BINDING } from './dispatch.js';
import { type SgScoreHook, TANH_EXP2_WGSL, hookAdditions, hookDeclarations, hookRowSetup, hookSinkFinal, tableLoopClose, tableLoopOpen, tablePrefetchNext } from './sgmatrix-score-hook.js';
import { SOFTCAP_LETS, type ScoreAdditions, scoreLines } from './sgmatrix-score-lines.js';

export interface SgMatrixKernelOptions {
  /** Query/key head dim Dq (the NoPE part in the split form). */
  dimQK: number;
  /** RoPE part Dr of the MLA split form, 0 without it. */
  dimRope: number;
  /** Value head dim Dv. */
  dimV: number;
  /** Subgroups per workgroup (each owns 16 query rows). */
  subgroups: number;
  /** Keys per block (a multiple of 16). */
  blockKeys: number;
  /** Query heads per workgroup (GQA packing); divides the group size and `subgroups`. */
  headsPerTile: number;
  /** K and V tiles in one buffer, V loaded after QKᵀ (half the workgroup memory). */
  sharedKV: boolean;
  /** Global loads of 8 halves (vec4<u32>); needs dims, offsets and strides that are multiples of 8. */
  vectorLoads: boolean;
  /** Lazy-rescale threshold in log2 units (0 = rescale whenever a row max grows). */
  rescaleThreshold: number;
  causalOrWindow: boolean;
  softcap: boolean;
  /** The softcap stands for a score function: a function's rule on its input (AttentionProblem.softcapRule). */
  softcapFunction?: boolean;
  /** The softcap option's tanh from exp2 (sgmatrix-score-hook.ts TANH_EXP2_WGSL); absent: WGSL's tanh. */
  tanh?: 'exp2';
  alibi: boolean;
  returnLse: boolean;
  /** Extra halves of padding per workgroup-memory row (bank conflicts). */
  rowPad: number;
  /**
   * K/V/Q tiles in an array<vec4<u32>> (one 16-byte store per 8 halves) instead of an array<f16>
   * (8 scalar stores). Matrix loads from a vector array count offset and stride in array elements
   * (8 halves here), as Tint's bounds check of constant offsets shows.
   */
  smemVec4: boolean;
  /**
   * Register double buffering (needs smemVec4, vectorLoads, separate K/V and tiles that divide
   * evenly among the invocations): the next block's K/V words are loaded from global memory into
   * registers while the current block computes, then stored to workgroup memory at the next step.
   */
  prefetch: boolean;
  /**
   * Q staged through the K/V space a few subgroups at a time (each pass: copy, barrier, those
   * subgroups load their left matrices, barrier) instead of all 16·NS rows at once, so the K/V
   * space no longer needs room for the whole Q tile. Why: Dawn's pipelines get 48-56 KiB of
   * workgroup memory per H200 SM (bench/ceiling/occupancy.mjs), and the Q tile is what keeps
   * 16-key blocks at 25 KiB at D 128 (one workgroup per SM) instead of 16.5 KiB. (Loading Q's
   * matrices straight from storage was wrong wherever a tile's rows ran past the end of the
   * buffer: Dawn's robustness moves such a matrix load, valid rows included; H200 session 15.)
   */
  qPasses?: boolean;
  /**
   * Straight-line WGSL for the per-lane loops (softmax, rescale, output, prefetch copies). Dawn's
   * robustness adds an iteration counter to every loop, which kept the driver from unrolling them
   * (arrays then spill to local memory); unrolled code has no loops to guard.
   */
  unrolled: boolean;
  /**
   * Internal (the fused attention block): Q, K, V from one packed float16 QKV buffer with RoPE
   * applied while staging, optionally a float32 KV cache read and appended (flash-block-source.ts).
   */
  block?: FlashBlockSource;
  /**
   * Dropout: kept weights enter P·V unscaled (so P stays <= 2^THRESHOLD in f16), dropped ones as 0;
   * the output is scaled by 1 / keepProb at the end.
   */
  dropout?: boolean;
  /**
   * Bool mask, bias, score/mask/sink functions or a block table: what they add to the inline score
   * path, and the key loop over the table (sgmatrix-score-hook.ts). Absent: the plain kernel.
   */
  score?: SgScoreHook;
}

const SG = 32;
const pad16 = (n: number) => Math.ceil(n / 16) * 16;

/** Workgroup memory the kernel declares, in bytes (must fit maxComputeWorkgroupStorageSize). */
export function sgMatrixWorkgroupBytes(o: SgMatrixKernelOptions): number {
  return layoutOf(o).bytes;
}

function layoutOf(o: SgMatrixKernelOptions) {
  const dqNope = pad16(o.dimQK);
  const dq = dqNope + (o.dimRope ? pad16(o.dimRope) : 0);
  const dv = pad16(o.dimV);
  const rows = 16 * o.subgroups;
  const kStride = dq + o.rowPad;
  const vStride = dv + o.rowPad;
  const kHalves = o.blockKeys * kStride;
  const vHalves = o.blockKeys * vStride;
  const vBase = o.sharedKV ? 0 : kHalves;
  const kvOnly = o.sharedKV ? Math.max(kHalves, vHalves) : kHalves + vHalves;
  // Q in passes: as many subgroups' 16 rows per pass as fit the K/V space (a divisor of NS)
  let qPerPass = o.subgroups;
  if (o.qPasses) while (qPerPass > 1 && (qPerPass * 16 * kStride > kvOnly || o.subgroups % qPerPass)) qPerPass--;
  const kvHalves = Math.max(kvOnly, qPerPass * 16 * kStride);
  const sStride = o.blockKeys + 4;
  const pStride = o.blockKeys + o.rowPad;
  const sFloats = o.subgroups * 16 * Math.max(sStride, 16 + 4);
  const pHalves = o.subgroups * 16 * pStride;
  const bytes = kvHalves * 2 + sFloats * 4 + pHalves * 2 + 16 + 16;
  return { dqNope, dq, dv, rows, kStride, vStride, vBase, kvHalves, qPerPass, sStride, pStride, sFloats, pHalves, bytes };
}

/** Why these options cannot make a valid kernel, or undefined. */
export function sgMatrixOptionsProblem(o: SgMatrixKernelOptions): string | undefined {
  if (o.blockKeys % 16 !== 0 || o.blockKeys < 16 || o.blockKeys > 128) return `blockKeys ${o.blockKeys} must be 16..128, a multiple of 16`;
  if (![1, 2, 4, 8].includes(o.subgroups)) return `subgroups ${o.subgroups} must be 1, 2, 4 or 8`;
  if (o.subgroups % o.headsPerTile !== 0) return `headsPerTile ${o.headsPerTile} must divide subgroups ${o.subgroups}`;
  if (o.vectorLoads && (o.dimQK % 8 || o.dimRope % 8 || o.dimV % 8)) return 'vectorLoads needs head dims that are multiples of 8';
  if (o.rowPad % 8 !== 0) return `rowPad ${o.rowPad} must be a multiple of 8`;
  if (o.qPasses && o.block) return 'qPasses stages Q with the plain copies: no block source';
  if (o.block) {
    const problem = blockSourceProblem(o);
    if (problem) return problem;
    if (o.score) return 'the block source takes no mask, bias or score/mask functions';
  }
  if (o.score && (o.score.alibi !== o.alibi || o.score.softcap !== o.softcap || o.score.windowed !== o.causalOrWindow)) return 'score.alibi / score.softcap / score.windowed must match alibi / softcap / causalOrWindow';
  if (o.prefetch) {
    const L = layoutOf(o);
    const nt = 32 * o.subgroups;
    if (!o.smemVec4 || !o.vectorLoads || o.sharedKV) return 'prefetch needs smemVec4, vectorLoads and separate K/V tiles';
    if ((o.blockKeys * (L.dq / 8)) % nt || (o.blockKeys * (L.dv / 8)) % nt) return 'prefetch needs K/V tiles that divide evenly among the invocations';
  }
  return undefined;
}

/** The WGSL source; the pipeline cache key is the options object itself. */
export function buildFlashSgMatrix(o: SgMatrixKernelOptions): string {
  const problem = sgMatrixOptionsProblem(o);
  if (problem) throw new Error(`buildFlashSgMatrix: ${problem}`);
  const L = layoutOf(o);
  const NT = SG * o.subgroups;
  const BC = o.blockKeys;
  const chunksQK = L.dq / 16;
  const chunksV = L.dv / 16;
  const chunksBC = BC / 16;
  const rowsPerHead = L.rows / o.headsPerTile;
  const half = BC / 2;
  const pfK = (BC * (L.dq / 8)) / NT;
  const pfV = (BC * (L.dv / 8)) / NT;
  const elem = o.vectorLoads ? 'vec4<u32>' : 'f16';
  const lines: string[] = [];
  const add = (s: string) => lines.push(s);
  // a 16x16 f16 matrix from the K/V/Q tile; offsets and strides are written in halves
  const kv = (use: 'left' | 'right', major: string, offset: string, stride: string) =>
    o.smemVec4
      ? `subgroupMatrixLoad<subgroup_matrix_${use}<f16, 16, 16>, ${major}>(&KVs, (${offset}) / 8u, ${stride} / 8u)`
      : `subgroupMatrixLoad<subgroup_matrix_${use}<f16, 16, 16>, ${major}>(&KVs, ${offset}, ${stride})`;

  add('enable f16;');
  add('enable subgroups;');
  add('enable chromium_experimental_subgroup_matrix;');
  add('diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);');
  add('');
  add(paramsStructWgsl());
  add('');
  add('@group(0) @binding(0) var<uniform> P: Params;');
  if (o.block) add(blockSourceDeclarations(o.block, o.dimQK));
  else {
  add('// per sequence: starts q | starts k | lengths q | lengths k | ALiBi slopes (f32 bits), see attention-io.ts');
  add('@group(0) @binding(1) var<storage, read> seqTable: array<u32>;');
  add(`@group(0) @binding(2) var<storage, read> Q: array<${elem}>;`);
  add(`@group(0) @binding(3) var<storage, read> K: array<${elem}>;`);
  add(`@group(0) @binding(4) var<storage, read> V: array<${elem}>;`);
  add('@group(0) @binding(5) var<storage, read_write> O: array<f16>;');
  let binding = 6;
  if (o.returnLse) add(`@group(0) @binding(${binding++}) var<storage, read_write> LSE: array<f32>;`);
  if (o.dimRope) {
    add(`@group(0) @binding(${binding++}) var<storage, read> QR: array<${elem}>;`);
    add(`@group(0) @binding(${binding++}) var<storage, read> KR: array<${elem}>;`);
  }
  }
  if (o.dropout) add(dropoutDeclarations(0, FAST_DROPOUT_BINDING));
  add('');
  add(`const NT = ${NT}u;              // invocations per workgroup`);
  add(`const ROWS = ${L.rows}u;          // query rows per workgroup (16 per subgroup)`);
  add(`const ROWS_PER_HEAD = ${rowsPerHead}u;`);
  add(`const HEADS_PER_TILE = ${o.headsPerTile}u;`);
  add(`const BC = ${BC}u;             // keys per block`);
  add(`const DQ = ${o.dimQK}u; const DQP = ${L.dqNope}u; // NoPE dim, padded to 16`);
  add(`const DR = ${o.dimRope}u; const DQ_ALL = ${L.dq}u; // RoPE dim; padded total`);
  add(`const DV = ${o.dimV}u; const DVP = ${L.dv}u;`);
  add(`const K_STRIDE = ${L.kStride}u; const V_STRIDE = ${L.vStride}u; const V_BASE = ${L.vBase}u;`);
  add(`const S_STRIDE = ${L.sStride}u; const P_STRIDE = ${L.pStride}u;`);
  add(`const THRESHOLD = ${o.rescaleThreshold.toFixed(1)};`);
  add('const NEG_INF = -3.0e38;     // "minus infinity" (WGSL constants cannot be infinite)');
  add(NON_FINITE_FNS);
  add('');
  if (o.score) {
    add(hookDeclarations(o.score));
    add('');
  }
  if (o.softcap && o.tanh === 'exp2' && o.score?.tanh !== 'exp2') { add(TANH_EXP2_WGSL); add(''); }
  if (o.smemVec4) add(`var<workgroup> KVs: array<vec4<u32>, ${L.kvHalves / 8}>;   // K tile, V tile (Q tile at the start), 8 halves each`);
  else add(`var<workgroup> KVs: array<f16, ${L.kvHalves}>;   // K tile, V tile (Q tile at the start)`);
  add(`var<workgroup> Ss: array<f32, ${L.sFloats}>;    // per subgroup: S block, then O chunks`);
  add(`var<workgroup> Ps: array<f16, ${L.pHalves}>;    // per subgroup: P block`);
  // every workgroup variable is a multiple of 16 bytes: a 4-byte one placed before a matrix array
  // misaligned it on NVIDIA (matrix loads read 4 bytes early; see docs/GPU-NOTES.md)
  add('var<workgroup> rescaleFlag: array<atomic<u32>, 4>;');
  add('var<workgroup> seqW: vec4<u32>;');
  add('');
  if (!o.block) {
    add(copyRowsFn('copyRowsK', 'K', o.dimRope ? 'KR' : undefined, o, L.dqNope));
    add(copyRowsFn('copyRowsV', 'V', undefined, o, o.dimV));
    add(copyRowsFn('copyRowsQ', 'Q', o.dimRope ? 'QR' : undefined, o, L.dqNope));
  }
  if (o.prefetch && !o.block) {
    add(copyRowsFn('fetchRowsK', 'K', o.dimRope ? 'KR' : undefined, o, L.dqNope, true));
    add(copyRowsFn('fetchRowsV', 'V', undefined, o, o.dimV, true));
  }
  add('');
  add(`@compute @workgroup_size(${NT})`);
  add('fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32,\n        @builtin(subgroup_id) subgroupId: u32, @builtin(subgroup_invocation_id) lane: u32) {');
  add('  let b = wg.z;');
  if (o.block) add(blockSourceSequence(o.block));
  else {
    add('  if (li == 0u) { seqW = vec4<u32>(seqTable[b], seqTable[P.batch + b], seqTable[2u * P.batch + b], seqTable[3u * P.batch + b]); }');
    add('  let seq = workgroupUniformLoad(&seqW);');
    add('  let startQ = seq.x; let startK = seq.y; let lenQ = seq.z; let lenK = seq.w;');
  }
  const table = o.score?.blockTable === true;
  // longest tiles first: causal rows see more keys the later they are, and so do most block masks'
  add(`  let tile = ${o.causalOrWindow || table ? 'P.tilesQ - 1u - wg.x; // longest causal tiles first' : 'wg.x;'}`);
  add('  let q0 = tile * ROWS_PER_HEAD;');
  add('  if (q0 >= lenQ) { return; }');
  add('  let h0 = wg.y * HEADS_PER_TILE;');
  add('  let hk = h0 / P.group;');
  add('  let sg = subgroupId;  // matrix offsets must be subgroup-uniform: derive them from the subgroup id');
  
  add('  let myHead = h0 + (sg * 16u) / ROWS_PER_HEAD;');
  add('  let myRow0 = q0 + (sg * 16u) % ROWS_PER_HEAD;');
  for (const line of tileKeyRangeLines(o.causalOrWindow)) add(line);
  add('');
  if (L.qPerPass < o.subgroups) {
    const passes = o.subgroups / L.qPerPass;
    add(`  // Q in ${passes} passes of ${L.qPerPass} subgroups' rows through the K/V space -> left matrices kept for the whole loop`);
    for (let c = 0; c < chunksQK; c++) add(`  var qm${c}: subgroup_matrix_left<f16, 16, 16>;`);
    for (let pass = 0; pass < passes; pass++) {
      add(`  for (var t = li; t < ${16 * L.qPerPass}u * (DQ_ALL / 8u); t += NT) {`);
      add('    let rl = t / (DQ_ALL / 8u);');
      add(`    let r = ${pass * 16 * L.qPerPass}u + rl;`);
      add('    let c = (t % (DQ_ALL / 8u)) * 8u;');
      add('    let i = q0 + r % ROWS_PER_HEAD;');
      add('    let h = h0 + r / ROWS_PER_HEAD;');
      add('    copyRowsQ(rl * K_STRIDE + c, c, i < lenQ, b, h, startQ + i);');
      add('  }');
      add('  workgroupBarrier();');
      add(`  if (sg / ${L.qPerPass}u == ${pass}u) {`);
      for (let c = 0; c < chunksQK; c++) add(`    qm${c} = ${kv('left', 'row_major', `(sg % ${L.qPerPass}u) * 16u * K_STRIDE + ${c * 16}u`, 'K_STRIDE')};`);
      add('  }');
      add('  workgroupBarrier();');
    }
  } else {
  add('  // Q tile -> workgroup memory -> left matrices kept for the whole loop');
  add('  for (var t = li; t < ROWS * (DQ_ALL / 8u); t += NT) {');
  add('    let r = t / (DQ_ALL / 8u);');
  add('    let c = (t % (DQ_ALL / 8u)) * 8u;');
  add('    let i = q0 + r % ROWS_PER_HEAD;');
  add('    let h = h0 + r / ROWS_PER_HEAD;');
  add('    copyRowsQ(r * K_STRIDE + c, c, i < lenQ, b, h, startQ + i);');
  add('  }');
  if (o.block) add(blockSourceCacheAppend(o.block));
  add('  workgroupBarrier();');
  for (let c = 0; c < chunksQK; c++) {
    add(`  let qm${c} = ${kv('left', 'row_major', `sg * 16u * K_STRIDE + ${c * 16}u`, 'K_STRIDE')};`);
  }
  }
  for (let n = 0; n < chunksV; n++) add(`  var om${n} = subgroup_matrix_result<f32, 16, 16>();`);
  add('  workgroupBarrier();');
  add('');
  add('  // softmax state of row r = lane / 2 (both lanes of the pair hold the same values)');
  add('  let r = lane / 2u;');
  add('  let side = lane % 2u;');
  add('  let i = myRow0 + r;');
  add('  var m = NEG_INF;');
  add('  var poison = 0u;   // 1: this lane saw a NaN or +inf score of its row (the row\'s output is NaN)');
  add('  var l = 0.0;');
  for (const line of rowKeyRangeLines(o)) add(line);
  if (o.softcap) for (const line of SOFTCAP_LETS) add(line);
  if (o.score) for (const line of hookRowSetup(o.score)) add(line);
  add('  let sBase = sg * 16u * S_STRIDE;');
  add('  let pBase = sg * 16u * P_STRIDE;');
  add('');
  if (o.prefetch) {
    add(`  const PF_K = ${pfK}u; const PF_V = ${pfV}u;`);
    add('  var pk: array<vec4<u32>, PF_K>;');
    add('  var pv: array<vec4<u32>, PF_V>;');
    if (!table) {
      add('  let kvFirst = (kvLo / BC) * BC;');
      add(prefetchLoads('kvFirst', o.unrolled, pfK, pfV));
    }
  }
  if (table) for (const line of tableLoopOpen(o.prefetch, (start) => prefetchLoads(start, o.unrolled, pfK, pfV))) add(line);
  else add('  for (var kv0 = (kvLo / BC) * BC; kv0 < kvHi; kv0 += BC) {');
  if (o.prefetch) {
    for (const [arr, count, chunk, base, stride] of [['pk', pfK, 'DQ_ALL', '', 'K_STRIDE'], ['pv', pfV, 'DVP', 'V_BASE + ', 'V_STRIDE']] as const) {
      loopOrUnrolled(add, o.unrolled, count, '    ', (u) => [
        `let t = li + ${u} * NT; let rr = t / (${chunk} / 8u); let c = (t % (${chunk} / 8u)) * 8u;`,
        `KVs[(${base}rr * ${stride} + c) / 8u] = ${arr}[${u}];`,
      ]);
    }
    add('    workgroupBarrier();');
    if (table) for (const line of tablePrefetchNext((start) => prefetchLoads(start, o.unrolled, pfK, pfV))) add(line);
    else {
      add('    if (kv0 + BC < kvHi) {');
      add('      // next block: global loads in flight while this one computes');
      add(prefetchLoads('kv0 + BC', o.unrolled, pfK, pfV));
      add('    }');
    }
  } else {
    add(`    for (var t = li; t < BC * (DQ_ALL / 8u); t += NT) {`);
    add('      let rr = t / (DQ_ALL / 8u);');
    add('      let c = (t % (DQ_ALL / 8u)) * 8u;');
    add('      copyRowsK(rr * K_STRIDE + c, c, kv0 + rr < lenK, b, hk, startK + kv0 + rr);');
    add('    }');
    if (!o.sharedKV) add(vCopyLoop());
    add('    workgroupBarrier();');
  }
  add('    // S = Q·Kᵀ, stored to this subgroup\'s slice');
  for (let n = 0; n < chunksBC; n++) {
    add('    {');
    add(`      var s = subgroup_matrix_result<f32, 16, 16>();`);
    for (let c = 0; c < chunksQK; c++) {
      add(`      s = subgroupMatrixMultiplyAccumulate(qm${c}, ${kv('right', 'col_major', `${n * 16}u * K_STRIDE + ${c * 16}u`, 'K_STRIDE')}, s);`);
    }
    add(`      subgroupMatrixStore<row_major>(&Ss, sBase + ${n * 16}u, s, S_STRIDE);`);
    add('    }');
  }
  add('    workgroupBarrier();');
  if (o.sharedKV) add(vCopyLoop());
  add('    // softmax of row r over columns side, side + 2, ... (interleaved: fewer bank conflicts)');
  add('    let sRow = sBase + r * S_STRIDE + side;');
  add('    let pRow = pBase + r * P_STRIDE + side;');
  add('    let jSide = i32(kv0 + side);');
  add(`    var sv: array<f32, ${half}>;`);
  add('    var blockMax = NEG_INF;');
  const scoreBody = (additions: ScoreAdditions) => (c: string) => scoreLines(o, c, additions);
  add('    // columns side, side + 2, ... (interleaved: fewer bank conflicts)');
  if (table) {
    // the block is uniform over the workgroup: one branch per tile, none per score
    add('    if (full) {');
    loopOrUnrolled(add, o.unrolled, half, '      ', scoreBody(hookAdditions(o.score!, false)));
    add('    } else {');
    loopOrUnrolled(add, o.unrolled, half, '      ', scoreBody(hookAdditions(o.score!, true)));
    add('    }');
  } else {
    // with the softcap option a NaN q·k poisons the row only where the pair is visible (the
    // reference's order; the hook's form, checked on the H200): before, a NaN key poisoned every
    // row whose tile held it, rows that causal or the window hide it from included
    loopOrUnrolled(add, o.unrolled, half, '    ', scoreBody(o.score ? hookAdditions(o.score, true) : o.softcap ? { visibleNaN: true } : {}));
  }
  add('    blockMax = max(blockMax, subgroupShuffleXor(blockMax, 1u));');
  add('    var alpha = 1.0;');
  add('    if (blockMax > m) {');
  add('      if (m == NEG_INF) {');
  add('        m = blockMax;   // O and l are still 0: nothing to rescale');
  add('      } else if (blockMax - m > THRESHOLD) {');
  add('        alpha = exp2(m - blockMax);');
  add('        m = blockMax;');
  add('        atomicOr(&rescaleFlag[0], 1u);');
  add('      }');
  add('    }');
  add('    l *= alpha;');
  add('    var sum = 0.0;');
  if (o.dropout) {
    // this lane's keys are jSide + 2c: the octet of key kv0 + 8t holds 4 of them
    add(`    var keepWords = array<vec4<u32>, ${Math.ceil(BC / 8)}>();`);
    add(`    for (var t = 0u; t < ${Math.ceil(BC / 8)}u; t++) { keepWords[t] = dropout_words(dp.seed, dp.offset, b * dp.heads + myHead, i, (kv0 >> 3u) + t); }`);
  }
  loopOrUnrolled(add, o.unrolled, half, '    ', (c) => [
    `let p = select(0.0, exp2(sv[${c}] - m), sv[${c}] != NEG_INF);`,
    'sum += p;',
    o.dropout
      ? `{ let e = side + 2u * ${c}; Ps[pRow + 2u * ${c}] = f16(p * dropout_factor(keepWords[e >> 3u], e & 7u, dp.threshold, 1.0)); }`
      : `Ps[pRow + 2u * ${c}] = f16(p);`,
  ]);
  add('    l += sum + subgroupShuffleXor(sum, 1u);');
  add('    if (workgroupUniformLoad(&rescaleFlag[0]) != 0u) {');
  add('      // some row\'s max grew past the threshold: scale O rows through workgroup memory');
  for (let n = 0; n < chunksV; n++) {
    add(`      subgroupMatrixStore<row_major>(&Ss, sBase, om${n}, S_STRIDE);`);
    add('      workgroupBarrier();');
    loopOrUnrolled(add, o.unrolled, 8, '      ', (k) => [`Ss[sBase + r * S_STRIDE + side * 8u + ${k}] *= alpha;`]);
    add('      workgroupBarrier();');
    add(`      om${n} = subgroupMatrixLoad<subgroup_matrix_result<f32, 16, 16>, row_major>(&Ss, sBase, S_STRIDE);`);
    add('      workgroupBarrier();');
  }
  add('    }');
  add('    // O += P·V');
  for (let c = 0; c < chunksBC; c++) {
    add(`    let pm${c} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Ps, pBase + ${c * 16}u, P_STRIDE);`);
  }
  for (let n = 0; n < chunksV; n++) {
    for (let c = 0; c < chunksBC; c++) {
      add(`    om${n} = subgroupMatrixMultiplyAccumulate(pm${c}, ${kv('right', 'row_major', `V_BASE + ${c * 16}u * V_STRIDE + ${n * 16}u`, 'V_STRIDE')}, om${n});`);
    }
  }
  add('    workgroupBarrier();');
  add('    if (li == 0u) { atomicStore(&rescaleFlag[0], 0u); }');
  if (table) for (const line of tableLoopClose(o.prefetch)) add(line);
  else add('  }');
  add('');
  add('  // O / l -> output (f16), through workgroup memory one 16-column chunk at a time');
  const sink = o.score?.mods?.sink !== undefined;
  if (sink) {
    for (const line of hookSinkFinal()) add(line);
    if (o.dropout) add('  inv = inv * dp.scale;');
  } else add(`  let inv = select(0.0, ${o.dropout ? 'dp.scale' : '1.0'} / l, l > 0.0);`);
  add('  let poisoned = (poison | subgroupShuffleXor(poison, 1u)) != 0u;   // the row\'s two lanes');
  add('  let live = i < lenQ;');
  add('  let oRow = b * P.oSb + (startQ + i) * P.oSs + myHead * P.oSh;');
  for (let n = 0; n < chunksV; n++) {
    add(`  subgroupMatrixStore<row_major>(&Ss, sBase, om${n}, S_STRIDE);`);
    add('  workgroupBarrier();');
    loopOrUnrolled(add, o.unrolled, 8, '  ', (k) => [
      `let d = ${n * 16}u + side * 8u + ${k};`,
      `if (live && d < DV) { O[oRow + d] = f16(select(Ss[sBase + r * S_STRIDE + side * 8u + ${k}] * inv, nan_f32(), poisoned)); }`,
    ]);
    add('  workgroupBarrier();');
  }
  if (o.returnLse) {
    add('  if (live && side == 0u) {');
    add(`    LSE[b * P.lseSb + myHead * P.lseSh + (startQ + i) * P.lseSs] = ${sink ? 'select(rowLse, nan_f32(), poisoned)' : 'select(select(bitcast<f32>(0xff800000u | P.zero), (m + log2(l)) * 0.6931471805599453, l > 0.0), nan_f32(), poisoned)'};`);
    add('  }');
  }
  add('}');
  return lines.join('\n') + '\n';
}

/** Global loads of the K/V block starting at key `start` into the prefetch registers pk/pv. */
function prefetchLoads(start: string, unrolled: boolean, pfK: number, pfV: number): string {
  const lines: string[] = [];
  const add = (s: string) => lines.push(s);
  loopOrUnrolled(add, unrolled, pfK, '    ', (u) => [
    `let t = li + ${u} * NT; let rr = t / (DQ_ALL / 8u); let c = (t % (DQ_ALL / 8u)) * 8u;`,
    `pk[${u}] = fetchRowsK(c, ${start} + rr < lenK, b, hk, startK + ${start} + rr);`,
  ]);
  loopOrUnrolled(add, unrolled, pfV, '    ', (u) => [
    `let t = li + ${u} * NT; let rr = t / (DVP / 8u); let c = (t % (DVP / 8u)) * 8u;`,
    `pv[${u}] = fetchRowsV(c, ${start} + rr < lenK, b, hk, startK + ${start} + rr);`,
  ]);
  return lines.join('\n');
}

/**
 * `count` repetitions of `body(u)`: a WGSL loop over u, or (unrolled) one block per constant u.
 * `body` gets the index as a WGSL expression ('u' or e.g. '3u').
 */
function loopOrUnrolled(add: (s: string) => void, unrolled: boolean, count: number, indent: string, body: (u: string) => string[]): void {
  if (!unrolled) {
    add(`${indent}for (var u = 0u; u < ${count}u; u++) {`);
    for (const line of body('u')) add(`${indent}  ${line}`);
    add(`${indent}}`);
    return;
  }
  for (let u = 0; u < count; u++) add(`${indent}{ ${body(`${u}u`).join(' ')} }`);
}

/** The loop that copies the V block into workgroup memory. */
function vCopyLoop(): string {
  return [
    '    for (var t = li; t < BC * (DVP / 8u); t += NT) {',
    '      let rr = t / (DVP / 8u);',
    '      let c = (t % (DVP / 8u)) * 8u;',
    '      copyRowsV(V_BASE + rr * V_STRIDE + c, c, kv0 + rr < lenK, b, hk, startK + kv0 + rr);',
    '    }',
  ].join('\n');
}

/**
 * A function copying 8 consecutive elements (columns c..c+7 of the padded row) of one row of
 * `main` (and `rope`, for columns past the NoPE part) into KVs at `dst` (in halves), zero outside
 * the data.
 */
function copyRowsFn(name: string, main: 'Q' | 'K' | 'V', rope: string | undefined, o: SgMatrixKernelOptions, mainPadded: number, fetchOnly = false): string {
  const pre = main.toLowerCase();
  const dim = main === 'V' ? 'DV' : 'DQ';
  const lines: string[] = [];
  const vecSmem = o.smemVec4;
  lines.push(fetchOnly
    ? `fn ${name}(c: u32, valid: bool, b: u32, h: u32, row: u32) -> vec4<u32> {`
    : `fn ${name}(dst: u32, c: u32, valid: bool, b: u32, h: u32, row: u32) {`);
  lines.push(vecSmem ? '  var w = vec4<u32>();' : '  var x = array<f16, 8>();');
  const load = (arr: string, p: string, col: string, dimName: string) => {
    const base = `P.${p}Off + b * P.${p}Sb + row * P.${p}Ss + h * P.${p}Sh + ${col}`;
    if (o.vectorLoads) {
      lines.push(`    if (${col} < ${dimName}) {`);
      if (vecSmem) {
        lines.push(`      w = ${arr}[(${base}) / 8u];`);
      } else {
        lines.push(`      let v = ${arr}[(${base}) / 8u];`);
        lines.push('      let a = bitcast<vec2<f16>>(v.x); let bb = bitcast<vec2<f16>>(v.y);');
        lines.push('      let cc = bitcast<vec2<f16>>(v.z); let dd = bitcast<vec2<f16>>(v.w);');
        lines.push('      x = array<f16, 8>(a.x, a.y, bb.x, bb.y, cc.x, cc.y, dd.x, dd.y);');
      }
      lines.push('    }');
    } else {
      if (vecSmem) lines.push('    var x = array<f16, 8>();');
      lines.push('    for (var e = 0u; e < 8u; e++) {');
      lines.push(`      if (${col} + e < ${dimName}) { x[e] = ${arr}[${base} + e]; }`);
      lines.push('    }');
      if (vecSmem) {
        lines.push('    w = vec4<u32>(bitcast<u32>(vec2<f16>(x[0], x[1])), bitcast<u32>(vec2<f16>(x[2], x[3])),');
        lines.push('                  bitcast<u32>(vec2<f16>(x[4], x[5])), bitcast<u32>(vec2<f16>(x[6], x[7])));');
      }
    }
  };
  lines.push('  if (valid) {');
  if (rope) {
    const rp = main === 'Q' ? 'qr' : 'kr';
    lines.push(`    if (c < ${mainPadded}u) {`);
    load(main, pre, 'c', dim);
    lines.push('    } else {');
    lines.push(`    let cr = c - ${mainPadded}u;`);
    load(rope, rp, 'cr', 'DR');
    lines.push('    }');
  } else {
    load(main, pre, 'c', dim);
  }
  lines.push('  }');
  if (fetchOnly) lines.push('  return w;');
  else lines.push(vecSmem ? '  KVs[dst / 8u] = w;' : '  for (var e = 0u; e < 8u; e++) { KVs[dst + e] = x[e]; }');
  lines.push('}');
  return lines.join('\n');
}
