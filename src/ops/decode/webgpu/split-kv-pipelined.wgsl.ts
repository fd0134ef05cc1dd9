// Split-KV decode attention with the next tile's cache rows in flight while the current one is
// computed: the partial kernel for the common decode call (no append, no RoPE in the kernel, separate
// K and V). split-kv.wgsl.ts stays the general kernel (appends, RoPE, latent caches, any head dim).
//
// Why a second kernel: on the H200 the general kernel's time followed its per-tile chain (score
// loads, barrier, weights, barrier, value loads), reaching half of our streaming read at 32K keys
// (issue 15). Here each thread holds the raw words of the next tile's keys and values in registers:
// the key words for tile t + 1 are loaded as soon as tile t's partial dots are written, the value
// words as soon as tile t's values are accumulated, so a tile's memory latency hides behind the
// previous tile's compute and two barriers, and every thread always has loads outstanding.
//
// One workgroup of N threads per (KV head x head block, sequence x token block, split), tiles of
// TK keys; E elements per cache word (`chunk`: by default one 16-byte word, float32 4, float16 /
// bfloat16 8, int8 16; int8 also 8, one vec2<u32>: twice the value threads per key, as the general
// kernel's int8 loads, split-kv.wgsl.ts):
//   scores   thread (key k = lid / T, lane = lid % T) dots words lane, lane + T, ... (NC of them)
//            of key k's row with every row's query (broadcast from workgroup memory): TK = N / T;
//   weights  thread (row r, slice s) sums the T lanes of keys s, s + NKS, ... (VK of them), masks
//            them (causal / window per row), applies softcap and ALiBi, keeps the slice's running
//            max and sum in registers and writes p = exp(score - max) and the rescale factor;
//   values   thread (word c = lid % CV, slice s = lid / CV) accumulates p * v for its slice's keys,
//            every row; NKS = N / CV slices, merged by a tree through workgroup memory at the end.
// Rows, key ranges, the split partition and the partial layout are split-kv.wgsl.ts's (the same
// params and bindings, the same combine pass).
import { NEG_INF_FN, NO_SCORE } from '../../../engines/webgpu/wgsl.js';
import { ACCESS_HELPERS, type StoredDType, elementBytes, quadLoad, quadStore, quadType, unpackWord, wordType } from './access.wgsl.js';
import { SPLIT_KV_BINDINGS, SPLIT_KV_PARAMS, cacheAtFn, mergeTreeSteps } from './split-kv.wgsl.js';

export interface PipelinedDecodeOptions {
  dimQK: number;
  dimV: number;
  /** Query heads per KV head (G). */
  group: number;
  /** Heads of the group per workgroup (HB) and new tokens per workgroup (TB): rows R = HB * TB. */
  headsPerBlock: number;
  tokensPerBlock: number;
  /** Threads per workgroup (N). */
  workgroupSize: number;
  /** Words of a key row each score thread dots (NC): T = Dq / E / NC threads per key. */
  keyWords: number;
  cache: StoredDType;
  /**
   * Elements per cache word (E): absent, pipelinedChunk(cache) (one 16-byte word); int8 also takes
   * 8 (a vec2<u32> word). Every offset and stride of the cache must be a multiple of it.
   */
  chunk?: 4 | 8 | 16;
  io: 'float32' | 'float16';
  paged: boolean;
  softcap: boolean;
  alibi: boolean;
  /** One split: the kernel writes the normalized output itself (and the LSE with `lse`). */
  direct: boolean;
  /** Direct mode: also the LSE [B, Nq, Sq] (float32). */
  lse?: boolean;
}

/** Elements per 16-byte cache word: the kernel's word when its options give no `chunk`. */
export function pipelinedChunk(cache: StoredDType): number {
  return cache === 'float32' ? 4 : cache === 'int8' ? 16 : 8;
}

