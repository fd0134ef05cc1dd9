// What one decode call runs on a device: the partial kernel's options (rows per workgroup, chunk
// width, tile size) and the key splits; the combine pass runs when there is more than one split
// or the LSE is wanted. Chosen so that a long cache fills the GPU (splits) and each thread keeps
// its accumulators in registers (rows x chunk quads <= 16 vec4).
import { envChoice, envInt } from '../../../core/env.js';
import type { StoredDType } from './access.wgsl.js';
import { type DecodeAppendOptions, decodeAppendUnsupported } from './append.wgsl.js';
import { MLA_TILE, type MlaDecodeOptions, mlaDecodeSharedBytes, mlaDecodeUnsupported } from './mla-sgmatrix.wgsl.js';
import { type PipelinedDecodeOptions, pipelinedChunks, pipelinedLayout, pipelinedSharedBytes, pipelinedStorageBindings, pipelinedUnsupported } from './split-kv-pipelined.wgsl.js';
import { type SplitKvOptions, splitKvSharedBytes, splitKvStorageBindings, splitKvUnsupported } from './split-kv.wgsl.js';

/** The shape-level facts a plan depends on (the same for a call and for a recorded step). */
export interface DecodeShape {
  dimQK: number;
  dimV: number;
  /** Nq / Nkv. */
  group: number;
  headsKv: number;
  batch: number;
  /** New query rows per sequence. */
  tokens: number;
  /** Most visible keys of a sequence (plans change only at a few lengths: splits are powers of two). */
  maxKeys: number;
  cache: StoredDType;
  io: 'float32' | 'float16';
  paged: boolean;
  sharedKV: boolean;
  append: boolean;
  rope: boolean;
  softcap: boolean;
  alibi: boolean;
  lse: boolean;
}

export interface DecodePlan {
  kernel: SplitKvOptions;
  splits: number;
  /** Workgroups of the partial pass: [Nkv x head blocks, B x token blocks, splits]. */
  grid: [number, number, number];
  /** True when the combine pass runs (splits > 1 or the LSE is wanted). */
  combine: boolean;
  /** Output rows (B x Nq x Sq): the combine pass's workgroups. */
  rows: number;
  /**
   * The tensor-core MLA kernel (mla-sgmatrix.wgsl.ts) instead of split-KV, with its own splits and
   * grid (always combined); the call falls back to `kernel` where its strides do not allow it.
   */
  mla?: { kernel: MlaDecodeOptions; splits: number; grid: [number, number, number] };
  /**
   * The pipelined split-KV kernel (split-kv-pipelined.wgsl.ts) for calls without appends, RoPE or
   * a latent cache, with its own splits, grid and combine; the call falls back to `kernel` where its
   * strides are not whole cache words (its `chunk`).
   */
  pipelined?: {
    kernel: PipelinedDecodeOptions; splits: number; grid: [number, number, number]; combine: boolean;
    /** The call's appends (and RoPE) run first as a dispatch of their own (append.wgsl.ts). */
    append?: DecodeAppendOptions;
  };
}

type Limits = Pick<GPUSupportedLimits, 'maxComputeWorkgroupStorageSize' | 'maxComputeInvocationsPerWorkgroup' | 'maxComputeWorkgroupSizeX' | 'maxStorageBuffersPerShaderStage' | 'maxComputeWorkgroupsPerDimension'>;

/** Workgroups a decode call aims for (about two per SM of a large GPU; H200 runs, issue 4). */
export const DEFAULT_TARGET = 256;
/** Chunks in flight per thread: 4 measured as good as 8 or 16 (issue 4). */
export const DEFAULT_UNROLL = 4;
/**
 * Threads per key in the score phase: 4 beat 1, 2, 8 and 16 at llama-8b 32K / 4K f16 on the H200
 * (136 -> 101 us; bench/results/h200-2026-12-02-s3, lane sums through workgroup memory).
 */
