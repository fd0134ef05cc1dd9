// The unfused block on the CPU, the HF eager sequence: each GEMM is a pool job (the same WASM SIMD
// matmul the fused path uses), each other step a whole-tensor pass on the calling thread:
//   q/k/v projections + bias adds -> transposes to [B, N, S, D] -> RoPE on q, k -> cache append and
//   gather -> repeat-KV -> scores = q kᵀ -> scale + causal mask -> softmax -> P v -> transpose back
//   -> O projection (+ bias).
import { cpuEngine } from '../../ops/cpu-engine.js';
import { cpuMatmul } from '../../ops/gemm/cpu/index.js';
import { Tensor } from '../../core/tensor.js';
import { ropeTable } from '../rope.js';
import type { BlockCall } from '../shape.js';
import type { BlockResult } from '../stats.js';
import type { BlockSpec } from '../config.js';
import { type CpuWeights, oProjection } from './weights.js';
import { CpuTally } from './tally.js';

type Strides = readonly [number, number, number, number];

/** dst[i0, i1, i2, i3] = src[i0, i1 / div1, i2, i3] through element strides (a transpose or a repeat). */
function copy4d(dims: Strides, src: Float32Array, srcOff: number, ss: Strides, dst: Float32Array, dstOff: number, ds: Strides, div1 = 1): void {
  for (let a = 0; a < dims[0]; a++) {
    for (let b = 0; b < dims[1]; b++) {
      for (let c = 0; c < dims[2]; c++) {
        const si = srcOff + a * ss[0] + Math.floor(b / div1) * ss[1] + c * ss[2];
        const di = dstOff + a * ds[0] + b * ds[1] + c * ds[2];
        for (let d = 0; d < dims[3]; d++) dst[di + d * ds[3]] = src[si + d * ss[3]];
      }
    }
  }
}

