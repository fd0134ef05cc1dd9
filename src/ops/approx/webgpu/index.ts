// Linear attention and Performer on WebGPU: features, [V | 1], then the strided batched matmul
// (ops/gemm/webgpu) for every product, f32 throughout, q/k/v read in their layout and dtype.
//   non-causal  state = φ(K)ᵀ[V|1] (F × Dv+1 per head; split over key chunks and summed when the
//               heads alone do not fill the GPU); num = φ(Q)·state                     6-9 dispatches
//   causal      per chunk c (C query rows, keys from i0 + Sk − Sq): A_c = mask(φ(Q_c)φ(K_c)ᵀ),
//               S_c = φ(K_c)ᵀ[V_c|1], P_c = Σ_{c' < c} S_c' (+ the keys before the first chunk),
//               num_c = A_c·[V_c|1] + φ(Q_c)·P_c (one split-K matmul)                 8-9 dispatches
//   out = num[:, :Dv] / num[:, Dv], in q's layout and dtype.
// Performer adds X·Wᵀ for q and k and the per-row / per-head stabilisers (5 dispatches).
// The products run on the portable f32 matmul or on tensor cores (tier.ts: f16 operands, f32
// accumulation; the states and chunk scores then carry alpha = 1/Sk, which cancels in num / den).
import { envFlag } from '../../../core/env.js';
import { UnsupportedError } from '../../../core/errors.js';
import { type GpuRuntime, type Pipeline, defineKernel, getRuntime } from '../../../engines/webgpu/runtime.js';
import type { AttentionResult } from '../../attention/backend.js';
import type { StridedView } from '../../attention/problem.js';
import { type AttentionOperands, measuredAttention } from '../../attention/webgpu/attention-io.js';
import { packModData } from '../../attention/mods/plan.js';
import { MATMUL_TILE, buildMatmul, type MatmulOptions } from '../../gemm/webgpu/matmul.wgsl.js';
import { type MatmulCall, type MatrixOperand, dispatchMatmul, matmulKernel } from '../../gemm/webgpu/matmul.js';
import { sgmatMatmulSize } from '../../gemm/webgpu/matmul-sgmat.wgsl.js';
import type { ApproxProblem } from '../problem.js';
import {
  CAUSAL_CHUNK_EPILOGUE, buildAugment, buildNormalize, buildChunkScan,
  featuresBindData, packApproxParams,
} from './kernels.wgsl.js';
import { featuresKernel } from './feature-kernels.js';
import { featurePlanesProblem, featurePlanesUnsupported, recordViaFeaturePlanes } from './fused-features.js';
import { fusedUnsupportedOn, recordFused } from './fused.js';
import { type PerformerPipelines, performerFeatures, performerPipelines } from './performer.js';
import { ALPHA_SCALED, type ApproxProduct, type ApproxTier, approxSgmatKernel, approxSgmatOptions, approxSgmatTile, approxTier } from './tier.js';

const augmentKernel = defineKernel<{ dtype: 'float32' | 'float16'; half?: boolean }>('approx-augment', buildAugment);
const chunkScanKernel = defineKernel<{ mode: 'exclusive' | 'total' }>('approx-chunk-scan', buildChunkScan);
const normalizeKernel = defineKernel<{ out: 'float32' | 'float16' }>('approx-normalize', buildNormalize);
const causalScoresKernel = defineKernel<MatmulOptions>('approx-causal-scores', (o) => buildMatmul(o, { wgsl: CAUSAL_CHUNK_EPILOGUE }));

/** Workgroups the non-causal state's matmuls aim for (a few per SM of a large GPU). */
const STATE_TARGET_WORKGROUPS = 2048;
/** Fewest keys per chunk of the non-causal state (below, the chunk sum costs more than it saves). */
const STATE_MIN_CHUNK = 256;

/**
 * Keys per chunk of the non-causal state φ(K)ᵀ[V|1]: its output is only F × (Dv+1) per head, so
 * one matmul over all keys gives a few heads a handful of workgroups, each walking every key
 * (H200: non-causal 3x slower than causal at 8 heads of 4096). Split over the keys until the
 * grid reaches the target; Sk (no split) when it already does.
 */
