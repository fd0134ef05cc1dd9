// Flash decoding, second version: attention of a few new query rows against a long KV cache at
// memory bandwidth. Two kernels:
//   partial  one workgroup per (KV head, query row, split of the keys); the G = Nq / Nkv query heads
//            of the KV head are handled together, so each K/V element is read once for the group.
//   combine  one workgroup per (row, query head): rescales the splits to a common max and divides.
//
// Why it is shaped this way (the first version, decode-attention.wgsl.ts, reached 2-40% of a
// streaming read on the H200): a tile is WG keys, one per thread, and nothing is staged through
// workgroup memory but the scores.
//   scores  thread j owns key j of the tile: it reads the key's whole row with 16-byte loads (D/4
//           independent loads in flight per thread) and dots it with the G query rows, which every
//           thread of a subgroup reads at the same address (broadcast from workgroup memory);
//   values  thread (c, ks) owns column chunk c (4 floats) of the output for every head and key slice
//           ks: it walks keys ks, ks + NKS, ... of the tile, so the threads of one key read its
//           value row as contiguous 16-byte chunks, and keeps its own online softmax (max, sum, acc)
//           per head. No reduction over the keys is needed per tile; the NKS slices are merged
//           once, at the end of the split, by a tree through workgroup memory.
//   The scores of a tile go through a double-buffered array, so one barrier per tile suffices.
// With `packed`, the query and the new token's key and value come straight from the packed QKV rows
// of the fused block's GEMM, with RoPE applied on the way (rotate-half pairs (i, i + D/2)), and the
// split-0 workgroup of each (KV head, row) appends the rotated key and the value to the cache. Only
// positions < start are read from the cache, so the append races with nothing. Packed mode is for
// one new token per sequence (decode).
//
// Shapes (vec4 = 4 floats; D a multiple of 4, of 8 when packed):
//   q         [rows, q_stride] (row = t * B + b), head h at column h * D; already rotated unless packed
//   qkv       packed: [rows, q_stride] with Q | K (column k_col) | V (column v_col)
//   keys/vals [capacity, B, Nkv * D] (SBH) from element offsets kc_off / vc_off; row (t, b) sees
//             positions 0 .. start + t
//   step      u32 [start, rope_base] (a storage buffer: a recorded step replays after it is rewritten)
//   rope      cos [rope_rows, D/2] then sin [rope_rows, D/2]; position p uses row p - rope_base
//   partials  [rows, Nq, splits, D + 4]: acc (D), then (max, sum, 0, 0); with one split the
//             partial kernel writes the output itself there, [rows, Nq * D], and no combine runs
//   out       [rows, Nq * D]
// The split count is the dispatch's z size; each split takes a whole number of tiles of
// ceil((start + T) / splits) keys, so a recorded dispatch stays right as the cache grows.
import { UniformLayout } from '../../../engines/webgpu/uniforms.js';

export interface FlashDecodeOptions {
  headDim: number;
  /** Query heads per KV head (Nq / Nkv). */
  group: number;
  /** Threads per workgroup = keys per tile. */
  workgroupSize: number;
  /** Q and the new token's K/V from packed QKV rows, RoPE in the kernel, cache append (T = 1). */
  packed: boolean;
  /**
   * 16-byte loads each thread issues before using them: key chunks in the score phase, value rows
   * in the value phase (default 4). More loads in flight per thread is what a memory-bound
   * kernel needs; more registers is what it costs.
   */
  unroll?: number;
}

export const FLASH_DECODE_PARAMS = new UniformLayout('FlashDecodeParams', {
  batch: 'u32',
  tokens: 'u32',
  heads_q: 'u32',
  heads_kv: 'u32',
  /** Floats per row of q (Nq D), or of the packed qkv (W). */
  q_stride: 'u32',
  /** Packed: first column of K and of V in a qkv row. */
  k_col: 'u32',
  v_col: 'u32',
  /** Element offsets of the cache bindings, multiples of 4. */
  kc_off: 'u32',
  vc_off: 'u32',
  /** Rows of the cos table (sin starts at rope_rows * D/2). */
  rope_rows: 'u32',
  scale: 'f32',
});