/** The word sizes (elements) the kernel takes for a cache dtype, the default first. */
export function pipelinedChunks(cache: StoredDType): readonly number[] {
  return cache === 'float32' ? [4] : cache === 'int8' ? [16, 8] : [8];
}

/** Elements per cache word of the kernel `o` (E). */
export function pipelinedWord(o: Pick<PipelinedDecodeOptions, 'cache' | 'chunk'>): number {
  return o.chunk ?? pipelinedChunk(o.cache);
}

export interface PipelinedLayout {
  /** Elements per word. */
  E: number;
  /** Words per key row and per value row. */
  CQ: number;
  CV: number;
  /** Threads per key in the score phase, keys per tile. */
  T: number;
  TK: number;
  /** Value slices, keys per slice per tile. */
  NKS: number;
  VK: number;
  R: number;
}

export function pipelinedLayout(o: PipelinedDecodeOptions): PipelinedLayout {
  const E = pipelinedWord(o);
  const CQ = o.dimQK / E;
  const CV = o.dimV / E;
  const T = CQ / o.keyWords;
  const TK = o.workgroupSize / T;
  const NKS = o.workgroupSize / CV;
  return { E, CQ, CV, T, TK, NKS, VK: TK / NKS, R: o.headsPerBlock * o.tokensPerBlock };
}

/** Floats the merge tree's slots may take (the tree runs in sub-rounds of fewer slots past it). */
const TREE_FLOATS = 4096;

/** Slots of the merge tree per sub-round: a power of two, at most half the slices. */
function treeSlots(o: PipelinedDecodeOptions): number {
  const { NKS, R } = pipelinedLayout(o);
  let slots = 1;
  while (slots * 2 <= NKS / 2 && slots * 2 * R * (o.dimV + 2) <= TREE_FLOATS) slots *= 2;
  return slots;
}

/** Most accumulator quads per value thread (rows x E / 4): registers, not spills. */
const MAX_QUADS = 16;
const MAX_TOKENS = 16;

export function pipelinedUnsupported(o: PipelinedDecodeOptions): string | undefined {
  if (o.chunk !== undefined && !pipelinedChunks(o.cache).includes(o.chunk)) return `a ${o.cache} cache takes words of ${pipelinedChunks(o.cache).join(' or ')} elements, got chunk ${o.chunk}`;
  const { E, CQ, CV, T, TK, NKS, VK, R } = pipelinedLayout(o);
  const N = o.workgroupSize;
  if (o.dimQK % E !== 0 || o.dimV % E !== 0) return `head dims ${o.dimQK} / ${o.dimV} are not multiples of ${E} (one ${E * elementBytes(o.cache)}-byte word of ${o.cache})`;
  if (!Number.isInteger(o.keyWords) || o.keyWords < 1 || CQ % o.keyWords !== 0) return `keyWords must divide the ${CQ} words of a key row, got ${o.keyWords}`;
  if (!Number.isInteger(TK) || TK < 1) return `${T} threads per key do not divide the workgroup (${N})`;
  if (!Number.isInteger(NKS) || NKS < 1) return `the ${CV} words of a value row do not divide the workgroup (${N})`;
  if (!Number.isInteger(VK) || VK < 1) return `${NKS} value slices do not divide the tile of ${TK} keys`;
  if ((NKS & (NKS - 1)) !== 0) return `the value slices (${NKS}) must be a power of two (the merge tree)`;
  if (R * NKS > N) return `${R} rows x ${NKS} slices of weights need more than ${N} threads`;
  if (R * (E / 4) > MAX_QUADS) return `${R} rows x ${E / 4} quads exceed ${MAX_QUADS} accumulator quads per thread`;
  if (o.headsPerBlock < 1 || o.headsPerBlock > o.group) return `headsPerBlock must be 1..${o.group}, got ${o.headsPerBlock}`;
  if (o.tokensPerBlock < 1 || o.tokensPerBlock > MAX_TOKENS) return `tokensPerBlock must be 1..${MAX_TOKENS}, got ${o.tokensPerBlock}`;
  if (o.lse && !o.direct) return 'the kernel writes the LSE only in direct mode (the combine pass writes it otherwise)';
  return undefined;
}

