// WGSL pieces the tensor-core tier's vector-load kernels share (the wide kernel,
// flash-sgmatrix-wide-wgsl.ts, and the pairs kernel, flash-sgmatrix-pairs-wgsl.ts): both take q, k
// and v as vec4<u32> (8 halves a load), stage K/V through registers one block ahead (prefetch),
// and index workgroups the same way. The 16-row kernel (flash-sgmatrix-wgsl.ts) keeps its own,
// more general forms (scalar loads, the block source, the MLA split form).
import { paramsStructWgsl } from './flash-params.js';

/** Enables, the Params struct and the bindings (q, k, v as vec4<u32>, O as f16, LSE when asked). */
export function vectorKernelBindings(returnLse: boolean): string[] {
  const lines = [
    'enable f16;',
    'enable subgroups;',
    'enable chromium_experimental_subgroup_matrix;',
    'diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);',
    '',
    paramsStructWgsl(),
    '',
    '@group(0) @binding(0) var<uniform> P: Params;',
    '@group(0) @binding(1) var<storage, read> seqTable: array<u32>;',
    '@group(0) @binding(2) var<storage, read> Q: array<vec4<u32>>;',
    '@group(0) @binding(3) var<storage, read> K: array<vec4<u32>>;',
    '@group(0) @binding(4) var<storage, read> V: array<vec4<u32>>;',
    '@group(0) @binding(5) var<storage, read_write> O: array<f16>;',
  ];
  if (returnLse) lines.push('@group(0) @binding(6) var<storage, read_write> LSE: array<f32>;');
  return lines;
}

/** rowQ, rowK, rowV: 8 halves of one row (zero outside the data), as vec4<u32>. */
export function vectorRowLoaders(): string[] {
  const lines: string[] = [];
  for (const [name, arr, pre, dim] of [['rowQ', 'Q', 'q', 'DQ'], ['rowK', 'K', 'k', 'DQ'], ['rowV', 'V', 'v', 'DV']] as const) {
    lines.push(
      `fn ${name}(c: u32, valid: bool, b: u32, h: u32, row: u32) -> vec4<u32> {`,
      `  if (!valid || c >= ${dim}) { return vec4<u32>(); }`,
      `  return ${arr}[(P.${pre}Off + b * P.${pre}Sb + row * P.${pre}Ss + h * P.${pre}Sh + c) / 8u];`,
      '}',
    );
  }
  return lines;
}

/**
 * The entry point's first lines: the sequence's starts and lengths (uniform through workgroup
 * memory), the query tile (longest causal tiles first), its heads h0.. and KV head hk.
 */
export function vectorKernelEntry(threads: number, causalOrWindow: boolean, headsPerTile: number): string[] {
  return [
    `@compute @workgroup_size(${threads})`,
    'fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32,\n        @builtin(subgroup_id) subgroupId: u32, @builtin(subgroup_invocation_id) lane: u32) {',
    '  let b = wg.z;',
    '  if (li == 0u) { seqW = vec4<u32>(seqTable[b], seqTable[P.batch + b], seqTable[2u * P.batch + b], seqTable[3u * P.batch + b]); }',
    '  let seq = workgroupUniformLoad(&seqW);',
    '  let startQ = seq.x; let startK = seq.y; let lenQ = seq.z; let lenK = seq.w;',
    `  let tile = ${causalOrWindow ? 'P.tilesQ - 1u - wg.x; // longest causal tiles first' : 'wg.x;'}`,
    '  let q0 = tile * ROWS_PER_HEAD;',
    '  if (q0 >= lenQ) { return; }',
    `  let h0 = wg.y * ${headsPerTile}u;`,
    '  let hk = h0 / P.group;',
  ];
}

/** The Q tile (ROWS rows of DQP halves) copied into KVs at K_STRIDE, before the row matrices load it. */
export function vectorQTileCopy(): string[] {
  return [
    '  for (var t = li; t < ROWS * (DQP / 8u); t += NT) {',
    '    let r = t / (DQP / 8u);',
    '    let c = (t % (DQP / 8u)) * 8u;',
    '    let i = q0 + r % ROWS_PER_HEAD;',
    '    let h = h0 + r / ROWS_PER_HEAD;',
    '    KVs[(r * K_STRIDE + c) / 8u] = rowQ(c, i < lenQ, b, h, startQ + i);',
    '  }',
  ];
}

