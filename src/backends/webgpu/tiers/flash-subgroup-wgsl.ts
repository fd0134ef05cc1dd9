// WGSL builder of the subgroup tier: FlashAttention forward on f16 inputs for adapters with
// shader-f16 and subgroups but no subgroup matrices (most browsers today). Math in f32.
//
// One workgroup = NS subgroups of SG invocations (SG fixed by the adapter); each subgroup owns R
// query rows of one head; K/V blocks of SG keys are staged in workgroup memory and shared by all
// subgroups. Per block, for its R rows, a subgroup:
//   1. scores: lane j takes key j of the block: s[r] = q_r · k_j (q rows broadcast from workgroup
//      memory, the k row read once per lane);
//   2. online softmax with subgroupMax / subgroupAdd over the lanes (= over the block's keys); the
//      rescale factor is uniform over the subgroup, so O (held in registers) is rescaled exactly;
//   3. P·V: P goes through workgroup memory; lane c accumulates O columns c, c + SG, ... .
import { paramsStructWgsl } from './flash-params.js';

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
}

/** Workgroup memory in bytes (Q rows, K and V blocks, P). */
export function subgroupWorkgroupBytes(o: SubgroupKernelOptions): number {
  const dq = o.dimQK + o.dimRope;
  const rowsWg = o.subgroups * o.rows;
  const kStride = dq + 2;
  const q = rowsWg * dq * 2;
  const kv = o.subgroupSize * (kStride + o.dimV) * 2;
  const p = rowsWg * o.subgroupSize * 4;
  return align16(q) + align16(kv) + align16(p) + 16;
}

const align16 = (n: number) => Math.ceil(n / 16) * 16;

