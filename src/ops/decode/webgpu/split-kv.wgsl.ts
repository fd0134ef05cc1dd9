// Split-KV decode attention (flash decoding), the partial kernel: a few query rows per sequence
// against a long cache at memory bandwidth. This is the runner's second decode kernel
// (flash-decode.wgsl.ts until this file replaced it; H200 runs in docs/GPU-NOTES.md "Decode on
// WebGPU") generalized to the public op: any cache addressing (contiguous strided, paged through a block table), stored as
// float32 / float16 / bfloat16 / int8 (dequantized here), per-sequence lengths read from a buffer,
// R query rows per workgroup (the G heads of a KV head times a block of new tokens, each row with
// its own causal / window range), softcap, ALiBi, and new rows appended by the kernel.
//
// One workgroup per (KV head x head block, sequence x token block, split of the keys):
//   scores  thread j owns key j of a tile of WG keys: it reads the key's row in chunks of E
//           elements (E/4 quads, `unroll` chunks in flight) and dots it with the R query rows,
//           which every thread reads at the same address (broadcast from workgroup memory);
//   values  thread (c, ks) owns value chunk c for every row and key slice ks: it walks keys
//           ks, ks + NKS, ... of the tile (the threads of one key read its row as contiguous
//           chunks) with its own online softmax (max, sum, acc) per row; the NKS slices are merged
//           once at the end of the split by a tree through workgroup memory.
// The tile's scores go through a double-buffered array: one barrier per tile.
//
// Rows: row r of a workgroup is local head r / TB of the head block, new token r % TB of the token
// block. Rows past the group or past Sq are dead (they see no key, write nothing).
// Keys: sequence b sees K_b = lengths[b] (+ Sq with append) keys; row (h, i) sees [lo, hi] by the
// window rule with diag = K_b - Sq + i (bottom-right) or i (top-left). A workgroup walks the union
// of its rows' ranges, partitioned uniformly over the splits in whole tiles, so a recorded
// dispatch stays right as the cache grows (lengths are re-read on every run).
// Append: keys/values at positions >= lengths[b] come from the append rows (read as they will be
// stored: rounded or quantized with the row's scale), and the split-0 workgroup of head block 0
// and token block 0 stores them; nothing in the dispatch reads those cache positions.
//
// Shapes (elements; quads = vec4 of 4 elements):
//   q, append k/v  element (b, head, i, d) at off + b sb + head sh + i si + d (float32 / float16)
//   cache k/v      element (b, kv head, p, d) at off + page(b, p) sp + head sh + (p mod P) spos + d,
//                  page(b, p) = seqs[table_at + b MP + p / P] (paged) or b (contiguous, P = capacity)
//   scales         the same without d (int8)
//   meta (u32)     lengths at len_at (stride len_sb, plus len_add), block table at table_at, ALiBi
//                  slopes (f32 bits) at slopes_at, the RoPE table's first position at rope_at
//   rope           cos [rope_rows, D/2] then sin; row p - seqs[rope_at] rotates position p
//   out            direct: element (b, head, i, d) at o_off + b o_sb + head o_sh + i o_si + d;
//                  partials: [(b Nq + head) Sq + i][split] of Dv + 4 floats: acc, then (max, sum, 0, 0)
import { UniformLayout } from '../../../engines/webgpu/uniforms.js';
import { NO_SCORE } from '../../../engines/webgpu/wgsl.js';
import {
  ACCESS_HELPERS, type StoredDType, chunkLoader, chunkStorer, elementsPerWord, int8QuantizedChunk, quadLoad, quadStore, quadType, storageRounding, wordType,
} from './access.wgsl.js';

export interface SplitKvOptions {
  dimQK: number;
  dimV: number;
  /** Query heads per KV head (G). */
  group: number;
  /** Heads of the group per workgroup (HB <= G) and new tokens per workgroup (TB): rows R = HB * TB. */
  headsPerBlock: number;
  tokensPerBlock: number;
  /** Threads per workgroup = keys per tile. */
  workgroupSize: number;
  /** Elements per cache load (4, 8, 16); divides Dq and Dv. */
  chunk: number;
  cache: StoredDType;
  /** dtype of q, the appended rows and the output. */
  io: 'float32' | 'float16';
  paged: boolean;
  /** Values are the first Dv columns of the key rows (MLA latent cache): no values binding. */
  sharedKV: boolean;
  append: boolean;
  /** q and the appended keys rotated in the kernel (rotate-half pairs (d, d + Dq/2)). */
  rope: boolean;
  softcap: boolean;
  alibi: boolean;
  /** One split, no LSE: the kernel writes the normalized output itself (no combine pass). */
  direct: boolean;
  /** Value rows each thread loads before using them (default 4). */
  unroll?: number;
  /** Key chunks each thread loads before using them in the score phase (default: unroll). */
  keyUnroll?: number;
  /**
   * Threads that share one key in the score phase (default 1: a key per thread). With T > 1 the
   * T threads of a key read consecutive chunks of its row (chunk c by thread c mod T: coalesced
   * reads of long rows, MLA's 576) and their partial dots are summed through workgroup memory, in
   * T passes of WG / T keys per tile. A power of two dividing the workgroup and Dq / chunk.
   */
  keyLanes?: number;
  /**
   * Softmax weights once per (row, key slice) instead of once per value chunk's thread: after the
   * score phase, thread (row, slice) takes the slice's new running max, writes exp(s - max) over the
   * tile's scores and the slice's rescale factor to workgroup memory; the value threads then only
   * rescale once per tile and accumulate p * v (no exp, no branch on the max per key). Costs one more
   * barrier per tile; saves the Dv / chunk - 1 repeated exps of every (key, row) pair.
   */
  sharedWeights?: boolean;
  /**
   * How the key lanes' partial dots meet: 'workgroup' (default) through workgroup memory, two
   * barriers per pass of WG / keyLanes keys; 'subgroup' by subgroupShuffleXor (the device's
   * 'subgroups' feature, subgroups of at least keyLanes consecutive invocations): no barrier until
   * the tile's scores are all written, the passes unrolled with clamped positions so every pass's
   * loads can be in flight together. On the H200 no faster than 'workgroup' at 4 lanes, faster at
   * 16 (111 vs 143 us, llama-8b 32K f16), where both lose to 4 lanes (sweep 3).
   */
  laneReduce?: 'workgroup' | 'subgroup';
}

