// Host side of the subgroup tier (f16 inputs, shader-f16 + subgroups, no subgroup matrices): which
// adapters and problems it takes (with the reason when not) and running one problem (one dispatch).
// Why it stays although it measured slower than the portable tier on the H200 (tiers/index.ts
// ranks it last, so it runs only when forced with FUSEDATTN_WEBGPU_TIER=subgroup): it is the only
// f16 path for adapters with subgroups but without subgroup matrices (most non-NVIDIA GPUs), where
// it has not been measured yet.
import { nonFiniteUnsupported } from './non-finite.js';
import type { AttentionProblem } from '../../problem.js';
import type { AttentionResult } from '../../backend.js';
import { bindingSizes, measuredAttention } from '../attention-io.js';
import { dispatchFastTier } from './dispatch.js';
import { type GpuRuntime, defineKernel } from '../../../../engines/webgpu/runtime.js';
import { packParams } from './flash-params.js';
import { type SubgroupKernelOptions, buildFlashSubgroup, subgroupWorkgroupBytes } from './flash-subgroup-wgsl.js';
import type { TierDevice } from './sgmatrix.js';

export const subgroupKernel = defineKernel<SubgroupKernelOptions>('flash-subgroup', buildFlashSubgroup);

type SubgroupDevice = TierDevice & { readonly limits: TierDevice['limits'] & Pick<GPUSupportedLimits, 'maxComputeInvocationsPerWorkgroup'> };

export function subgroupAdapterUnsupported(d: SubgroupDevice): string | undefined {
  for (const f of ['shader-f16', 'subgroups']) if (!d.features.has(f)) return `the adapter lacks the "${f}" feature`;
  const { subgroupMinSize: min, subgroupMaxSize: max } = d.adapter;
  if (!min || min !== max || min < 4 || min > 128) return `the kernel needs one fixed subgroup size (4..128), the adapter has ${min}..${max}`;
  const wgsl = (globalThis as { navigator?: { gpu?: { wgslLanguageFeatures?: ReadonlySet<string> } } }).navigator?.gpu?.wgslLanguageFeatures;
  if (wgsl && !wgsl.has('subgroup_id')) return 'this browser\'s WGSL lacks the subgroup_id builtin';
  return undefined;
}

export function subgroupOptionsOf(p: AttentionProblem, d: SubgroupDevice): SubgroupKernelOptions {
  const sgSize = d.adapter.subgroupMaxSize ?? 32;
  return {
    dimQK: p.dimQK,
    dimRope: p.dimRope,
    dimV: p.dimV,
    subgroupSize: sgSize,
    subgroups: Math.max(1, Math.min(4, Math.floor(Math.min(256, d.limits.maxComputeInvocationsPerWorkgroup) / sgSize))),
    rows: 8,
    causalOrWindow: p.window.left !== Infinity || p.window.right !== Infinity,
    softcap: p.softcap > 0,
    alibi: p.alibi !== undefined,
    returnLse: p.returnLse,
  };
}

export function subgroupProblemUnsupported(p: AttentionProblem, d: SubgroupDevice): string | undefined {
  if (p.dtype !== 'float16') return 'it computes float16 inputs only (float32 keeps full precision on the portable tier)';
  if (p.mask) return 'boolean masks are not implemented in this tier';
  if (p.bias) return 'additive bias tensors are not implemented in this tier';
  if (p.mods || p.blockMask) return 'score/mask/sink functions and block masks are not implemented in this tier';
  const o = subgroupOptionsOf(p, d);
  const bytes = subgroupWorkgroupBytes(o);
  if (bytes > d.limits.maxComputeWorkgroupStorageSize) return `head dims need ${bytes} bytes of workgroup memory, the device allows ${d.limits.maxComputeWorkgroupStorageSize}`;
  const buffers = 5 + (p.returnLse ? 1 : 0) + (p.qRope ? 2 : 0);
  if (buffers > d.limits.maxStorageBuffersPerShaderStage) return `needs ${buffers} storage buffers, the device allows ${d.limits.maxStorageBuffersPerShaderStage}`;
  for (const [name, size] of bindingSizes(p, d.limits.minStorageBufferOffsetAlignment)) {
    if (size > d.limits.maxStorageBufferBindingSize) return `${name} needs a ${size}-byte binding, the device allows ${d.limits.maxStorageBufferBindingSize}`;
  }
  const max = d.limits.maxComputeWorkgroupsPerDimension;
  if (Math.ceil(p.seqQ / (o.rows * o.subgroups)) > max || p.headsQ > max || p.batch > max) return 'the grid exceeds maxComputeWorkgroupsPerDimension';
  const nonFinite = nonFiniteUnsupported(p);
  if (nonFinite) return nonFinite;
  return undefined;
}

export function runSubgroup(runtime: GpuRuntime, p: AttentionProblem): Promise<AttentionResult> {
  return measuredAttention(runtime, p, async (io) => {
    const o = subgroupOptionsOf(p, runtime);
    const pipeline = await runtime.pipeline(subgroupKernel, o);
    const grid: [number, number, number] = [Math.ceil(p.seqQ / (o.rows * o.subgroups)), p.headsQ, p.batch];
    const params = packParams(p, grid[0], { q: io.q.elementBase, k: io.k.elementBase, v: io.v.elementBase, qRope: io.qRope?.elementBase ?? 0, kRope: io.kRope?.elementBase ?? 0 });
    dispatchFastTier(runtime, p, io, { label: 'flash-subgroup', pipeline, params, grid });
  });
}