export function buildFlashSubgroup(o: SubgroupKernelOptions): string {
  const SG = o.subgroupSize;
  const NT = SG * o.subgroups;
  const dq = o.dimQK + o.dimRope;
  const rowsWg = o.subgroups * o.rows;
  const kStride = dq + 2; // odd word stride: lanes reading different key rows hit different banks
  const colsPerLane = Math.ceil(o.dimV / SG);
  const qHalves = align16(rowsWg * dq * 2) / 2;
  const kvHalves = align16(SG * (kStride + o.dimV) * 2) / 2;
  const pFloats = align16(rowsWg * SG * 4) / 4;
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
  add('');
  add(`const SG = ${SG}u; const NT = ${NT}u; const R = ${o.rows}u; const ROWS = ${rowsWg}u;`);
  add(`const DQ = ${o.dimQK}u; const DR = ${o.dimRope}u; const DQ_ALL = ${dq}u; const DV = ${o.dimV}u;`);
  add(`const K_STRIDE = ${kStride}u; const V_BASE = ${SG * kStride}u; const COLS = ${colsPerLane}u;`);
  add('const NEG_INF = -3.0e38;');
  add(`var<workgroup> Qs: array<f16, ${qHalves}>;`);
  add(`var<workgroup> KVs: array<f16, ${kvHalves}>;`);
  add(`var<workgroup> Ps: array<f32, ${pFloats}>;`);
  add('var<workgroup> seqW: vec4<u32>;');
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
  add('  let diag = select(0, i32(lenK) - i32(lenQ), P.alignBottomRight == 1u);');
  add('  let qLast = min(q0 + ROWS, lenQ) - 1u;');
  if (o.causalOrWindow) {
    add('  let kvLo = u32(clamp(diag + i32(q0) - P.windowLeft, 0, i32(lenK)));');
    add('  let kvHi = u32(clamp(diag + i32(qLast) + P.windowRight + 1, 0, i32(lenK)));');
  } else {
    add('  let kvLo = 0u; let kvHi = lenK;');
  }
  add('  // Q rows -> workgroup memory (zero past the sequence)');
  add('  for (var t = li; t < ROWS * DQ_ALL; t += NT) {');
  add('    let r = t / DQ_ALL; let d = t % DQ_ALL; let i = q0 + r;');
  add('    var x = 0.0h;');
  add('    if (i < lenQ) {');
  add('      if (d < DQ) { x = Q[P.qOff + b * P.qSb + (startQ + i) * P.qSs + h * P.qSh + d]; }');
  if (o.dimRope) add('      else { x = QR[P.qrOff + b * P.qrSb + (startQ + i) * P.qrSs + h * P.qrSh + d - DQ]; }');
  add('    }');
  add('    Qs[t] = x;');
  add('  }');
  add('  var m: array<f32, R>;');
  add('  var l: array<f32, R>;');
  add('  var acc: array<array<f32, COLS>, R>;');
  add('  for (var r = 0u; r < R; r++) { m[r] = NEG_INF; l[r] = 0.0; }');
  if (o.alibi) add('  let slope = bitcast<f32>(seqTable[4u * P.batch + b * P.alibiSb + h]) * 1.4426950408889634;');
  add('  let rowBase = sg * R;');
  add('  for (var kv0 = (kvLo / SG) * SG; kv0 < kvHi; kv0 += SG) {');
  add('    workgroupBarrier(); // previous block done with K/V/P');
  add('    for (var t = li; t < SG * DQ_ALL; t += NT) {');
  add('      let j = t / DQ_ALL; let d = t % DQ_ALL; let key = kv0 + j;');
  add('      var x = 0.0h;');
  add('      if (key < lenK) {');
  add('        if (d < DQ) { x = K[P.kOff + b * P.kSb + (startK + key) * P.kSs + hk * P.kSh + d]; }');
  if (o.dimRope) add('        else { x = KR[P.krOff + b * P.krSb + (startK + key) * P.krSs + hk * P.krSh + d - DQ]; }');
  add('      }');
  add('      KVs[j * K_STRIDE + d] = x;');
  add('    }');
  add('    for (var t = li; t < SG * DV; t += NT) {');
  add('      let j = t / DV; let d = t % DV; let key = kv0 + j;');
  add('      var x = 0.0h;');
  add('      if (key < lenK) { x = V[P.vOff + b * P.vSb + (startK + key) * P.vSs + hk * P.vSh + d]; }');
  add('      KVs[V_BASE + t] = x;');
  add('    }');
  add('    workgroupBarrier();');
  add('    // scores of key j = kv0 + lane against the R rows');
  add('    var s: array<f32, R>;');
  add('    for (var d = 0u; d < DQ_ALL; d++) {');
  add('      let kd = f32(KVs[lane * K_STRIDE + d]);');
  add('      for (var r = 0u; r < R; r++) { s[r] = fma(f32(Qs[(rowBase + r) * DQ_ALL + d]), kd, s[r]); }');
  add('    }');
  add('    let j = i32(kv0 + lane);');
  add('    for (var r = 0u; r < R; r++) {');
  add('      let i = q0 + rowBase + r;');
  if (o.softcap) add('      var x = P.softcap * tanh(s[r] * P.scale / P.softcap) * 1.4426950408889634;');
  else add('      var x = s[r] * P.scaleLog2;');
  if (o.alibi) add('      x -= slope * f32(abs(i32(i) + i32(lenK) - i32(lenQ) - j));');
  if (o.causalOrWindow) {
    add('      let jLo = diag + i32(i) - P.windowLeft;');
    add('      let jHi = diag + i32(i) + P.windowRight;');
    add('      let visible = j < i32(lenK) && j >= jLo && j <= jHi;');
  } else {
    add('      let visible = j < i32(lenK);');
  }
  add('      x = select(NEG_INF, x, visible);');
  add('      let mNew = max(m[r], subgroupMax(x));');
  add('      // exact online softmax: the factor is the same on every lane');
  add('      let alpha = select(0.0, exp2(m[r] - mNew), m[r] != NEG_INF);');
  add('      let p = select(0.0, exp2(x - mNew), x != NEG_INF);');
  add('      l[r] = l[r] * alpha + subgroupAdd(p);');
  add('      m[r] = mNew;');
  add('      for (var c = 0u; c < COLS; c++) { acc[r][c] *= alpha; }');
  add('      Ps[(rowBase + r) * SG + lane] = p;');
  add('    }');
  add('    workgroupBarrier(); // P visible to the subgroup');
  add('    for (var jj = 0u; jj < SG; jj++) {');
  add('      for (var c = 0u; c < COLS; c++) {');
  add('        let col = lane + c * SG;');
  add('        let vv = select(0.0, f32(KVs[V_BASE + jj * DV + min(col, DV - 1u)]), col < DV);');
  add('        for (var r = 0u; r < R; r++) { acc[r][c] = fma(Ps[(rowBase + r) * SG + jj], vv, acc[r][c]); }');
  add('      }');
  add('    }');
  add('  }');
  add('  for (var r = 0u; r < R; r++) {');
  add('    let i = q0 + rowBase + r;');
  add('    if (i >= lenQ) { continue; }');
  add('    let inv = select(0.0, 1.0 / l[r], l[r] > 0.0);');
  add('    let oRow = b * P.oSb + (startQ + i) * P.oSs + h * P.oSh;');
  add('    for (var c = 0u; c < COLS; c++) {');
  add('      let col = lane + c * SG;');
  add('      if (col < DV) { O[oRow + col] = f16(acc[r][c] * inv); }');
  add('    }');
  if (o.returnLse) {
    add('    if (lane == 0u) {');
    add('      LSE[b * P.lseSb + h * P.lseSh + (startQ + i) * P.lseSs] = select(bitcast<f32>(0xff800000u | P.zero), (m[r] + log2(l[r])) * 0.6931471805599453, l[r] > 0.0);');
    add('    }');
  }
  add('  }');
  add('}');
  return L.join('\n') + '\n';
}
