// The keys a query tile of the fast tiers' forward kernels can see (flash-sgmatrix-wgsl.ts,
// flash-sgmatrix-wide-wgsl.ts, flash-subgroup-wgsl.ts): [kvLo, kvHi) covers every row's window /
// causal range (either alignment), so the key loop skips the blocks outside it. Needs q0, lenQ,
// lenK, the tile's row count and the window uniforms declared before it.

/** WGSL lines declaring diag, qLast, kvLo and kvHi; `rows`: the WGSL name of the tile's query rows per head. */
export function tileKeyRangeLines(causalOrWindow: boolean, rows = 'ROWS_PER_HEAD'): string[] {
  return [
    '  // key range of the whole tile (window / causal), blocks outside it are skipped',
    '  let diag = select(0, i32(lenK) - i32(lenQ), P.alignBottomRight == 1u);',
    `  let qLast = min(q0 + ${rows}, lenQ) - 1u;`,
    ...(causalOrWindow
      ? ['  let kvLo = u32(clamp(diag + i32(q0) - P.windowLeft, 0, i32(lenK)));', '  let kvHi = u32(clamp(diag + i32(qLast) + P.windowRight + 1, 0, i32(lenK)));']
      : ['  let kvLo = 0u;', '  let kvHi = lenK;']),
  ];
}

/**
 * WGSL lines declaring jLo and jHi, the keys query row i can see (window / causal, either
 * alignment; needs diag from tileKeyRangeLines), and with ALiBi the row's slope (log2 units) and
 * its diagonal. Needs i, b, myHead, lenQ, lenK declared before.
 */
export function rowKeyRangeLines(o: { causalOrWindow: boolean; alibi: boolean }): string[] {
  const lines = o.causalOrWindow
    ? ['  let jLo = clamp(diag + i32(i) - P.windowLeft, 0, i32(lenK));', '  let jHi = clamp(diag + i32(i) + P.windowRight, -1, i32(lenK) - 1);']
    : ['  let jLo = 0;', '  let jHi = i32(lenK) - 1;'];
  if (o.alibi) {
    lines.push('  let slope = bitcast<f32>(seqTable[4u * P.batch + b * P.alibiSb + myHead]) * 1.4426950408889634;', '  let alibiDiag = i32(i) + i32(lenK) - i32(lenQ);');
  }
  return lines;
}
