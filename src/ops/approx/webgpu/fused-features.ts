// Performer and linear attention with an expression feature map on the fused tensor-core kernels
// (fused.ts). Those kernels apply a built-in φ (elu+1, relu) while they stage q and k; these maps
// are computed first instead, into float16 planes
//   φ(Q) [B·Hq][Sq][F]    φ(K) [B·Hkv][Sk][F]    (each plane padded to whole 32-bit words)
// — by the features kernel for an expression map, by performer.ts (f32, then the features kernel
// with the identity map as the cast) for Performer — and the fused kernels then read those planes
// as q and k with the identity map. φ(K) is one plane per key head: a key head's features are the
// same for each of its query heads (Performer's stabiliser is per key head), so the fused state
// stays one per key plane, as for the built-in maps. Costs one f16 write and read of the features
// beyond the fused path; the products run on tensor cores instead of the portable f32 matmul.
import type { GpuRuntime, Pipeline } from '../../../engines/webgpu/runtime.js';
import type { StridedView } from '../../attention/problem.js';
import type { AttentionOperands } from '../../attention/webgpu/attention-io.js';
import { type ModsPlan, packModData, planMods } from '../../attention/mods/plan.js';
import { IDENTITY } from '../features.js';
import type { ApproxProblem } from '../problem.js';
import { featuresKernel } from './feature-kernels.js';
import { CAUSAL_MAX_FEATURES } from './fused-causal.wgsl.js';
import { featuresBindData, packApproxParams as pack } from './kernels.wgsl.js';
import { performerFeatures, performerPipelines } from './performer.js';

let identityPlan: ModsPlan | undefined;
/** The identity map, lowered once. */
function identity(): ModsPlan {
  identityPlan ??= planMods({ scoreMod: IDENTITY.mod });
  return identityPlan;
}

/** Why `p` does not take the feature-plane route to the fused kernels, or undefined. */
export function featurePlanesUnsupported(p: ApproxProblem): string | undefined {
  // the causal fused kernels keep the whole φ(Q) tile in workgroup memory (fused-causal.wgsl.ts)
  if (p.causal && p.features > CAUSAL_MAX_FEATURES) return `causal on the fused kernels takes at most ${CAUSAL_MAX_FEATURES} features, got ${p.features} (the chunked path runs it)`;
  if (p.base.dtype !== 'float16') return 'float32 inputs keep float32 features on the portable path';
  return undefined;
}

/** 32-bit words of one φ plane of `seq` rows (float16 pairs). */
const planeWords = (seq: number, features: number) => Math.ceil((seq * features) / 2);

/**
 * The linear problem the consumer of the planes sees: q and k are the φ planes (float16, one plane
 * per query head and per key head), the identity map; v, the output and every size as in `p`.
 */
export function featurePlanesProblem(p: ApproxProblem): ApproxProblem {
  const b = p.base;
  const F = p.features;
  const view = (v: StridedView, heads: number, seq: number): StridedView => {
    const plane = 2 * planeWords(seq, F);
    return { tensor: v.tensor, offset: 0, strides: { b: heads * plane, h: plane, s: F, d: 1 } };
  };
  return {
    ...p, kind: 'linear', map: IDENTITY, mapPlan: identity(), projection: undefined, scaleSqrt: 1,
    base: { ...b, dimQK: F, q: view(b.q, b.headsQ, b.seqQ), k: view(b.k, b.headsKv, b.seqK) },
  };
}

type Consumer = (planes: ApproxProblem, io: AttentionOperands) => Promise<void> | void;

/**
 * Queues the φ planes of `p` (featurePlanesUnsupported(p) undefined), then `consume` with the
 * planes' problem and operands (the fused kernels; the portable products in tests).
 */
