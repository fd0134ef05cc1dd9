// Issue 14's pairs forward kernel off the GPU (a subgroup pair per 16 query rows, each with half of
// the Q and O matrices): its configurations compile with Tint (Dawn's null backend) at D 64, 96,
// 128 and MLA's 192/128, fit the H200's 48 KiB, declare the workgroup memory the host counts in
// 16-byte units, and refuse what they do not implement (the 16-row kernel takes those calls). Head
// dims with an odd number of 16-column chunks never pass the prefetch's even split of the K/V
// tiles, so the two subgroups' halves are equal wherever the kernel runs. Its numbers are checked on the GPU (bench/gpu/forward-pairs.sh).
import { describe, expect, it } from 'vitest';
import { validateAttention } from '../dist/index.js';
import { makeCase } from '../dist/testing/index.js';
import { buildFlashSgMatrixPairs, pairsOptionsProblem, pairsWorkgroupBytes } from '../dist/ops/attention/webgpu/tiers/flash-sgmatrix-pairs-wgsl.js';
import { SG_MATRIX_PAIRS_CONFIGS, kernelOptionsOf, sgMatrixGrid, tierOptionsProblem, tierWorkgroupBytes } from '../dist/ops/attention/webgpu/tiers/sgmatrix.js';
import { tintErrors } from './tint.js';

const problemOf = (c: Parameters<typeof makeCase>[0]) => {
  const { q, k, v, options } = makeCase(c, 1);
  return validateAttention(q, k, v, options);
};
const PAIRS = SG_MATRIX_PAIRS_CONFIGS;
const PROBLEMS = {
  'D 64': problemOf({ dtype: 'float16', batch: 1, headsQ: 2, seqQ: 97, seqK: 97, dimQK: 64 }),
  'D 128 causal GQA LSE': problemOf({ dtype: 'float16', batch: 1, headsQ: 8, headsKv: 2, seqQ: 70, seqK: 90, dimQK: 128, causal: true, returnLse: true }),
  'D 64/128 top-left ALiBi': problemOf({ dtype: 'float16', batch: 2, headsQ: 2, seqQ: 60, seqK: 77, dimQK: 64, dimV: 128, alibi: true, returnLse: true, causal: 'top-left' }),
  'D 96 window': problemOf({ dtype: 'float16', batch: 1, headsQ: 2, seqQ: 50, seqK: 50, dimQK: 96, window: [7, 3] }),
  'D 192/128 causal (MLA, plain form)': problemOf({ dtype: 'float16', batch: 1, headsQ: 2, seqQ: 90, seqK: 90, dimQK: 192, dimV: 128, causal: true }),
};
const wgslBytes = (wgsl: string) => [...wgsl.matchAll(/var<workgroup>\s+\w+\s*:\s*([^;]+);/g)].map((m) => {
  const arr = /^array<(.+),\s*(\d+)>$/.exec(m[1].trim());
  const elem = arr ? arr[1].trim() : m[1].trim();
  const unit = elem === 'f16' ? 2 : elem.startsWith('vec4') ? 16 : elem.startsWith('vec2') ? 8 : 4;
  return unit * (arr ? Number(arr[2]) : 1);
});

describe('pairs tensor-core flash kernel (a subgroup pair per 16 query rows)', () => {
  it('compiles with Tint, fits 48 KiB and counts its workgroup memory as the host does', () => {
    expect(PAIRS.length).toBeGreaterThan(0);
    const sources: Record<string, string> = {};
    for (const [name, p] of Object.entries(PROBLEMS)) {
      for (const [ci, c] of PAIRS.entries()) {
        const o = kernelOptionsOf(p, c);
        if (tierOptionsProblem(o) || tierWorkgroupBytes(o) > 49152) continue;
        const wgsl = buildFlashSgMatrixPairs(o as never);
        const sizes = wgslBytes(wgsl);
        for (const bytes of sizes) expect(bytes % 16, `${name} config ${ci}`).toBe(0);
        expect(sizes.reduce((a, b) => a + b, 0), `${name} config ${ci}`).toBe(tierWorkgroupBytes(o));
        sources[`${name} config ${ci}`] = wgsl;
      }
    }
    // the D 128 call fits the first (8 subgroups, 32-key blocks): the one issue 14 times against the 16-row default
    expect(Object.keys(sources)).toContain('D 128 causal GQA LSE config 0');
    for (const name of Object.keys(PROBLEMS)) expect(Object.keys(sources).some((k) => k.startsWith(name)), name).toBe(true);
    const errors = tintErrors(sources, 'the pairs flash kernel');
    if (!errors) return;
    for (const [name, list] of Object.entries(errors)) expect(list, name).toEqual([]);
  });

  it('covers the query rows with 16 per pair in its grid (GQA packing included)', () => {
    const p = PROBLEMS['D 128 causal GQA LSE'];
    for (const c of PAIRS) {
      const o = kernelOptionsOf(p, c);
      if (tierOptionsProblem(o)) continue;
      const rowsPerHead = (8 * c.subgroups) / o.headsPerTile;
      expect(sgMatrixGrid(p, o)).toEqual([Math.ceil(70 / rowsPerHead), 8 / o.headsPerTile, 1]);
    }
  });

  it('refuses what it does not implement, so the 16-row kernel runs those calls', () => {
    const o = { ...kernelOptionsOf(PROBLEMS['D 64'], PAIRS[0]), rowPairs: true as const };
    expect(pairsOptionsProblem(o)).toBeUndefined();
    expect(pairsWorkgroupBytes(o) % 16).toBe(0);
    expect(pairsOptionsProblem({ ...o, dimRope: 64 })).toMatch(/MLA/);
    expect(pairsOptionsProblem({ ...o, subgroups: 1 })).toMatch(/pairs/);
    expect(pairsOptionsProblem({ ...o, prefetch: false })).toMatch(/prefetch/);
    expect(pairsOptionsProblem({ ...o, someFutureMask: true } as never)).toMatch(/does not implement option someFutureMask/);
    // the tier's softcap (tanh from exp2), dropout, masks and score functions stay on the 16-row kernel
    const softcap = problemOf({ dtype: 'float16', batch: 1, headsQ: 2, seqQ: 40, seqK: 40, dimQK: 64, softcap: 5 });
    expect(tierOptionsProblem(kernelOptionsOf(softcap, PAIRS[0]))).toMatch(/tanh/);
    const masked = problemOf({ dtype: 'float16', batch: 1, headsQ: 2, seqQ: 40, seqK: 40, dimQK: 64, mask: 'random' });
    expect(tierOptionsProblem(kernelOptionsOf(masked, PAIRS[0]))).toMatch(/score/);
    const dropout = problemOf({ dtype: 'float16', batch: 1, headsQ: 2, seqQ: 40, seqK: 40, dimQK: 64, dropout: 0.1 });
    expect(tierOptionsProblem(kernelOptionsOf(dropout, PAIRS[0]))).toMatch(/dropout/);
  });
});
