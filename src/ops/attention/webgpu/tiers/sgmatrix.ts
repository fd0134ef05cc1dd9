// Host side of the tensor-core tier (subgroup-matrix f16 flash forward): which problems and
// adapters it can take (a reason when not, so the chooser falls back), its tunable configurations,
// and running one problem (one dispatch) through the GpuRuntime.
import { nonFiniteUnsupported } from './non-finite.js';
import type { AttentionProblem } from '../../problem.js';
import { envChoice, envString } from '../../../../core/env.js';
import { UnsupportedError } from '../../../../core/errors.js';
import type { AttentionResult } from '../../backend.js';
import { type AttentionOperands, bindAndQueue, bindingSizes, measuredAttention, scoreParamsOf } from '../attention-io.js';
import { gpuMods, gpuModsPipelines, hasBlockTable, modDataBinding } from '../../mods/webgpu.js';
import { SG_SCORE_BINDINGS, type SgScoreHook } from './sgmatrix-score-hook.js';
import { dispatchFastTier } from './dispatch.js';
import { type GpuRuntime, defineKernel } from '../../../../engines/webgpu/runtime.js';
import { packParams } from './flash-params.js';
import { type SgMatrixKernelOptions, buildFlashSgMatrix, sgMatrixOptionsProblem, sgMatrixWorkgroupBytes } from './flash-sgmatrix-wgsl.js';
import { type WideKernelOptions, buildFlashSgMatrixWide, wideOptionsProblem, wideWorkgroupBytes } from './flash-sgmatrix-wide-wgsl.js';
import { type PairsKernelOptions, buildFlashSgMatrixPairs, pairsOptionsProblem, pairsWorkgroupBytes } from './flash-sgmatrix-pairs-wgsl.js';

export const sgMatrixKernel = defineKernel<SgMatrixKernelOptions>('flash-sgmatrix', buildFlashSgMatrix);
export const sgMatrixWideKernel = defineKernel<WideKernelOptions>('flash-sgmatrix-wide', buildFlashSgMatrixWide);
export const sgMatrixPairsKernel = defineKernel<PairsKernelOptions>('flash-sgmatrix-pairs', buildFlashSgMatrixPairs);

/** Options of any of the kernels: the 16-row one, the wide one (32 rows per subgroup), the pairs one (a subgroup pair per 16 rows). */
export type TierKernelOptions = SgMatrixKernelOptions | WideKernelOptions | PairsKernelOptions;
const isWide = (o: TierKernelOptions): o is WideKernelOptions => (o as WideKernelOptions).rowFrags === 2;
const isPairs = (o: TierKernelOptions): o is PairsKernelOptions => (o as PairsKernelOptions).rowPairs === true;

/** Why the options cannot make a kernel (any builder), or undefined. */
export function tierOptionsProblem(o: TierKernelOptions): string | undefined {
  // the wide and pairs kernels have no dropout hook: a dropout call takes a 16-row configuration
  if ((isWide(o) || isPairs(o)) && (o as SgMatrixKernelOptions).dropout) return `the ${isWide(o) ? 'wide' : 'pairs'} kernel does not implement dropout`;
  return isWide(o) ? wideOptionsProblem(o) : isPairs(o) ? pairsOptionsProblem(o) : sgMatrixOptionsProblem(o);
}

/** Workgroup memory of any of the kernels. */
export function tierWorkgroupBytes(o: TierKernelOptions): number {
  return isWide(o) ? wideWorkgroupBytes(o) : isPairs(o) ? pairsWorkgroupBytes(o) : sgMatrixWorkgroupBytes(o);
}

/** Query rows of one workgroup of the kernel `o` builds (before GQA packing divides them by head). */
function workgroupRows(o: TierKernelOptions): number {
  return isWide(o) ? 16 * o.rowFrags * o.subgroups : isPairs(o) ? 8 * o.subgroups : 16 * o.subgroups;
}

/** The tunable part of the kernel options (what the autotuner searches). */
export interface SgMatrixConfig {
  subgroups: number;
  blockKeys: number;
  sharedKV: boolean;
  smemVec4: boolean;
  prefetch: boolean;
  headsPerTile: number;
  /**
   * 32: the wide kernel (ops/attention/webgpu/flash-sgmatrix-wide-wgsl.ts, two row matrices per
   * subgroup; issue 14's candidate). Absent or 16: the 16-row kernel.
   */
  rowsPerSubgroup?: 16 | 32;
  /**
   * The pairs kernel (flash-sgmatrix-pairs-wgsl.ts): a subgroup pair per 16 rows, each with half of
   * the Q and O matrices (the backward's pairs layout, issue 14's next candidate).
   */
  pairs?: boolean;
  /** Q staged through the K/V space in passes (SgMatrixKernelOptions.qPasses). */
  qPasses?: boolean;
}