export async function recordViaFeaturePlanes(runtime: GpuRuntime, p: ApproxProblem, io: AttentionOperands, consume: Consumer): Promise<void> {
  const b = p.base;
  const F = p.features;
  const performer = p.kind === 'performer';
  const map = performer ? identity() : p.mapPlan!;
  const toHalf = await runtime.pipeline(featuresKernel, { dtype: performer ? 'float32' : b.dtype, map: map.kernel, half: true });
  const performerPipes = performer ? await performerPipelines(runtime, b.dtype) : undefined;
  const scratch: GPUBuffer[] = [];
  const buffer = (floats: number, label: string) => {
    const buf = runtime.acquire(Math.max(16, 4 * floats), 'intermediate', label);
    scratch.push(buf);
    return buf;
  };
  const dispatch = (label: string, pipeline: Pipeline, entries: Record<number, GPUBuffer | GPUBufferBinding>, workgroups: [number, number, number]) =>
    runtime.dispatch({ label, pipeline, bindGroups: [runtime.bindGroup(pipeline, 0, entries)], workgroups });
  try {
    const planes = { q: b.batch * b.headsQ, k: b.batch * b.headsKv };
    const words = { q: planeWords(b.seqQ, F), k: planeWords(b.seqK, F) };
    const phiQ = buffer(planes.q * words.q, 'φ(Q), float16 planes');
    const phiK = buffer(planes.k * words.k, 'φ(K), float16 planes');
    // what the cast reads: q and k themselves (the map applied by it), or Performer's f32 features
    type Source = { binding: GPUBuffer | GPUBufferBinding; offset: number; strides: [number, number, number, number] };
    let sources: { q: Source; k: Source };
    if (performerPipes) {
      const fq = buffer(planes.q * b.seqQ * F, 'Performer φ(Q), float32');
      const fk = buffer(planes.k * b.seqK * F, 'Performer φ(K) per key head, float32');
      performerFeatures(runtime, p, io, performerPipes, { phiQ: fq, phiK: fk, keyPlanes: 'key', buffer, dispatch });
      sources = {
        q: { binding: fq, offset: 0, strides: [b.headsQ * b.seqQ * F, b.seqQ * F, F, 1] },
        k: { binding: fk, offset: 0, strides: [b.headsKv * b.seqK * F, b.seqK * F, F, 1] },
      };
    } else {
      const strides = (v: StridedView): [number, number, number, number] => [v.strides.b, v.strides.h, v.strides.s, v.strides.d];
      sources = {
        q: { binding: io.q.binding, offset: b.q.offset + io.q.elementBase, strides: strides(b.q) },
        k: { binding: io.k.binding, offset: b.k.offset + io.k.elementBase, strides: strides(b.k) },
      };
    }
    const data = featuresBindData({ dtype: b.dtype, map: map.kernel }) ? runtime.uploadTransient(packModData(map.tensors), 'feature map data') : undefined;
    for (const [which, seq, heads, out] of [['q', b.seqQ, b.headsQ, phiQ], ['k', b.seqK, b.headsKv, phiK]] as const) {
      if (seq === 0) continue;
      const src = sources[which];
      const entries: Record<number, GPUBuffer | GPUBufferBinding> = {
        0: runtime.uniform(pack({ x_strides: src.strides, x_off: src.offset, heads, group: 1, seq, cols: F, words: words[which] }), 'features params'),
        1: src.binding, 2: out,
      };
      if (data) entries[3] = data;
      dispatch('approx-feature-planes', toHalf, entries, [Math.max(1, Math.ceil(words[which] / 256)), planes[which], 1]);
    }
    const planeIo: AttentionOperands = { ...io, q: { binding: { buffer: phiQ }, elementBase: 0, uploaded: undefined }, k: { binding: { buffer: phiK }, elementBase: 0, uploaded: undefined } };
    await consume(featurePlanesProblem(p), planeIo);
  } finally {
    // the kernels that read them are queued; the pool hands them out again only to later work
    for (const s of scratch) runtime.release(s);
  }
}
