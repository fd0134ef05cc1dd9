// Host side of the tensor-core backward tier (subgroup-matrix f16): which adapters and problems it
// takes (a reason when not, so the chooser falls back to the portable tier), its tunable
// configurations, and the plan (kv and q pipelines, grids) the shared backward host runs.
import type { GpuRuntime } from '../../../../engines/webgpu/runtime.js';
import { defineKernel } from '../../../../engines/webgpu/runtime.js';
import { bindingBytes, elementBaseOf } from '../../../../engines/webgpu/operands.js';
import type { Tensor } from '../../../../core/tensor.js';
import { type TierDevice, sgMatrixAdapterUnsupported } from '../../webgpu/tiers/sgmatrix.js';
import { type BackwardProblem, biasFold } from '../problem.js';
import { backwardModsKernel } from '../../mods/plan.js';
import { softcapAsOption } from '../../mods/softcap-part.js';
import { needsModData } from '../../mods/wgsl.js';
import { type BlockGrid, lcm } from '../../block-mask/grid.js';
import { kernelGrid } from '../../block-mask/kernel-grid.js';
import { type SgBackwardOptions, type SgBiasGrad, buildSgBackwardKv, buildSgBackwardQ, sgBackwardOptionsProblem, sgBackwardWorkgroupBytes } from './sgmatrix.wgsl.js';
import type { BackwardKernelPlan } from './portable.js';
import { type BiasPlanesLimits, biasPlanes } from './bias-planes.js';

export const sgBackwardKvKernel = defineKernel<SgBackwardOptions>('attention-backward-kv-sgmatrix', buildSgBackwardKv);
export const sgBackwardQKernel = defineKernel<SgBackwardOptions>('attention-backward-q-sgmatrix', buildSgBackwardQ);

/** The tunable part: subgroups and block of each kernel. */
export interface SgBackwardConfig {
  kv: { subgroups: number; block: number; hoist?: boolean; singleP?: boolean; pairs?: boolean };
  q: { subgroups: number; block: number; reverse?: boolean; pairs?: boolean };
}

/**
 * Candidates, the first that fits being the default; the autotuner times the first four that fit.
 * Measured on the H200 (bench/gpu/backward-tc.sh, B4 H32 S4096 D128 f16, every variant checked
 * against float64 in the same call first):
 * - fourth session: the dK/dV kernel with K_s and V_s held in left matrices and one P buffer
 *   (hoist, singleP) at 4 subgroups took the causal dK/dV pass from 60.6 to 26.7 ms (at 2 subgroups
 *   hoisting alone was slower: the registers cost more than the loads they save);
 * - fifth session, call 1: a subgroup pair per 16 keys, each holding half of dK's and dV's
 *   accumulators (pairs), at 8 subgroups: dK/dV 48.8 -> 26.2 ms non-causal, 26.5 -> 14.2 causal (the
 *   whole backward 85.8 -> 63.2 and 48.0 -> 35.6 ms); MLA 192/128 (where 8 × 32 does not fit) 8 × 16
 *   pairs with q 2 × 32: 26.5 -> 22.7 ms (dK/dV 9.0 -> 5.1).
 * - fifth session, call 2: the q kernel in pairs too (Q_s with one subgroup, dO_s with the other,
 *   dQ's chunks split between them), 8 subgroups: dQ pass 33.9 -> 23.0 ms non-causal (32-key blocks),
 *   18.2 -> 12.1 causal (whole backward 63.0 -> 51.9 and 35.4 -> 29.3 ms); MLA 192/128 with 16-key
 *   blocks 16.9 -> 4.5 ms (whole 22.4 -> 9.9: the plain q kernel's 2 × 32 had been all that fit).
 * Running the q workgroups longest rows first (reverse) measured slower (fourth session).
 */
const PAIRS8_QP8: SgBackwardConfig = { kv: { subgroups: 8, block: 32, pairs: true, hoist: true }, q: { subgroups: 8, block: 32, pairs: true } };
const PAIRS8_B16_QP8: SgBackwardConfig = { kv: { subgroups: 8, block: 16, pairs: true, hoist: true }, q: { subgroups: 8, block: 16, pairs: true } };
const PAIRS8: SgBackwardConfig = { kv: { subgroups: 8, block: 32, pairs: true, hoist: true }, q: { subgroups: 4, block: 16 } };
const PAIRS8_B16_Q2: SgBackwardConfig = { kv: { subgroups: 8, block: 16, pairs: true, hoist: true }, q: { subgroups: 2, block: 32 } };
const HOIST4: SgBackwardConfig = { kv: { subgroups: 4, block: 32, hoist: true, singleP: true }, q: { subgroups: 4, block: 16 } };
const HOIST4_B16_Q2: SgBackwardConfig = { kv: { subgroups: 4, block: 16, hoist: true, singleP: true }, q: { subgroups: 2, block: 32 } };
const HOIST4_Q2: SgBackwardConfig = { kv: { subgroups: 4, block: 32, hoist: true, singleP: true }, q: { subgroups: 2, block: 32 } };