export const DEFAULT_KEY_LANES = 4;
/** Most rows per workgroup, and most accumulator quads per thread (rows x chunk / 4). */
const MAX_ROWS = 16;
const MAX_QUADS = 16;
const MAX_SPLITS = 256;

/**
 * The plan for `s` on a device with `limits`, or the reason there is none. Benchmarks override
 * with FUSEDATTN_DECODE_WORKGROUP (largest workgroup), FUSEDATTN_DECODE_TARGET and
 * FUSEDATTN_DECODE_UNROLL, FUSEDATTN_DECODE_KEY_LANES (threads per key in the score phase, where the
 * head dim allows; 1 until a GPU run shows where more pay), FUSEDATTN_DECODE_SHARED_WEIGHTS (1: the
 * softmax weights once per row and key slice, see SplitKvOptions.sharedWeights; on by default),
 * FUSEDATTN_DECODE_SUBGROUP_LANES (1: key lanes summed by subgroup shuffles where the device has
 * subgroups; off by default, the H200 showed no gain at 4 lanes), FUSEDATTN_DECODE_CHUNK (the widest
 * cache load in elements: 4, 8 or 16; an int8 cache takes 8 by default like a float16 one: at 16 each
 * key had half the value threads a float16 cache gets, and the H200 measured 8 faster, llama-8b 4K
 * int8 40.8 -> 30.9 us, fifth session, call 1, bench/gpu/decode-int8.sh).
 */
