// Host side of the fused non-causal linear attention (fused.wgsl.ts; FUSEDATTN_APPROX_TIER=fused):
// which problems it takes, its tiles and key chunks, its buffers, its three dispatches.
import { envInt } from '../../../core/env.js';
import { UnsupportedError } from '../../../core/errors.js';
import { type GpuRuntime, defineKernel } from '../../../engines/webgpu/runtime.js';
import type { StridedView } from '../../attention/problem.js';
import type { AttentionOperands } from '../../attention/webgpu/attention-io.js';
import { ELU_PLUS_ONE, IDENTITY, RELU } from '../features.js';
import type { ApproxProblem } from '../problem.js';
import { CAUSAL_MAX_FEATURES, CAUSAL_TM, type FusedCausalOptions, buildFusedCausalOutput, buildFusedScan } from './fused-causal.wgsl.js';
import {
  FUSED_KT, FUSED_PARAMS, type FusedFeatureMap, type FusedLinearOptions, type FusedOutputOptions,
  buildFusedOutput, buildFusedReduce, buildFusedState,
} from './fused.wgsl.js';

export const fusedStateKernel = defineKernel<FusedLinearOptions>('approx-fused-state', buildFusedState);
export const fusedReduceKernel = defineKernel<Record<string, never>>('approx-fused-reduce', buildFusedReduce);
export const fusedOutputKernel = defineKernel<FusedOutputOptions>('approx-fused-output', buildFusedOutput);
export const fusedScanKernel = defineKernel<Record<string, never>>('approx-fused-scan', buildFusedScan);
export const fusedCausalOutputKernel = defineKernel<FusedCausalOptions>('approx-fused-causal-output', buildFusedCausalOutput);

/**
 * Keys per chunk of the causal form (FUSEDATTN_APPROX_FUSED_CHUNK overrides, a multiple of 32):
 * each query tile reads one prefix state and runs its own keys past the last chunk boundary
 * (up to KC + 63 of them) through the masked products, so shorter chunks mean less in-chunk work
 * but more (and larger) prefix states to write and read.
 */
export const CAUSAL_CHUNK_KEYS = 128;

/**
 * Workgroups the state kernel aims for: about two per SM of the H200. Fewer, longer key chunks
 * measured faster there (fifth session, B4 H32 S4096 D128 f16: the state kernel 0.462 / 0.398 /
 * 0.373 / 0.354 ms at 2048 / 1024 / 512 / 256 workgroups, the partials' writes and their
 * reduction shrinking with the chunk count); small problems still split down to STATE_MIN_CHUNK.
 */
const STATE_TARGET_WORKGROUPS = 256;
/** Fewest keys per chunk (below, the partials' traffic costs more than the extra workgroups give). */
const STATE_MIN_CHUNK = 256;

/** The built-in map of `p`, or undefined (an expression map, Performer). */
export function fusedMapOf(p: ApproxProblem): FusedFeatureMap | undefined {
  if (p.kind !== 'linear') return undefined;
  if (p.map === ELU_PLUS_ONE) return 'elu+1';
  if (p.map === RELU) return 'relu';
  if (p.map === IDENTITY) return 'identity';
  return undefined;
}

/** Why the fused kernels do not take `p` (it then runs on the portable path), or undefined. */
export function fusedProblemUnsupported(p: ApproxProblem): string | undefined {
  if (p.kind !== 'linear') return 'Performer runs on the portable path';
  // (causal with Sq > Sk is refused before any route: approxGpuUnsupported)
  if (p.causal && p.features > CAUSAL_MAX_FEATURES) return `causal linear attention on the fused kernels keeps the whole φ(Q) tile in workgroup memory: at most ${CAUSAL_MAX_FEATURES} features, got ${p.features}`;
  if (!fusedMapOf(p)) return 'an expression feature map runs on the portable path (the fused kernels know elu+1 and relu)';
  return undefined;
}

