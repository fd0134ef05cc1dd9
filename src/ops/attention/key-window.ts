// The key window of attention calls, a module of its own: the problem (problem.ts) and the block
// mask's window part (block-mask/window-part.ts) both need it, and problem.ts imports the block mask.

/**
 * Key window of each query: query i of sequence b sees key j iff
 *   diag(b) + i - left <= j <= diag(b) + i + right,
 * where diag(b) = Sk_b - Sq_b (bottom-right) or 0 (top-left). left/right may be Infinity
 * (unbounded) or negative (CANN bands that exclude the diagonal). No causal and no window is
 * { left: Infinity, right: Infinity }.
 */
export interface KeyWindow {
  readonly left: number;
  readonly right: number;
  readonly align: 'bottom-right' | 'top-left';
}
