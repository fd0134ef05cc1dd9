// The tensor-core backward's dBias of a shared bias in partial planes (bias-planes.ts), and
// softcap() run as the softcap option there: how many planes a problem gets, that the kernel's
// ranges cover every folded (b, hk) pair once, the plan's grid, and the planes' sum on a GPU.
// The kernels themselves run on the H200 only (subgroup matrices): bench/gpu/backward-masks.sh
// checks them against float64 with and without FUSEDATTN_DBIAS_PLANES.
import { afterEach, describe, expect, it } from 'vitest';
import { Tensor, softcap, validateAttentionBackward } from '../dist/index.js';
import { makeCase } from '../dist/testing/index.js';
import { BIAS_PLANES_MAX_BYTES, biasPlanes, buildBiasPlanesSum } from '../dist/ops/attention/backward/webgpu/bias-planes.js';
import { buildSgBackwardKv } from '../dist/ops/attention/backward/webgpu/sgmatrix.wgsl.js';
import { sgBackwardOptionsOf, sgBackwardPlan, sgBackwardProblem, SG_BACKWARD_VARIANTS } from '../dist/ops/attention/backward/webgpu/sgmatrix.js';
import { runKernel, skipNotice } from './webgpu-helpers.js';

const LIMITS = { maxStorageBufferBindingSize: 2 ** 31, maxBufferSize: 2 ** 32, maxComputeWorkgroupsPerDimension: 65535, maxComputeWorkgroupStorageSize: 49152, maxStorageBuffersPerShaderStage: 16, minStorageBufferOffsetAlignment: 256 };

afterEach(() => { delete process.env.FUSEDATTN_DBIAS_PLANES; });

/** The kernel's ranges (sgmatrix.wgsl.ts foldKvAxes): plane g walks [g·per, min(F, (g+1)·per)). */
function ranges(folded: number, planes: number): Array<[number, number]> {
  const per = Math.ceil(folded / planes);
  return Array.from({ length: planes }, (_, g) => [g * per, Math.min(folded, (g + 1) * per)] as [number, number]);
}