/** A view read 8 elements at a time: d contiguous, its first element and b/h/s strides on 8-element (f16) or 4-element (f32) boundaries. */
function vecView(v: StridedView, base: number, dim: number, dtype: string): boolean {
  const a = dtype === 'float16' ? 8 : 4;
  const s = v.strides;
  return s.d === 1 && dim % 8 === 0 && (v.offset + base) % a === 0 && s.b % a === 0 && s.h % a === 0 && s.s % a === 0;
}

/** Tiles, key chunks and sizes of `p`'s fused run. `chunkKeys` overrides the chunking (a multiple of 32; FUSEDATTN_APPROX_FUSED_CHUNK). */
export function fusedPlan(p: ApproxProblem, bases = { q: 0, k: 0, v: 0 }, chunkKeys = envInt('FUSEDATTN_APPROX_FUSED_CHUNK', FUSED_KT, 1 << 30), maxPartBytes = Infinity) {
  const b = p.base;
  const map = fusedMapOf(p)!;
  const F = p.features;
  const tmState = F > 64 ? 128 : 64;
  const tn = b.dimV > 64 ? 128 : 64;
  // query rows per output workgroup: 128 (8 subgroups) by default, FUSEDATTN_APPROX_FUSED_ROWS=64 for twice the workgroups
  const rows = envInt('FUSEDATTN_APPROX_FUSED_ROWS', 64, 128);
  if (rows !== undefined && rows !== 64 && rows !== 128) throw new UnsupportedError('FUSEDATTN_APPROX_FUSED_ROWS', `FUSEDATTN_APPROX_FUSED_ROWS must be 64 or 128, got ${rows}`);
  const tmOut = (rows ?? (b.seqQ > 64 && tn === 128 ? 128 : 64)) as 64 | 128;
  const fTiles = Math.ceil(F / tmState);
  const vTiles = Math.ceil(b.dimV / tn);
  const fp = fTiles * tmState;
  const dvp = vTiles * tn;
  const planes = b.batch * b.headsKv;
  let kc: number;
  if (p.causal) {
    // the default doubles until the partial states fit one binding (long sequences)
    kc = chunkKeys ?? CAUSAL_CHUNK_KEYS;
    while (chunkKeys === undefined && kc < b.seqK && planes * Math.ceil((b.seqK + kc) / kc) * fp * dvp * 4 > maxPartBytes) kc *= 2;
    if (kc % FUSED_KT !== 0) throw new UnsupportedError('FUSEDATTN_APPROX_FUSED_CHUNK', `FUSEDATTN_APPROX_FUSED_CHUNK must be a multiple of ${FUSED_KT}, got ${kc}`);
  } else if (chunkKeys !== undefined) {
    if (chunkKeys % FUSED_KT !== 0) throw new UnsupportedError('FUSEDATTN_APPROX_FUSED_CHUNK', `FUSEDATTN_APPROX_FUSED_CHUNK must be a multiple of ${FUSED_KT}, got ${chunkKeys}`);
    kc = chunkKeys;
  } else {
    const wanted = Math.ceil(STATE_TARGET_WORKGROUPS / Math.max(1, planes * fTiles * vTiles));
    // the partial states stay within one binding (fewer, longer chunks for many or wide planes)
    const fit = Math.floor(maxPartBytes / (planes * fp * dvp * 4));
    const chunks = Math.max(1, Math.min(wanted, fit, Math.floor(b.seqK / STATE_MIN_CHUNK)));
    kc = Math.max(FUSED_KT, Math.ceil(b.seqK / chunks / FUSED_KT) * FUSED_KT);
  }
  const off = b.seqK - b.seqQ;
  const keyShift = p.causal ? (kc - (off % kc)) % kc : 0;
  const chunks = Math.max(1, Math.ceil((b.seqK + keyShift) / kc));
  const st = b.outStrides;
  const state: FusedLinearOptions = {
    dtype: b.dtype as 'float32' | 'float16', map, tm: tmState, tn,
    vec: vecView(b.k, bases.k, F, b.dtype) && vecView(b.v, bases.v, b.dimV, b.dtype),
  };
  const output: FusedOutputOptions = {
    dtype: state.dtype, map, tm: tmOut, tn, vec: vecView(b.q, bases.q, F, b.dtype),
    vecOut: st.d === 1 && b.dimV % 8 === 0 && st.b % 8 === 0 && st.h % 8 === 0 && st.s % 8 === 0,
  };
  // causal: one prefix state (and z) per chunk, the whole φ(Q) tile of FP features in workgroup memory
  const causal: FusedCausalOptions | undefined = p.causal
    ? { dtype: state.dtype, map, fp: fp as 64 | 128, tn, vecQ: output.vec, vecKV: state.vec, vecOut: output.vecOut }
    : undefined;
  const states = p.causal ? chunks : 1;
  return {
    state, output, causal, fTiles, vTiles, fp, dvp, planes, chunkKeys: kc, chunks, keyShift, off,
    bytes: { part: planes * chunks * fp * dvp * 4, zpart: planes * chunks * fp * 4, state: planes * states * fp * dvp * 2, z: planes * states * fp * 4 },
  };
}

