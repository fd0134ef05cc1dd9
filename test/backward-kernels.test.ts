// The CPU backward's element-wise WASM kernels against their scalar twins (backward/cpu/kernels.ts):
// bwd_probs on every row tail (cols 1..9, 61, 64), hidden scores (-inf), fully masked rows
// (lse = +inf), and the columns past `cols` left alone.
import { describe, expect, it } from 'vitest';
import { compileKernels, instantiateKernels, scalarKernels } from '../dist/ops/cpu-program.js';

describe('CPU backward kernels: WASM against the scalar twins', () => {
  // the WASM kernel rounds beta·S - lse to float32 before its exp (about 1 ulp): at arguments near
  // -10 that rounding alone is 6e-7 relative, hence 2e-6 (the scalar twin rounds only the product)
  it('bwd_probs: P = exp(beta·S - lse) within 2e-6, exact zeros where hidden, tails untouched', async () => {
    const memory = new WebAssembly.Memory({ initial: 4, maximum: 64, shared: true });
    const wasm = instantiateKernels(await compileKernels(true, 64, false), memory);
    const scalar = scalarKernels(memory);
    const f = new Float32Array(memory.buffer);
    const lds = 4 * 64;
    const rows = 5;
    const [tileA, tileB, lse] = [4096, 4096 + 8192, 4096 + 16384];
    for (const cols of [1, 2, 3, 4, 5, 6, 7, 8, 9, 61, 64]) {
      for (let r = 0; r < rows; r++) {
        f[(lse >> 2) + r] = r === 3 ? Infinity : 2 + r;
        for (let c = 0; c < 64; c++) {
          const s = c % 7 === 5 ? -Infinity : Math.sin(r * 31 + c) * 6;
          f[((tileA + r * lds) >> 2) + c] = s;
          f[((tileB + r * lds) >> 2) + c] = s;
        }
      }
      wasm.bwd_probs(tileA, lds, rows, cols, lse, 1.5);
      scalar.bwd_probs(tileB, lds, rows, cols, lse, 1.5);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < 64; c++) {
          const a = f[((tileA + r * lds) >> 2) + c];
          const b = f[((tileB + r * lds) >> 2) + c];
          if (c >= cols) {
            expect(a, `cols ${cols} row ${r} col ${c} untouched`).toBe(b);
          } else if (b === 0) {
            expect(a, `cols ${cols} row ${r} col ${c} exact zero`).toBe(0);
          } else {
            expect(Math.abs(a - b) / b, `cols ${cols} row ${r} col ${c}`).toBeLessThan(2e-6);
          }
        }
      }
    }
  });
});