export const SPLIT_KV_PARAMS = new UniformLayout('DecodeParams', {
  batch: 'u32', tokens: 'u32', heads_q: 'u32', heads_kv: 'u32',
  q_off: 'u32', q_sb: 'u32', q_sh: 'u32', q_si: 'u32',
  k_off: 'u32', k_sp: 'u32', k_sh: 'u32', k_spos: 'u32',
  v_off: 'u32', v_sp: 'u32', v_sh: 'u32', v_spos: 'u32',
  ks_off: 'u32', vs_off: 'u32', s_sp: 'u32', s_sh: 'u32',
  s_spos: 'u32', page_size: 'u32', max_pages: 'u32', num_pages: 'u32',
  len_at: 'u32', table_at: 'u32', slopes_at: 'u32', slopes_sb: 'u32',
  /** Lengths: seqs[len_at + b len_sb] + len_add (len_sb 0: one length for every sequence). */
  len_sb: 'u32', len_add: 'u32',
  /** RoPE: new token i of sequence b uses table row lengths[b] + i - seqs[rope_at]. */
  rope_at: 'u32',
  ak_off: 'u32', ak_sb: 'u32', ak_sh: 'u32', ak_si: 'u32',
  av_off: 'u32', av_sb: 'u32', av_sh: 'u32', av_si: 'u32',
  o_off: 'u32', o_sb: 'u32', o_sh: 'u32', o_si: 'u32',
  rope_rows: 'u32', scale: 'f32', softcap: 'f32', bottom_right: 'u32',
  /** Window as offsets of j - diag; "unbounded" is 2^30. */
  win_left: 'i32', win_right: 'i32',
});

/** lse: the pipelined kernel's direct mode only (one split writes the LSE itself, no combine pass). */
export const SPLIT_KV_BINDINGS = { params: 0, q: 1, keys: 2, values: 3, kScales: 4, vScales: 5, meta: 6, append: 7, out: 8, rope: 9, lse: 10 } as const;

/**
 * `fn cache_at(b, h, p, off, sp, sh, spos)`: the element index of position p of sequence b, kv head
 * h, in a cache tensor with those strides (paged: p's page from the block table in `seqs`, clamped to
 * the pool), for every decode kernel that reads or writes a cache through SPLIT_KV_PARAMS.
 */
export function cacheAtFn(paged: boolean): string {
  const page = paged ? 'min(seqs[params.table_at + b * params.max_pages + p / params.page_size], params.num_pages - 1u)' : 'b';
  const inPage = paged ? 'p % params.page_size' : 'p';
  return `/** Element index of position p of sequence b, kv head h, in a cache tensor with these strides. */
fn cache_at(b: u32, h: u32, p: u32, off: u32, sp: u32, sh: u32, spos: u32) -> u32 {
  return off + ${page} * sp + h * sh + (${inPage}) * spos;
}`;
}

/**
 * `fn name(base, c, t) -> vec4<f32>`: quad c (0 .. D/4 - 1) of a row of `buf` starting at element
 * `base`, rotated for RoPE table row t (the table binding `rope`: cos [rope_rows, D/2], then sin;
 * the halves-rotation form, d and d + D/2 paired).
 */
export function ropeQuad(name: string, buf: string, io: 'float32' | 'float16', quads: number): string {
  const quad = (i: string) => quadLoad(io, `${buf}[${i}]`);
  return `fn ${name}(base: u32, c: u32, t: u32) -> vec4<f32> {
  let half4 = ${quads / 2}u;
  let i = c % half4;
  let cs = rope[t * half4 + i];
  let sn = rope[(params.rope_rows + t) * half4 + i];
  let x = ${quad('base / 4u + c')};
  if (c < half4) { return x * cs - ${quad('base / 4u + c + half4')} * sn; }
  return x * cs + ${quad('base / 4u + c - half4')} * sn;
}`;
}

/** Most new tokens per sequence (the int8 append scales live in workgroup memory). */
export const MAX_TOKENS = 16;

/** Value chunks per row, key slices of the value phase and half the merge tree's width. */
export function splitKvLayout(o: Pick<SplitKvOptions, 'dimV' | 'chunk' | 'workgroupSize'>): { chunks: number; slices: number; half: number } {
  const chunks = o.dimV / o.chunk;
  const slices = Math.floor(o.workgroupSize / chunks);
  let pow = 1;
  while (pow < slices) pow *= 2;
  return { chunks, slices, half: Math.floor(pow / 2) };
}

export function splitKvRows(o: Pick<SplitKvOptions, 'headsPerBlock' | 'tokensPerBlock'>): number {
  return o.headsPerBlock * o.tokensPerBlock;
}

/** Floats of the scratch array: the double-buffered scores or the merge tree, whichever is larger. */
function scratchFloats(o: SplitKvOptions): number {
  const R = splitKvRows(o);
  const { half } = splitKvLayout(o);
  return Math.max(2 * R * o.workgroupSize, half * R * (o.dimV + 2));
}

