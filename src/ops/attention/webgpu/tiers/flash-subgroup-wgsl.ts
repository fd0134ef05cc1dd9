// WGSL builder of the subgroup tier: FlashAttention forward on f16 inputs for adapters with
// shader-f16 and subgroups but no subgroup matrices (most browsers today). Math in f32.
//
// One workgroup = NS subgroups of SG invocations (SG fixed by the adapter); each subgroup owns R
// query rows of one head; K/V blocks of SG keys are staged in workgroup memory and shared by all
// subgroups. Per block, for its R rows, a subgroup:
//   1. scores: lane j takes key j of the block: s[r] = q_r · k_j, 4 dims at a time (q rows are
//      broadcast reads of workgroup memory, the k row is read once per lane);
//   2. online softmax with subgroupMax / subgroupAdd over the lanes (= over the block's keys); the
//      rescale factor is uniform over the subgroup, so O (held in registers) is rescaled exactly;
//   3. P·V: P goes through workgroup memory; lane c accumulates O columns 4c..4c+3 (+ 4·SG, ...).
// Tiles are vec4<f16> rows zero-padded to a multiple of 4 dims, so odd head dims need no special case.
import { dropoutDeclarations } from '../../dropout/philox.wgsl.js';
import { FAST_DROPOUT_BINDING } from './dispatch.js';
import { NON_FINITE_FNS } from '../../../../engines/webgpu/wgsl.js';
import { paramsStructWgsl } from './flash-params.js';
import { tileKeyRangeLines } from './flash-tile-keys.js';

export interface SubgroupKernelOptions {
  dimQK: number;
  dimRope: number;
  dimV: number;
  /** The adapter's subgroup size (the kernel needs min = max). */
  subgroupSize: number;
  /** Subgroups per workgroup. */
  subgroups: number;
  /** Query rows per subgroup. */
  rows: number;
  causalOrWindow: boolean;
  softcap: boolean;
  alibi: boolean;
  returnLse: boolean;
  /** Dropout: kept weights enter P·V as they are, dropped ones as 0; the output is scaled by 1 / keepProb. */
  dropout?: boolean;
}

/** Workgroup memory in bytes (Q rows, K and V blocks, P). */
export function subgroupWorkgroupBytes(o: SubgroupKernelOptions): number {
  return layoutOf(o).bytes;
}

const align16 = (n: number) => Math.ceil(n / 16) * 16;

function layoutOf(o: SubgroupKernelOptions) {
  const dq4 = Math.ceil(o.dimQK / 4) + Math.ceil(o.dimRope / 4); // vec4s per Q/K row (NoPE, RoPE padded apart)
  const dv4 = Math.ceil(o.dimV / 4);
  const rowsWg = o.subgroups * o.rows;
  const kStride4 = dq4 + 1; // odd stride in vec4s: lanes reading different key rows spread over banks
  const qVec4 = align16(rowsWg * dq4 * 8) / 8;
  const kvVec4 = align16(o.subgroupSize * (kStride4 + dv4) * 8) / 8;
  const pFloats = align16(rowsWg * o.subgroupSize * 4) / 4;
  return { dq4, dv4, rowsWg, kStride4, qVec4, kvVec4, pFloats, bytes: qVec4 * 8 + kvVec4 * 8 + pFloats * 4 + 16 };
}

/**
 * The body once per query row r = 0..R-1 as straight-line WGSL (`const r = k;`): Dawn's robustness
 * guards every loop with a counter, which kept the driver from unrolling them and put the per-row
 * arrays in local memory; with constant indices they stay in registers.
 */
function rowsUnrolled(add: (s: string) => void, indent: string, body: () => readonly string[], rows = rowsOf): void {
  for (let r = 0; r < rows; r++) {
    add(`${indent}{`);
    add(`${indent}  const r = ${r}u;`);
    for (const line of body()) add(`${indent}  ${line.trim()}`);
    add(`${indent}}`);
  }
}
let rowsOf = 0;