export function planDecode(s: DecodeShape, limits: Limits, targetWorkgroups?: number, device: PlanDevice = {}): DecodePlan | string {
  if (s.dimQK % 4 !== 0 || s.dimV % 4 !== 0) return `the WebGPU decode kernel needs head dims that are multiples of 4, got Dq ${s.dimQK}, Dv ${s.dimV} (the CPU backend takes any)`;
  const target = targetWorkgroups ?? envInt('FUSEDATTN_DECODE_TARGET', 1) ?? DEFAULT_TARGET;
  const largest = envInt('FUSEDATTN_DECODE_WORKGROUP', 32, 256) ?? 256;
  const unroll = envInt('FUSEDATTN_DECODE_UNROLL', 1, 16) ?? (device.software ? 1 : DEFAULT_UNROLL);
  const keyLanes = envInt('FUSEDATTN_DECODE_KEY_LANES', 1, 32) ?? (device.software ? 1 : DEFAULT_KEY_LANES);
  // 1.1-1.5x on every H200 shape (MLA included) and faster on llvmpipe too (the same sweep)
  const sharedWeights = (envInt('FUSEDATTN_DECODE_SHARED_WEIGHTS', 0, 1) ?? 1) === 1;
  // subgroup lane sums measured no faster than workgroup memory at 4 lanes (sweep 3): opt-in
  const subgroupLanes = (envInt('FUSEDATTN_DECODE_SUBGROUP_LANES', 0, 1) ?? 0) === 1 ? device.subgroupSize ?? 0 : 0;
  // why nothing fits: the device's limits first (they are what the caller cannot change)
  const reasons: { memory?: string; bindings?: string; kernel?: string } = {};
  let leastMemory = Infinity;
  // most heads per workgroup first (each K/V row is then read once for them all), fewer where
  // their query rows do not fit the workgroup memory (MLA: 16-128 heads of 576)
  for (const headsPerBlock of headBlockSizes(s.group)) {
    const tokensPerBlock = Math.max(1, Math.min(s.tokens, Math.floor(MAX_ROWS / headsPerBlock)));
    const rows = headsPerBlock * tokensPerBlock;
    const headBlocks = Math.ceil(s.group / headsPerBlock);
    const tokenBlocks = Math.ceil(s.tokens / tokensPerBlock);
    const gridXY = s.headsKv * headBlocks * s.batch * tokenBlocks;
    const wanted = Math.ceil(target / 2 / gridXY);
    let chosen: SplitKvOptions | undefined;
    for (const chunk of chunkWidths(s, rows)) {
      // tiles of 64 keys at least, unless a smaller largest workgroup is asked for (tests)
      const sizes = [256, 128, 64, 32].filter((w) => w <= largest && w >= Math.min(64, largest) && w <= limits.maxComputeInvocationsPerWorkgroup && w <= limits.maxComputeWorkgroupSizeX);
      for (const workgroupSize of sizes) {
        const o: SplitKvOptions = {
          dimQK: s.dimQK, dimV: s.dimV, group: s.group, headsPerBlock, tokensPerBlock, workgroupSize, chunk, cache: s.cache, io: s.io,
          paged: s.paged, sharedKV: s.sharedKV, append: s.append, rope: s.rope, softcap: s.softcap, alibi: s.alibi, direct: false, unroll,
          // key lanes where the chunking allows them (the largest power of two <= asked that divides)
          keyLanes: fittingLanes(keyLanes, workgroupSize, s.dimQK / chunk),
          sharedWeights,
        };
        // lane sums by subgroup shuffles where the device's subgroups hold a key's lanes
        if ((o.keyLanes ?? 1) > 1 && (o.keyLanes ?? 1) <= subgroupLanes) o.laneReduce = 'subgroup';
        const why = splitKvUnsupported(o);
        if (why) {
          reasons.kernel ??= why;
          continue;
        }
        const bytes = splitKvSharedBytes(o);
        if (bytes > limits.maxComputeWorkgroupStorageSize) {
          if (bytes < leastMemory) reasons.memory = `the kernel needs at least ${bytes} bytes of workgroup memory, the device allows ${limits.maxComputeWorkgroupStorageSize}`;
          leastMemory = Math.min(leastMemory, bytes);
          continue;
        }
        if (splitKvStorageBindings(o) > limits.maxStorageBuffersPerShaderStage) {
          reasons.bindings ??= `the kernel needs ${splitKvStorageBindings(o)} storage buffers, the device allows ${limits.maxStorageBuffersPerShaderStage}`;
          continue;
        }
        chosen = o;
        // the largest tile that still leaves enough tiles to spread over the splits
        if (Math.ceil(s.maxKeys / workgroupSize) >= wanted) break;
      }
      if (chosen) break;
    }
    if (!chosen) continue;
    const splits = decodeSplits(s.maxKeys, gridXY, chosen.workgroupSize, target);
    const max = limits.maxComputeWorkgroupsPerDimension;
    if (s.headsKv * headBlocks > max || s.batch * tokenBlocks > max) return `the grid (${s.headsKv * headBlocks} x ${s.batch * tokenBlocks}) exceeds maxComputeWorkgroupsPerDimension (${max})`;
    const combine = splits > 1 || s.lse;
    const plan: DecodePlan = { kernel: { ...chosen, direct: !combine }, splits, grid: [s.headsKv * headBlocks, s.batch * tokenBlocks, splits], combine, rows: s.batch * s.headsKv * s.group * s.tokens };
    const mla = planMla(s, limits, device);
    if (mla) plan.mla = mla;
    const pipelined = mla ? undefined : s.append ? planAppendFirst(s, limits, targetWorkgroups) : planPipelined(s, limits, targetWorkgroups);
    if (pipelined) plan.pipelined = pipelined;
    return plan;
  }
  return reasons.memory ?? reasons.bindings ?? reasons.kernel ?? 'no workgroup size fits this device';
}

/** Kᵀ loads in flight per MLA subgroup in the direct form (FUSEDATTN_DECODE_MLA_KEYS), and V chunks (FUSEDATTN_DECODE_MLA_VALUES): batching was 5-20% slower (session 8, call 1). */
export const MLA_KEY_BATCH = 1;
export const MLA_VALUE_BATCH = 1;
/** 1: K and V staged through workgroup memory (FUSEDATTN_DECODE_MLA_STAGE). */
export const MLA_STAGE: number = 1;
/** Slabs the staged form loads ahead (FUSEDATTN_DECODE_MLA_DEPTH). */
export const MLA_STAGE_DEPTH = 1;
/** Score accumulators per subgroup (FUSEDATTN_DECODE_MLA_CHAINS): two won every MLA row on the H200 (session 8, call 4). */
export const MLA_CHAINS = 2;