export function stateChunkKeys(seqK: number, planes: number, features: number, cols: number, tile: { m: number; n: number } = MATMUL_TILE): number {
  const tiles = Math.ceil(features / tile.m) * Math.ceil(cols / tile.n);
  const wanted = Math.ceil(STATE_TARGET_WORKGROUPS / Math.max(1, planes * tiles));
  const chunks = Math.max(1, Math.min(wanted, Math.floor(seqK / STATE_MIN_CHUNK), Math.floor(65535 / Math.max(1, planes))));
  if (chunks <= 1) return seqK;
  return Math.ceil(seqK / chunks / 64) * 64;
}

const F32: MatmulOptions = { a: 'float32', b: 'float32', out: 'float32', transposeB: false, splitK: false, ragged: false };

const pack = packApproxParams;

const viewStrides = (v: StridedView): [number, number, number, number] => [v.strides.b, v.strides.h, v.strides.s, v.strides.d];

/** Why WebGPU cannot run `p`, or undefined. */
export function approxGpuUnsupported(p: ApproxProblem, runtime: Pick<GpuRuntime, 'limits'>): string | undefined {
  const b = p.base;
  const max = runtime.limits.maxComputeWorkgroupsPerDimension;
  if (p.causal && b.seqQ > b.seqK) return `causal with Sq (${b.seqQ}) > Sk (${b.seqK}) is not implemented on WebGPU (the CPU backend has it)`;
  if (b.batch * b.headsQ > max) return `batch x heads (${b.batch * b.headsQ}) exceeds maxComputeWorkgroupsPerDimension ${max}`;
  const chunks = Math.ceil(b.seqQ / p.chunk);
  if (p.causal && b.batch * b.headsQ * chunks > max) return `batch x heads x chunks (${b.batch * b.headsQ * chunks}) exceeds ${max}: use a larger chunkSize`;
  return undefined;
}

/** Linear attention or Performer on WebGPU: the fused kernels where the tier and the problem allow, else the products (testing: ApproxGpuTesting). */
export async function runApproxGpu(p: ApproxProblem, device?: GPUDevice, testing?: ApproxGpuTesting): Promise<AttentionResult> {
  const runtime = await getRuntime(device);
  const reason = approxGpuUnsupported(p, runtime);
  if (reason) throw new UnsupportedError('options.backend', `approximate attention on WebGPU: ${reason}`);
  const b = p.base;
  const tile = approxSgmatTile(); // read first: a malformed value is an error on every adapter
  let tier = approxTier(b.dtype, runtime);
  if (tier === 'fused' && !testing?.scaledPortable) {
    // the fused kernels: a built-in map applied while staging, or the features computed first
    // (Performer, expression maps: fused-features.ts); the rest runs portable
    const fused = async (q: ApproxProblem, io: AttentionOperands) => (await recordFused(runtime, q, io))();
    if (!fusedUnsupportedOn(p, runtime.limits)) return measuredAttention(runtime, b, (io) => fused(p, io));
    if (!featurePlanesUnsupported(p)) return measuredAttention(runtime, b, (io) => recordViaFeaturePlanes(runtime, p, io, fused));
  }
  if (tier === 'fused') tier = 'portable';
  if (testing?.featurePlanes) {
    // the fused route's feature planes, then the portable products over them (for adapters
    // without subgroup matrices, where the fused kernels cannot run)
    const why = featurePlanesUnsupported(p);
    if (why) throw new UnsupportedError('testing.featurePlanes', why);
    const setup = await portableSetup(runtime, featurePlanesProblem(p), 'portable', tile, {});
    return measuredAttention(runtime, b, (io) => recordViaFeaturePlanes(runtime, p, io, (q, planeIo) => record(runtime, q, planeIo, setup.pipelines, setup.products)));
  }
  const setup = await portableSetup(runtime, p, tier, tile, testing ?? {});
  return measuredAttention(runtime, b, (io) => record(runtime, p, io, setup.pipelines, setup.products));
}

/**
 * `scaledPortable`: the tensor-core tier's host path (products routed per kind, states and chunk
 * scores times alpha) on the portable matmul, so machines without subgroup matrices test
 * everything of that tier but the kernel itself; `halfFeatures` sets FUSEDATTN_APPROX_HALF_FEATURES;
 * `featurePlanes`: the fused route's φ planes (fused-features.ts) consumed by the portable products.
 */
export interface ApproxGpuTesting { scaledPortable?: boolean; halfFeatures?: boolean; featurePlanes?: boolean }

