// The score of one (query i, key j) pair after q·k, shared by the flash kernel and the naive
// path's QKᵀ epilogue so both apply the options in the same order as the reference:
//   window / bool mask -> hidden;  s = scale·qk;  softcap: s = c·tanh(s/c);  + bias;  - ALiBi.
// A hidden pair, or a score of -inf from the bias, comes back as the finite sentinel NO_SCORE; a
// NaN or +inf score as POISON_SCORE (the caller turns the row into NaN). Scores are in units of
// beta = max(1, |scale|) (scoreUnits in problem.ts; 1 with a softcap, whose scores are bounded):
// s/beta = (scale/beta)·qk (+ bias/beta ...), so a huge finite scale never overflows; callers
// weight keys by exp(beta·(s - max)).
import { NON_FINITE_FNS, NO_SCORE, POISON_SCORE, type FloatDType, arrayElement, loadByte, loadFloat, readBinding } from '../../../engines/webgpu/wgsl.js';
import { UniformLayout } from '../../../engines/webgpu/uniforms.js';
import type { ModsKernelOptions } from '../mods/plan.js';
import { buildModsWgsl } from '../mods/wgsl.js';

export interface ScoreOptions {
  /** Bool/uint8 keep-mask present. */
  mask: boolean;
  /** dtype of the additive bias, or 'none'. */
  bias: FloatDType | 'none';
  alibi: boolean;
  softcap: boolean;
  /** A causal/sliding window is set (else every key is in range). */
  windowed: boolean;
  /** Score/mask/sink functions of the call (ops/attention/mods), compiled in. */
  mods?: ModsKernelOptions;
  /**
   * The kernel walks a block table (block masks): also emit final_score_unmasked, the score
   * without the bool mask and mask function, for key blocks no mask hides anything of.
   */
  blockTable?: boolean;
}

/** Uniforms of the score function (struct ScoreParams, bound as `sp`). */
export const SCORE_PARAMS = new UniformLayout('ScoreParams', {
  mask_strides: 'vec4u',
  bias_strides: 'vec4u',
  mask_off: 'u32',
  bias_off: 'u32',
  scale: 'f32',
  softcap: 'f32',
  /** Window as offsets of j - i - diag; "unbounded" is clamped to +-2^30. */
  win_left: 'i32',
  win_right: 'i32',
  /** 1: diag = Sk_b - Sq_b (bottom-right), 0: diag = 0 (top-left). */
  bottom_right: 'u32',
  /** Sequences in the batch (the per-sequence table has 4 * batch entries before the slopes). */
  batch: 'u32',
  /** ALiBi slope of (b, h) is table[4 * batch + b * alibi_stride_b + h], as f32 bits. */
  alibi_stride_b: 'u32',
});

export interface ScoreBindings {
  group: number;
  params: number;
  mask: number;
  bias: number;
  /** The mods data (captured tensors, block table), when the options have mods or a table. */
  modData?: number;
}

/** The ScoreParams struct and binding `sp`, and the mask / bias bindings with their loaders mask_at / bias_at. */
export function scoreInputDeclarations(o: Pick<ScoreOptions, 'mask' | 'bias'>, at: ScoreBindings): string[] {
  const decl: string[] = [SCORE_PARAMS.wgsl(), `@group(${at.group}) @binding(${at.params}) var<uniform> sp: ScoreParams;`];
  if (o.mask) decl.push(readBinding(at.mask, 'mask_buf', 'u32', at.group), loadByte('mask_at', 'mask_buf'));
  if (o.bias !== 'none') decl.push(readBinding(at.bias, 'bias_buf', arrayElement(o.bias), at.group), loadFloat('bias_at', 'bias_buf', o.bias));
  return decl;
}