/**
 * The tensor-core MLA plan where it applies (FUSEDATTN_DECODE_MLA=0 turns it off): 16+ query rows per
 * kv head, f16 cache and q, none of the options the kernel lacks, an adapter with f16 subgroup
 * matrices. The staged form with two score chains and Q in words is the default since session 8 of
 * 2026-12-03 on the H200 (bench/gpu/decode-s8.sh, every variant checked against float64 first):
 * 32K keys 59.7 / 137.8 / 262.6 us for 16 / 64 / 128 heads, where the fifth session's kernel took
 * 158 / 359 / 637. FUSEDATTN_DECODE_MLA_TARGET: workgroups aimed for (default 128: the cache is read
 * once, fewer splits mean fewer partial bytes; 64, 256 and 512 were slower).
 */
function planMla(s: DecodeShape, limits: Limits, device: PlanDevice): DecodePlan['mla'] {
  // 2: for any group size where the kernel fits (the dead rows of its 16 cost tensor-core time only)
  const mode = envInt('FUSEDATTN_DECODE_MLA', 0, 2) ?? 1;
  if (mode === 0 || !device.subgroupMatrix) return undefined;
  if (s.cache !== 'float16' || s.io !== 'float16' || s.append || s.rope || s.softcap || s.alibi) return undefined;
  if (mode === 1 && !tensorCoresPay(s)) return undefined;
  const kernel: MlaDecodeOptions = {
    dimQK: s.dimQK, dimV: s.dimV, group: s.group, paged: s.paged, sharedKV: s.sharedKV,
    keyBatch: envInt('FUSEDATTN_DECODE_MLA_KEYS', 1, 36) ?? MLA_KEY_BATCH,
    valueBatch: envInt('FUSEDATTN_DECODE_MLA_VALUES', 1, 4) ?? MLA_VALUE_BATCH,
    stage: (envInt('FUSEDATTN_DECODE_MLA_STAGE', 0, 1) ?? MLA_STAGE) === 1,
    stageDepth: envInt('FUSEDATTN_DECODE_MLA_DEPTH', 1, 2) ?? MLA_STAGE_DEPTH,
    kChains: envInt('FUSEDATTN_DECODE_MLA_CHAINS', 1, 2) ?? MLA_CHAINS,
    // 16-byte Q loads (effectivePlan keeps them only for aligned q rows); FUSEDATTN_DECODE_MLA_QWORDS=0 off
    qWords: (envInt('FUSEDATTN_DECODE_MLA_QWORDS', 0, 1) ?? 1) === 1,
  };
  if (mlaDecodeUnsupported(kernel) || mlaDecodeSharedBytes(kernel) > limits.maxComputeWorkgroupStorageSize) return undefined;
  const whole = wholeTileKernel(kernel, limits);
  if (whole) Object.assign(kernel, whole);
  const blocks = Math.ceil((s.group * s.tokens) / 16);
  const gridX = s.headsKv * blocks;
  if (gridX > limits.maxComputeWorkgroupsPerDimension || s.batch > limits.maxComputeWorkgroupsPerDimension) return undefined;
  const target = envInt('FUSEDATTN_DECODE_MLA_TARGET', 1) ?? mlaTarget(kernel);
  const splits = decodeSplits(s.maxKeys, gridX * s.batch, MLA_TILE, target);
  return { kernel, splits, grid: [gridX, s.batch, splits] };
}

/** Query rows per KV head (G x Sq) from which decode takes the tensor-core kernel (see tensorCoresPay). */
export const TC_DECODE_ROWS = 7;