export type FusedPlan = ReturnType<typeof fusedPlan>;

/** Why the device cannot run the plan (grid or binding sizes), or undefined. */
export function fusedPlanUnsupported(plan: FusedPlan, p: ApproxProblem, limits: Pick<GPUSupportedLimits, 'maxComputeWorkgroupsPerDimension' | 'maxStorageBufferBindingSize'>): string | undefined {
  const max = limits.maxComputeWorkgroupsPerDimension;
  const b = p.base;
  // every dimension of the three dispatches (the output's query tiles are the causal kernel's where causal)
  const grids = fusedGrids(p, plan);
  if (Object.values(grids).some((grid) => grid.some((n) => n > max))) {
    return `the grid (${plan.chunks} key chunks, ${plan.planes} key planes, ${b.batch * b.headsQ} query planes, ${grids.output[0]} query tiles) exceeds maxComputeWorkgroupsPerDimension ${max}`;
  }
  if (plan.bytes.part > limits.maxStorageBufferBindingSize) {
    return `the partial states need a ${plan.bytes.part}-byte binding, the device allows ${limits.maxStorageBufferBindingSize}`;
  }
  return undefined;
}

const strides4 = (v: { b: number; h: number; s: number; d: number }): [number, number, number, number] => [v.b, v.h, v.s, v.d];

/** The uniform values of the three kernels (the host's and the emulation test's). */
export function fusedParams(p: ApproxProblem, plan: FusedPlan, bases: { q: number; k: number; v: number }) {
  const b = p.base;
  return {
    q_str: strides4(b.q.strides), k_str: strides4(b.k.strides), v_str: strides4(b.v.strides), o_str: strides4(b.outStrides),
    q_off: b.q.offset + bases.q, k_off: b.k.offset + bases.k, v_off: b.v.offset + bases.v,
    heads: b.headsQ, group: b.headsQ / b.headsKv, kv_heads: b.headsKv, seq_q: b.seqQ, seq_k: b.seqK, dim: p.features, dim_v: b.dimV,
    chunk_keys: plan.chunkKeys, chunks: plan.chunks, fp: plan.fp, dvp: plan.dvp, alpha: 1 / Math.max(1, b.seqK),
    quads: (plan.fp * plan.dvp + plan.fp) / 4,
    key_shift: plan.keyShift, off: p.causal ? plan.off : 0,
  };
}

/** Workgroup counts of the three dispatches. */
export function fusedGrids(p: ApproxProblem, plan: FusedPlan): Record<'state' | 'reduce' | 'output', [number, number, number]> {
  const b = p.base;
  return {
    state: [plan.chunks, plan.planes, plan.fTiles * plan.vTiles],
    reduce: [Math.ceil((plan.fp * plan.dvp + plan.fp) / 4 / 256), plan.planes, 1],
    output: [Math.ceil(b.seqQ / (plan.causal ? CAUSAL_TM : plan.output.tm)), b.batch * b.headsQ, plan.vTiles],
  };
}