export const FLASH_DECODE_BINDINGS = { params: 0, q: 1, keys: 2, values: 3, partials: 4, step: 5, rope: 6 } as const;

/** Finite "no score" (masked): no arithmetic meets an infinity. */
const NO_SCORE = '-3.0e38';

/** Threads that share one key's value row (one 4-float chunk each) and the number of key slices. */
export function flashDecodeLayout(o: Pick<FlashDecodeOptions, 'headDim' | 'workgroupSize'>): { chunks: number; slices: number; half: number } {
  const chunks = o.headDim / 4;
  const slices = Math.floor(o.workgroupSize / chunks);
  let pow = 1;
  while (pow < slices) pow *= 2;
  return { chunks, slices, half: pow / 2 };
}

/** Floats of the scratch array: the double-buffered scores, or the merge tree's slots, whichever is larger. */
function scratchFloats(o: FlashDecodeOptions): number {
  const { chunks, half } = flashDecodeLayout(o);
  return Math.max(2 * o.group * o.workgroupSize, half * o.group * (4 * chunks + 2));
}

/** Bytes of workgroup memory the partial kernel declares. */
export function flashDecodeSharedBytes(o: FlashDecodeOptions): number {
  return 4 * (o.group * o.headDim + scratchFloats(o));
}

/** Why these options cannot be built (undefined: they can). */
export function flashDecodeUnsupported(o: FlashDecodeOptions): string | undefined {
  if (o.unroll !== undefined && (!Number.isInteger(o.unroll) || o.unroll < 1 || o.unroll > 32)) return `unroll must be 1..32, got ${o.unroll}`;
  if (o.headDim % (o.packed ? 8 : 4) !== 0) return `head dim ${o.headDim} is not a multiple of ${o.packed ? 8 : 4}`;
  if (o.headDim / 4 > o.workgroupSize) return `head dim ${o.headDim} needs more than ${o.workgroupSize} threads`;
  return undefined;
}