/** Bytes of workgroup memory the kernel declares. */
export function splitKvSharedBytes(o: SplitKvOptions): number {
  const lanes = (o.keyLanes ?? 1) > 1 && o.laneReduce !== 'subgroup' ? splitKvRows(o) * o.workgroupSize : 0;
  // factors (double-buffered), running max and sum per (row, key slice)
  const weights = o.sharedWeights ? 4 * splitKvRows(o) * splitKvLayout(o).slices : 0;
  return 4 * (splitKvRows(o) * o.dimQK + scratchFloats(o) + lanes + weights + (o.cache === 'int8' && o.append ? 2 * MAX_TOKENS : 0));
}

/** Storage bindings the kernel declares. */
export function splitKvStorageBindings(o: SplitKvOptions): number {
  return 4 + (o.sharedKV ? 0 : 1) + (o.cache === 'int8' ? (o.sharedKV ? 1 : 2) : 0) + (o.append ? 1 : 0) + (o.rope ? 1 : 0);
}

/** Why these options cannot be built (undefined: they can). */
export function splitKvUnsupported(o: SplitKvOptions): string | undefined {
  const U = o.unroll ?? 4;
  if (!Number.isInteger(U) || U < 1 || U > 32) return `unroll must be 1..32, got ${U}`;
  const KU = o.keyUnroll ?? U;
  if (!Number.isInteger(KU) || KU < 1 || KU > 32) return `keyUnroll must be 1..32, got ${KU}`;
  if (![4, 8, 16].includes(o.chunk)) return `chunk must be 4, 8 or 16 elements, got ${o.chunk}`;
  if (o.dimQK % o.chunk !== 0 || o.dimV % o.chunk !== 0) return `head dims ${o.dimQK} / ${o.dimV} are not multiples of the chunk (${o.chunk})`;
  if (o.rope && (o.dimQK % (2 * o.chunk) !== 0 || o.dimQK % 8 !== 0)) return `RoPE needs a head dim that is a multiple of ${Math.max(8, 2 * o.chunk)}, got ${o.dimQK}`;
  if (o.rope && o.sharedKV) return 'RoPE in the kernel rotates whole key rows; a shared latent cache rotates only its RoPE part (rotate before the call)';
  if (o.sharedKV && o.dimV > o.dimQK) return `a shared latent cache needs Dv <= Dq, got ${o.dimV} > ${o.dimQK}`;
  if (o.dimV / o.chunk > o.workgroupSize) return `value dim ${o.dimV} needs more than ${o.workgroupSize} threads`;
  if (o.headsPerBlock < 1 || o.headsPerBlock > o.group) return `headsPerBlock must be 1..${o.group}, got ${o.headsPerBlock}`;
  if (o.tokensPerBlock < 1 || o.tokensPerBlock > MAX_TOKENS) return `tokensPerBlock must be 1..${MAX_TOKENS}, got ${o.tokensPerBlock}`;
  if (o.append && o.workgroupSize < 2 * MAX_TOKENS) return `append needs at least ${2 * MAX_TOKENS} threads`;
  const T = o.keyLanes ?? 1;
  if (!Number.isInteger(T) || T < 1 || (T & (T - 1)) !== 0 || o.workgroupSize % T !== 0 || (o.dimQK / o.chunk) % T !== 0) {
    return `keyLanes must be a power of two dividing the workgroup (${o.workgroupSize}) and the key chunks (${o.dimQK / o.chunk}), got ${T}`;
  }
  if (o.laneReduce === 'subgroup' && (T < 2 || T > 32)) return `laneReduce 'subgroup' needs 2..32 key lanes, got ${T}`;
  return undefined;
}