/** Floats of the scratch array: the lanes' partial dots during the loop, the merge tree after it. */
function scratchFloats(o: PipelinedDecodeOptions): number {
  const { TK, T, NKS, R } = pipelinedLayout(o);
  return Math.max(R * (TK * T + 1), NKS > 1 ? treeSlots(o) * R * (o.dimV + 2) : 0);
}

export function pipelinedSharedBytes(o: PipelinedDecodeOptions): number {
  const { TK, NKS, R } = pipelinedLayout(o);
  return 4 * (R * o.dimQK + scratchFloats(o) + R * TK + R * NKS + 2 * R * NKS);
}

export function pipelinedStorageBindings(o: PipelinedDecodeOptions): number {
  return 5 + (o.cache === 'int8' ? 2 : 0) + (o.lse ? 1 : 0);
}

export function buildPipelinedSplitKv(o: PipelinedDecodeOptions): string {
  const why = pipelinedUnsupported(o);
  if (why) throw new Error(`buildPipelinedSplitKv: ${why}`);
  const { E, CQ, CV, T, TK, NKS, VK, R } = pipelinedLayout(o);
  const { dimQK: Dq, dimV: Dv, group: G, headsPerBlock: HB, tokensPerBlock: TB, workgroupSize: N, keyWords: NC } = o;
  const V = E / 4;
  const DQ4 = Dq / 4;
  const int8 = o.cache === 'int8';
  const B = SPLIT_KV_BINDINGS;
  const W = wordType(o.cache, E);
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const rows = range(R);
  const vs = range(V);
  const perRow = (f: (r: number) => string) => rows.map(f).join('\n');
  const LANE_STRIDE = TK * T + 1; // one float of padding per row: the weights' reads of a row's lanes avoid one bank
  const HALF = NKS / 2;
  const SLOTS = treeSlots(o);
  const unpack = (w: string) => unpackWord(o.cache, E, w);

  const decl = [
    SPLIT_KV_PARAMS.wgsl(),
    `@group(0) @binding(${B.params}) var<uniform> params: DecodeParams;`,
    `@group(0) @binding(${B.q}) var<storage, read> q: array<${quadType(o.io)}>;`,
    `@group(0) @binding(${B.keys}) var<storage, read> keys: array<${W}>;`,
    `@group(0) @binding(${B.values}) var<storage, read> values: array<${W}>;`,
    ...(int8 ? [
      `@group(0) @binding(${B.kScales}) var<storage, read> k_scales: array<f32>;`,
      `@group(0) @binding(${B.vScales}) var<storage, read> v_scales: array<f32>;`,
    ] : []),
    `@group(0) @binding(${B.meta}) var<storage, read> seqs: array<u32>;`,
    o.direct
      ? `@group(0) @binding(${B.out}) var<storage, read_write> out: array<${quadType(o.io)}>;`
      : `@group(0) @binding(${B.out}) var<storage, read_write> partials: array<vec4<f32>>;`,
    ...(o.lse ? [`@group(0) @binding(${B.lse}) var<storage, read_write> lse: array<f32>;`] : []),
  ];

  // the next tile's raw words: key words of this thread's key, value words of its slice's keys
  const fetchK = (j0: string) => `    {
      let kpos = min(${j0} + sk, last);
      let k_word = cache_at(b, kv_head, kpos, params.k_off, params.k_sp, params.k_sh, params.k_spos) / E;
${range(NC).map((c) => `      kw${c} = keys[k_word + lane + ${T * c}u];`).join('\n')}${int8 ? `
      k_scale = k_scales[cache_at(b, kv_head, kpos, params.ks_off, params.s_sp, params.s_sh, params.s_spos)];` : ''}
    }`;
  const fetchV = (j0: string) => `    {
${range(VK).map((u) => `      let vpos${u} = min(${j0} + slice + ${NKS * u}u, last);
      vw${u} = values[cache_at(b, kv_head, vpos${u}, params.v_off, params.v_sp, params.v_sh, params.v_spos) / E + cw];${int8 ? `
      v_scale${u} = v_scales[cache_at(b, kv_head, vpos${u}, params.vs_off, params.s_sp, params.s_sh, params.s_spos)];` : ''}`).join('\n')}
    }`;

  const dots = range(NC).map((c) => {
    const quads = unpack(`kw${c}`);
    return `      {
${quads.map((x, v) => `        let k${v} = ${x};`).join('\n')}
        let qc = (lane + ${T * c}u) * ${V}u;
${perRow((r) => vs.map((v) => `        d${r} += dot(q_tile[${r * DQ4}u + qc + ${v}u], k${v});`).join('\n'))}
      }`;
  }).join('\n');

  const scoreOf = (u: number) => `      {
        let key = w_slice + ${NKS * u}u;
        let pos = j0 + key;
        let at = w_row * ${LANE_STRIDE}u + key * ${T}u;
        var s = ${range(T).map((l) => `scratch[at + ${l}u]`).join(' + ')};
        if (pos >= hi || i32(pos) < w_range.x || i32(pos) > w_range.y) { s = NO_SCORE; } else {${o.softcap ? `
          s = params.softcap * tanh(clamp(s / params.softcap, -15.0, 15.0));` : ''}${o.alibi ? `
          s -= w_slope * abs(f32(i32(nkeys) - i32(params.tokens) + i32(w_token) - i32(pos)));` : ''}
        }
        s${u} = s;
      }`;

  const accumulate = range(VK).map((u) => {
    const quads = unpack(`vw${u}`);
    return `    {
${quads.map((x, v) => `      let v${v} = ${x};`).join('\n')}
${perRow((r) => `      {
        let p = weights[${r * TK}u + slice + ${NKS * u}u]${int8 ? ` * v_scale${u}` : ''};
${vs.map((v) => `        a${r}_${v} += p * v${v};`).join('\n')}
      }`)}
    }`;
  }).join('\n');

  const { store: treeStore, merge: treeMerge } = mergeTreeSteps(R, E, 'CV', 'cw', 'slot');
  const rowHead = (r: number) => `kv_head * G + hb * ${HB}u + ${Math.floor(r / TB)}u`;
  const rowToken = (r: number) => `tb * ${TB}u + ${r % TB}u`;
  const rowLive = (r: number) => `hb * ${HB}u + ${Math.floor(r / TB)}u < G && ${rowToken(r)} < params.tokens`;
  const finalWrite = o.direct
    ? perRow((r) => `    if (${rowLive(r)}) {
      let o = (params.o_off + b * params.o_sb + (${rowHead(r)}) * params.o_sh + (${rowToken(r)}) * params.o_si) / 4u + cw * ${V}u;
      let inv = select(0.0, 1.0 / l${r}, l${r} > 0.0);
${vs.map((v) => `      out[o + ${v}u] = ${quadStore(o.io, `a${r}_${v} * inv`)};`).join('\n')}${o.lse ? `
      if (cw == 0u) { lse[(b * params.heads_q + ${rowHead(r)}) * params.tokens + ${rowToken(r)}] = select(neg_inf(), m${r} + log(l${r}), l${r} > 0.0); }` : ''}
    }`)
    : perRow((r) => `    if (${rowLive(r)}) {
      let o = (((b * params.heads_q + ${rowHead(r)}) * params.tokens + ${rowToken(r)}) * splits + split) * (DV4 + 1u);
${vs.map((v) => `      partials[o + cw * ${V}u + ${v}u] = a${r}_${v};`).join('\n')}
      if (cw == 0u) { partials[o + DV4] = vec4<f32>(m${r}, l${r}, 0.0, 0.0); }
    }`);

  return `${decl.join('\n')}

const G = ${G}u;
const R = ${R}u;
const E = ${E}u;
const DQ4 = ${DQ4}u;
const DV4 = ${Dv / 4}u;
const CV = ${CV}u;
const TK = ${TK}u;
const NKS = ${NKS}u;
const NO_SCORE = ${NO_SCORE};

var<workgroup> q_tile: array<vec4<f32>, ${R * DQ4}>;
// the lanes' partial dots [R][TK][T] (rows padded by one) during the loop; the merge tree after it
var<workgroup> scratch: array<f32, ${scratchFloats(o)}>;
// p per (row, key of the tile), the rescale factor per (row, slice), running (max, sum) per (row, slice) at the end
var<workgroup> weights: array<f32, ${R * TK}>;
var<workgroup> factors: array<f32, ${R * NKS}>;
var<workgroup> ml: array<vec2<f32>, ${R * NKS}>;

${ACCESS_HELPERS}
${o.lse ? NEG_INF_FN : ''}

${cacheAtFn(o.paged)}

/** Visible keys [x, y] of row r of the workgroup (x > y: none, for a row past the group or Sq). */
fn row_range(r: u32, hb: u32, tb: u32, nkeys: u32) -> vec2<i32> {
  let i = tb * ${TB}u + r % ${TB}u;
  if (hb * ${HB}u + r / ${TB}u >= G || i >= params.tokens) { return vec2<i32>(1, 0); }
  let diag = select(i32(i), i32(nkeys) - i32(params.tokens) + i32(i), params.bottom_right != 0u);
  return vec2<i32>(max(0, diag - params.win_left), min(i32(nkeys) - 1, diag + params.win_right));
}

@compute @workgroup_size(${N})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let head_blocks = ${Math.ceil(G / HB)}u;
  let kv_head = wid.x / head_blocks;
  let hb = wid.x % head_blocks;
  let token_blocks = (params.tokens + ${TB - 1}u) / ${TB}u;
  let b = wid.y / token_blocks;
  let tb = wid.y % token_blocks;
  let split = wid.z;
  let splits = nwg.z;
  let nkeys = seqs[params.len_at + b * params.len_sb] + params.len_add;

  // the union of the rows' ranges, partitioned uniformly over the splits in whole tiles
  var wg_lo = i32(nkeys);
  var wg_hi = 0;
  for (var r = 0u; r < R; r++) {
    let x = row_range(r, hb, tb, nkeys);
    if (x.x <= x.y) { wg_lo = min(wg_lo, x.x); wg_hi = max(wg_hi, x.y + 1); }
  }
  wg_lo = min(wg_lo, wg_hi);
  let total = u32(wg_hi - wg_lo);
  let per_split = ((total + splits - 1u) / splits + TK - 1u) / TK * TK;
  let lo = min(u32(wg_lo) + split * per_split, u32(wg_hi));
  let hi = min(lo + per_split, u32(wg_hi));
  let last = max(hi, 1u) - 1u;

  // the threads' roles (see the header)
  let sk = lid.x / ${T}u;
  let lane = lid.x % ${T}u;
  let cw = lid.x % CV;
  let slice = lid.x / CV;
  let w_live = lid.x < R * NKS;
  let w_row = min(lid.x / NKS, R - 1u);
  let w_slice = lid.x % NKS;
  let w_range = select(vec2<i32>(1, 0), row_range(w_row, hb, tb, nkeys), w_live);
  let w_token = tb * ${TB}u + w_row % ${TB}u;${o.alibi ? `
  let w_head = kv_head * G + hb * ${HB}u + w_row / ${TB}u;
  let w_slope = select(0.0, bitcast<f32>(seqs[params.slopes_at + b * params.slopes_sb + min(w_head, params.heads_q - 1u)]), w_range.x <= w_range.y);` : ''}
  var w_m = NO_SCORE;
  var w_l = 0.0;

  // tile 0's words first: their latency overlaps the query's staging
${range(NC).map((c) => `  var kw${c}: ${W};`).join('\n')}
${range(VK).map((u) => `  var vw${u}: ${W};`).join('\n')}${int8 ? `
  var k_scale = 0.0;
${range(VK).map((u) => `  var v_scale${u} = 0.0;`).join('\n')}` : ''}
  if (lo < hi) {
${fetchK('lo')}
${fetchV('lo')}
  }

  for (var x = lid.x; x < R * DQ4; x += ${N}u) {
    let r = x / DQ4;
    let c = x % DQ4;
    let i = tb * ${TB}u + r % ${TB}u;
    var qv = vec4<f32>(0.0);
    if (hb * ${HB}u + r / ${TB}u < G && i < params.tokens) {
      let head = kv_head * G + hb * ${HB}u + r / ${TB}u;
      let base = params.q_off + b * params.q_sb + head * params.q_sh + i * params.q_si;
      qv = ${quadLoad(o.io, 'q[base / 4u + c]')};
    }
    q_tile[x] = qv * params.scale;
  }
${perRow((r) => `  var m${r} = NO_SCORE;\n  var l${r} = 0.0;\n${vs.map((v) => `  var a${r}_${v} = vec4<f32>(0.0);`).join('\n')}`)}
  workgroupBarrier();

  for (var j0 = lo; j0 < hi; j0 += TK) {
    // scores: this thread's words of its key, every row; then the next tile's key words
    {
${perRow((r) => `      var d${r} = 0.0;`)}
${dots}
${perRow((r) => `      scratch[${r * LANE_STRIDE}u + lid.x] = d${r}${int8 ? ' * k_scale' : ''};`)}
    }
${fetchK('j0 + TK')}
    workgroupBarrier();

    // weights: the slice's keys of this row, its running max and sum
    if (w_live) {
${range(VK).map((u) => `      var s${u} = NO_SCORE;`).join('\n')}
${range(VK).map(scoreOf).join('\n')}
      let mt = max(w_m, ${range(VK).reduce((acc, u) => (acc ? `max(${acc}, s${u})` : `s${u}`), '')});
${range(VK).map((u) => `      let p${u} = select(0.0, exp(s${u} - mt), s${u} > NO_SCORE);\n      weights[w_row * TK + w_slice + ${NKS * u}u] = p${u};`).join('\n')}
      let f = exp(w_m - mt);
      factors[w_row * NKS + w_slice] = f;
      w_l = w_l * f + ${range(VK).map((u) => `p${u}`).join(' + ')};
      w_m = mt;
    }
    workgroupBarrier();

    // values: rescale, accumulate this slice's keys; then the next tile's value words
${perRow((r) => `    {
      let f = factors[${r}u * NKS + slice];
${vs.map((v) => `      a${r}_${v} *= f;`).join('\n')}
    }`)}
${accumulate}
${fetchV('j0 + TK')}
  }

  if (w_live) { ml[w_row * NKS + w_slice] = vec2<f32>(w_m, w_l); }
  workgroupBarrier();
${perRow((r) => `  m${r} = ml[${r}u * NKS + slice].x;\n  l${r} = ml[${r}u * NKS + slice].y;`)}

  // merge the NKS slices: a tree through workgroup memory, slots of (acc per word, max, sum);
  // slice s < half takes s + half, SLOTS of them per sub-round (wide workgroups: bounded memory)
  let ml_base = ${SLOTS * R * Dv}u;
  for (var half = ${HALF}u; half > 0u; half /= 2u) {
    for (var t = 0u; t < half; t += ${SLOTS}u) {
      let end = min(t + ${SLOTS}u, half);
      if (slice >= half + t && slice < half + end) {
        let slot = slice - half - t;
${treeStore}
      }
      workgroupBarrier();
      if (slice >= t && slice < end) {
        let slot = slice - t;
${treeMerge}
      }
      workgroupBarrier();
    }
  }

  if (slice == 0u) {
${finalWrite}
  }
}
`;
}
