// The CPU runner's small float32 kernels: RMSNorm, SwiGLU, RoPE. O(activations) work next to the
// matmuls and attention, which run on the CPU backend's worker pool (see ops.ts).
import type { RopeTable } from '../rope.js';
import { rotateRows } from '../../block/rope.js';

export function rmsNormRows(x: Float32Array, rows: number, cols: number, weight: Float32Array, eps: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let ss = 0;
    for (let i = 0; i < cols; i++) ss += x[base + i] * x[base + i];
    const inv = 1 / Math.sqrt(ss / cols + eps);
    for (let i = 0; i < cols; i++) out[base + i] = x[base + i] * inv * weight[i];
  }
  return out;
}

export function swigluInto(gate: Float32Array, up: Float32Array, out = new Float32Array(gate.length)): Float32Array {
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i];
    out[i] = (g / (1 + Math.exp(-g))) * up[i];
  }
  return out;
}

/**
 * Rotates every head of x, [T * B, heads * D] with row t * B + b, in place ("rotate half" pairs
 * (i, i + D/2)); row t uses table row t (position table.start + t).
 */
export function applyRope(x: Float32Array, batch: number, heads: number, D: number, table: RopeTable): void {
  rotateRows(x, table.count * batch, heads * D, 0, heads, D, table, (r) => Math.floor(r / batch));
}