/**
 * Whether the tensor-core kernel beats the SIMT kernels here: from TC_DECODE_ROWS query rows per KV
 * head. The SIMT kernels' time grows with the rows (each row's dot products and value sums run on
 * the shader cores: 0.22 ns per key at 4 rows, 0.51 at 7, llama-8b / qwen-7b at 32K); the
 * tensor-core tile (16 rows, the dead ones cost tensor-core time only) costs the same at 1 or 16
 * rows, has the lower fixed cost, and costs more per key than SIMT at 4 rows. H200, session 14
 * (bench/gpu/gqa-tc-decode.sh, float16, every kernel checked against float64 first), calls 3 and
 * 6: 4 rows (llama-8b, Sq 1) 0.58-1.0x SIMT's speed; qwen-7b's 7 rows with the compact layout 1.03x
 * (32K) to 1.45x (4K); 14+ rows 1.12-1.73x at every length to 32K (call 3, full layout).
 */
function tensorCoresPay(s: DecodeShape): boolean {
  return s.group * s.tokens >= TC_DECODE_ROWS;
}

/**
 * Workgroups the tensor-core decode aims for: 128 for the slab and full whole-tile layouts (one per
 * H200 SM: they hold 45-48 KiB), more for the compact layout as more of them share an SM: 512 at
 * D 128 (24 KiB, two per SM), 256 at D 64 (16 KiB, three). H200, session 14, call 6, the partial
 * pass alone (the combine adds ~12 µs): llama-8b 32K 152 / 106 / 110 µs at 128 / 256 / 512 (the full layout 121 at 128), qwen-7b 32K 91.8 / 68.7 /
 * 63.8, 16K 41.9 / 37.3 / 29.7; qwen2-0.5b 32K 26.5 / 19.1 / 20.8, 16K 18.2 / 14.5 / 16.7.
 */
function mlaTarget(kernel: MlaDecodeOptions): number {
  if (!kernel.compact) return 128;
  return mlaDecodeSharedBytes(kernel) > 16 * 1024 ? 512 : 256;
}

/**
 * The whole-tile staged form where a tile's K and V rows fit the workgroup memory (head dims up
 * to ~128: grouped-query shapes; MLA's 576 does not), with two score chains where they fit too,
 * else one; FUSEDATTN_DECODE_MLA_WHOLE=0 keeps the slab steps.
 */
function wholeTileKernel(kernel: MlaDecodeOptions, limits: Limits): Partial<MlaDecodeOptions> | undefined {
  if (!kernel.stage || (envInt('FUSEDATTN_DECODE_MLA_WHOLE', 0, 1) ?? 1) !== 1) return undefined;
  // compact (Q in registers, V in K's place; one score chain): about half the memory, so two or three
  // workgroups share an SM where the full layout ran one (the H200's ~56 KiB per SM)
  if (kernel.qWords && (envInt('FUSEDATTN_DECODE_MLA_COMPACT', 0, 1) ?? 1) === 1) {
    const o = { ...kernel, wholeTile: true, compact: true, kChains: 1 };
    if (!mlaDecodeUnsupported(o) && mlaDecodeSharedBytes(o) <= limits.maxComputeWorkgroupStorageSize) return { wholeTile: true, compact: true, kChains: 1 };
  }
  for (const kChains of [...new Set([kernel.kChains ?? 1, 1])]) {
    const o = { ...kernel, wholeTile: true, kChains };
    if (!mlaDecodeUnsupported(o) && mlaDecodeSharedBytes(o) <= limits.maxComputeWorkgroupStorageSize) return { wholeTile: true, kChains };
  }
  return undefined;
}

/** Workgroups the pipelined kernel aims for by default (FUSEDATTN_DECODE_PIPE_TARGET). */
export const PIPELINED_TARGET = 512;
/** Threads of the pipelined kernel's workgroups by default. */
const PIPELINED_WORKGROUP = 128;

