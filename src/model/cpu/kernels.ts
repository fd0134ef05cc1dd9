// Plain TypeScript float32 kernels of the CPU runner: linear layers, RMSNorm, SwiGLU, RoPE. They
// are single-threaded scalar code, kept simple and exact; the CPU backend's worker-pool WASM SIMD
// matmul replaces `linearRows` where it is present (see ops.ts).
import type { RopeTable } from '../rope.js';

/**
 * y[m, n] = sum_k x[m, k] w[n, k] (+ bias[n]) for x [M, K], w [N, K] (PyTorch [out, in] layout).
 * Four weight rows at a time, so each x row is read once per four outputs and each weight row
 * once per x row; for decode (M = 1) that streams the weights exactly once.
 */
export function linearRows(x: Float32Array, M: number, K: number, w: Float32Array, N: number, bias?: Float32Array, y = new Float32Array(M * N)): Float32Array {
  let n = 0;
  for (; n + 4 <= N; n += 4) {
    const w0 = n * K, w1 = w0 + K, w2 = w1 + K, w3 = w2 + K;
    for (let m = 0; m < M; m++) {
      const xr = m * K;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let k = 0; k < K; k++) {
        const xv = x[xr + k];
        s0 += xv * w[w0 + k];
        s1 += xv * w[w1 + k];
        s2 += xv * w[w2 + k];
        s3 += xv * w[w3 + k];
      }
      const yr = m * N + n;
      y[yr] = s0;
      y[yr + 1] = s1;
      y[yr + 2] = s2;
      y[yr + 3] = s3;
    }
  }
  for (; n < N; n++) {
    for (let m = 0; m < M; m++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
      y[m * N + n] = s;
    }
  }
  if (bias) for (let m = 0; m < M; m++) for (let j = 0; j < N; j++) y[m * N + j] += bias[j];
  return y;
}

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
  const half = D / 2;
  const rows = table.count * batch;
  for (let r = 0; r < rows; r++) {
    const t = Math.floor(r / batch);
    const cos = table.cos.subarray(t * half, (t + 1) * half);
    const sin = table.sin.subarray(t * half, (t + 1) * half);
    for (let h = 0; h < heads; h++) {
      const base = (r * heads + h) * D;
      for (let i = 0; i < half; i++) {
        const a = x[base + i];
        const b = x[base + i + half];
        x[base + i] = a * cos[i] - b * sin[i];
        x[base + i + half] = b * cos[i] + a * sin[i];
      }
    }
  }
}