/** Declarations (struct, bindings, loaders) and `fn final_score(...)`. */
export function buildScoreFunction(o: ScoreOptions, at: ScoreBindings): string {
  const decl = scoreInputDeclarations(o, at);

  // 'slope': the score function's derivative at the score it sees (the backward's chain rule),
  // for pairs the caller knows are visible: no window or mask checks, no poison checks
  const lines = (masked: boolean, slope = false): string[] => {
  const body: string[] = [];
  if (o.windowed && !slope) {
    body.push(
      'let diag = select(0, i32(sk) - i32(sq), sp.bottom_right != 0u);',
      'let rel = i32(j) - i32(i) - diag;',
      'if (rel < -sp.win_left || rel > sp.win_right) { return NO_SCORE; }',
    );
  }
  if (o.mask && masked && !slope) {
    body.push(
      'let ms = sp.mask_strides;',
      'if (mask_at(sp.mask_off + b * ms.x + h * ms.y + i * ms.z + j * ms.w) == 0u) { return NO_SCORE; }',
    );
  }
  if (o.mods?.mask && masked && !slope) body.push('if (!mask_mod(b, h, i, j, sq, sk)) { return NO_SCORE; }');
  body.push('let beta = score_beta();', 'var s = qk * score_alpha();');
  // clamp: tanh of a large argument is (inf/inf) = NaN on some drivers; tanh(15) is 1 in f32.
  // A NaN must be caught before it (clamp may turn NaN into a bound); +inf is capped, as it should.
  if (o.softcap) body.push('if (is_nan(s)) { return POISON_SCORE; }', 's = sp.softcap * tanh(clamp(s / sp.softcap, -15.0, 15.0)); // beta = 1 with a softcap (score_beta)');
  if (o.bias !== 'none') {
    body.push('let bs = sp.bias_strides;', 's = s + per_beta(bias_at(sp.bias_off + b * bs.x + h * bs.y + i * bs.z + j * bs.w), beta);');
  }
  if (o.alibi) body.push('s = s - per_beta(slope, beta) * abs(f32(i32(i) + i32(sk) - i32(sq) - i32(j)));');
  if (slope) {
    body.push('return score_mod_grad(s * beta, b, h, i, j, sq, sk);');
    return body;
  }
  body.push(
    '// NaN or +inf: the row is poisoned; -inf from the bias (or anything not above the sentinel) means hidden',
    'if (nan_or_pos_inf(s)) { return POISON_SCORE; }',
    'if (!(s > NO_SCORE)) { return NO_SCORE; }',
  );
  if (o.mods?.score) {
    body.push(
      '// the score function sees visible, finite scores, in natural units',
      's = per_beta(score_mod(s * beta, b, h, i, j, sq, sk), beta);',
      'if (nan_or_pos_inf(s)) { return POISON_SCORE; }',
      'if (!(s > NO_SCORE)) { return NO_SCORE; }',
    );
  }
  body.push('return min(s, POISON_SCORE);');
  return body;
  };
  const mods = buildModsWgsl(o.mods, { group: at.group, binding: at.modData ?? -1 }, o.blockTable ?? false);
  const fn = (name: string, masked: boolean, slope = false) => `fn ${name}(qk: f32, b: u32, h: u32, i: u32, j: u32, sq: u32, sk: u32, slope: f32) -> f32 {
${lines(masked, slope).map((line) => `  ${line}`).join('\n')}
}`;

  return `${decl.join('\n')}
${mods ? `\n${mods}\n` : ''}
const NO_SCORE: f32 = ${NO_SCORE};
const POISON_SCORE: f32 = ${POISON_SCORE};
${NON_FINITE_FNS}

// The unit scores are kept in: softmax weights are exp(beta·(s - max)). With a softcap the scores
// are bounded by it, so natural units serve (beta = 1): units of a huge beta would put the capped
// scores and the bias near float32's subnormals, which GPUs flush to zero (seen on the H200).
fn score_beta() -> f32 { return ${o.softcap ? '1.0' : 'max(1.0, abs(sp.scale))'}; }
// scale / beta, exactly and without a division: scale itself, or its sign when |scale| > 1
fn score_alpha() -> f32 { return ${o.softcap ? 'sp.scale' : 'select(sign(sp.scale), sp.scale, abs(sp.scale) <= 1.0)'}; }
// x / beta without leaving the range where WGSL's division is accurate (|divisor| <= 2^126): on the
// H200 a division by beta = 1e38 gave 0. Both are scaled by 2^-64 first when beta is that large.
fn per_beta(x: f32, beta: f32) -> f32 { return select(x / beta, (x * 5.421011e-20) / (beta * 5.421011e-20), beta > 1.0e30); }

// Final score of query i / key j of sequence b, head h (i, j relative to the sequence), given
// qk = q·k (+ qRope·kRope); NO_SCORE when the pair is hidden.
${fn('final_score', true)}${o.mods?.scoreGrad ? `

// d(score function)/d(score) at the score it sees (natural units) of a visible pair: the backward's
// chain rule dL/ds = dL/ds' · m'(s)
${fn('score_mod_slope', true, true)}` : ''}${o.blockTable ? `

// The same on a key block no mask hides any pair of (block tables): no mask is read.
${fn('final_score_unmasked', false)}` : ''}`;
}

/** Window bounds for SCORE_PARAMS: Infinity clamped to 2^30 (keeps i32 arithmetic exact). */
export function windowParams(left: number, right: number): { win_left: number; win_right: number } {
  const clamp = (x: number) => (x === Infinity ? 2 ** 30 : Math.max(-(2 ** 30), Math.min(2 ** 30, x)));
  return { win_left: clamp(left), win_right: clamp(right) };
}