/**
 * Measured best on the H200 for most shapes; first = default. First since session 15 (call 3 at
 * commit 3edbb75, FWD_CONFIGS=16,17,18 bench/gpu/forward-configs.sh, 93 float64 checks first): 16-key blocks with
 * Q staged in passes, 16.5 KiB at D 128 so two or three workgroups share an SM, 1.34-1.36x the
 * previous default (the next line, 31 KiB: one workgroup of four warps per SM) at B4 H32 S4096
 * D128 (11.78 -> 8.81 ms), causal (6.38 -> 4.71), D 64 (0.586 -> 0.433), GQA; B1 S1024 causal
 * 0.182 -> 0.157 ms.
 */
export const SG_MATRIX_CONFIGS: readonly SgMatrixConfig[] = [
  { subgroups: 4, blockKeys: 16, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 1, qPasses: true },
  { subgroups: 4, blockKeys: 32, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 1 },
  { subgroups: 4, blockKeys: 16, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 1 },
  { subgroups: 4, blockKeys: 64, sharedKV: true, smemVec4: true, prefetch: false, headsPerTile: 1 },
  { subgroups: 2, blockKeys: 32, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 1 },
  { subgroups: 4, blockKeys: 32, sharedKV: false, smemVec4: false, prefetch: false, headsPerTile: 1 },
  { subgroups: 4, blockKeys: 32, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 4 },
  // fit small head dims only (workgroup memory): more work per barrier where blocks are cheap
  { subgroups: 4, blockKeys: 64, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 1 },
  { subgroups: 8, blockKeys: 32, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 1 },
  // issue 14: 32 query rows per subgroup (each K/V matrix feeds two MMAs); D <= 64 fits 4 subgroups,
  // D 128 fits 2 (Q and O then take 192 registers: the tuner decides whether that pays)
  { subgroups: 4, blockKeys: 32, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 1, rowsPerSubgroup: 32 },
  { subgroups: 2, blockKeys: 32, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 1, rowsPerSubgroup: 32 },
  { subgroups: 2, blockKeys: 64, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 1, rowsPerSubgroup: 32 },
  { subgroups: 4, blockKeys: 16, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 1, rowsPerSubgroup: 32 },
];

/**
 * The pairs kernel's configurations (a subgroup pair per 16 rows, half the registers per subgroup,
 * so 8 subgroups fit at D 128). Not autotuner candidates: on the H200 (fifth session, call 3,
 * bench/gpu/forward-pairs.sh, every configuration checked against float64 on 38 cases first) each
 * was slower than the default: B4 H32 S4096 D128 f16 12.96 / 15.51 / 18.63 / 12.95 ms against
 * 11.85, causal 6.76 against 6.36, D 64 0.68-0.75 against 0.47. Unlike the backward, whose passes
 * gained 1.5-1.8x from the same split, the forward was not bound by its registers: it pays the
 * second partial S in workgroup memory and the row state handed between the two subgroups.
 * FUSEDATTN_SGMATRIX_CONFIG still runs them (bench/gpu/check-tiers.mjs --configs pairs).
 */
export const SG_MATRIX_PAIRS_CONFIGS: readonly SgMatrixConfig[] = [
  { subgroups: 8, blockKeys: 32, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 1, pairs: true },
  { subgroups: 8, blockKeys: 16, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 1, pairs: true },
  { subgroups: 4, blockKeys: 32, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 1, pairs: true },
  { subgroups: 8, blockKeys: 32, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 4, pairs: true },
];

/**
 * The other configurations with Q staged in passes through the K/V space, small enough for two to
 * four workgroups per H200 SM (Dawn's pipelines get 48-56 KiB of workgroup memory per SM there,
 * bench/ceiling/occupancy.mjs). Not autotuner candidates: the first of session 15's four (4
 * subgroups, 16 keys; 16.5 / 12.5 KiB at D 128 / 64) won and is SG_MATRIX_CONFIGS[0]; these were
 * slower there (call 3) or not timed. FWD_CONFIGS=occupancy bench/gpu/forward-configs.sh checks
 * each against float64 and times it beside the default. Bytes at D 128 / 64: 22.5 / 18.5 KiB
 * (2 / 2 per SM by the probe), 12.5 / 8.5 (4 / 4, two subgroups), 24.5 / 20.5 (1 / 2, eight
 * subgroups in four passes).
 */