describe('dBias partial planes', () => {
  it('cover every folded pair once, in order, with no empty plane, up to the grid target and the memory cap', () => {
    for (let folded = 1; folded <= 40; folded++) {
      for (let workgroups = 1; workgroups <= 1100; workgroups += 37) {
        const planes = biasPlanes({ folded, workgroups, elements: 4096 }, LIMITS);
        expect(planes).toBeGreaterThanOrEqual(1);
        expect(planes).toBeLessThanOrEqual(folded);
        if (planes === 1) continue;
        const r = ranges(folded, planes);
        expect(r[0][0]).toBe(0);
        for (let g = 1; g < planes; g++) expect(r[g][0]).toBe(r[g - 1][1]);
        expect(r[planes - 1][1]).toBe(folded);
        for (const [lo, hi] of r) expect(hi, `F ${folded} P ${planes}`).toBeGreaterThan(lo);
        // planes stop where the grid reaches the target
        expect((planes - 1) * workgroups).toBeLessThan(1024);
      }
    }
    // a full grid needs none; one pair folds nothing
    expect(biasPlanes({ folded: 32, workgroups: 2048, elements: 4096 }, LIMITS)).toBe(1);
    expect(biasPlanes({ folded: 1, workgroups: 1, elements: 4096 }, LIMITS)).toBe(1);
    // the memory cap: planes x elements x 4 bytes within 256 MiB (and the device's binding limit)
    const elements = 2048 * 2048;
    expect(biasPlanes({ folded: 64, workgroups: 32, elements }, LIMITS)).toBe(BIAS_PLANES_MAX_BYTES / (4 * elements));
    expect(biasPlanes({ folded: 64, workgroups: 32, elements }, { ...LIMITS, maxStorageBufferBindingSize: 3 * 4 * elements })).toBe(3);
    // FUSEDATTN_DBIAS_PLANES caps them (1: the fold alone), a bad value is the variable's ValueError
    process.env.FUSEDATTN_DBIAS_PLANES = '4';
    expect(biasPlanes({ folded: 10, workgroups: 32, elements: 4096 }, LIMITS)).toBe(4);
    process.env.FUSEDATTN_DBIAS_PLANES = '1';
    expect(biasPlanes({ folded: 10, workgroups: 32, elements: 4096 }, LIMITS)).toBe(1);
    process.env.FUSEDATTN_DBIAS_PLANES = 'many';
    expect(() => biasPlanes({ folded: 10, workgroups: 32, elements: 4096 }, LIMITS)).toThrow(/FUSEDATTN_DBIAS_PLANES/);
  });

  const bp = (c: Parameters<typeof makeCase>[0], extra: Record<string, unknown> = {}) => {
    const { q, k, v, options } = makeCase(c, 1);
    Object.assign(options, extra);
    const outShape = [c.batch, c.headsQ, c.seqQ, c.dimV ?? c.dimQK];
    const size = outShape.reduce((a, b) => a * b, 1);
    const out = Tensor.fromData(new Uint16Array(size), outShape, 'float16');
    const lse = Tensor.fromData(new Float32Array(c.batch * c.headsQ * c.seqQ), [c.batch, c.headsQ, c.seqQ]);
    return validateAttentionBackward(q, k, v, out, out, lse, options);
  };
  const fakeRuntime = { limits: LIMITS, pipeline: async () => ({}) };
  const config = SG_BACKWARD_VARIANTS['p8h-qp8b32'];

  it('plan a shared bias\'s dBias over the planes, along the folded axis', async () => {
    // [Sq, Sk] shared by a batch of 3 and 2 KV heads (GQA 4/2): 6 pairs, a plane each, added (the group shares)
    const shared = bp({ dtype: 'float16', batch: 3, headsQ: 4, headsKv: 2, seqQ: 64, seqK: 100, dimQK: 64, bias: 'random', maskShape: '2d' }, { biasGrad: true });
    const plan = await sgBackwardPlan(fakeRuntime as never, shared, config);
    expect(plan.kv.grid).toEqual([Math.ceil(100 / 64), 1, 6]);
    expect(plan.biasPlanes).toEqual({ planes: 6, elements: 64 * 100 });
    process.env.FUSEDATTN_DBIAS_PLANES = '4';
    const capped = await sgBackwardPlan(fakeRuntime as never, shared, config);
    expect(capped.kv.grid).toEqual([2, 1, 3]);
    expect(capped.biasPlanes).toEqual({ planes: 3, elements: 6400 });
    process.env.FUSEDATTN_DBIAS_PLANES = '1';
    const folded = await sgBackwardPlan(fakeRuntime as never, shared, config);
    expect(folded.kv.grid).toEqual([2, 1, 1]);
    expect(folded.biasPlanes).toBeUndefined();
    delete process.env.FUSEDATTN_DBIAS_PLANES;
    // a [B, 1, 1, Sk] padding bias with 2 KV heads: heads fold, planes along y, the batch stays on z
    const padding = bp({ dtype: 'float16', batch: 2, headsQ: 4, headsKv: 2, seqQ: 64, seqK: 64, dimQK: 64, bias: 'random', maskShape: 'keys' }, { biasGrad: true });
    const rows = await sgBackwardPlan(fakeRuntime as never, padding, config);
    expect(rows.kv.grid).toEqual([1, 2, 2]);
    expect(rows.biasPlanes).toEqual({ planes: 2, elements: 2 * 64 });
    // the kernel of the first: ranges along z, the plane stride from the uniform, adds (the group shares)
    const wgsl = buildSgBackwardKv({ ...sgBackwardOptionsOf(shared, config.kv), biasGrad: { rowsBroadcast: false, foldBatch: true, foldHeads: true, planes: 6 } });
    expect(wgsl).toContain('let plane = wg.z;');
    expect(wgsl).toContain('let plane_base = plane * params.lse_strides.w;');
    expect(wgsl).toMatch(/grad_bias\[plane_base \+ b \* gs\.x[^\]]*\] \+= ds/);
    // no fold, no planes: the grid and kernel as before
    const full = bp({ dtype: 'float16', batch: 2, headsQ: 2, seqQ: 64, seqK: 64, dimQK: 64, bias: 'random', maskShape: 'full' }, { biasGrad: true });
    const own = await sgBackwardPlan(fakeRuntime as never, full, config);
    expect(own.kv.grid).toEqual([1, 2, 2]);
    expect(own.biasPlanes).toBeUndefined();
  });

  it('run softcap() as the softcap option with the function\'s rule on this tier', async () => {
    const call = bp({ dtype: 'float16', batch: 1, headsQ: 2, seqQ: 64, seqK: 64, dimQK: 64, causal: true }, { scoreMod: softcap(20) });
    const split = sgBackwardProblem(call);
    expect(split.forward.softcap).toBe(20);
    expect(split.forward.softcapRule).toBe('function');
    expect(split.forward.mods).toBeUndefined();
    const o = sgBackwardOptionsOf(split, config.kv);
    expect(o).toMatchObject({ softcap: true, softcapFunction: true });
    expect(o.mods).toBeUndefined();
    // the plan binds the rewritten problem's uniforms
    const plan = await sgBackwardPlan(fakeRuntime as never, call, config);
    expect(plan.forward?.softcap).toBe(20);
    // a call without softcap() is planned as it is
    const plain = bp({ dtype: 'float16', batch: 1, headsQ: 2, seqQ: 64, seqK: 64, dimQK: 64, causal: true });
    expect(sgBackwardProblem(plain)).toBe(plain);
    expect((await sgBackwardPlan(fakeRuntime as never, plain, config)).forward).toBeUndefined();
  });
});

const skip = await skipNotice('the dBias planes\' sum on WebGPU');
describe.skipIf(skip !== undefined)('dBias planes\' sum on WebGPU', () => {
  it('adds the planes in plane order, element by element', async () => {
    const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
    const runtime = await getRuntime();
    const planes = 5;
    const elements = 1000 + 37;
    const part = Float32Array.from({ length: planes * elements }, (_, i) => Math.sin(i * 1.7) * 100);
    const uniform = new Uint32Array([elements, planes, 0, 0]).buffer;
    const [, , total] = await runKernel(runtime.device, buildBiasPlanesSum(), [{ uniform }, { read: part }, { write: elements }], [Math.ceil(elements / 256)]);
    for (let e = 0; e < elements; e++) {
      let s = Math.fround(0);
      for (let g = 0; g < planes; g++) s = Math.fround(s + part[g * elements + e]);
      expect(total[e], `element ${e}`).toBe(s);
    }
  });
});
