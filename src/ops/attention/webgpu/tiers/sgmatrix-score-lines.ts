// The per-score lines of the tensor-core tier's 16-row kernel (flash-sgmatrix-wgsl.ts): score c of
// this lane's row, from S (q·k) to the log2-unit score the online softmax takes. One builder for
// the plain kernel and for the score hook (sgmatrix-score-hook.ts), so a hooked score is the plain
// one plus only what the call adds: a bias, visibility tests (bool mask, mask function), a score
// function. Without additions the lines are exactly the plain kernel's. Every line is
// straight-line code (selects, no early returns), as the plain path is: the per-score loop stays
// one the driver unrolls into registers. No `//` comments: the unrolled form joins the lines.
//
// Order of the reference (score.wgsl.ts): scale, softcap, + bias, - ALiBi; hidden pairs (window,
// mask, mask function, -inf) never poison a row; a NaN or +inf score of a visible pair does, before
// and after the score function; the score function sees only visible, finite scores (it is
// evaluated for every pair here, and its result discarded where it must not apply).

/** What a call adds to the plain per-score lines (all empty: the plain kernel's lines). */
export interface ScoreAdditions {
  /** WGSL of the bias at key `j`, natural units. */
  bias?: string;
  /** Lets per score ahead of the visibility test (the mask function's). */
  before?: string[];
  /** More visibility terms, ANDed with the window test. */
  keep?: string[];
  /** The score function in log2 units: its per-score lets (reading `s`) and its result. */
  mod?: { lets: string[]; result: string };
  /**
   * With the softcap option: a NaN q·k poisons the row only where the pair is visible (the
   * reference's order). The plain kernel poisons on it before the window test (also for a pair
   * the window hides), and keeps doing so: its WGSL is what the H200 measured.
   */
  visibleNaN?: boolean;
}

const LOG2E = '1.4426950408889634';

/**
 * Per-row lets the softcap lines read (ahead of the key loop): the factor into the cap's units and
 * out of them into log2 units. Per score the cap then costs two multiplies and the tanh, not
 * also a division (s · scale / cap was one per score).
 */
export const SOFTCAP_LETS = [
  '  let capIn = P.scale / P.softcap;',
  `  let capOut = P.softcap * ${LOG2E};`,
];

export function hasAdditions(a: ScoreAdditions): boolean {
  return a.bias !== undefined || (a.before?.length ?? 0) > 0 || (a.keep?.length ?? 0) > 0 || a.mod !== undefined || a.visibleNaN === true;
}

/** The lines scoring column `c` (a WGSL index expression) into sv[c] and blockMax. */
export function scoreLines(o: { softcap: boolean; alibi: boolean; tanh?: 'exp2'; softcapFunction?: boolean }, c: string, add: ScoreAdditions = {}): string[] {
  const plain = !hasAdditions(add) && !o.softcapFunction;
  const lines = [`var s = Ss[sRow + 2u * ${c}];`];
  // softcap: a NaN is caught before the clamp (which could make it a bound); +inf is capped. The
  // plain kernel poisons the row on it at once (see visibleNaN); with additions the poison waits
  // for the visibility test: a key that the window or a mask hides must not poison the row. A cap
  // that was a score function (softcapFunction) keeps a function's rule on its input, the scaled
  // score: NaN and +inf poison a visible pair's row, -inf hides the pair.
  if (o.softcapFunction) {
    // one bit test for NaN and ±inf; the rare case sorts them out behind a branch
    lines.push('let scaled = bitcast<u32>(s * P.scale);', 'let qkBad = (scaled & 0x7fffffffu) >= 0x7f800000u;');
  } else if (o.softcap) {
    lines.push(plain ? 'if (is_nan(s)) { poison = 1u; }' : 'let qkNan = is_nan(s);');
  }
  if (o.softcap) {
    // tanh_exp2 saturates to ±1 by itself (no clamp); WGSL's tanh may give NaN past ±15
    lines.push(o.tanh === 'exp2' ? 's = capOut * tanh_exp2(s * capIn);' : 's = capOut * tanh(clamp(s * capIn, -15.0, 15.0));');
  } else lines.push('s = s * P.scaleLog2;');
  lines.push(`let j = jSide + 2 * i32(${c});`);
  if (add.bias !== undefined) lines.push(`s += ${add.bias} * ${LOG2E};`);
  if (o.alibi) lines.push('s -= slope * f32(abs(alibiDiag - j));');
  if (plain) {
    lines.push('s = select(NEG_INF, s, j >= jLo && j <= jHi);');
  } else {
    lines.push(...(add.before ?? []));
    // bool `&`, not `&&`: both sides evaluated, no branch around the mask loads
    lines.push(`${o.softcapFunction ? 'var' : 'let'} keep = ${['(j >= jLo && j <= jHi)', ...(add.keep ?? []).map((t) => `(${t})`)].join(' & ')};`);
    if (o.softcapFunction) lines.push('if (qkBad) { if (scaled == 0xff800000u) { keep = false; } else if (keep) { poison = 1u; } }');
    else if (o.softcap) lines.push('if (keep && qkNan) { poison = 1u; }');
    if (add.mod) {
      lines.push('if (keep && nan_or_pos_inf(s)) { poison = 1u; }');
      lines.push(...add.mod.lets);
      // the function applies to visible, finite scores only (-inf from a bias stays hidden)
      lines.push(`s = select(NEG_INF, ${add.mod.result}, keep & (s > NEG_INF) & !nan_or_pos_inf(s));`);
    } else lines.push('s = select(NEG_INF, s, keep);');
  }
  lines.push('if (nan_or_pos_inf(s)) { poison = 1u; s = NEG_INF; }');
  // -inf (from a bias or the function) or below the sentinel: hidden, at the sentinel
  if (add.bias !== undefined || add.mod) lines.push('s = max(s, NEG_INF);');
  lines.push(`sv[${c}] = s;`, 'blockMax = max(blockMax, s);');
  return lines;
}