export const SG_MATRIX_OCCUPANCY_CONFIGS: readonly SgMatrixConfig[] = [
  { subgroups: 4, blockKeys: 32, sharedKV: true, smemVec4: true, prefetch: false, headsPerTile: 1, qPasses: true },
  { subgroups: 2, blockKeys: 16, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 1, qPasses: true },
  { subgroups: 8, blockKeys: 16, sharedKV: false, smemVec4: true, prefetch: true, headsPerTile: 1, qPasses: true },
];

/** What the tier needs from the runtime (a subset, so tests can fake an adapter). */
export interface TierDevice {
  readonly features: ReadonlySet<string>;
  readonly limits: Pick<GPUSupportedLimits, 'maxComputeWorkgroupStorageSize' | 'maxStorageBuffersPerShaderStage' | 'maxStorageBufferBindingSize' | 'maxComputeWorkgroupsPerDimension' | 'minStorageBufferOffsetAlignment'>;
  readonly adapter: { subgroupMinSize?: number; subgroupMaxSize?: number; subgroupMatrixConfigs: ReadonlyArray<{ componentType: string; resultComponentType: string; M: number; N: number; K: number }> };
}

/** Why the adapter cannot run the tier at all (independent of the problem), or undefined. */
export function sgMatrixAdapterUnsupported(d: TierDevice): string | undefined {
  for (const f of ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix']) {
    if (!d.features.has(f)) return `the adapter lacks the "${f}" feature`;
  }
  const ok = d.adapter.subgroupMatrixConfigs.some((c) => c.componentType === 'f16' && c.resultComponentType === 'f32' && c.M === 16 && c.N === 16 && c.K === 16);
  if (!ok) return 'the adapter has no f16 16x16x16 subgroup matrix with f32 result';
  if (d.adapter.subgroupMinSize !== 32 || d.adapter.subgroupMaxSize !== 32) {
    return `the kernel assumes subgroups of 32 invocations, the adapter has ${d.adapter.subgroupMinSize}..${d.adapter.subgroupMaxSize}`;
  }
  return undefined;
}

/** Why the tier cannot run `p` (problem options the kernel does not implement, sizes), or undefined. */
export function sgMatrixProblemUnsupported(p: AttentionProblem, d: TierDevice): string | undefined {
  if (p.dtype !== 'float16') return 'it computes float16 inputs only (float32 keeps full precision on the portable tier)';
  if (p.dimQK + p.dimRope > 256 || p.dimV > 256) return `head dims up to 256 (got Dq ${p.dimQK}${p.dimRope ? ` + Dr ${p.dimRope}` : ''}, Dv ${p.dimV})`;
  if (!SG_MATRIX_CONFIGS.some((c) => fits(kernelOptionsOf(p, c), d))) return 'no configuration fits the workgroup memory limit for these head dims';
  const buffers = 5 + (p.returnLse ? 1 : 0) + (p.qRope ? 2 : 0) + (p.mask ? 1 : 0) + (p.bias ? 1 : 0) + (p.mods || p.blockMask || p.mask ? 1 : 0);
  if (buffers > d.limits.maxStorageBuffersPerShaderStage) return `needs ${buffers} storage buffers, the device allows ${d.limits.maxStorageBuffersPerShaderStage}`;
  for (const [name, bytes] of bindingSizes(p, d.limits.minStorageBufferOffsetAlignment)) {
    if (bytes > d.limits.maxStorageBufferBindingSize) return `${name} needs a ${bytes}-byte binding, the device allows ${d.limits.maxStorageBufferBindingSize}`;
  }
  const max = d.limits.maxComputeWorkgroupsPerDimension;
  if (Math.ceil(p.seqQ / 16) > max || p.headsQ > max || p.batch > max) return 'the grid exceeds maxComputeWorkgroupsPerDimension';
  const nonFinite = nonFiniteUnsupported(p);
  if (nonFinite) return nonFinite;
  return undefined;
}

function fits(o: TierKernelOptions, d: TierDevice): boolean {
  return tierOptionsProblem(o) === undefined && tierWorkgroupBytes(o) <= d.limits.maxComputeWorkgroupStorageSize;
}

/**
 * Kernel options for problem `p` under `config`. Features the problem rules out are switched off
 * here (vector loads need 8-aligned offsets/strides, prefetch needs them), never silently wrong.
 */
