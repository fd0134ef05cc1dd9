// WGSL lines that bound a block's loop to the steps a windowed call (causal, sliding window,
// preTokens/nextTokens; sp.* of score.wgsl.ts) lets it see, so hidden steps are skipped whole.
// They set t_first .. t_end (steps t_first <= t < t_end), from the block's own range and the
// sequence lengths sq, sk. Shared by the portable forward and the portable backward's kernels.

/** Key steps of `step` keys that query rows i0 .. i0 + rows - 1 can see (the whole row range unless `windowed`). */
export function visibleKeySteps(windowed: boolean, rows: string, step: string, indent = '  '): string {
  const window = windowed ? [
    'let diag = select(0, i32(sk) - i32(sq), sp.bottom_right != 0u);',
    `let i_last = min(i0 + ${rows}, sq) - 1u;`,
    'j_lo = max(j_lo, diag + i32(i0) - sp.win_left);',
    'j_hi = min(j_hi, diag + i32(i_last) + sp.win_right);',
  ] : [undefined]; // an empty line where the window's lines would be (the generated text is unchanged)
  return ['var j_lo = 0;', 'var j_hi = i32(sk) - 1;', ...window, ...stepRange('j', step)]
    .map((line) => (line === undefined ? '' : indent + line)).join('\n');
}

/** Query steps of `step` rows that can see keys j0 .. j0 + keys - 1. */
export function visibleQuerySteps(keys: string, step: string, indent: string): string {
  return [
    'let diag = select(0, i32(sk) - i32(sq), sp.bottom_right != 0u);',
    `let j_last = min(j0 + ${keys}, sk) - 1u;`,
    'let i_lo = max(0, i32(j0) - diag - sp.win_right);',
    'let i_hi = min(i32(sq) - 1, i32(j_last) - diag + sp.win_left);',
    ...stepRange('i', step),
  ].map((line) => indent + line).join('\n');
}

function stepRange(axis: 'i' | 'j', step: string): string[] {
  return [
    'var t_first = 0u;',
    'var t_end = 0u;',
    `if (${axis}_hi >= ${axis}_lo) {`,
    `  t_first = u32(${axis}_lo) / ${step};`,
    `  t_end = u32(${axis}_hi) / ${step} + 1u;`,
    '}',
  ];
}
