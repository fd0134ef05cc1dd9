// The decode GEMV (src/ops/gemm/webgpu/gemv.wgsl.ts) on the adapter here (Mesa llvmpipe in CI)
// against float64 sums: float32 and float16 weights, 16-byte and scalar loads, 1..8 rows, bias,
// the accumulate (residual) and pair (SwiGLU) epilogues, a weight part writing its columns; row
// lengths of real models too (issue 8 was a float16 indexing bug only long rows reach).
import { describe, expect, it } from 'vitest';
import { floatsToHalf, halfToFloats } from '../dist/index.js';
import { normal, randomFloats, uniform } from '../dist/testing/index.js';
import { backendsHere } from './helpers.js';
import { expectClose } from './model-helpers.js';

const webgpu = (await backendsHere()).find((b) => b.name === 'webgpu')!;
if (webgpu.skip) console.warn(`\n!!! SKIPPING the GEMV kernel tests: ${webgpu.skip}\n`);

const gauss = normal(uniform(71));
const rand = (n: number, scale = 1) => randomFloats(n, gauss, scale);

describe.skipIf(webgpu.skip !== undefined)('decode GEMV on WebGPU vs float64', async () => {
  const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
  const { queueGemv } = await import('../dist/ops/gemm/webgpu/gemv.js');
  const runtime = await getRuntime();

  const cases = [
    { name: 'f32, vec, 1 row, bias', dtype: 'float32', rows: 1, n: 75, k: 96, bias: true },
    { name: 'f32, scalar (K 37), 3 rows', dtype: 'float32', rows: 3, n: 40, k: 37 },
    { name: 'f16, vec (K 64), 8 rows, bias, accumulate', dtype: 'float16', rows: 8, n: 33, k: 64, bias: true, accumulate: true },
    { name: 'f16, scalar (K 30), 2 rows, pair (SwiGLU)', dtype: 'float16', rows: 2, n: 21, k: 30, pair: true },
    { name: 'f32, vec, long rows (K 1000), pair with biases, a part at column 5 of 30', dtype: 'float32', rows: 1, n: 25, k: 1000, pair: true, bias: true, outCol: 5, outStride: 30 },
    { name: 'RMSNorm fused: f32, vec, 3 rows, bias', dtype: 'float32', rows: 3, n: 50, k: 96, bias: true, norm: true },
    { name: 'RMSNorm fused: f16 weights and norm weight, vec, pair, accumulate', dtype: 'float16', rows: 2, n: 19, k: 64, pair: true, accumulate: true, norm: true },
    { name: 'RMSNorm fused: f32, scalar (K 45), 1 row', dtype: 'float32', rows: 1, n: 7, k: 45, norm: true },
    // real model widths (issue 8): K of Qwen2-0.5B / 1.5B and Llama-3.2-1B projections, where each
    // thread's 4-load loop runs (the tiny K above never enter it for float16 halves)
    { name: 'real width: f16, vec, K 896 (Qwen2-0.5B hidden), 1 row, bias', dtype: 'float16', rows: 1, n: 40, k: 896, bias: true },
    { name: 'real width: f16, vec, K 896, RMSNorm fused, pair (SwiGLU), 2 rows', dtype: 'float16', rows: 2, n: 24, k: 896, norm: true, pair: true },
    { name: 'real width: f16, vec, K 2048 (Llama-3.2-1B hidden), RMSNorm fused, accumulate', dtype: 'float16', rows: 1, n: 33, k: 2048, norm: true, accumulate: true },
    { name: 'real width: f16, vec, K 4864 (Qwen2-0.5B intermediate), accumulate, 3 rows', dtype: 'float16', rows: 3, n: 17, k: 4864, accumulate: true },
    { name: 'real width: f16, vec, K 8960 (Qwen2-1.5B intermediate), bias, a part at column 7 of 30', dtype: 'float16', rows: 1, n: 20, k: 8960, bias: true, outCol: 7, outStride: 30 },
    { name: 'real width: f16, scalar (K 1001), pair with biases, 2 rows', dtype: 'float16', rows: 2, n: 9, k: 1001, pair: true, bias: true },
    { name: 'real width: f32, vec, K 896, RMSNorm fused, pair', dtype: 'float32', rows: 1, n: 21, k: 896, norm: true, pair: true },
    { name: 'real width: f32, vec, K 1536 (Qwen2-1.5B hidden), bias, 2 rows', dtype: 'float32', rows: 2, n: 15, k: 1536, bias: true },
    { name: 'real width: f32, vec, K 8192 (Llama-3.2-1B intermediate), accumulate, 8 rows', dtype: 'float32', rows: 8, n: 11, k: 8192, accumulate: true },
  ] as const;

  it('the real-width cases run every 16-byte path through its 4-loads-per-thread loop', async () => {
    const { gemvOptions } = await import('../dist/ops/gemm/webgpu/gemv.js');
    // a lane enters the loop when its chunk c + 3 * TPR is still inside the row (c = lane < TPR)
    const enters = (dtype: 'float16' | 'float32', k: number) => {
      const o = gemvOptions(runtime, { rows: 1, weight: { buffer: undefined as never, dtype, rows: 1, k } });
      return o.vec && k / (dtype === 'float16' ? 8 : 4) > 3 * o.threadsPerColumn;
    };
    const vecCases = cases.filter((c) => c.name.startsWith('real width') && c.k % 8 === 0);
    for (const dtype of ['float16', 'float32'] as const) {
      expect(vecCases.some((c) => c.dtype === dtype && enters(dtype, c.k))).toBe(true);
      expect(vecCases.some((c) => c.dtype === dtype && 'norm' in c && enters(dtype, c.k))).toBe(true);
    }
  });
  for (const c of cases) {
    it(c.name, async () => {
      const { rows, n, k } = c;
      const outStride = 'outStride' in c ? c.outStride : n;
      const outCol = 'outCol' in c ? c.outCol : 0;
      const x = rand(rows * k);
      const normed = 'norm' in c && c.norm;
      const normW = rand(k, 0.2).map((v) => 1 + v);
      const normHost = c.dtype === 'float16' ? halfToFloats(floatsToHalf(normW)) : normW;
      // the row the projection sees: RMSNorm(x) * weight with eps 1e-6 when fused
      const xs = x.map((v, i) => {
        if (!normed) return v;
        const m = Math.floor(i / k);
        let ss = 0;
        for (let kk = 0; kk < k; kk++) ss += x[m * k + kk] ** 2;
        return (v / Math.sqrt(ss / k + 1e-6)) * normHost[i % k];
      });
      const make = () => {
        const w = rand(n * k, 1 / Math.sqrt(k));
        return c.dtype === 'float16' ? { host: halfToFloats(floatsToHalf(w)), gpu: floatsToHalf(w) } : { host: w, gpu: w };
      };
      const w = make();
      const w2 = make();
      const bias = rand(outStride, 0.5);
      const bias2 = rand(outStride, 0.5);
      const before = rand(rows * outStride);
      const want = new Float64Array(rows * outStride);
      for (let m = 0; m < rows; m++) {
        for (let j = 0; j < outStride; j++) want[m * outStride + j] = before[m * outStride + j];
        for (let i = 0; i < n; i++) {
          let y = 0;
          let u = 0;
          for (let kk = 0; kk < k; kk++) {
            y += xs[m * k + kk] * w.host[i * k + kk];
            u += xs[m * k + kk] * w2.host[i * k + kk];
          }
          const col = outCol + i;
          if ('bias' in c && c.bias) { y += bias[col]; u += bias2[col]; }
          if ('pair' in c && c.pair) y = (y / (1 + Math.exp(-y))) * u;
          want[m * outStride + col] = 'accumulate' in c && c.accumulate ? want[m * outStride + col] + y : y;
        }
      }
      const out = runtime.upload(before, 'out');
      const wb = runtime.upload(w.gpu, 'w');
      const call = {
        x: runtime.upload(x, 'x'), rows, weight: { buffer: wb, dtype: c.dtype, rows: n, k }, out, outStride, outCol, label: 'gemv',
        bias: 'bias' in c && c.bias ? { buffer: runtime.upload(bias, 'b'), dtype: 'float32' as const } : undefined,
        accumulate: 'accumulate' in c ? c.accumulate : false,
        pair: 'pair' in c && c.pair ? { weight: runtime.upload(w2.gpu, 'w2'), bias: 'bias' in c && c.bias ? runtime.upload(bias2, 'b2') : undefined } : undefined,
        norm: normed ? { buffer: runtime.upload(c.dtype === 'float16' ? floatsToHalf(normW) : normW, 'norm'), dtype: c.dtype, eps: 1e-6 } : undefined,
      };
      await queueGemv(runtime, call);
      const got = new Float32Array(await runtime.read(out, 0, rows * outStride * 4));
      expectClose(c.name, got, want, 2e-6);
      for (const b of [call.x, wb, out, call.bias?.buffer, call.pair?.weight, call.pair?.bias, call.norm?.buffer]) runtime.release(b);
    });
  }

  it('refuses more rows than it is built for', async () => {
    const b = runtime.upload(new Float32Array(16), 'b');
    await expect(queueGemv(runtime, { x: b, rows: 9, weight: { buffer: b, dtype: 'float32', rows: 1, k: 4 }, out: b, label: 'x' })).rejects.toThrow(/rows/);
    runtime.release(b);
  });
});