/** The pipelines and products of the portable and tensor-core tiers' path for `p`. */
async function portableSetup(runtime: GpuRuntime, p: ApproxProblem, tier: ApproxTier, tile: ReturnType<typeof approxSgmatTile>, testing: ApproxGpuTesting) {
  const dtype = p.base.dtype;
  // float16 φ and [V | 1] (experiment, FUSEDATTN_APPROX_HALF_FEATURES=1): the tensor-core tier
  // rounds them to f16 when staging anyway; non-causal linear attention only (the causal split-K
  // product would mix f16 φ(Q) with f32 chunk scores in one operand type)
  const half = !p.causal && p.mapPlan !== undefined && (tier === 'tensorcore' || testing.scaledPortable === true)
    && (testing.halfFeatures ?? envFlag('FUSEDATTN_APPROX_HALF_FEATURES'));
  const halfKey = half ? { half: true } : {};
  const sgmat: Partial<Record<ApproxProduct, Pipeline>> = {};
  if (tier === 'tensorcore') {
    const used: ApproxProduct[] = p.causal ? ['state', 'scores', 'split'] : ['state', 'num'];
    for (const product of used) sgmat[product] = await runtime.pipeline(approxSgmatKernel, approxSgmatOptions(product, tile, half));
  }
  const pipelines = {
    features: p.mapPlan ? await runtime.pipeline(featuresKernel, { dtype, map: p.mapPlan.kernel, ...halfKey }) : undefined,
    augment: await runtime.pipeline(augmentKernel, { dtype, ...halfKey }),
    normalize: await runtime.pipeline(normalizeKernel, { out: dtype }),
    matmulIn: await runtime.pipeline(matmulKernel, { ...F32, a: dtype, transposeB: true }),
    matmul: await runtime.pipeline(matmulKernel, F32),
    split: p.causal ? await runtime.pipeline(matmulKernel, { ...F32, splitK: true }) : undefined,
    causal: p.causal ? await runtime.pipeline(causalScoresKernel, { ...F32, transposeB: true }) : undefined,
    prefix: p.causal ? await runtime.pipeline(chunkScanKernel, { mode: 'exclusive' }) : undefined,
    chunkSum: p.causal ? undefined : await runtime.pipeline(chunkScanKernel, { mode: 'total' }),
    ...(p.projection ? await performerPipelines(runtime, dtype) : {}),
  };
  let products: Products = { tier, pipelines: sgmat, tile: sgmatMatmulSize(tile), half };
  if (testing.scaledPortable) {
    const plain = pipelines.matmul;
    const state = half ? await runtime.pipeline(matmulKernel, { ...F32, a: 'float16', b: 'float16' }) : plain;
    const num = half ? await runtime.pipeline(matmulKernel, { ...F32, a: 'float16' }) : plain;
    products = { tier: 'portable', tile: MATMUL_TILE, half, pipelines: p.causal ? { state: plain, scores: pipelines.causal, split: pipelines.split } : { state, num } };
  }
  return { pipelines: pipelines as Record<string, Pipeline>, products };
}

/** The tensor-core tier's pipelines per product (empty on the portable tier) and their output tile. */
interface Products {
  tier: ApproxTier;
  pipelines: Partial<Record<ApproxProduct, Pipeline>>;
  tile: { m: number; n: number };
  /** φ and [V | 1] as float16 (non-causal linear attention only; the products read them so). */
  half: boolean;
}