/** Why the fused kernels cannot take `p` on this device (the problem, then its plan's sizes), or undefined. */
export function fusedUnsupportedOn(p: ApproxProblem, limits: GPUSupportedLimits): string | undefined {
  const why = fusedProblemUnsupported(p);
  if (why) return why;
  return fusedPlanUnsupported(fusedPlan(p, undefined, undefined, limits.maxStorageBufferBindingSize), p, limits);
}

/** Queues the three fused dispatches for `p` (built-in map; causal: state, scan, causal output), writing io.out. */
export async function recordFused(runtime: GpuRuntime, p: ApproxProblem, io: AttentionOperands): Promise<() => void> {
  const b = p.base;
  const plan = fusedPlan(p, { q: io.q.elementBase, k: io.k.elementBase, v: io.v.elementBase }, undefined, runtime.limits.maxStorageBufferBindingSize);
  const reason = fusedPlanUnsupported(plan, p, runtime.limits);
  if (reason) throw new UnsupportedError('options.backend', `linear attention on the fused tensor-core path: ${reason}`);
  const [state, reduce, output] = [
    await runtime.pipeline(fusedStateKernel, plan.state),
    await runtime.pipeline(plan.causal ? fusedScanKernel : fusedReduceKernel, {}),
    plan.causal ? await runtime.pipeline(fusedCausalOutputKernel, plan.causal) : await runtime.pipeline(fusedOutputKernel, plan.output),
  ];
  return () => {
    if (b.seqQ === 0) return;
    const scratch: GPUBuffer[] = [];
    const buffer = (bytes: number, label: string) => {
      const buf = runtime.acquire(Math.max(16, bytes), 'intermediate', label);
      scratch.push(buf);
      return buf;
    };
    try {
      const params = runtime.uniform(FUSED_PARAMS.pack(fusedParams(p, plan, { q: io.q.elementBase, k: io.k.elementBase, v: io.v.elementBase })), 'fused linear params');
      const part = buffer(plan.bytes.part, 'fused partial states');
      const zpart = buffer(plan.bytes.zpart, 'fused partial sums');
      const st = buffer(plan.bytes.state, plan.causal ? 'fused prefix states (f16, times alpha_e)' : 'fused state (f16, times 1/Sk)');
      const z = buffer(plan.bytes.z, plan.causal ? 'fused prefix key sums (times alpha_e)' : 'fused key sums (times 1/Sk)');
      const dispatch = (label: string, pipeline: typeof state, entries: Record<number, GPUBuffer | GPUBufferBinding>, workgroups: [number, number, number]) =>
        runtime.dispatch({ label, pipeline, bindGroups: [runtime.bindGroup(pipeline, 0, entries)], workgroups });
      const grid = fusedGrids(p, plan);
      dispatch('approx-fused-state', state, { 0: params, 1: io.k.binding, 2: io.v.binding, 3: part, 4: zpart }, grid.state);
      if (plan.causal) {
        dispatch('approx-fused-scan', reduce, { 0: params, 3: part, 4: zpart, 5: st, 6: z }, grid.reduce);
        dispatch('approx-fused-causal-output', output, { 0: params, 1: io.q.binding, 8: io.k.binding, 2: io.v.binding, 5: st, 6: z, 7: io.out }, grid.output);
      } else {
        dispatch('approx-fused-reduce', reduce, { 0: params, 3: part, 4: zpart, 5: st, 6: z }, grid.reduce);
        dispatch('approx-fused-output', output, { 0: params, 1: io.q.binding, 5: st, 6: z, 7: io.out }, grid.output);
      }
    } finally {
      for (const s of scratch) runtime.release(s);
    }
  };
}