export function kernelOptionsOf(p: AttentionProblem, config: SgMatrixConfig, elementBases: number[] = [0, 0, 0, 0, 0], blockTable = false): TierKernelOptions {
  const group = p.headsQ / p.headsKv;
  // a block table has one row per head: one head per workgroup then
  let headsPerTile = mayHaveBlockTable(p) ? 1 : Math.min(config.headsPerTile, group, config.subgroups);
  while (group % headsPerTile !== 0 || config.subgroups % headsPerTile !== 0) headsPerTile--;
  const views = [p.q, p.k, p.v, p.qRope, p.kRope];
  const aligned = views.every((v, i) => !v || ((v.offset + elementBases[i]) % 8 === 0 && v.strides.b % 8 === 0 && v.strides.s % 8 === 0 && v.strides.h % 8 === 0));
  const vectorLoads = aligned && p.dimQK % 8 === 0 && p.dimRope % 8 === 0 && p.dimV % 8 === 0;
  const o: SgMatrixKernelOptions = {
    dimQK: p.dimQK,
    dimRope: p.dimRope,
    dimV: p.dimV,
    subgroups: config.subgroups,
    blockKeys: config.blockKeys,
    headsPerTile,
    sharedKV: config.sharedKV,
    vectorLoads,
    rescaleThreshold: 8,
    causalOrWindow: p.window.left !== Infinity || p.window.right !== Infinity,
    softcap: p.softcap > 0,
    alibi: p.alibi !== undefined,
    returnLse: p.returnLse,
    rowPad: 8,
    smemVec4: config.smemVec4,
    prefetch: config.prefetch,
    // measured on the H200 (docs/GPU-NOTES.md, run 5): the rolled loops were ~20% faster here
    unrolled: false,
    dropout: p.dropout !== undefined,
  };
  if (p.softcap > 0 && sgTanh() === 'exp2') o.tanh = 'exp2';
  if (p.softcap > 0 && p.softcapRule === 'function') o.softcapFunction = true;
  if (p.mask || p.bias || p.mods || blockTable) o.score = scoreHookOf(p, blockTable);
  // the wide and pairs kernels refuse rather than drop prefetch (and refuse the score hook: they have none)
  if (config.rowsPerSubgroup === 32) return { ...o, rowFrags: 2 };
  if (config.pairs) return { ...o, rowPairs: true };
  if (o.prefetch && sgMatrixOptionsProblem(o) !== undefined) o.prefetch = false;
  if (config.qPasses) o.qPasses = true;
  return o;
}

/** A call whose block structure (block mask, dense mask) the kernel may walk. */
function mayHaveBlockTable(p: AttentionProblem): boolean {
  return p.blockMask !== undefined || p.mask !== undefined;
}

function scoreHookOf(p: AttentionProblem, blockTable: boolean): SgScoreHook {
  const hook: SgScoreHook = {
    mask: p.mask !== undefined,
    bias: p.bias ? (p.bias.tensor.dtype as 'float32' | 'float16') : 'none',
    windowed: p.window.left !== Infinity || p.window.right !== Infinity,
    softcap: p.softcap > 0,
    alibi: p.alibi !== undefined,
    mods: p.mods?.kernel,
    blockTable,
  };
  if (sgTanh() === 'exp2') hook.tanh = 'exp2';
  return hook;
}

/**
 * The tier's tanh (softcap option and score functions): from exp2 unless
 * FUSEDATTN_SGMATRIX_TANH=builtin (WGSL's tanh). H200, causal B4 H32 S4096 D128: a softcap function
 * costs 1.22x causal this way, 1.59x with WGSL's tanh (bench/results/h200-2026-12-02-s3/call4).
 */
function sgTanh(): 'builtin' | 'exp2' {
  return envChoice('FUSEDATTN_SGMATRIX_TANH', ['builtin', 'exp2'] as const) ?? 'exp2';
}

/**
 * FUSEDATTN_SGMATRIX_CONFIG (JSON of an SgMatrixConfig) forces a configuration, as the GPU checks
 * do to run every candidate on every case (bench/gpu/check-tiers.mjs --configs); UnsupportedError
 * when it cannot run `p` here. Undefined when unset.
 */
export function forcedConfig(p: AttentionProblem, d: TierDevice): SgMatrixConfig | undefined {
  const text = envString('FUSEDATTN_SGMATRIX_CONFIG');
  if (text === undefined) return undefined;
  let config: SgMatrixConfig;
  try {
    config = { ...SG_MATRIX_CONFIGS[0], ...(JSON.parse(text) as Partial<SgMatrixConfig>) };
  } catch {
    throw new UnsupportedError('FUSEDATTN_SGMATRIX_CONFIG', `FUSEDATTN_SGMATRIX_CONFIG must be JSON of a tensor-core configuration, got ${text.slice(0, 80)}`);
  }
  const o = kernelOptionsOf(p, config);
  const problem = tierOptionsProblem(o) ?? (tierWorkgroupBytes(o) > d.limits.maxComputeWorkgroupStorageSize ? `it needs ${tierWorkgroupBytes(o)} bytes of workgroup memory` : undefined);
  if (problem) throw new UnsupportedError('FUSEDATTN_SGMATRIX_CONFIG', `FUSEDATTN_SGMATRIX_CONFIG ${text} cannot run this problem: ${problem}`);
  return config;
}