export const SG_BACKWARD_CONFIGS: readonly SgBackwardConfig[] = [
  PAIRS8_QP8,
  PAIRS8_B16_QP8,
  PAIRS8,
  PAIRS8_B16_Q2,
  HOIST4,
  HOIST4_B16_Q2,
  HOIST4_Q2,
  { kv: { subgroups: 2, block: 32 }, q: { subgroups: 4, block: 16 } },
  { kv: { subgroups: 2, block: 16 }, q: { subgroups: 2, block: 32 } },
  { kv: { subgroups: 4, block: 16 }, q: { subgroups: 2, block: 64 } },
  { kv: { subgroups: 1, block: 32 }, q: { subgroups: 4, block: 32 } },
  { kv: { subgroups: 1, block: 16 }, q: { subgroups: 1, block: 16 } },
];

/**
 * Named layouts bench/gpu/backward-tc.sh checks against float64 and times per pass in one GPU call:
 * the defaults above beside the layouts they replaced, so a change shows its own before/after.
 */
export const SG_BACKWARD_VARIANTS: Readonly<Record<string, SgBackwardConfig>> = {
  'old': { kv: { subgroups: 2, block: 32 }, q: { subgroups: 4, block: 16 } },
  'hoist4': HOIST4,
  'hoist4b16q2': HOIST4_B16_Q2,
  'hoist4q2': HOIST4_Q2,
  // pairs: a subgroup pair per 16 keys, D/16 accumulators per subgroup (q kernel as hoist4's, so the
  // kv column alone shows the change). Bytes at D 128 | MLA 192/128: pairs4b16 34448 | 40592,
  // pairs4h 32016 | 36112, pairs4hb16 17040 | 21136, pairs8h 46352 | 54544 (MLA: NOFIT),
  // pairs8hb16 33936 | 42128; pairs4 (b32, K/V tiles) is 49424 at D 128: does not fit
  'pairs4b16': { kv: { subgroups: 4, block: 16, pairs: true }, q: { subgroups: 4, block: 16 } },
  'pairs4h': { kv: { subgroups: 4, block: 32, pairs: true, hoist: true }, q: { subgroups: 4, block: 16 } },
  'pairs4hb16': { kv: { subgroups: 4, block: 16, pairs: true, hoist: true }, q: { subgroups: 4, block: 16 } },
  'pairs8h': PAIRS8,
  'pairs8hb16': { kv: { subgroups: 8, block: 16, pairs: true, hoist: true }, q: { subgroups: 4, block: 16 } },
  'pairs2h': { kv: { subgroups: 2, block: 32, pairs: true, hoist: true }, q: { subgroups: 4, block: 16 } },
  // q 4×16 is 51216 bytes at MLA 192/128: these take the MLA default's q (2×32) so MLA gets pairs too
  'pairs4b16-q2': { kv: { subgroups: 4, block: 16, pairs: true }, q: { subgroups: 2, block: 32 } },
  'pairs4h-q2': { kv: { subgroups: 4, block: 32, pairs: true, hoist: true }, q: { subgroups: 2, block: 32 } },
  'pairs8hb16-q2': PAIRS8_B16_Q2,
  // the q kernel in pairs too (a subgroup pair per 16 query rows: Q_s with one, dO_s with the
  // other, dQ's chunks split between them), beside the kv pairs default. Bytes at D 128 | MLA
  // 192/128: q pairs 8 × 16 24848 | 38928, 8 × 32 40976 | NOFIT, 4 × 16 12560 | 19472
  'p8h-qp8': { kv: PAIRS8.kv, q: { subgroups: 8, block: 16, pairs: true } },
  'p8h-qp8b32': PAIRS8_QP8,
  'p8h-qp4': { kv: PAIRS8.kv, q: { subgroups: 4, block: 16, pairs: true } },
  'p8hb16-qp8': PAIRS8_B16_QP8,
  'p8hb16-qp4': { kv: PAIRS8_B16_Q2.kv, q: { subgroups: 4, block: 16, pairs: true } },
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
  // score / mask functions, a block mask's included (its mask function evaluated on every tile; sinks need nothing)
  const mods = backwardModsKernel(p.mods);
  return {
    vectorLoads: vectorLoadsFit(bp, offsetAlignment),
    dimQK: p.dimQK,
    dimRope: p.dimRope,
    dimV: p.dimV,
    subgroups: part.subgroups,
    block: part.block,
    ...('hoist' in part && part.hoist ? { hoist: true } : {}),
    ...('singleP' in part && part.singleP ? { singleP: true } : {}),
    ...('pairs' in part && part.pairs ? { pairs: true } : {}),
    ...('reverse' in part && part.reverse ? { reverse: true } : {}),
    causalOrWindow: p.window.left !== Infinity || p.window.right !== Infinity,
    softcap: p.softcap > 0,
    ...(p.softcap > 0 && p.softcapRule === 'function' ? { softcapFunction: true } : {}),
    alibi: p.alibi !== undefined,
    dropout: p.dropout !== undefined,
    // absent without a mask / bias: those kernels' options (and pipeline keys) stay as they were
    ...(p.mask ? { mask: true } : {}),
    ...(p.bias ? { bias: p.bias.tensor.dtype as 'float32' | 'float16' } : {}),
    ...(mods ? { mods } : {}),
  };
}