export function buildFlashDecode(o: FlashDecodeOptions): string {
  const { headDim: D, group: G, workgroupSize: WG, packed } = o;
  const why = flashDecodeUnsupported(o);
  if (why) throw new Error(`buildFlashDecode: ${why}`);
  const { chunks: D4, slices: NKS, half: HALF } = flashDecodeLayout(o);
  const B = FLASH_DECODE_BINDINGS;
  const heads = Array.from({ length: G }, (_, h) => h);
  const perHead = (f: (h: number) => string, sep = '\n') => heads.map(f).join(sep);
  const U = o.unroll ?? 4;
  const units = Array.from({ length: U }, (_, u) => u);
  // keys per owner per tile, walked in groups of U so U value loads are in flight at once
  const keysPerOwner = Math.ceil(WG / NKS);
  const cacheWrite = packed ? 'read_write' : 'read';

  // the scores of one key: its row's chunks loaded U at a time (U loads in flight), dotted with
  // every head's query (unrolled: the driver does not unroll loops over register arrays)
  const KU = Math.min(U, D4);
  const full = D4 - (D4 % KU);
  const dots = (k: string, c: string) => perHead((h) => `      s${h} += dot(q_tile[${h}u * D4 + ${c}], ${k});`);
  const keyLoop = (load: (c: string) => string) => `
    for (var c0 = 0u; c0 < ${full}u; c0 += ${KU}u) {
${units.slice(0, KU).map((u) => `      let k${u} = ${load(`c0 + ${u}u`)};`).join('\n')}
${units.slice(0, KU).map((u) => dots(`k${u}`, `c0 + ${u}u`)).join('\n')}
    }
${Array.from({ length: D4 % KU }, (_, r) => `    {
      let k = ${load(`${full + r}u`)};
${dots('k', `${full + r}u`)}
    }`).join('\n')}`;
  // one key of the value phase: the online-softmax update of every head
  const valueUpdate = (u: number) => `
        if (key${u} < TK && j0 + key${u} < hi) {
${perHead((h) => `          {
            let s = scratch[at + key${u} + ${h}u * TK];
            if (s > m${h}) {
              let r = exp(m${h} - s);
              a${h} *= r;
              l${h} *= r;
              m${h} = s;
            }
            let p = exp(s - m${h});
            l${h} += p;
            a${h} += p * v${u};
          }`)}
        }`;
  const loadValue = (u: number) => packed
    ? `let p${u} = min(j0 + key${u}, hi - 1u);
        var v${u} = q[new_v + cp];
        if (p${u} < start) { v${u} = values[v_base + p${u} * pos4 + cp]; }`
    : `let v${u} = values[v_base + min(j0 + key${u}, hi - 1u) * pos4 + cp];`;

  return `${FLASH_DECODE_PARAMS.wgsl()}
@group(0) @binding(${B.params}) var<uniform> params: FlashDecodeParams;
@group(0) @binding(${B.q}) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(${B.keys}) var<storage, ${cacheWrite}> keys: array<vec4<f32>>;
@group(0) @binding(${B.values}) var<storage, ${cacheWrite}> values: array<vec4<f32>>;
@group(0) @binding(${B.partials}) var<storage, read_write> partials: array<vec4<f32>>;
@group(0) @binding(${B.step}) var<storage, read> step: array<u32>;
${packed ? `@group(0) @binding(${B.rope}) var<storage, read> rope: array<vec4<f32>>;` : ''}

const D4 = ${D4}u;
const G = ${G}u;
const WG = ${WG}u;
const TK = WG;
const NKS = ${NKS}u; // key slices of the value phase
const NO_SCORE = ${NO_SCORE};

var<workgroup> q_tile: array<vec4<f32>, ${G * D4}>;
// scores [2][G][TK] during the key loop; the merge tree's slots after it
var<workgroup> scratch: array<f32, ${scratchFloats(o)}>;
${packed ? `
/** Chunk c of head-row x (vec4 index base, D/4 chunks) rotated for table row r (rotate-half). */
fn rotated(base: u32, c: u32, r: u32) -> vec4<f32> {
  let half4 = D4 / 2u;
  let i = c % half4;
  let cs = rope[r * half4 + i];
  let sn = rope[(params.rope_rows + r) * half4 + i];
  let x = q[base + c];
  if (c < half4) { return x * cs - q[base + c + half4] * sn; }
  return x * cs + q[base + c - half4] * sn;
}
` : ''}
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let kv_head = wid.x;
  let row = wid.y;
  let split = wid.z;
  let splits = nwg.z;
  let batch = params.batch;
  let b = row % batch;
  let start = step[0];
  let visible = start + row / batch + 1u;
  // a uniform partition of the longest row's keys, in whole tiles
  let total = start + params.tokens;
  let per_split = ((total + splits - 1u) / splits + TK - 1u) / TK * TK;
  let lo = split * per_split;
  let hi = min(lo + per_split, visible);
  let row4 = params.q_stride / 4u;
  let kv4 = params.heads_kv * D4;      // vec4s per (position, sequence)
  let pos4 = batch * kv4;               // vec4s per position
  let k_base = params.kc_off / 4u + b * kv4 + kv_head * D4;
  let v_base = params.vc_off / 4u + b * kv4 + kv_head * D4;
${packed ? `  let rope_row = start - step[1];
  let new_k = row * row4 + params.k_col / 4u + kv_head * D4;
  let new_v = row * row4 + params.v_col / 4u + kv_head * D4;
  // the new token's rotated key and its value go into the cache (split 0 only: once per head)
  if (split == 0u) {
    for (var c = lid.x; c < D4; c += WG) {
      keys[k_base + start * pos4 + c] = rotated(new_k, c, rope_row);
      values[v_base + start * pos4 + c] = q[new_v + c];
    }
  }` : ''}

  let q_base = row * row4 + kv_head * G * D4;
  for (var i = lid.x; i < G * D4; i += WG) {
    ${packed ? 'q_tile[i] = rotated(q_base + (i / D4) * D4, i % D4, rope_row) * params.scale;' : 'q_tile[i] = q[q_base + i] * params.scale;'}
  }

  // value-phase owner: column chunk cp of every head, keys ks, ks + NKS, ... of each tile
  let cp = lid.x % D4;
  let ks = lid.x / D4;
  let owner = ks < NKS;
${perHead((h) => `  var m${h} = NO_SCORE;\n  var l${h} = 0.0;\n  var a${h} = vec4<f32>(0.0);`)}
  var buf = 0u;
  workgroupBarrier();

  for (var j0 = lo; j0 < hi; j0 += TK) {
    // scores: thread lid.x owns key j0 + lid.x
    let pos = j0 + lid.x;
${perHead((h) => `    var s${h} = NO_SCORE;`)}
    if (pos < hi) {
${perHead((h) => `      s${h} = 0.0;`)}
${packed ? `      if (pos < start) {${keyLoop((c) => `keys[k_base + pos * pos4 + ${c}]`)}
      } else {${keyLoop((c) => `rotated(new_k, ${c}, rope_row)`)}
      }` : keyLoop((c) => `keys[k_base + pos * pos4 + ${c}]`)}
    }
    let s_at = buf * G * TK + lid.x;
${perHead((h) => `    scratch[s_at + ${h}u * TK] = s${h};`)}
    workgroupBarrier();

    // values: online softmax per (owner, head) over the owner's keys of this tile
    if (owner) {
      let at = buf * G * TK;
      for (var i0 = 0u; i0 < ${keysPerOwner}u; i0 += ${U}u) {
${units.map((u) => `        let key${u} = ks + NKS * (i0 + ${u}u);\n        ${loadValue(u)}`).join('\n')}
${units.map(valueUpdate).join('')}
      }
    }
    buf = 1u - buf;
  }
  workgroupBarrier();

  // merge the NKS key slices: a tree through workgroup memory, slots of (acc per chunk, max, sum)
  let ml_base = ${HALF * G * 4 * D4}u;
  for (var half = ${HALF}u; half > 0u; half /= 2u) {
    if (owner && ks >= half && ks < 2u * half) {
      let slot = ks - half;
${perHead((h) => `      {
        let at = ((slot * G + ${h}u) * D4 + cp) * 4u;
        scratch[at] = a${h}.x; scratch[at + 1u] = a${h}.y; scratch[at + 2u] = a${h}.z; scratch[at + 3u] = a${h}.w;
        if (cp == 0u) { scratch[ml_base + (slot * G + ${h}u) * 2u] = m${h}; scratch[ml_base + (slot * G + ${h}u) * 2u + 1u] = l${h}; }
      }`)}
    }
    workgroupBarrier();
    if (owner && ks < half && ks + half < NKS) {
${perHead((h) => `      {
        let at = ((ks * G + ${h}u) * D4 + cp) * 4u;
        let mo = scratch[ml_base + (ks * G + ${h}u) * 2u];
        let lo_ = scratch[ml_base + (ks * G + ${h}u) * 2u + 1u];
        let ao = vec4<f32>(scratch[at], scratch[at + 1u], scratch[at + 2u], scratch[at + 3u]);
        let mx = max(m${h}, mo);
        let fa = exp(m${h} - mx);
        let fb = exp(mo - mx);
        a${h} = a${h} * fa + ao * fb;
        l${h} = l${h} * fa + lo_ * fb;
        m${h} = mx;
      }`)}
    }
    workgroupBarrier();
  }

  if (owner && ks == 0u) {
    if (splits == 1u) {
      // one split: the normalised output itself, [rows, Nq * D] (no combine pass)
      let o = (row * params.heads_q + kv_head * G) * D4 + cp;
${perHead((h) => `      partials[o + ${h}u * D4] = a${h} / l${h};`)}
    } else {
      let out_base = ((row * params.heads_q + kv_head * G) * splits + split) * (D4 + 1u);
      let head_stride = splits * (D4 + 1u);
${perHead((h) => `      partials[out_base + ${h}u * head_stride + cp] = a${h};
      if (cp == 0u) { partials[out_base + ${h}u * head_stride + D4] = vec4<f32>(m${h}, l${h}, 0.0, 0.0); }`)}
    }
  }
}
`;
}