/** The first configuration of `preferred` then SG_MATRIX_CONFIGS that fits the device. */
export function fittingConfig(p: AttentionProblem, d: TierDevice, preferred?: SgMatrixConfig): SgMatrixConfig | undefined {
  const candidates = preferred ? [preferred, ...SG_MATRIX_CONFIGS] : SG_MATRIX_CONFIGS;
  return candidates.find((c) => fits(kernelOptionsOf(p, c), d) && checkedOnGpu(p, c));
}

/**
 * Whether `c` has been checked against float64 on a real GPU for calls like `p`. Q in passes was
 * checked (H200, session 15) on every SUITE case without masks or biases (dropout, TND, GQA, MLA
 * split, windows included); the call that was to check it with bool masks, biases, score/mask
 * functions and block masks was lost with the machine, so those calls keep the previous default
 * until a GPU run passes them (FUSEDATTN_SGMATRIX_CONFIG still forces it, for that run).
 */
function checkedOnGpu(p: AttentionProblem, c: SgMatrixConfig): boolean {
  return !c.qPasses || !(p.mask || p.bias || p.mods || p.blockMask);
}

/** Grid of the kernel: query tiles × query-head tiles × batch. */
export function sgMatrixGrid(p: AttentionProblem, o: TierKernelOptions): [number, number, number] {
  const rowsPerHead = workgroupRows(o) / o.headsPerTile;
  return [Math.ceil(p.seqQ / rowsPerHead), p.headsQ / o.headsPerTile, p.batch];
}

/**
 * Queues the kernel for `p` (inputs bound, outputs allocated) without reading back; returns what
 * finishAttention needs. The autotuner times this with timestamp queries.
 */
export function queueSgMatrix(runtime: GpuRuntime, p: AttentionProblem, config: SgMatrixConfig): Promise<AttentionOperands> {
  return bindAndQueue(runtime, p, (io) => recordSgMatrix(runtime, p, config, io));
}

export function runSgMatrix(runtime: GpuRuntime, p: AttentionProblem, config: SgMatrixConfig): Promise<AttentionResult> {
  return measuredAttention(runtime, p, (io) => recordSgMatrix(runtime, p, config, io));
}

/** Records the kernel for `p` on its bound operands. */
async function recordSgMatrix(runtime: GpuRuntime, p: AttentionProblem, config: SgMatrixConfig, io: AttentionOperands): Promise<void> {
  const bases = [io.q.elementBase, io.k.elementBase, io.v.elementBase, io.qRope?.elementBase ?? 0, io.kRope?.elementBase ?? 0];
  const plain = kernelOptionsOf(p, config, bases);
  // block structure at this configuration's tiles: a workgroup's query rows, BC keys
  const rows = workgroupRows(plain);
  const mods = mayHaveBlockTable(p) || p.mods ? gpuMods(p, { rows, keys: plain.blockKeys, denseKeys: plain.blockKeys }) : undefined;
  const o = hasBlockTable(mods) ? kernelOptionsOf(p, config, bases, true) : plain;
  const tablePipes = mods ? await gpuModsPipelines(runtime, mods) : undefined;
  const pipeline = isWide(o) ? await runtime.pipeline(sgMatrixWideKernel, o) : isPairs(o) ? await runtime.pipeline(sgMatrixPairsKernel, o) : await runtime.pipeline(sgMatrixKernel, o);
  const grid = sgMatrixGrid(p, o);
  const params = packParams(p, grid[0], { q: bases[0], k: bases[1], v: bases[2], qRope: bases[3], kRope: bases[4] });
  const extra: Record<number, GPUBuffer | GPUBufferBinding> = {};
  if (o.score) {
    extra[SG_SCORE_BINDINGS.params] = runtime.uniform(scoreParamsOf(p, io.mask, io.bias), 'score params');
    if (io.mask) extra[SG_SCORE_BINDINGS.mask] = io.mask.binding;
    if (io.bias) extra[SG_SCORE_BINDINGS.bias] = io.bias.binding;
    const modData = mods ? modDataBinding(runtime, p, mods, io.mask, tablePipes) : undefined;
    if (modData) extra[SG_SCORE_BINDINGS.modData] = modData;
  }
  dispatchFastTier(runtime, p, io, { label: 'flash-sgmatrix', pipeline, params, grid, extra });
}