export function buildSplitKv(o: SplitKvOptions): string {
  const why = splitKvUnsupported(o);
  if (why) throw new Error(`buildSplitKv: ${why}`);
  const { dimQK: Dq, dimV: Dv, group: G, workgroupSize: WG, chunk: E } = o;
  const HB = o.headsPerBlock;
  const TB = o.tokensPerBlock;
  const R = HB * TB;
  const V = E / 4;
  const DQ4 = Dq / 4;
  const DCK = Dq / E;
  const { chunks: DCV, slices: NKS, half: HALF } = splitKvLayout(o);
  const U = o.unroll ?? 4;
  const KU = Math.min(o.keyUnroll ?? U, DCK);
  const int8 = o.cache === 'int8';
  const B = SPLIT_KV_BINDINGS;
  const rows = Array.from({ length: R }, (_, r) => r);
  const vs = Array.from({ length: V }, (_, v) => v);
  const units = Array.from({ length: Math.max(U, KU) }, (_, u) => u);
  const perRow = (f: (r: number) => string, sep = '\n') => rows.map(f).join(sep);
  const keysPerOwner = Math.ceil(WG / NKS);
  const cacheAccess = o.append ? 'read_write' : 'read';
  const valuesBuf = o.sharedKV ? 'keys' : 'values';
  const vScalesBuf = o.sharedKV ? 'k_scales' : 'v_scales';

  // ---- declarations
  const subgroupLanes = o.laneReduce === 'subgroup' && (o.keyLanes ?? 1) > 1;
  const decl: string[] = [
    ...(subgroupLanes ? ['enable subgroups;'] : []),
    SPLIT_KV_PARAMS.wgsl(),
    `@group(0) @binding(${B.params}) var<uniform> params: DecodeParams;`,
    `@group(0) @binding(${B.q}) var<storage, read> q: array<${quadType(o.io)}>;`,
    `@group(0) @binding(${B.keys}) var<storage, ${cacheAccess}> keys: array<${wordType(o.cache, E)}>;`,
  ];
  if (!o.sharedKV) decl.push(`@group(0) @binding(${B.values}) var<storage, ${cacheAccess}> values: array<${wordType(o.cache, E)}>;`);
  if (int8) {
    decl.push(`@group(0) @binding(${B.kScales}) var<storage, ${cacheAccess}> k_scales: array<f32>;`);
    if (!o.sharedKV) decl.push(`@group(0) @binding(${B.vScales}) var<storage, ${cacheAccess}> v_scales: array<f32>;`);
  }
  decl.push(`@group(0) @binding(${B.meta}) var<storage, read> seqs: array<u32>;`);
  if (o.append) decl.push(`@group(0) @binding(${B.append}) var<storage, read> fresh: array<${quadType(o.io)}>;`);
  decl.push(o.direct
    ? `@group(0) @binding(${B.out}) var<storage, read_write> out: array<${quadType(o.io)}>;`
    : `@group(0) @binding(${B.out}) var<storage, read_write> partials: array<vec4<f32>>;`);
  if (o.rope) decl.push(`@group(0) @binding(${B.rope}) var<storage, read> rope: array<vec4<f32>>;`);

  // ---- helper functions
  const helpers: string[] = [ACCESS_HELPERS, chunkLoader('load_k', 'keys', o.cache, E)];
  if (!o.sharedKV) helpers.push(chunkLoader('load_v', 'values', o.cache, E));
  const loadV = o.sharedKV ? 'load_k' : 'load_v';
  if (o.append) {
    helpers.push(chunkStorer('store_k', 'keys', o.cache, E), storageRounding('stored', o.cache));
    if (!o.sharedKV) helpers.push(chunkStorer('store_v', 'values', o.cache, E));
  }
  helpers.push(cacheAtFn(o.paged));
  const quad = (buf: string) => (i: string) => quadLoad(o.io, `${buf}[${i}]`);
  const rotated = (name: string, buf: string) => ropeQuad(name, buf, o.io, DQ4);
  if (o.rope) helpers.push(rotated('q_quad', 'q'));
  if (o.append) {
    // chunk c of new key / value row i of (b, h), as it will be stored (int8: with the row's scale)
    const keyQuad = (c: string) => (o.rope ? `fresh_rot(base, ${c}, t)` : quad('fresh')(`base / 4u + ${c}`));
    if (o.rope) helpers.push(rotated('fresh_rot', 'fresh'));
    const scaleArgs = (which: string) => (int8 ? `new_scale[${which}], new_inv[${which}]` : '0.0, 0.0');
    helpers.push(`fn fresh_k_base(b: u32, h: u32, i: u32) -> u32 {
  return params.ak_off + b * params.ak_sb + h * params.ak_sh + i * params.ak_si;
}
fn fresh_v_base(b: u32, h: u32, i: u32) -> u32 {
  return ${o.sharedKV ? 'fresh_k_base(b, h, i)' : 'params.av_off + b * params.av_sb + h * params.av_sh + i * params.av_si'};
}
/** Raw (unrounded) chunk c of new key row i (rotated for its position with RoPE). */
fn fresh_k_raw(b: u32, h: u32, i: u32, c: u32) -> array<vec4<f32>, ${V}> {
  let base = fresh_k_base(b, h, i);
  let t = ${o.rope ? 'seqs[params.len_at + b * params.len_sb] + params.len_add + i - seqs[params.rope_at]' : '0u'};
  return array<vec4<f32>, ${V}>(${vs.map((v) => keyQuad(`c * ${V}u + ${v}u`)).join(', ')});
}
fn fresh_v_raw(b: u32, h: u32, i: u32, c: u32) -> array<vec4<f32>, ${V}> {
${o.sharedKV ? '  return fresh_k_raw(b, h, i, c);' : `  let base = fresh_v_base(b, h, i);
  return array<vec4<f32>, ${V}>(${vs.map((v) => quad('fresh')(`base / 4u + c * ${V}u + ${v}u`)).join(', ')});`}
}
fn fresh_k(b: u32, h: u32, i: u32, c: u32) -> array<vec4<f32>, ${V}> {
  let x = fresh_k_raw(b, h, i, c);
  return array<vec4<f32>, ${V}>(${vs.map((v) => `stored(x[${v}], ${scaleArgs('i')})`).join(', ')});
}
fn fresh_v(b: u32, h: u32, i: u32, c: u32) -> array<vec4<f32>, ${V}> {
  let x = fresh_v_raw(b, h, i, c);
  return array<vec4<f32>, ${V}>(${vs.map((v) => `stored(x[${v}], ${scaleArgs(o.sharedKV ? 'i' : `${MAX_TOKENS}u + i`)})`).join(', ')});
}`);
  }

  // ---- the score of one key for every row: its row's chunks loaded KU at a time, dotted with
  // every row's query (unrolled: drivers do not unroll loops over register arrays)
  // with key lanes, thread `lane` of a key takes its chunks lane, lane + T, ...: NCK of them
  const T = o.keyLanes ?? 1;
  const NCK = DCK / T;
  const KUL = Math.min(KU, NCK);
  const chunkOf = (i: string) => (T > 1 ? `lane + ${T}u * (${i})` : i);
  const fullK = NCK - (NCK % KUL);
  const dots = (k: string, c: string) => perRow((r) => vs.map((v) => `      s${r} += dot(q_tile[${r * DQ4}u + (${c}) * ${V}u + ${v}u], ${k}[${v}]);`).join('\n'));
  const keyLoop = (load: (c: string) => string) => `
    for (var c0 = 0u; c0 < ${fullK}u; c0 += ${KUL}u) {
${units.slice(0, KUL).map((u) => `      let k${u} = ${load(chunkOf(`c0 + ${u}u`))};`).join('\n')}
${units.slice(0, KUL).map((u) => dots(`k${u}`, chunkOf(`c0 + ${u}u`))).join('\n')}
    }
${Array.from({ length: NCK % KUL }, (_, x) => `    {
      let k = ${load(chunkOf(`${fullK + x}u`))};
${dots('k', chunkOf(`${fullK + x}u`))}
    }`).join('\n')}`;
  const cacheKey = (c: string) => `load_k(k_row + (${c}) * ${E}u)`;
  const scoreFinish = perRow((r) => `    if (i32(pos) < lo${r} || i32(pos) > hi${r}) { s${r} = NO_SCORE; } else {
      ${int8 ? `s${r} *= k_scale;` : ''}
      ${o.softcap ? `s${r} = params.softcap * tanh(clamp(s${r} / params.softcap, -15.0, 15.0));` : ''}
      ${o.alibi ? `s${r} -= slope${r} * abs(f32(i32(keys) - i32(params.tokens) + i32(i${r}) - i32(pos)));` : ''}
    }`);

  // ---- one key of the value phase: every row's online-softmax update (shared weights: p * v)
  const keyGuard = (u: number, rowBody: (r: number) => string) => `
        if (key${u} < WG && j0 + key${u} < hi) {
${perRow(rowBody)}
        }`;
  const sharedUpdate = (u: number) => keyGuard(u, (r) => `          {
            let p = scratch[at + key${u} + ${r}u * WG];
            if (p > 0.0) {
              let wv = p${int8 ? ` * vscale${u}` : ''};
${vs.map((v) => `              a${r}_${v} += wv * v${u}[${v}];`).join('\n')}
            }
          }`);
  const valueUpdate = (u: number) => (o.sharedWeights ? sharedUpdate(u) : keyGuard(u, (r) => `          {
            let s = scratch[at + key${u} + ${r}u * WG];
            if (s > NO_SCORE) {
              if (s > m${r}) {
                let f = exp(m${r} - s);
${vs.map((v) => `                a${r}_${v} *= f;`).join('\n')}
                l${r} *= f;
                m${r} = s;
              }
              let w = exp(s - m${r});
              l${r} += w;
              let wv = w${int8 ? ` * vscale${u}` : ''};
${vs.map((v) => `              a${r}_${v} += wv * v${u}[${v}];`).join('\n')}
            }
          }`));
  const loadValue = (u: number) => {
    const cacheLoad = `${loadV}(cache_at(b, kv_head, p${u}, params.v_off, params.v_sp, params.v_sh, params.v_spos) + cp * ${E}u)`;
    const scale = int8 ? `\n        var vscale${u} = ${vScalesBuf}[cache_at(b, kv_head, p${u}, params.${o.sharedKV ? 'ks_off' : 'vs_off'}, params.s_sp, params.s_sh, params.s_spos)];` : '';
    if (!o.append) return `let p${u} = min(j0 + key${u}, hi - 1u);\n        let v${u} = ${cacheLoad};${scale}`;
    return `let p${u} = min(j0 + key${u}, hi - 1u);
        var v${u}: array<vec4<f32>, ${V}>;${int8 ? `\n        var vscale${u} = 1.0;` : ''}
        if (p${u} < len) {
          v${u} = ${cacheLoad};${int8 ? `\n          vscale${u} = ${vScalesBuf}[cache_at(b, kv_head, p${u}, params.${o.sharedKV ? 'ks_off' : 'vs_off'}, params.s_sp, params.s_sh, params.s_spos)];` : ''}
        } else {
          v${u} = fresh_v(b, kv_head, p${u} - len, cp);
        }`;
  };

  // ---- rows: head, token, visible range
  const rowSetup = perRow((r) => {
    const lh = Math.floor(r / TB);
    const lt = r % TB;
    return `  let h${r} = kv_head * G + hb * ${HB}u + ${lh}u;
  let i${r} = tb * ${TB}u + ${lt}u;
  let live${r} = hb * ${HB}u + ${lh}u < G && i${r} < params.tokens;
  let diag${r} = select(i32(i${r}), i32(keys) - i32(params.tokens) + i32(i${r}), params.bottom_right != 0u);
  let lo${r} = select(1, max(0, diag${r} - params.win_left), live${r});
  let hi${r} = select(0, min(i32(keys) - 1, diag${r} + params.win_right), live${r});
  if (lo${r} <= hi${r}) { wg_lo = min(wg_lo, lo${r}); wg_hi = max(wg_hi, hi${r} + 1); }${o.alibi ? `
  let slope${r} = select(0.0, bitcast<f32>(seqs[params.slopes_at + b * params.slopes_sb + min(h${r}, params.heads_q - 1u)]), live${r});` : ''}`;
  });

  // ---- the merge tree and the final write
  const { store: treeStore, merge: treeMerge } = mergeTreeSteps(R, E, 'DCV', 'cp', 'ks');
  const finalWrite = o.direct
    ? perRow((r) => `    if (live${r}) {
      let o = (params.o_off + b * params.o_sb + h${r} * params.o_sh + i${r} * params.o_si) / 4u + cp * ${V}u;
      let inv = select(0.0, 1.0 / l${r}, l${r} > 0.0);
${vs.map((v) => `      out[o + ${v}u] = ${quadStore(o.io, `a${r}_${v} * inv`)};`).join('\n')}
    }`)
    : perRow((r) => `    if (live${r}) {
      let o = (((b * params.heads_q + h${r}) * params.tokens + i${r}) * splits + split) * (DV4 + 1u);
${vs.map((v) => `      partials[o + cp * ${V}u + ${v}u] = a${r}_${v};`).join('\n')}
      if (cp == 0u) { partials[o + DV4] = vec4<f32>(m${r}, l${r}, 0.0, 0.0); }
    }`);

  // ---- appending: the new rows' int8 scales (every workgroup), their store (one workgroup)
  const rowThreads = Math.max(1, Math.floor(WG / (2 * MAX_TOKENS)));
  const appendPrologue = !o.append ? '' : `${int8 ? `
  // the int8 scale of each new key / value row (max |x| / 127), needed wherever a new row is read:
  // ${rowThreads} threads a row slot take its chunks lane, lane + ${rowThreads}, ... (one thread walking
  // them all waits a memory latency per chunk), their maxima meet in scratch (free before the key loop)
  {
    let slot = lid.x / ${rowThreads}u;
    let lane = lid.x % ${rowThreads}u;
    let i = slot % MAX_TOKENS;
    let is_v = slot >= MAX_TOKENS;
    var mx = 0.0;
    if (slot < 2u * MAX_TOKENS && i < params.tokens${o.sharedKV ? ' && !is_v' : ''}) {
      let n = select(DCK, DCV, is_v);
      for (var c = lane; c < n; c += ${rowThreads}u) {
        var x = array<vec4<f32>, ${V}>();
        if (is_v) { x = fresh_v_raw(b, kv_head, i, c); } else { x = fresh_k_raw(b, kv_head, i, c); }
${vs.map((v) => `        mx = max(mx, max(max(abs(x[${v}].x), abs(x[${v}].y)), max(abs(x[${v}].z), abs(x[${v}].w))));`).join('\n')}
      }
    }
    scratch[lid.x] = mx;
  }
  workgroupBarrier();
  if (lid.x < 2u * MAX_TOKENS) {
    var mx = 0.0;
    for (var j = 0u; j < ${rowThreads}u; j++) { mx = max(mx, scratch[lid.x * ${rowThreads}u + j]); }
    let s = mx * (1.0 / 127.0);
    new_scale[lid.x] = s;
    new_inv[lid.x] = select(0.0, 1.0 / s, s > 0.0);
  }
  workgroupBarrier();` : ''}
  // the new rows go into the cache (one workgroup per (sequence, KV head)), their chunks spread
  // over the workgroup's threads: a thread per row walks its chunks one memory latency after
  // another (the first append kernel, written so, took 41 us a llama-8b float16 step on the H200,
  // and this kernel's steps were 33 us longer with an append than without: 59.7 against 26.7 us
  // at 1K keys; session 8, call 5)
  if (split == 0u && hb == 0u && tb == 0u) {
    for (var e = lid.x; e < params.tokens * DCK; e += WG) {
      let i = e / DCK;
      let c = e % DCK;
      let row = cache_at(b, kv_head, len + i, params.k_off, params.k_sp, params.k_sh, params.k_spos);
      store_k(row + c * ${E}u, ${int8 ? `quantized(fresh_k_raw(b, kv_head, i, c), new_inv[i])` : 'fresh_k_raw(b, kv_head, i, c)'});
    }${o.sharedKV ? '' : `
    for (var e = lid.x; e < params.tokens * DCV; e += WG) {
      let i = e / DCV;
      let c = e % DCV;
      let row = cache_at(b, kv_head, len + i, params.v_off, params.v_sp, params.v_sh, params.v_spos);
      store_v(row + c * ${E}u, ${int8 ? `quantized(fresh_v_raw(b, kv_head, i, c), new_inv[MAX_TOKENS + i])` : 'fresh_v_raw(b, kv_head, i, c)'});
    }`}${int8 ? `
    if (lid.x < params.tokens) {
      k_scales[cache_at(b, kv_head, len + lid.x, params.ks_off, params.s_sp, params.s_sh, params.s_spos)] = new_scale[lid.x];${o.sharedKV ? '' : `
      v_scales[cache_at(b, kv_head, len + lid.x, params.vs_off, params.s_sp, params.s_sh, params.s_spos)] = new_scale[MAX_TOKENS + lid.x];`}
    }` : ''}
  }`;
  if (o.append) {
    helpers.push(`/** Chunk c of key pos (row at element k_row when cached): from the cache below len, else the new rows. */
fn key_chunk(b: u32, h: u32, len: u32, k_row: u32, pos: u32, c: u32) -> array<vec4<f32>, ${V}> {
  if (pos < len) { return load_k(k_row + c * ${E}u); }
  return fresh_k(b, h, pos - len, c);
}`);
  }
  if (o.append && int8) {
    helpers.push(`fn quantized(x: array<vec4<f32>, ${V}>, inv: f32) -> array<vec4<f32>, ${V}> {
  return ${int8QuantizedChunk((v) => `x[${v}]`, V, 'inv')};
}`);
  }

  const keyScale = int8 ? `
      let k_scale = ${o.append ? 'select(1.0, ' : ''}k_scales[cache_at(b, kv_head, ${o.append ? 'min(pos, max(len, 1u) - 1u)' : 'pos'}, params.ks_off, params.s_sp, params.s_sh, params.s_spos)]${o.append ? ', pos < len)' : ''};` : '';
  const scorePhase = `      let k_row = cache_at(b, kv_head, ${o.append ? 'min(pos, max(len, 1u) - 1u)' : 'pos'}, params.k_off, params.k_sp, params.k_sh, params.k_spos);${keyLoop(o.append ? (c) => `key_chunk(b, kv_head, len, k_row, pos, ${c})` : cacheKey)}`;
  // lane 0 of key kp (live: the key is below hi) finishes its score into the tile's scratch
  const laneFinish = (live: string) => `        if (${live}) {${keyScale}
${scoreFinish}
        } else {
${perRow((r) => `          s${r} = NO_SCORE;`)}
        }
${perRow((r) => `        scratch[buf * R * WG + kp + ${r}u * WG] = s${r};`)}`;
  // key lanes: T passes of WG / T keys; thread lane of key kp sums its chunks' dots, the lanes'
  // sums meet in workgroup memory and lane 0 finishes the key's score
  const lanesScores = `    for (var key_pass = 0u; key_pass < ${T}u; key_pass++) {
      let kp = key_pass * ${WG / T}u + lid.x / ${T}u;   // this thread's key in the tile
      let lane = lid.x % ${T}u;
      let pos = j0 + kp;
${perRow((r) => `      var s${r} = 0.0;`)}
      if (pos < hi) {
${scorePhase}
      }
${perRow((r) => `      lanes_sum[${r}u * WG + lid.x] = s${r};`)}
      workgroupBarrier();
      if (lane == 0u) {
${perRow((r) => `        s${r} = ${Array.from({ length: T }, (_, i) => `lanes_sum[${r}u * WG + lid.x + ${i}u]`).join(' + ')};`)}
${laneFinish('pos < hi')}
      }
      workgroupBarrier();
    }`;

  // ---- shared weights: thread (row, slice) turns its keys' scores into weights in place
  const SW = R * NKS;
  const weightsPhase = !o.sharedWeights ? '' : `
    // weights: per (row, key slice) the new running max, exp(s - max) in place of the scores and
    // the factor that rescales the slice's accumulators (sw_factor double-buffered like the scores)
    for (var pr = lid.x; pr < ${SW}u; pr += WG) {
      let at = buf * R * WG + (pr / NKS) * WG;
      let sl = pr % NKS;
      let m_old = sw_m[pr];
      var mt = m_old;
      for (var i = 0u; i < ${keysPerOwner}u; i++) {
        let key = sl + NKS * i;
        if (key < WG) { mt = max(mt, scratch[at + key]); }
      }
      var sum = 0.0;
      for (var i = 0u; i < ${keysPerOwner}u; i++) {
        let key = sl + NKS * i;
        if (key < WG) {
          let s = scratch[at + key];
          let p = select(0.0, exp(s - mt), s > NO_SCORE);
          scratch[at + key] = p;
          sum += p;
        }
      }
      let f = exp(m_old - mt);
      sw_factor[buf * ${SW}u + pr] = f;
      sw_l[pr] = sw_l[pr] * f + sum;
      sw_m[pr] = mt;
    }
    workgroupBarrier();`;
  const rescale = !o.sharedWeights ? '' : perRow((r) => `      {
        let f = sw_factor[buf * ${SW}u + ${r}u * NKS + ks];
${vs.map((v) => `        a${r}_${v} *= f;`).join('\n')}
      }`);

  // subgroup lanes: the T lanes of a key are T consecutive invocations of one subgroup; the passes
  // are unrolled, each loads a clamped position (always valid memory) so no branch separates the
  // passes' loads, and the shuffles stay in uniform control flow
  const xorSteps: number[] = [];
  for (let m = T / 2; m >= 1; m /= 2) xorSteps.push(m);
  const subgroupScores = Array.from({ length: T }, (_, pass) => `    {
      let kp = ${pass * (WG / T)}u + lid.x / ${T}u;   // this thread's key in the tile
      let lane = lid.x % ${T}u;
      let live_key = j0 + kp < hi;
      let pos = min(j0 + kp, hi - 1u);
${perRow((r) => `      var s${r} = 0.0;`)}
${scorePhase}
${perRow((r) => xorSteps.map((m) => `      s${r} += subgroupShuffleXor(s${r}, ${m}u);`).join('\n'))}
      if (lane == 0u) {
${laneFinish('live_key')}
      }
    }`).join('\n') + '\n    workgroupBarrier();';

  return `${decl.join('\n')}

const G = ${G}u;
const WG = ${WG}u;
const R = ${R}u;
const DQ4 = ${DQ4}u;
const DV4 = ${Dv / 4}u;
const DCK = ${DCK}u;
const DCV = ${DCV}u;
const NKS = ${NKS}u; // key slices of the value phase
const MAX_TOKENS = ${MAX_TOKENS}u;
const NO_SCORE = ${NO_SCORE};

var<workgroup> q_tile: array<vec4<f32>, ${R * DQ4}>;
// scores [2][R][WG] during the key loop; the merge tree's slots after it
var<workgroup> scratch: array<f32, ${scratchFloats(o)}>;
${T > 1 && !subgroupLanes ? `// the lanes' partial dots of the keys of one pass: [R][WG]\nvar<workgroup> lanes_sum: array<f32, ${R * WG}>;` : ''}
${o.sharedWeights ? `// shared weights: per (row, key slice) the accumulators' factor of a tile ([2][R][NKS]), running max and sum\nvar<workgroup> sw_factor: array<f32, ${2 * SW}>;\nvar<workgroup> sw_m: array<f32, ${SW}>;\nvar<workgroup> sw_l: array<f32, ${SW}>;` : ''}
${o.append && int8 ? `var<workgroup> new_scale: array<f32, ${2 * MAX_TOKENS}>;\nvar<workgroup> new_inv: array<f32, ${2 * MAX_TOKENS}>;` : ''}

${helpers.join('\n\n')}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let head_blocks = ${Math.ceil(G / HB)}u;
  let kv_head = wid.x / head_blocks;
  let hb = wid.x % head_blocks;
  let token_blocks = (params.tokens + ${TB - 1}u) / ${TB}u;
  let b = wid.y / token_blocks;
  let tb = wid.y % token_blocks;
  let split = wid.z;
  let splits = nwg.z;
  let len = seqs[params.len_at + b * params.len_sb] + params.len_add;
  let keys = len${o.append ? ' + params.tokens' : ''};

  var wg_lo = i32(keys);
  var wg_hi = 0;
${rowSetup}
  wg_lo = min(wg_lo, wg_hi);
  // a uniform partition of the workgroup's keys over the splits, in whole tiles
  let total = u32(wg_hi - wg_lo);
  let per_split = ((total + splits - 1u) / splits + WG - 1u) / WG * WG;
  let lo = min(u32(wg_lo) + split * per_split, u32(wg_hi));
  let hi = min(lo + per_split, u32(wg_hi));

  for (var x = lid.x; x < R * DQ4; x += WG) {
    let r = x / DQ4;
    let c = x % DQ4;
    let lh = r / ${TB}u;
    let i = tb * ${TB}u + r % ${TB}u;
    var qv = vec4<f32>(0.0);
    if (hb * ${HB}u + lh < G && i < params.tokens) {
      let head = kv_head * G + hb * ${HB}u + lh;
      let base = params.q_off + b * params.q_sb + head * params.q_sh + i * params.q_si;
      qv = ${o.rope ? 'q_quad(base, c, len + i - seqs[params.rope_at])' : quad('q')('base / 4u + c')};
    }
    q_tile[x] = qv * params.scale;
  }
${appendPrologue}

  // value-phase owner: chunk cp of every row, keys ks, ks + NKS, ... of each tile
  let cp = lid.x % DCV;
  let ks = lid.x / DCV;
  let owner = ks < NKS;
${perRow((r) => `  var m${r} = NO_SCORE;\n  var l${r} = 0.0;\n${vs.map((v) => `  var a${r}_${v} = vec4<f32>(0.0);`).join('\n')}`)}
  var buf = 0u;${o.sharedWeights ? `
  for (var pr = lid.x; pr < ${SW}u; pr += WG) { sw_m[pr] = NO_SCORE; sw_l[pr] = 0.0; }` : ''}
  workgroupBarrier();

  for (var j0 = lo; j0 < hi; j0 += WG) {
${T > 1 ? (subgroupLanes ? subgroupScores : lanesScores) : `    // scores: thread lid.x owns key j0 + lid.x
    let pos = j0 + lid.x;
${perRow((r) => `    var s${r} = NO_SCORE;`)}
    if (pos < hi) {
${perRow((r) => `      s${r} = 0.0;`)}
${scorePhase}${keyScale}
${scoreFinish}
    }
    let s_at = buf * R * WG + lid.x;
${perRow((r) => `    scratch[s_at + ${r}u * WG] = s${r};`)}
    workgroupBarrier();`}
${weightsPhase}

    // values: online softmax per (owner, row) over the owner's keys of this tile
    if (owner) {
      let at = buf * R * WG;
${rescale}
      for (var i0 = 0u; i0 < ${keysPerOwner}u; i0 += ${U}u) {
${units.slice(0, U).map((u) => `        let key${u} = ks + NKS * (i0 + ${u}u);\n        ${loadValue(u)}`).join('\n')}
${units.slice(0, U).map(valueUpdate).join('')}
      }
    }
    buf = 1u - buf;
  }
  workgroupBarrier();
${o.sharedWeights ? `  // the slices' running max and sum were kept per (row, slice) by the weights phase
  if (owner) {
${perRow((r) => `    m${r} = sw_m[${r}u * NKS + ks];\n    l${r} = sw_l[${r}u * NKS + ks];`)}
  }
` : ''}
  // merge the NKS key slices: a tree through workgroup memory, slots of (acc per chunk, max, sum)
  let ml_base = ${HALF * R * Dv}u;
  for (var half = ${HALF}u; half > 0u; half /= 2u) {
    if (owner && ks >= half && ks < 2u * half) {
      let slot = ks - half;
${treeStore}
    }
    workgroupBarrier();
    if (owner && ks < half && ks + half < NKS) {
${treeMerge}
    }
    workgroupBarrier();
  }

  if (owner && ks == 0u) {
${finalWrite}
  }
}
`;
}

/**
 * The WGSL of one step of the key slices' merge tree, shared by both partial kernels: `store`
 * writes this thread's accumulators a{r}_{v}, running max m{r} and sum l{r} of every row into
 * tree slot `slot` of `scratch` (words `words` per value row, this thread's word `word`; ml_base:
 * where the (max, sum) pairs start); `merge` folds the slot `mergeSlot` names into them.
 */
export function mergeTreeSteps(R: number, E: number, words: string, word: string, mergeSlot: string): { store: string; merge: string } {
  const rows = Array.from({ length: R }, (_, r) => r);
  const vs = Array.from({ length: E / 4 }, (_, v) => v);
  const store = rows.map((r) => `      {
        let at = ((slot * R + ${r}u) * ${words} + ${word}) * ${E}u;
${vs.map((v) => `        scratch[at + ${4 * v}u] = a${r}_${v}.x; scratch[at + ${4 * v + 1}u] = a${r}_${v}.y; scratch[at + ${4 * v + 2}u] = a${r}_${v}.z; scratch[at + ${4 * v + 3}u] = a${r}_${v}.w;`).join('\n')}
        if (${word} == 0u) { scratch[ml_base + (slot * R + ${r}u) * 2u] = m${r}; scratch[ml_base + (slot * R + ${r}u) * 2u + 1u] = l${r}; }
      }`).join('\n');
  const merge = rows.map((r) => `      {
        let at = ((${mergeSlot} * R + ${r}u) * ${words} + ${word}) * ${E}u;
        let mo = scratch[ml_base + (${mergeSlot} * R + ${r}u) * 2u];
        let lo_ = scratch[ml_base + (${mergeSlot} * R + ${r}u) * 2u + 1u];
        let mx = max(m${r}, mo);
        let fa = exp(m${r} - mx);
        let fb = exp(mo - mx);
${vs.map((v) => `        a${r}_${v} = a${r}_${v} * fa + vec4<f32>(scratch[at + ${4 * v}u], scratch[at + ${4 * v + 1}u], scratch[at + ${4 * v + 2}u], scratch[at + ${4 * v + 3}u]) * fb;`).join('\n')}
        l${r} = l${r} * fa + lo_ * fb;
        m${r} = mx;
      }`).join('\n');
  return { store, merge };
}

/** Words per element type, re-exported for the host (binding offsets must be whole words). */
export { elementsPerWord };