export const FLASH_COMBINE_PARAMS = new UniformLayout('FlashCombineParams', { row_heads: 'u32', splits: 'u32' });
export const FLASH_COMBINE_WORKGROUP = 128;

/**
 * out[(row, h)] = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s, one workgroup per (row, head)
 * (dispatch 2-D when there are more than the per-dimension limit): thread (c, slice) sums column
 * chunk c over the splits of its slice, then the slices are added through workgroup memory.
 */
export function buildFlashCombine(o: { headDim: number }): string {
  const D4 = o.headDim / 4;
  const WG = FLASH_COMBINE_WORKGROUP;
  const slices = Math.max(1, Math.floor(WG / D4));
  return `${FLASH_COMBINE_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> params: FlashCombineParams;
@group(0) @binding(1) var<storage, read> partials: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;

const D4 = ${D4}u;
const WG = ${WG}u;
const SLICES = ${slices}u;
var<workgroup> maxes: array<f32, WG>;
var<workgroup> sums: array<vec4<f32>, ${slices * D4}>;
var<workgroup> denominators: array<f32, SLICES>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let rh = wid.x + wid.y * nwg.x;
  if (rh >= params.row_heads) { return; }
  let base = rh * params.splits * (D4 + 1u);
  var m = ${NO_SCORE};
  for (var s = lid.x; s < params.splits; s += WG) { m = max(m, partials[base + s * (D4 + 1u) + D4].x); }
  maxes[lid.x] = m;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid.x < stride) { maxes[lid.x] = max(maxes[lid.x], maxes[lid.x + stride]); }
    workgroupBarrier();
  }
  let top = maxes[0];
  let c = lid.x % D4;
  let slice = lid.x / D4;
  if (slice < SLICES) {
    var acc = vec4<f32>(0.0);
    var den = 0.0;
    for (var s = slice; s < params.splits; s += SLICES) {
      let ml = partials[base + s * (D4 + 1u) + D4];
      let w = exp(ml.x - top);
      acc += w * partials[base + s * (D4 + 1u) + c];
      den += w * ml.y;
    }
    sums[slice * D4 + c] = acc;
    if (c == 0u) { denominators[slice] = den; }
  }
  workgroupBarrier();
  if (lid.x < D4) {
    var acc = vec4<f32>(0.0);
    var den = 0.0;
    for (var s = 0u; s < SLICES; s++) {
      acc += sums[s * D4 + lid.x];
      den += denominators[s];
    }
    out[rh * D4 + lid.x] = acc / den;
  }
}
`;
}