/** The kv kernel's dBias options when dBias is asked (SgBiasGrad); a bias broadcast along keys is the portable tier's. */
export function sgBiasGradOf(bp: BackwardProblem): SgBiasGrad | undefined {
  const p = bp.forward;
  if (!bp.biasGrad || !p.bias) return undefined;
  const fold = biasFold(p, true);
  const st = p.bias.strides;
  const shared = st.i === 0 || (st.b === 0 && p.batch > 1) || (st.h === 0 && p.headsQ > 1);
  return { rowsBroadcast: st.i === 0, foldBatch: fold.batch, foldHeads: fold.kvHeads, ...(shared ? {} : { once: true }) };
}

/**
 * `g` with partial planes where a folded dBias leaves the kv grid thin (bias-planes.ts); a plane
 * holding one (b, hk) pair whose query heads do not share an element stores, as `once`.
 */
function sgBiasGradWithPlanes(bp: BackwardProblem, g: SgBiasGrad | undefined, keyBlocks: number, limits: BiasPlanesLimits): SgBiasGrad | undefined {
  if (!g || (!g.foldBatch && !g.foldHeads)) return g;
  const p = bp.forward;
  const folded = (g.foldBatch ? p.batch : 1) * (g.foldHeads ? p.headsKv : 1);
  const workgroups = keyBlocks * (g.foldHeads ? 1 : p.headsKv) * (g.foldBatch ? 1 : p.batch);
  const planes = biasPlanes({ folded, workgroups, elements: p.bias!.tensor.size }, limits);
  if (planes < 2) return g;
  const single = planes === folded && !g.rowsBroadcast && (p.bias!.strides.h !== 0 || p.headsQ === p.headsKv);
  return { ...g, planes, ...(single ? { once: true } : {}) };
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
  // bias dtypes: those the score function's bias_at reads
  if (p.bias && p.bias.tensor.dtype !== 'float32' && p.bias.tensor.dtype !== 'float16') return `an additive bias of float32 or float16 (got ${p.bias.tensor.dtype})`;
  // its dBias would be summed across the kv kernel's workgroups (a per-row bias is exactly 0 in exact arithmetic, as softmax ignores it)
  if (bp.biasGrad && p.bias && p.bias.strides.j === 0) return 'dBias of a bias broadcast along keys is the portable tier\'s';
  // sinks need nothing here (the LSE holds them); score and mask functions run in final_score; a
  // block mask's (or a dense mask's) empty tiles are skipped through its status table (tileGrid)
  // scores are formed as scale·q·k in f32 here (not in units of max(1, |scale|)): no huge scales
  if (Math.abs(p.scale) > 1e20) return `|scale| up to 1e20 (got ${p.scale}); the portable tier keeps scores in units of the scale`;
  if (p.dimQK + p.dimRope > 256 || p.dimV > 256) return `head dims up to 256 (got Dq ${p.dimQK}${p.dimRope ? ` + Dr ${p.dimRope}` : ''}, Dv ${p.dimV})`;
  if (!fittingBackwardConfig(bp, d)) return 'no configuration fits the workgroup memory limit for these head dims';
  const buffers = 9 + (p.qRope ? 3 : 0) + (p.mask ? 1 : 0) + (p.bias ? 1 : 0) + (bp.biasGrad && p.bias ? 1 : 0) + (needsModData(backwardModsKernel(p.mods), p.blockMask !== undefined || p.mask !== undefined) ? 1 : 0);
  if (buffers > d.limits.maxStorageBuffersPerShaderStage) return `needs ${buffers} storage buffers, the device allows ${d.limits.maxStorageBuffersPerShaderStage}`;
  const limit = d.limits.maxStorageBufferBindingSize;
  if (p.mask && bindingBytes(p.mask.tensor, d.limits.minStorageBufferOffsetAlignment) > limit) return `mask needs a ${bindingBytes(p.mask.tensor, d.limits.minStorageBufferOffsetAlignment)}-byte binding, the device allows ${limit}`;
  if (p.bias && bindingBytes(p.bias.tensor, d.limits.minStorageBufferOffsetAlignment) > limit) return `bias needs a ${bindingBytes(p.bias.tensor, d.limits.minStorageBufferOffsetAlignment)}-byte binding, the device allows ${limit}`;
  if (bp.biasGrad && p.bias && 4 * p.bias.tensor.size > limit) return `the float32 dBias needs a ${4 * p.bias.tensor.size}-byte binding, the device allows ${limit}`;
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

/**
 * `bp` as this tier runs it: softcap() as a score function becomes the softcap option with the
 * function's rule (mods/softcap-part.ts), as the forward's tensor-core tier does: the option's lines
 * skip the general score path (the H200 measured softcap() at 1.58x the backward without it on that
 * path, session 12 call 4).
 */
export function sgBackwardProblem(bp: BackwardProblem): BackwardProblem {
  const forward = softcapAsOption(bp.forward);
  return forward === bp.forward ? bp : { ...bp, forward };
}

/** The tier's plan for `call` under `config` (the problem it planned: sgBackwardProblem). */
export async function sgBackwardPlan(runtime: GpuRuntime, call: BackwardProblem, config: SgBackwardConfig): Promise<BackwardKernelPlan> {
  const bp = sgBackwardProblem(call);
  const p = bp.forward;
  const align = runtime.limits.minStorageBufferOffsetAlignment;
  const keys = 16 * (config.kv.pairs ? config.kv.subgroups / 2 : config.kv.subgroups); // pairs: 16 keys per subgroup pair
  const keyBlocks = Math.ceil(p.seqK / keys);
  const biasGrad = sgBiasGradWithPlanes(bp, sgBiasGradOf(bp), keyBlocks, runtime.limits);
  const planes = biasGrad?.planes ?? 1;
  const grid = tileGrid(bp, config);
  const table = grid ? { blockTable: true } : {};
  const kv: SgBackwardOptions = { ...sgBackwardOptionsOf(bp, config.kv, align), ...(biasGrad ? { biasGrad } : {}), ...table };
  const q: SgBackwardOptions = { ...sgBackwardOptionsOf(bp, config.q, align), ...table };
  const [kvPipeline, qPipeline] = await Promise.all([runtime.pipeline(sgBackwardKvKernel, kv), runtime.pipeline(sgBackwardQKernel, q)]);
  // dBias of a bias shared by the batch / the KV heads: those axes are walked inside each workgroup,
  // in `planes` ranges along the folded axis (z with the batch folded, else y)
  const ySize = biasGrad?.foldHeads ? (planes > 1 && !biasGrad.foldBatch ? planes : 1) : p.headsKv;
  const zSize = biasGrad?.foldBatch ? planes : p.batch;
  return {
    kv: { pipeline: kvPipeline, grid: [keyBlocks, ySize, zSize] },
    q: { pipeline: qPipeline, grid: [Math.ceil(p.seqQ / (16 * (q.pairs ? q.subgroups / 2 : q.subgroups))), p.headsQ, p.batch] },
    keyBlocks,
    ...(planes > 1 ? { biasPlanes: { planes, elements: p.bias!.tensor.size } } : {}),
    label: 'sgmatrix',
    ...(grid ? { blockGrid: grid } : {}),
    ...(bp !== call ? { forward: p } : {}),
  };
}

/**
 * The block structure the kernels look tiles up in (a block mask's, a dense CPU bool mask's: kernel-grid.ts),
 * at blocks every kv tile (BLOCK rows x the workgroup's keys) and q tile (its rows x BLOCK keys) lies inside.
 */
function tileGrid(bp: BackwardProblem, config: SgBackwardConfig): BlockGrid | undefined {
  const p = bp.forward;
  if (!p.blockMask && !p.mask) return undefined;
  const owners = (part: { subgroups: number; pairs?: boolean }) => 16 * (part.pairs ? part.subgroups / 2 : part.subgroups);
  const rows = lcm(config.kv.block, owners(config.q));
  const keys = lcm(owners(config.kv), config.q.block);
  return kernelGrid(p, { rows, keys, denseKeys: keys });
}