/**
 * The pipelined kernel's plan where it applies (FUSEDATTN_DECODE_PIPELINED=0 turns it off; 2 also takes int8 steps that append, append first): no
 * append, RoPE or latent cache; as many heads of the group per workgroup as its accumulators allow.
 * FUSEDATTN_DECODE_PIPE_WORKGROUP (threads, default 128), FUSEDATTN_DECODE_PIPE_WORDS (key words per
 * score thread, default 4), FUSEDATTN_DECODE_PIPE_TARGET (workgroups aimed for) and
 * FUSEDATTN_DECODE_PIPE_CHUNK (elements per cache word: 4, 8 or 16, taken where the cache dtype
 * allows it, else the default; only int8 has a choice: 8 by default, one vec2<u32> word as the
 * general kernel's int8 loads, twice the value threads per key of a 16-element word; or 16) are the
 * benchmarks' overrides. One workgroup per (sequence, KV head) with 1024 threads and no combine
 * pass measured 2.4-17x slower than splits and the combine on the H200, 1K-8K keys (session 7,
 * call 2: a workgroup alone on its SM reads far below that SM's share of the bandwidth).
 */
function planPipelined(s: DecodeShape, limits: Limits, targetWorkgroups?: number): DecodePlan['pipelined'] {
  const mode = envInt('FUSEDATTN_DECODE_PIPELINED', 0, 2) ?? 1;
  if (mode === 0 || s.append || s.rope || s.sharedKV) return undefined;
  // int8 caches too since its words of 8 (below): the H200 measured llama-8b int8 26.8 / 64.5 us at
  // 4K / 32K keys against the general kernel's 30.3 / 88.1 (session 11 of 2026-12-03, call 1,
  // bench/gpu/decode-int8.sh); in words of 16 it had been slower (46.0 / 87.6)
  const N = envInt('FUSEDATTN_DECODE_PIPE_WORKGROUP', 32, 1024) ?? PIPELINED_WORKGROUP;
  const fit = pipelinedKernelFor(s, limits, N);
  if (!fit) return undefined;
  const target = targetWorkgroups ?? envInt('FUSEDATTN_DECODE_PIPE_TARGET', 1) ?? PIPELINED_TARGET;
  const splits = decodeSplits(s.maxKeys, fit.gridX * fit.gridY, pipelinedLayout(fit.kernel).TK, target);
  // one split writes the output and the LSE itself
  const direct = splits === 1;
  const kernel = { ...fit.kernel, direct, lse: direct && s.lse };
  if (pipelinedStorageBindings(kernel) > limits.maxStorageBuffersPerShaderStage) return undefined;
  return { kernel, splits, grid: [fit.gridX, fit.gridY, splits], combine: !direct };
}

/**
 * What a recorded decode step's commands depend on besides the general kernel's options and
 * splits: the pipelined kernel's splits, whether the append runs first and an asked word size
 * (FUSEDATTN_DECODE_PIPE_CHUNK; replays key on them).
 */
export function pipelinedKey(plan: DecodePlan): { pipelined?: string } {
  const chunk = plan.pipelined?.kernel.chunk;
  return plan.pipelined ? { pipelined: `${plan.pipelined.splits}${plan.pipelined.append ? '+append' : ''}${chunk !== undefined ? `/E${chunk}` : ''}` } : {};
}

/** Keys from which a step that appends takes the append-first path at head dims below 128. */
export const SEPARATE_APPEND_KEYS = 32768;

/**
 * A step that appends (the runner's and the block's decode) on the pipelined kernel: the append
 * and RoPE as a dispatch of their own first, then the pipelined kernel reading the cache only.
 * By default at head dims of 128+ at every length, and from 32K keys below that: the H200
 * measured it faster there (session 9 of 2026-12-03, calls 1-3, bench/gpu/append-first.sh, the
 * append spread over the workgroup: about 10 µs a step): llama-8b 1.16-1.82x on float16 caches
 * from 1K to 32K keys, 1.08-1.55x on float32; qwen2-0.5b's head dim 64 1.18x / 1.31x at 32K
 * (float16 / float32) but 0.85-1.06x from 1K to 16K (the general kernel's own step is short there).
 * FUSEDATTN_DECODE_SEPARATE_APPEND=1 takes it wherever it fits, 0 never (the general kernel
 * appends inside its attention dispatch). Not for shared latent caches (the general kernel's own
 * append there).
 */