/**
 * Splits for `keys` visible positions (the longest row): enough workgroups (Nkv x rows x splits)
 * for `targetWorkgroups`, each split at least one tile, at most `maxSplits`.
 */
export function flashDecodeSplits(keys: number, kvHeads: number, rows: number, tileKeys: number, targetWorkgroups = 512, maxSplits = 256): number {
  const tiles = Math.max(1, Math.ceil(keys / tileKeys));
  const wanted = Math.max(1, Math.ceil(targetWorkgroups / (kvHeads * rows)));
  return Math.max(1, Math.min(tiles, wanted, maxSplits));
}

/**
 * The largest workgroup (256, 128, 64 or 32 threads) that this device allows and whose workgroup
 * memory fits, or undefined (then the first kernel, decode-attention.wgsl.ts, is the fallback).
 */
export function flashDecodeOptions(headDim: number, group: number, packed: boolean, limits: Pick<GPUSupportedLimits, 'maxComputeWorkgroupStorageSize' | 'maxComputeInvocationsPerWorkgroup' | 'maxComputeWorkgroupSizeX'>, largest = 256, unroll?: number): FlashDecodeOptions | undefined {
  for (const workgroupSize of [256, 128, 64, 32]) {
    if (workgroupSize > largest || workgroupSize > limits.maxComputeInvocationsPerWorkgroup || workgroupSize > limits.maxComputeWorkgroupSizeX) continue;
    const o: FlashDecodeOptions = { headDim, group, workgroupSize, packed, ...(unroll !== undefined ? { unroll } : {}) };
    if (flashDecodeUnsupported(o) === undefined && flashDecodeSharedBytes(o) <= limits.maxComputeWorkgroupStorageSize) return o;
  }
  return undefined;
}
