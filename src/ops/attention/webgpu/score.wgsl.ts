// The score of one (query i, key j) pair after q·k, shared by the flash kernel and the naive
// path's QKᵀ epilogue so both apply the options in the same order as the reference:
//   window / bool mask -> hidden;  s = scale·qk;  softcap: s = c·tanh(s/c);  + bias;  - ALiBi.
// A hidden pair, or a score of -inf from the bias, comes back as the finite sentinel NO_SCORE.
import { NO_SCORE, type FloatDType, arrayElement, loadByte, loadFloat, readBinding } from '../../../engines/webgpu/wgsl.js';
import { UniformLayout } from '../../../engines/webgpu/uniforms.js';

export interface ScoreOptions {
  /** Bool/uint8 keep-mask present. */
  mask: boolean;
  /** dtype of the additive bias, or 'none'. */
  bias: FloatDType | 'none';
  alibi: boolean;
  softcap: boolean;
  /** A causal/sliding window is set (else every key is in range). */
  windowed: boolean;
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
}

/** Declarations (struct, bindings, loaders) and `fn final_score(...)`. */
export function buildScoreFunction(o: ScoreOptions, at: ScoreBindings): string {
  const decl: string[] = [SCORE_PARAMS.wgsl(), `@group(${at.group}) @binding(${at.params}) var<uniform> sp: ScoreParams;`];
  if (o.mask) decl.push(readBinding(at.mask, 'mask_buf', 'u32', at.group), loadByte('mask_at', 'mask_buf'));
  if (o.bias !== 'none') decl.push(readBinding(at.bias, 'bias_buf', arrayElement(o.bias), at.group), loadFloat('bias_at', 'bias_buf', o.bias));

  const body: string[] = [];
  if (o.windowed) {
    body.push(
      'let diag = select(0, i32(sk) - i32(sq), sp.bottom_right != 0u);',
      'let rel = i32(j) - i32(i) - diag;',
      'if (rel < -sp.win_left || rel > sp.win_right) { return NO_SCORE; }',
    );
  }
  if (o.mask) {
    body.push(
      'let ms = sp.mask_strides;',
      'if (mask_at(sp.mask_off + b * ms.x + h * ms.y + i * ms.z + j * ms.w) == 0u) { return NO_SCORE; }',
    );
  }
  body.push('var s = qk * sp.scale;');
  // clamp: tanh of a large argument is (inf/inf) = NaN on some drivers; tanh(15) is 1 in f32
  if (o.softcap) body.push('s = sp.softcap * tanh(clamp(s / sp.softcap, -15.0, 15.0));');
  if (o.bias !== 'none') {
    body.push('let bs = sp.bias_strides;', 's = s + bias_at(sp.bias_off + b * bs.x + h * bs.y + i * bs.z + j * bs.w);');
  }
  if (o.alibi) body.push('s = s - slope * abs(f32(i32(i) + i32(sk) - i32(sq) - i32(j)));');
  body.push('// -inf from the bias (or anything not above the sentinel) means hidden', 'if (!(s > NO_SCORE)) { return NO_SCORE; }', 'return s;');

  return `${decl.join('\n')}

const NO_SCORE: f32 = ${NO_SCORE};

// Final score of query i / key j of sequence b, head h (i, j relative to the sequence), given
// qk = q·k (+ qRope·kRope); NO_SCORE when the pair is hidden.
fn final_score(qk: f32, b: u32, h: u32, i: u32, j: u32, sq: u32, sk: u32, slope: f32) -> f32 {
${body.map((line) => `  ${line}`).join('\n')}
}`;
}

/** Window bounds for SCORE_PARAMS: Infinity clamped to 2^30 (keeps i32 arithmetic exact). */
export function windowParams(left: number, right: number): { win_left: number; win_right: number } {
  const clamp = (x: number) => (x === Infinity ? 2 ** 30 : Math.max(-(2 ** 30), Math.min(2 ** 30, x)));
  return { win_left: clamp(left), win_right: clamp(right) };
}