function planAppendFirst(s: DecodeShape, limits: Limits, targetWorkgroups?: number): DecodePlan['pipelined'] {
  const mode = envInt('FUSEDATTN_DECODE_SEPARATE_APPEND', 0, 1);
  if (mode === 0 || s.sharedKV || s.dimQK !== s.dimV) return undefined;
  if (mode === undefined && s.dimQK < 128 && s.maxKeys < SEPARATE_APPEND_KEYS) return undefined;
  // int8 steps that append keep the general kernel's own append until the H200 has timed the int8
  // append-first path (the pipelined kernel took int8 caches in session 11; appends were not timed;
  // FUSEDATTN_DECODE_PIPELINED=2 takes it)
  if (mode === undefined && s.cache === 'int8' && envInt('FUSEDATTN_DECODE_PIPELINED', 0, 2) !== 2) return undefined;
  const pipelined = planPipelined({ ...s, append: false, rope: false }, limits, targetWorkgroups);
  if (!pipelined) return undefined;
  // stores in the attention's words: its alignment check (effectivePlan) covers the append's too
  const append: DecodeAppendOptions = { dim: s.dimQK, cache: s.cache, io: s.io, paged: s.paged, rope: s.rope, chunk: pipelinedLayout(pipelined.kernel).E };
  if (decodeAppendUnsupported(append)) return undefined;
  return { ...pipelined, append };
}

/** The pipelined kernel of N threads for `s`, or undefined where its layout or the limits do not allow one. */
function pipelinedKernelFor(s: DecodeShape, limits: Limits, N: number): { kernel: PipelinedDecodeOptions; gridX: number; gridY: number } | undefined {
  // the word size asked for where the cache dtype takes it and it is not the default (absent from
  // the options otherwise: the default kernels' options, and so their pipeline keys, stay as they were)
  const askedChunk = envChoice('FUSEDATTN_DECODE_PIPE_CHUNK', ['4', '8', '16']);
  const [standard] = pipelinedChunks(s.cache);
  // int8 in words of 8 by default (the measurement above), 16 when asked
  const askedWord = askedChunk !== undefined && pipelinedChunks(s.cache).includes(Number(askedChunk)) ? Number(askedChunk) : undefined;
  const wanted = askedWord ?? (s.cache === 'int8' ? 8 : standard);
  const chunk = wanted !== standard ? wanted as 4 | 8 | 16 : undefined;
  const E = chunk ?? standard;
  if (s.dimQK % E !== 0 || s.dimV % E !== 0) return undefined;
  if (N > limits.maxComputeInvocationsPerWorkgroup || N > limits.maxComputeWorkgroupSizeX) return undefined;
  const asked = envInt('FUSEDATTN_DECODE_PIPE_WORDS', 1, 64) ?? 4;
  const words = s.dimQK / E;
  // rows: as many as the accumulators allow, and no more than one weights thread per (row, slice)
  const slices = N / (s.dimV / E);
  const cap = Math.max(1, Math.min(MAX_ROWS, Math.floor(MAX_QUADS / (E / 4)), Math.floor(N / slices)));
  // key words per score thread: the most up to the asked that fit (fewer: shorter tiles, less
  // memory), then fewer rows per workgroup where even one word does not
  let kernel: PipelinedDecodeOptions | undefined;
  for (let rows = cap; rows >= 1 && !kernel; rows = rows === 1 ? 0 : Math.ceil(rows / 2)) {
    const headsPerBlock = Math.min(s.group, rows);
    const tokensPerBlock = Math.max(1, Math.min(s.tokens, Math.floor(rows / headsPerBlock)));
    for (let keyWords = Math.min(asked, words); keyWords >= 1 && !kernel; keyWords--) {
      const k: PipelinedDecodeOptions = {
        dimQK: s.dimQK, dimV: s.dimV, group: s.group, headsPerBlock, tokensPerBlock, workgroupSize: N, keyWords,
        cache: s.cache, ...(chunk !== undefined ? { chunk } : {}), io: s.io, paged: s.paged, softcap: s.softcap, alibi: s.alibi, direct: false,
      };
      if (!pipelinedUnsupported(k) && pipelinedSharedBytes(k) <= limits.maxComputeWorkgroupStorageSize) kernel = k;
    }
  }
  if (!kernel) return undefined;
  const { headsPerBlock, tokensPerBlock } = kernel;
  const gridX = s.headsKv * Math.ceil(s.group / headsPerBlock);
  const gridY = s.batch * Math.ceil(s.tokens / tokensPerBlock);
  const max = limits.maxComputeWorkgroupsPerDimension;
  if (gridX > max || gridY > max) return undefined;
  return { kernel, gridX, gridY };
}