function record(runtime: GpuRuntime, p: ApproxProblem, io: AttentionOperands, pipe: Record<string, Pipeline>, products: Products): void {
  const b = p.base;
  // one product: on the portable pipeline given, or on tensor cores (alpha-scaled where tier.ts says)
  const alpha = 1 / Math.max(1, b.seqK);
  const product = (kind: ApproxProduct, portable: Pipeline, call: MatmulCall) => {
    const sg = products.pipelines[kind];
    if (!sg) return dispatchMatmul(runtime, portable, call);
    dispatchMatmul(runtime, sg, { ...call, tile: products.tile, alpha: ALPHA_SCALED.has(kind) ? alpha : 1 });
  };
  const BH = b.batch * b.headsQ;
  const F = p.features;
  const W = b.dimV + 1;
  const group = b.headsQ / b.headsKv;
  // φ and [V | 1]: float32, or float16 pairs in planes of whole words (products.half); plane
  // strides in elements either way
  const half = products.half;
  const [wordsQ, wordsK, wordsA] = [b.seqQ * F, b.seqK * F, b.seqK * W].map((n) => Math.ceil(n / 2));
  const [planeQ, planeK, planeA] = half ? [2 * wordsQ, 2 * wordsK, 2 * wordsA] : [b.seqQ * F, b.seqK * F, b.seqK * W];
  const scratch: GPUBuffer[] = [];
  const buffer = (floats: number, label: string) => {
    const buf = runtime.acquire(Math.max(16, 4 * floats), 'intermediate', label);
    scratch.push(buf);
    return buf;
  };
  const dispatch = (label: string, pipeline: Pipeline, entries: Record<number, GPUBuffer | GPUBufferBinding>, workgroups: [number, number, number]) =>
    runtime.dispatch({ label, pipeline, bindGroups: [runtime.bindGroup(pipeline, 0, entries)], workgroups });
  const perElement = (n: number): [number, number, number] => [Math.max(1, Math.ceil(n / 256)), BH, 1];
  const operand = (binding: GPUBuffer | GPUBufferBinding, offset: number, strides: [number, number, number, number]): MatrixOperand => ({ binding, offset, strides });
  try {
    if (b.seqQ === 0) return;
    // ---- features φ(Q) [BH][Sq][F], φ(K) [BH][Sk][F]
    const phiQ = buffer(BH * (half ? wordsQ : planeQ), 'phi(Q)');
    const phiK = buffer(BH * (half ? wordsK : planeK), 'phi(K)');
    if (p.mapPlan) {
      const data = featuresBindData({ dtype: b.dtype, map: p.mapPlan.kernel }) ? runtime.uploadTransient(packModData(p.mapPlan.tensors), 'feature map data') : undefined;
      for (const [view, operandOf, out, seq, g, words] of [[b.q, io.q, phiQ, b.seqQ, 1, wordsQ], [b.k, io.k, phiK, b.seqK, group, wordsK]] as const) {
        const entries: Record<number, GPUBuffer | GPUBufferBinding> = {
          0: runtime.uniform(pack({ x_strides: viewStrides(view), x_off: view.offset + operandOf.elementBase, heads: b.headsQ, group: g, seq, cols: F, words }), 'features params'),
          1: operandOf.binding, 2: out,
        };
        if (data) entries[3] = data;
        if (seq > 0) dispatch('approx-features', pipe.features, entries, perElement(half ? words : seq * F));
      }
    } else {
      performerFeatures(runtime, p, io, pipe as unknown as PerformerPipelines, { phiQ, phiK, keyPlanes: 'query', buffer, dispatch });
    }
    // ---- [V | 1] [BH][Sk][Dv + 1]
    const aug = buffer(BH * (half ? wordsA : planeA), '[V | 1]');
    if (b.seqK > 0) {
      dispatch('approx-augment', pipe.augment, {
        0: runtime.uniform(pack({ x_strides: viewStrides(b.v), x_off: b.v.offset + io.v.elementBase, heads: b.headsQ, group, seq: b.seqK, cols: b.dimV, words: wordsA }), 'augment params'),
        1: io.v.binding, 2: aug,
      }, perElement(half ? wordsA : b.seqK * W));
    }
    // ---- numerators [BH][rows][Dv + 1]
    let rowsPerPlane = b.seqQ;
    let num: GPUBuffer;
    if (!p.causal) {
      const state = buffer(BH * F * W, 'state');
      const KC = stateChunkKeys(b.seqK, BH, F, W, products.pipelines.state ? products.tile : MATMUL_TILE);
      const full = Math.floor(b.seqK / KC);
      const rest = b.seqK - full * KC;
      const slots = full + (rest > 0 ? 1 : 0);
      if (slots <= 1) {
        product('state', pipe.matmul, {
          label: 'approx-state', options: F32, m: F, n: W, k: b.seqK, outer: BH, inner: 1,
          a: operand(phiK, 0, [planeK, 0, 1, F]), b: operand(aug, 0, [planeA, 0, W, 1]), c: operand(state, 0, [F * W, 0, W, 1]),
        });
      } else {
        // per key chunk of KC keys (the last one shorter), then their sum in chunk order
        const parts = buffer(BH * slots * F * W, 'state chunks');
        product('state', pipe.matmul, {
          label: 'approx-state-chunks', options: F32, m: F, n: W, k: KC, outer: BH, inner: full,
          a: operand(phiK, 0, [planeK, KC * F, 1, F]), b: operand(aug, 0, [planeA, KC * W, W, 1]), c: operand(parts, 0, [slots * F * W, F * W, W, 1]),
        });
        if (rest > 0) {
          product('state', pipe.matmul, {
            label: 'approx-state-rest', options: F32, m: F, n: W, k: rest, outer: BH, inner: 1,
            a: operand(phiK, full * KC * F, [planeK, 0, 1, F]), b: operand(aug, full * KC * W, [planeA, 0, W, 1]), c: operand(parts, full * F * W, [slots * F * W, 0, W, 1]),
          });
        }
        dispatch('approx-chunk-sum', pipe.chunkSum, {
          0: runtime.uniform(pack({ chunks: slots, words: F * W }), 'chunk sum params'), 2: parts, 3: state,
        }, perElement(F * W));
      }
      num = buffer(BH * b.seqQ * W, 'numerators');
      product('num', pipe.matmul, {
        label: 'approx-num', options: F32, m: b.seqQ, n: W, k: F, outer: BH, inner: 1,
        a: operand(phiQ, 0, [planeQ, 0, F, 1]), b: operand(state, 0, [F * W, 0, W, 1]), c: operand(num, 0, [b.seqQ * W, 0, W, 1]),
      });
    } else {
      const C = p.chunk;
      const chunks = Math.ceil(b.seqQ / C);
      const off = b.seqK - b.seqQ;
      rowsPerPlane = chunks * C;
      const scores = buffer(BH * chunks * C * C, 'chunk scores');
      product('scores', pipe.causal, {
        label: 'approx-chunk-scores', options: { ...F32, transposeB: true }, m: C, n: C, k: F, outer: BH, inner: chunks,
        a: operand(phiQ, 0, [planeQ, C * F, F, 1]), b: operand(phiK, off * F, [planeK, C * F, F, 1]), c: operand(scores, 0, [chunks * C * C, C * C, C, 1]),
      });
      const states = buffer(BH * chunks * F * W, 'chunk states');
      product('state', pipe.matmul, {
        label: 'approx-chunk-states', options: F32, m: F, n: W, k: C, outer: BH, inner: chunks,
        a: operand(phiK, off * F, [planeK, C * F, 1, F]), b: operand(aug, off * W, [planeA, C * W, W, 1]), c: operand(states, 0, [chunks * F * W, F * W, W, 1]),
      });
      const pre = buffer(off > 0 ? BH * F * W : 4, 'keys before the first chunk');
      if (off > 0) {
        product('state', pipe.matmul, {
          label: 'approx-pre-state', options: F32, m: F, n: W, k: off, outer: BH, inner: 1,
          a: operand(phiK, 0, [planeK, 0, 1, F]), b: operand(aug, 0, [planeA, 0, W, 1]), c: operand(pre, 0, [F * W, 0, W, 1]),
        });
      }
      dispatch('approx-prefix', pipe.prefix, {
        0: runtime.uniform(pack({ chunks, words: F * W, has_pre: off > 0 ? 1 : 0 }), 'prefix params'), 2: states, 3: pre,
      }, perElement(F * W));
      num = buffer(BH * rowsPerPlane * W, 'numerators');
      product('split', pipe.split, {
        label: 'approx-chunk-num', options: { ...F32, splitK: true }, m: C, n: W, k: C, k2: F, outer: BH, inner: chunks,
        a: operand(scores, 0, [chunks * C * C, C * C, C, 1]), b: operand(aug, off * W, [planeA, C * W, W, 1]),
        a2: operand(phiQ, 0, [planeQ, C * F, F, 1]), b2: operand(states, 0, [chunks * F * W, F * W, W, 1]),
        c: operand(num, 0, [rowsPerPlane * W, C * W, W, 1]),
      });
    }
    // ---- out = num / normaliser, in q's layout and dtype
    const total = b.outShape.reduce((x, y) => x * y, 1);
    const st = b.outStrides;
    const order = ([[st.b, 0], [st.h, 1], [st.s, 2], [st.d, 3]] as Array<[number, number]>).sort((x, y) => y[0] - x[0] || x[1] - y[1]);
    const threads = b.dtype === 'float16' ? Math.ceil(total / 2) : total;
    const groups = Math.ceil(threads / 256);
    dispatch('approx-normalize', pipe.normalize, {
      0: runtime.uniform(pack({ heads: b.headsQ, seq: rowsPerPlane, rows: total, dv: b.dimV }), 'normalize params'),
      2: num, 3: io.out, 4: runtime.uploadTransient(Uint32Array.from(order.flat()), 'output order'),
    }, [Math.min(groups, 65535), Math.ceil(groups / 65535), 1]);
  } finally {
    // the kernels that read them are queued; the pool hands them out again only to later work
    for (const s of scratch) runtime.release(s);
  }
}
