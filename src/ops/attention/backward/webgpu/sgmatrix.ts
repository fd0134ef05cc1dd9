// Host side of the tensor-core backward tier (subgroup-matrix f16): which adapters and problems it
// takes (a reason when not, so the chooser falls back to the portable tier), its tunable
// configurations, and the plan (kv and q pipelines, grids) the shared backward host runs.
import type { GpuRuntime } from '../../../../engines/webgpu/runtime.js';
import { defineKernel } from '../../../../engines/webgpu/runtime.js';
import { bindingBytes, elementBaseOf } from '../../../../engines/webgpu/operands.js';
import type { Tensor } from '../../../../core/tensor.js';
import { type TierDevice, sgMatrixAdapterUnsupported } from '../../webgpu/tiers/sgmatrix.js';
import type { BackwardProblem } from '../problem.js';
import { type SgBackwardOptions, buildSgBackwardKv, buildSgBackwardQ, sgBackwardOptionsProblem, sgBackwardWorkgroupBytes } from './sgmatrix.wgsl.js';
import type { BackwardKernelPlan } from './portable.js';

export const sgBackwardKvKernel = defineKernel<SgBackwardOptions>('attention-backward-kv-sgmatrix', buildSgBackwardKv);
export const sgBackwardQKernel = defineKernel<SgBackwardOptions>('attention-backward-q-sgmatrix', buildSgBackwardQ);

/** The tunable part: subgroups and block of each kernel. */
export interface SgBackwardConfig {
  kv: { subgroups: number; block: number; hoist?: boolean; singleP?: boolean };
  q: { subgroups: number; block: number; reverse?: boolean };
}

/**
 * Candidates, the first that fits being the default; the autotuner times the first four that fit.
 * Measured on the H200 (2026-12-02, fourth session, bench/gpu/backward-tc.sh, B4 H32 S4096 D128 f16
 * causal): the dK/dV kernel with K_s and V_s held in left matrices and one P buffer (hoist, singleP)
 * at 4 subgroups takes 26.7 ms where the old 2-subgroup layout took 60.6 (the whole backward 82.1 ->
 * 49.8 ms); at MLA 192/128 its 16-row blocks 9.0 against 25.1 ms. Holding K_s/V_s frees the K and V
 * tiles from workgroup memory, so twice the subgroups fit; at 2 subgroups hoisting alone was slower
 * (70.2 ms: the registers cost more than the loads they save). The q kernel's 4 × 16 stays (2 × 32
 * where Dq 192 leaves no room); running its workgroups longest rows first (reverse) measured slower.
 */
export const SG_BACKWARD_CONFIGS: readonly SgBackwardConfig[] = [
  { kv: { subgroups: 4, block: 32, hoist: true, singleP: true }, q: { subgroups: 4, block: 16 } },
  { kv: { subgroups: 4, block: 16, hoist: true, singleP: true }, q: { subgroups: 2, block: 32 } },
  { kv: { subgroups: 4, block: 32, hoist: true, singleP: true }, q: { subgroups: 2, block: 32 } },
  { kv: { subgroups: 2, block: 32 }, q: { subgroups: 4, block: 16 } },
  { kv: { subgroups: 2, block: 16 }, q: { subgroups: 2, block: 32 } },
  { kv: { subgroups: 4, block: 16 }, q: { subgroups: 2, block: 64 } },
  { kv: { subgroups: 1, block: 32 }, q: { subgroups: 4, block: 32 } },
  { kv: { subgroups: 1, block: 16 }, q: { subgroups: 1, block: 16 } },
];

/**
 * Named layouts bench/gpu/backward-tc.sh checks against float64 and times per pass in one GPU call:
 * the defaults above beside the layout they replaced, so a change shows its own before/after.
 */
export const SG_BACKWARD_VARIANTS: Readonly<Record<string, SgBackwardConfig>> = {
  'old': { kv: { subgroups: 2, block: 32 }, q: { subgroups: 4, block: 16 } },
  'hoist4': SG_BACKWARD_CONFIGS[0],
  'hoist4b16q2': SG_BACKWARD_CONFIGS[1],
  'hoist4q2': SG_BACKWARD_CONFIGS[2],
};

/**
 * Whether every input can be read 8 halves at a time: head dims multiples of 8, and each element
 * offset (where a GPU tensor starts inside its binding included) and (b, h, s) stride too.
 */
export function vectorLoadsFit(bp: BackwardProblem, offsetAlignment: number): boolean {
  const p = bp.forward;
  if (p.dimQK % 8 || p.dimRope % 8 || p.dimV % 8) return false;
  const views: Array<[Tensor, number, { b: number; h: number; s: number }]> = [];
  for (const v of [p.q, p.k, p.v, p.qRope, p.kRope]) if (v) views.push([v.tensor, v.offset, v.strides]);
  views.push([bp.dOut, 0, p.outStrides]);
  return views.every(([t, offset, st]) => (offset + elementBaseOf(t, offsetAlignment)) % 8 === 0 && st.b % 8 === 0 && st.h % 8 === 0 && st.s % 8 === 0);
}