/** The largest power of two <= `asked` dividing both the workgroup and the key's chunks. */
function fittingLanes(asked: number, workgroupSize: number, chunks: number): number {
  let t = 1;
  while (t * 2 <= asked && workgroupSize % (t * 2) === 0 && chunks % (t * 2) === 0) t *= 2;
  return t;
}

/** What the plan needs to know about the adapter besides its limits. */
export interface PlanDevice {
  /** A software rasterizer (llvmpipe...): no unrolling (compile time dominates there, not loads in flight). */
  software?: boolean;
  /** f16 16x16x16 subgroup matrices with f32 results, subgroups of 32, shader-f16 (the MLA kernel). */
  subgroupMatrix?: boolean;
  /** The smallest subgroup size when the device has the 'subgroups' feature (0 / absent: none). */
  subgroupSize?: number;
}

/** Heads per workgroup to try, most first: the whole group (up to MAX_ROWS), then halves. */
function headBlockSizes(group: number): number[] {
  const sizes = [Math.min(group, MAX_ROWS)];
  while (sizes[sizes.length - 1] > 1) sizes.push(Math.ceil(sizes[sizes.length - 1] / 2));
  return sizes;
}

/**
 * Chunk widths to try, widest first: 16-byte loads where the head dims allow (8 halves, 16
 * bytes), narrower where they do not or where rows x quads would exceed the register budget.
 */
function chunkWidths(s: DecodeShape, rows: number): number[] {
  const widest = Math.min(s.cache === 'float32' ? 4 : 8, envInt('FUSEDATTN_DECODE_CHUNK', 4, 16) ?? 8);
  const out: number[] = [];
  for (const chunk of [16, 8, 4]) {
    if (chunk > widest) continue;
    if (s.dimQK % chunk !== 0 || s.dimV % chunk !== 0) continue;
    if (s.rope && s.dimQK % (2 * chunk) !== 0) continue;
    if (chunk > 4 && rows * (chunk / 4) > MAX_QUADS) continue;
    out.push(chunk);
  }
  return out.length ? out : [4];
}

/**
 * Splits for `keys` visible keys: one tile per split until the grid reaches the target, at most
 * MAX_SPLITS, rounded up to a power of two (so a recorded step keeps replaying as the cache grows;
 * the splits past the last key are empty and cheap).
 */
export function decodeSplits(keys: number, gridXY: number, tileKeys: number, target = DEFAULT_TARGET): number {
  const tiles = Math.max(1, Math.ceil(keys / tileKeys));
  const wanted = Math.max(1, Math.ceil(target / gridXY));
  const splits = Math.max(1, Math.min(tiles, wanted, MAX_SPLITS));
  let pow = 1;
  while (pow < splits) pow *= 2;
  return Math.min(pow, MAX_SPLITS);
}