/**
 * The key loop's head with register prefetch (pfK / pfV vec4 words per invocation): the first
 * block's loads before it; per block, the registers stored to the K and V tiles, a barrier, and the
 * next block's loads issued while this one computes.
 */
export function vectorPrefetchLoopHead(pfK: number, pfV: number): string[] {
  const loads = (start: string, indent: string) => [
    `${indent}for (var u = 0u; u < ${pfK}u; u++) { let t = li + u * NT; let rr = t / (DQP / 8u); let c = (t % (DQP / 8u)) * 8u; pk[u] = rowK(c, ${start} + rr < lenK, b, hk, startK + ${start} + rr); }`,
    `${indent}for (var u = 0u; u < ${pfV}u; u++) { let t = li + u * NT; let rr = t / (DVP / 8u); let c = (t % (DVP / 8u)) * 8u; pv[u] = rowV(c, ${start} + rr < lenK, b, hk, startK + ${start} + rr); }`,
  ];
  return [
    `  var pk: array<vec4<u32>, ${pfK}>;`,
    `  var pv: array<vec4<u32>, ${pfV}>;`,
    ...loads('(kvLo / BC) * BC', '  '),
    '  for (var kv0 = (kvLo / BC) * BC; kv0 < kvHi; kv0 += BC) {',
    `    for (var u = 0u; u < ${pfK}u; u++) { let t = li + u * NT; let rr = t / (DQP / 8u); let c = (t % (DQP / 8u)) * 8u; KVs[(rr * K_STRIDE + c) / 8u] = pk[u]; }`,
    `    for (var u = 0u; u < ${pfV}u; u++) { let t = li + u * NT; let rr = t / (DVP / 8u); let c = (t % (DVP / 8u)) * 8u; KVs[(V_BASE + rr * V_STRIDE + c) / 8u] = pv[u]; }`,
    '    workgroupBarrier();',
    '    if (kv0 + BC < kvHi) {',
    ...loads('kv0 + BC', '      '),
    '    }',
  ];
}

/**
 * The inside of a softmax loop over this lane's scores: s (q·k, f32) scaled into log2 units
 * (softcap through WGSL's tanh), ALiBi, the row's key range, a NaN or +inf poisoning the row; then
 * sv[c] and the block max. `key` is the WGSL expression of the score's key index.
 */
export function vectorScoreLines(o: { softcap: boolean; alibi: boolean }, key: string): string[] {
  const lines: string[] = [];
  // softcap: a NaN is caught before the clamp (which could make it a bound), and poisons the row
  // only where the pair is visible (a key hidden by causal or the window must not); +inf is capped
  if (o.softcap) lines.push('      let qkNan = is_nan(s);');
  lines.push(o.softcap ? '      s = P.softcap * tanh(clamp(s * P.scale / P.softcap, -15.0, 15.0)) * 1.4426950408889634;' : '      s = s * P.scaleLog2;   // the scale folded into exp2');
  lines.push(`      let j = i32(${key});`);
  if (o.alibi) lines.push('      s -= slope * f32(abs(alibiDiag - j));');
  lines.push('      let keep = j >= jLo && j <= jHi;');
  if (o.softcap) lines.push('      if (keep && qkNan) { poison = 1u; }');
  lines.push('      s = select(NEG_INF, s, keep);', '      if (nan_or_pos_inf(s)) { poison = 1u; s = NEG_INF; }', '      sv[c] = s;', '      blockMax = max(blockMax, s);');
  return lines;
}

/**
 * The lazy rescale (FlashAttention-4's): the row max m moves only when the block's max exceeds it
 * by more than THRESHOLD, then alpha scales l here and O (flagged through rescaleFlag) after.
 */
export function lazyRescaleLines(): string[] {
  return [
    '    var alpha = 1.0;',
    '    if (blockMax > m) {',
    '      if (m == NEG_INF) {',
    '        m = blockMax;',
    '      } else if (blockMax - m > THRESHOLD) {',
    '        alpha = exp2(m - blockMax);',
    '        m = blockMax;',
    '        atomicOr(&rescaleFlag[0], 1u);',
    '      }',
    '    }',
    '    l *= alpha;',
  ];
}