export function buildFlashSubgroup(o: SubgroupKernelOptions): string {
  rowsOf = o.rows;
  const softmaxRows: string[] = [];
  const outRows: string[] = [];
  const SG = o.subgroupSize;
  const NT = SG * o.subgroups;
  const Lo = layoutOf(o);
  const cols4 = Math.ceil(Lo.dv4 / SG); // vec4 column groups per lane
  const L: string[] = [];
  const add = (s: string) => L.push(s);
  add('enable f16;');
  add('enable subgroups;');
  add('');
  add(paramsStructWgsl());
  add('@group(0) @binding(0) var<uniform> P: Params;');
  add('// per sequence: starts q | starts k | lengths q | lengths k | ALiBi slopes (f32 bits), see attention-io.ts');
  add('@group(0) @binding(1) var<storage, read> seqTable: array<u32>;');
  add('@group(0) @binding(2) var<storage, read> Q: array<f16>;');
  add('@group(0) @binding(3) var<storage, read> K: array<f16>;');
  add('@group(0) @binding(4) var<storage, read> V: array<f16>;');
  add('@group(0) @binding(5) var<storage, read_write> O: array<f16>;');
  let binding = 6;
  if (o.returnLse) add(`@group(0) @binding(${binding++}) var<storage, read_write> LSE: array<f32>;`);
  if (o.dimRope) {
    add(`@group(0) @binding(${binding++}) var<storage, read> QR: array<f16>;`);
    add(`@group(0) @binding(${binding++}) var<storage, read> KR: array<f16>;`);
  }
  if (o.dropout) add(dropoutDeclarations(0, FAST_DROPOUT_BINDING));
  add('');
  add(`const SG = ${SG}u; const NT = ${NT}u; const R = ${o.rows}u; const ROWS = ${Lo.rowsWg}u;`);
  add(`const DQ = ${o.dimQK}u; const DR = ${o.dimRope}u; const DQ4 = ${Lo.dq4}u; const DV = ${o.dimV}u; const DV4 = ${Lo.dv4}u;`);
  add(`const K_STRIDE4 = ${Lo.kStride4}u; const V_BASE4 = ${SG * Lo.kStride4}u; const COLS4 = ${cols4}u;`);
  add('const NEG_INF = -3.0e38;');
  add(NON_FINITE_FNS);
  add(`var<workgroup> Qs: array<vec4<f16>, ${Lo.qVec4}>;`);
  add(`var<workgroup> KVs: array<vec4<f16>, ${Lo.kvVec4}>;`);
  add(`var<workgroup> Ps: array<f32, ${Lo.pFloats}>;`);
  add('var<workgroup> seqW: vec4<u32>;');
  add('');
  // 4 consecutive elements of a row (zero past `dim`), from `arr` at element index `base`
  add('fn load4(which: u32, base: u32, d: u32, dim: u32) -> vec4<f16> {');
  add('  var x = vec4<f16>();');
  add('  for (var e = 0u; e < 4u; e++) {');
  add('    if (d + e < dim) {');
  add('      switch which {');
  add('        case 0u: { x[e] = Q[base + e]; }');
  add('        case 1u: { x[e] = K[base + e]; }');
  add('        case 2u: { x[e] = V[base + e]; }');
  if (o.dimRope) {
    add('        case 3u: { x[e] = QR[base + e]; }');
    add('        case 4u: { x[e] = KR[base + e]; }');
  }
  add('        default: {}');
  add('      }');
  add('    }');
  add('  }');
  add('  return x;');
  add('}');
  add('');
  add(`@compute @workgroup_size(${NT})`);
  add('fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32,');
  add('        @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32) {');
  add('  let b = wg.z;');
  add('  if (li == 0u) { seqW = vec4<u32>(seqTable[b], seqTable[P.batch + b], seqTable[2u * P.batch + b], seqTable[3u * P.batch + b]); }');
  add('  let seq = workgroupUniformLoad(&seqW);');
  add('  let startQ = seq.x; let startK = seq.y; let lenQ = seq.z; let lenK = seq.w;');
  add(`  let tile = ${o.causalOrWindow ? 'P.tilesQ - 1u - wg.x' : 'wg.x'};`);
  add('  let q0 = tile * ROWS;');
  add('  if (q0 >= lenQ) { return; }');
  add('  let h = wg.y;');
  add('  let hk = h / P.group;');
  for (const line of tileKeyRangeLines(o.causalOrWindow, 'ROWS')) add(line);
  add('  // Q rows (NoPE part, then RoPE part, each zero-padded to whole vec4s) -> workgroup memory');
  add('  for (var t = li; t < ROWS * DQ4; t += NT) {');
  add('    let r = t / DQ4; let d = (t % DQ4) * 4u; let i = q0 + r;');
  add('    var x = vec4<f16>();');
  add('    if (i < lenQ) {');
  add('      let row = startQ + i;');
  if (o.dimRope) {
    add('      let dqp = ((DQ + 3u) / 4u) * 4u;');
    add('      if (d < dqp) { x = load4(0u, P.qOff + b * P.qSb + row * P.qSs + h * P.qSh + d, d, DQ); }');
    add('      else { x = load4(3u, P.qrOff + b * P.qrSb + row * P.qrSs + h * P.qrSh + d - dqp, d - dqp, DR); }');
  } else {
    add('      x = load4(0u, P.qOff + b * P.qSb + row * P.qSs + h * P.qSh + d, d, DQ);');
  }
  add('    }');
  add('    Qs[t] = x;');
  add('  }');
  add('  var m = array<f32, R>();');
  add('  var l = array<f32, R>();');
  add('  var poison = array<u32, R>();   // 1: the row saw a NaN or +inf score (its output is NaN)');
  add('  var acc = array<array<vec4<f32>, COLS4>, R>();');
  rowsUnrolled(add, '  ', () => ['m[r] = NEG_INF;']);
  if (o.alibi) add('  let slope = bitcast<f32>(seqTable[4u * P.batch + b * P.alibiSb + h]) * 1.4426950408889634;');
  add('  let rowBase = sg * R;');
  add('  for (var kv0 = (kvLo / SG) * SG; kv0 < kvHi; kv0 += SG) {');
  add('    workgroupBarrier(); // the previous block is done with K/V/P');
  add('    for (var t = li; t < SG * DQ4; t += NT) {');
  add('      let j = t / DQ4; let d = (t % DQ4) * 4u; let key = kv0 + j;');
  add('      var x = vec4<f16>();');
  add('      if (key < lenK) {');
  add('        let row = startK + key;');
  if (o.dimRope) {
    add('        let dqp = ((DQ + 3u) / 4u) * 4u;');
    add('        if (d < dqp) { x = load4(1u, P.kOff + b * P.kSb + row * P.kSs + hk * P.kSh + d, d, DQ); }');
    add('        else { x = load4(4u, P.krOff + b * P.krSb + row * P.krSs + hk * P.krSh + d - dqp, d - dqp, DR); }');
  } else {
    add('        x = load4(1u, P.kOff + b * P.kSb + row * P.kSs + hk * P.kSh + d, d, DQ);');
  }
  add('      }');
  add('      KVs[j * K_STRIDE4 + t % DQ4] = x;');
  add('    }');
  add('    for (var t = li; t < SG * DV4; t += NT) {');
  add('      let j = t / DV4; let d = (t % DV4) * 4u; let key = kv0 + j;');
  add('      var x = vec4<f16>();');
  add('      if (key < lenK) { x = load4(2u, P.vOff + b * P.vSb + (startK + key) * P.vSs + hk * P.vSh + d, d, DV); }');
  add('      KVs[V_BASE4 + t] = x;');
  add('    }');
  add('    workgroupBarrier();');
  add('    // scores of key j = kv0 + lane against the R rows');
  add('    var s = array<f32, R>();');
  add('    for (var d = 0u; d < DQ4; d++) {');
  add('      let kd = vec4<f32>(KVs[lane * K_STRIDE4 + d]);');
  rowsUnrolled(add, '      ', () => ['s[r] += dot(vec4<f32>(Qs[(rowBase + r) * DQ4 + d]), kd);']);
  add('    }');
  add('    let j = i32(kv0 + lane);');
  softmaxRows.length = 0;
  {
    const add = (line: string) => softmaxRows.push(line.replace(/^      /, ''));
    add('      let i = q0 + rowBase + r;');
    // softcap: a NaN is caught before the clamp (which could make it a bound), and poisons the row
    // only where the pair is visible (a key hidden by causal or the window must not); +inf is capped
    if (o.softcap) {
      add('      let qkNan = is_nan(s[r]);');
      add('      var x = P.softcap * tanh(clamp(s[r] * P.scale / P.softcap, -15.0, 15.0)) * 1.4426950408889634;');
    }
    else add('      var x = s[r] * P.scaleLog2;');
    if (o.alibi) add('      x -= slope * f32(abs(i32(i) + i32(lenK) - i32(lenQ) - j));');
    if (o.causalOrWindow) {
      add('      let visible = j < i32(lenK) && j >= diag + i32(i) - P.windowLeft && j <= diag + i32(i) + P.windowRight;');
    } else {
      add('      let visible = j < i32(lenK);');
    }
    if (o.softcap) add('      if (visible && qkNan) { poison[r] = 1u; }');
    add('      x = select(NEG_INF, x, visible);');
    add('      if (nan_or_pos_inf(x)) { poison[r] = 1u; x = NEG_INF; }');
    add('      let mNew = max(m[r], subgroupMax(x));');
    add('      // exact online softmax: the rescale factor is the same on every lane');
    add('      let alpha = select(0.0, exp2(m[r] - mNew), m[r] != NEG_INF);');
    add('      let p = select(0.0, exp2(x - mNew), x != NEG_INF);');
    add('      l[r] = l[r] * alpha + subgroupAdd(p);');
    add('      m[r] = mNew;');
    for (let c = 0; c < cols4; c++) add(`      acc[r][${c}] *= alpha;`);
    if (o.dropout) add('      Ps[(rowBase + r) * SG + lane] = p * dropout_factor(dropout_words(dp.seed, dp.offset, b * dp.heads + h, i, u32(j) >> 3u), u32(j) & 7u, dp.threshold, 1.0);');
    else add('      Ps[(rowBase + r) * SG + lane] = p;');
  }
  rowsUnrolled(add, '    ', () => softmaxRows);
  add('    workgroupBarrier(); // P visible to the subgroup');
  add('    for (var jj = 0u; jj < SG; jj++) {');
  for (let c = 0; c < cols4; c++) {
    add(`      let vv${c} = vec4<f32>(KVs[V_BASE4 + jj * DV4 + min(lane + ${c * SG}u, DV4 - 1u)]);`);
  }
  rowsUnrolled(add, '      ', () => ['let pr = vec4<f32>(Ps[(rowBase + r) * SG + jj]);', ...Array.from({ length: cols4 }, (_, c) => `acc[r][${c}] = fma(pr, vv${c}, acc[r][${c}]);`)]);
  add('    }');
  add('  }');
  outRows.length = 0;
  {
    const add = (line: string) => outRows.push(line.replace(/^    /, ''));
    add('    let i = q0 + rowBase + r;');
    add('    let poisoned = subgroupOr(poison[r]) != 0u;');
    add('    if (i < lenQ) {');
    add(`    let inv = select(0.0, ${o.dropout ? 'dp.scale' : '1.0'} / l[r], l[r] > 0.0);`);
    add('    let oRow = b * P.oSb + (startQ + i) * P.oSs + h * P.oSh;');
    for (let c = 0; c < cols4; c++) {
      for (let e = 0; e < 4; e++) {
        add(`    { let col = (lane + ${c * SG}u) * 4u + ${e}u; if (col < DV) { O[oRow + col] = f16(select(acc[r][${c}][${e}] * inv, nan_f32(), poisoned)); } }`);
      }
    }
    if (o.returnLse) {
      add('    if (lane == 0u) {');
      add('      LSE[b * P.lseSb + h * P.lseSh + (startQ + i) * P.lseSs] = select(select(bitcast<f32>(0xff800000u | P.zero), (m[r] + log2(l[r])) * 0.6931471805599453, l[r] > 0.0), nan_f32(), poisoned);');
      add('    }');
    }
    add('    }');
  }
  rowsUnrolled(add, '  ', () => outRows);
  add('}');
  return L.join('\n') + '\n';
}