export function sgBackwardOptionsOf(bp: BackwardProblem, part: SgBackwardConfig['kv'] | SgBackwardConfig['q'], offsetAlignment = 256): SgBackwardOptions {
  const p = bp.forward;
  return {
    vectorLoads: vectorLoadsFit(bp, offsetAlignment),
    dimQK: p.dimQK,
    dimRope: p.dimRope,
    dimV: p.dimV,
    subgroups: part.subgroups,
    block: part.block,
    ...('hoist' in part && part.hoist ? { hoist: true } : {}),
    ...('singleP' in part && part.singleP ? { singleP: true } : {}),
    ...('reverse' in part && part.reverse ? { reverse: true } : {}),
    causalOrWindow: p.window.left !== Infinity || p.window.right !== Infinity,
    softcap: p.softcap > 0,
    alibi: p.alibi !== undefined,
    dropout: p.dropout !== undefined,
  };
}

function fits(bp: BackwardProblem, c: SgBackwardConfig, d: TierDevice): boolean {
  return (['kv', 'q'] as const).every((kind) => {
    const o = sgBackwardOptionsOf(bp, c[kind]);
    return sgBackwardOptionsProblem(kind, o) === undefined && sgBackwardWorkgroupBytes(kind, o) <= d.limits.maxComputeWorkgroupStorageSize;
  });
}

/** The first of `preferred` then SG_BACKWARD_CONFIGS that fits. */
export function fittingBackwardConfig(bp: BackwardProblem, d: TierDevice, preferred?: SgBackwardConfig): SgBackwardConfig | undefined {
  return (preferred ? [preferred, ...SG_BACKWARD_CONFIGS] : SG_BACKWARD_CONFIGS).find((c) => fits(bp, c, d));
}

/** Why the tier cannot run `bp` (adapter, dtype, options, sizes), or undefined. */
export function sgBackwardUnsupported(bp: BackwardProblem, d: TierDevice): string | undefined {
  const adapter = sgMatrixAdapterUnsupported(d);
  if (adapter) return adapter;
  const p = bp.forward;
  if (p.dtype !== 'float16') return 'it computes float16 inputs only (float32 keeps full precision on the portable tier)';
  if (p.mask) return 'boolean masks are not implemented in this tier';
  if (p.bias) return 'additive bias tensors (and dBias) are not implemented in this tier';
  // sinks need nothing here (the LSE holds them); score and mask functions would need the score hook
  if (p.mods?.scoreMod || p.mods?.maskMod || p.blockMask) return 'score and mask functions (and block masks) are not implemented in this tier\'s backward (the portable tier takes them)';
  // scores are formed as scale·q·k in f32 here (not in units of max(1, |scale|)): no huge scales
  if (Math.abs(p.scale) > 1e20) return `|scale| up to 1e20 (got ${p.scale}); the portable tier keeps scores in units of the scale`;
  if (p.dimQK + p.dimRope > 256 || p.dimV > 256) return `head dims up to 256 (got Dq ${p.dimQK}${p.dimRope ? ` + Dr ${p.dimRope}` : ''}, Dv ${p.dimV})`;
  if (!fittingBackwardConfig(bp, d)) return 'no configuration fits the workgroup memory limit for these head dims';
  const buffers = 9 + (p.qRope ? 3 : 0);
  if (buffers > d.limits.maxStorageBuffersPerShaderStage) return `needs ${buffers} storage buffers, the device allows ${d.limits.maxStorageBuffersPerShaderStage}`;
  const limit = d.limits.maxStorageBufferBindingSize;
  for (const [name, t] of [['query', p.q.tensor], ['key', p.k.tensor], ['value', p.v.tensor], ['dOut', bp.dOut], ['qRope', p.qRope?.tensor], ['kRope', p.kRope?.tensor]] as const) {
    if (!t) continue;
    const bytes = bindingBytes(t, d.limits.minStorageBufferOffsetAlignment);
    if (bytes > limit) return `${name} needs a ${bytes}-byte binding, the device allows ${limit}`;
    // gradients are accumulated in float32 buffers of the input's size
    if (4 * t.size > limit) return `the float32 gradient of ${name} needs a ${4 * t.size}-byte binding, the device allows ${limit}`;
  }
  const max = d.limits.maxComputeWorkgroupsPerDimension;
  if (Math.ceil(p.seqQ / 16) > max || Math.ceil(p.seqK / 16) > max || p.headsQ > max || p.batch > max) return 'the grid exceeds maxComputeWorkgroupsPerDimension';
  return undefined;
}

/** The tier's plan for `bp` under `config`. */
export async function sgBackwardPlan(runtime: GpuRuntime, bp: BackwardProblem, config: SgBackwardConfig): Promise<BackwardKernelPlan> {
  const p = bp.forward;
  const align = runtime.limits.minStorageBufferOffsetAlignment;
  const kv = sgBackwardOptionsOf(bp, config.kv, align);
  const q = sgBackwardOptionsOf(bp, config.q, align);
  const [kvPipeline, qPipeline] = await Promise.all([runtime.pipeline(sgBackwardKvKernel, kv), runtime.pipeline(sgBackwardQKernel, q)]);
  const keys = 16 * kv.subgroups;
  return {
    kv: { pipeline: kvPipeline, grid: [Math.ceil(p.seqK / keys), p.headsKv, p.batch] },
    q: { pipeline: qPipeline, grid: [Math.ceil(p.seqQ / (16 * q.subgroups)), p.headsQ, p.batch] },
    keyBlocks: Math.ceil(p.seqK / keys),
    label: 'sgmatrix',
  };
}