export async function unfusedCpu(spec: BlockSpec, w: CpuWeights, call: BlockCall): Promise<BlockResult> {
  const engine = await cpuEngine();
  const { heads: Nq, kvHeads: Nkv, headDim: D, hidden: H, group } = spec;
  const { rows, batch: B, seq: S } = call;
  const keys = call.cacheKeys?.data as Float32Array | undefined;
  const values = call.cacheValues?.data as Float32Array | undefined;
  const L = keys ? call.start + S : S;
  const qd = Nq * D;
  const kvd = Nkv * D;
  const tally = new CpuTally();
  const x = call.x.toFloat32();

  // 1. projections + bias adds
  const project = async (weight: Float32Array, bias: Float32Array | undefined, n: number, name: string) => {
    const y = tally.alloc(rows * n);
    await cpuMatmul(engine, { m: rows, n, k: H, a: { data: x, rowStride: H }, b: { data: weight, rowStride: H }, transposeB: true, out: { data: y, rowStride: n } });
    tally.step(`${name}-proj`);
    if (bias) {
      for (let r = 0; r < rows; r++) for (let c = 0; c < n; c++) y[r * n + c] += bias[c];
      tally.step(`${name}-bias`);
    }
    return y;
  };
  const q = await project(w.q, w.qBias, qd, 'q');
  const k = await project(w.k, w.kBias, kvd, 'k');
  const v = await project(w.v, w.vBias, kvd, 'v');

  // 2. [rows, N*D] -> [B, N, S, D]
  const contiguous = (n: number, s: number): Strides => [n * s * D, s * D, D, 1];
  const rowMajor = (width: number): Strides => [call.rowStrideB * width, D, call.rowStrideS * width, 1];
  const transpose = (src: Float32Array, n: number, name: string) => {
    const t = tally.alloc(B * n * S * D);
    copy4d([B, n, S, D], src, 0, rowMajor(n * D), t, 0, contiguous(n, S));
    tally.step(`${name}-transpose`);
    return t;
  };
  const qT = transpose(q, Nq, 'q');
  const kT = transpose(k, Nkv, 'k');
  const vT = transpose(v, Nkv, 'v');

  // 3. RoPE on q and k
  const table = ropeTable(spec.rope, D, call.start, S);
  const half = D / 2;
  for (const [t, n, name] of [[qT, Nq, 'q'], [kT, Nkv, 'k']] as const) {
    for (let row = 0; row < B * n * S; row++) {
      const s = row % S;
      const base = row * D;
      for (let i = 0; i < half; i++) {
        const c = table.cos[s * half + i];
        const sn = table.sin[s * half + i];
        const x1 = t[base + i];
        const x2 = t[base + i + half];
        t[base + i] = x1 * c - x2 * sn;
        t[base + i + half] = x2 * c + x1 * sn;
      }
    }
    tally.step(`${name}-rope`);
  }

  // 4. KV cache: append, then gather every position as [B, Nkv, L, D]
  let kAll = kT;
  let vAll = vT;
  if (keys && values) {
    const cacheStrides: Strides = [kvd, D, B * kvd, 1];
    const at = call.start * B * kvd;
    copy4d([B, Nkv, S, D], kT, 0, contiguous(Nkv, S), keys, at, cacheStrides);
    tally.step('k-cache-append');
    copy4d([B, Nkv, S, D], vT, 0, contiguous(Nkv, S), values, at, cacheStrides);
    tally.step('v-cache-append');
    kAll = tally.alloc(B * Nkv * L * D);
    vAll = tally.alloc(B * Nkv * L * D);
    copy4d([B, Nkv, L, D], keys, 0, cacheStrides, kAll, 0, contiguous(Nkv, L));
    tally.step('k-cache-gather');
    copy4d([B, Nkv, L, D], values, 0, cacheStrides, vAll, 0, contiguous(Nkv, L));
    tally.step('v-cache-gather');
  }

  // 5. repeat-KV
  if (group > 1) {
    const kR = tally.alloc(B * Nq * L * D);
    const vR = tally.alloc(B * Nq * L * D);
    copy4d([B, Nq, L, D], kAll, 0, contiguous(Nkv, L), kR, 0, contiguous(Nq, L), group);
    tally.step('k-repeat');
    copy4d([B, Nq, L, D], vAll, 0, contiguous(Nkv, L), vR, 0, contiguous(Nq, L), group);
    tally.step('v-repeat');
    kAll = kR;
    vAll = vR;
  }

  // 6. scores, scale + mask, softmax, P v
  const heads = B * Nq;
  const scores = tally.alloc(heads * S * L);
  await cpuMatmul(engine, {
    batch: heads, m: S, n: L, k: D,
    a: { data: qT, rowStride: D, batchStride: S * D },
    b: { data: kAll, rowStride: D, batchStride: L * D },
    transposeB: true,
    out: { data: scores, rowStride: L, batchStride: S * L },
  });
  tally.step('qk-matmul');
  const past = keys ? call.start : 0;
  for (let hs = 0; hs < heads * S; hs++) {
    const i = hs % S;
    const base = hs * L;
    for (let j = 0; j < L; j++) scores[base + j] = j > past + i ? -Infinity : scores[base + j] * spec.scale;
  }
  tally.step('scale-mask');
  for (let hs = 0; hs < heads * S; hs++) {
    const base = hs * L;
    let max = -Infinity;
    for (let j = 0; j < L; j++) max = Math.max(max, scores[base + j]);
    let sum = 0;
    for (let j = 0; j < L; j++) {
      const e = Math.exp(scores[base + j] - max);
      scores[base + j] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let j = 0; j < L; j++) scores[base + j] *= inv;
  }
  tally.step('softmax');
  const pv = tally.alloc(heads * S * D);
  await cpuMatmul(engine, {
    batch: heads, m: S, n: D, k: L,
    a: { data: scores, rowStride: L, batchStride: S * L },
    b: { data: vAll, rowStride: D, batchStride: L * D },
    out: { data: pv, rowStride: D, batchStride: S * D },
  });
  tally.step('pv-matmul');

  // 7. back to rows, O projection
  const attn = tally.alloc(rows * qd);
  copy4d([B, Nq, S, D], pv, 0, contiguous(Nq, S), attn, 0, rowMajor(qd));
  tally.step('out-transpose');
  const out = await oProjection(engine, spec, w, attn, rows, tally, 'o-proj');
  return { out: Tensor.fromData(out, call.x.shape, 'float32'), stats: tally.stats('unfused') };
}
