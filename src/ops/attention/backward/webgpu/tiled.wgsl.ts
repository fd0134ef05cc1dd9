// The portable f32 backward's register-tiled kv and q kernels (core WebGPU only, like the rest of
// the portable tier). The classic kernels (portable.wgsl.ts) give each thread one key (or row) and
// a few pairs: two workgroup loads per 4 FMAs, and with 48 KiB of workgroup memory a D 128 tile of
// 16 keys × 16 rows. These kernels compute each step as three small GEMMs with register tiles:
//   scoring     S = K·Qᵀ and dP = V·dOᵀ: each thread holds PAIR_OWNED × PAIR_OTHER pairs, the
//               head dims staged DIM_CHUNK vec4s at a time (a chunk of both sides), so no tile
//               needs a whole head dim of both sides at once;
//   pair math   P, dS from the LSE (pairGradient, shared with the classic kernels), written to
//               workgroup memory as [owned entry][other entry] vec4 rows;
//   accumulate  the kv kernel dV += P·dO and dK += dS·Q, the q kernel dQ += dS·K: each thread holds
//               ACC_OWNED gradient rows × a few quads, the other side's rows staged OTHER_CHUNK at
//               a time, P / dS read 4 entries per load.
// "Owned" entries are the workgroup's (keys in the kv kernel, query rows in the q kernel), "other"
// entries the ones it walks (query rows, keys). Every gradient element has one writer and a fixed
// summation order: results are bit-identical from run to run. dBias is the classic kernel's.
import {
  BACKWARD_BINDINGS, type PairKernelOptions, blockStatusCheck, common, pairGradient, queryBlockStart,
} from './portable.wgsl.js';
import { visibleKeySteps, visibleQuerySteps } from '../../webgpu/visible-steps.wgsl.js';

export interface TiledBackwardConfig {
  threads: number;
  /** Entries a workgroup owns: keys (kv kernel) or query rows (q kernel). */
  owned: number;
  /** Entries of the other side per step: query rows (kv kernel) or keys (q kernel), a multiple of 4. */
  other: number;
  /** Pairs per thread while scoring: owned entries × other entries. */
  pairOwned: number;
  pairOther: number;
  /** Owned entries (gradient rows) per thread while accumulating. */
  accOwned: number;
  /** vec4s of the head dims staged per scoring step. */
  dimChunk: number;
  /** Other entries staged per accumulation step (a multiple of 4 dividing `other`). */
  otherChunk: number;
}

export interface TiledKernelOptions extends PairKernelOptions {
  config: TiledBackwardConfig;
  /** Read q, k, v, the RoPE parts and dO 4 elements at a time (quadLoadsFit). */
  quads: boolean;
}

const odd = (n: number) => (n % 2 === 0 ? n + 1 : n);

interface Layout {
  goCount: number; // threads along the owned entries while scoring
  gmCount: number;
  gcCount: number; // thread groups along the owned entries while accumulating
  lanes: number; // threads per group while accumulating (along the quads)
  dqk4: number;
  dv4: number;
  chunkStride: number; // vec4s between rows of a scoring chunk (odd: rows on different banks)
  pStride: number; // vec4s between rows of P / dS
  scratch: number; // vec4s of the staging region (scoring chunks and accumulation rows alias it)
  accStageV: number; // vec4 offset of the kv kernel's dO rows (its Q rows, the q kernel's K rows, at 0)
}

function layout(kind: 'kv' | 'q', o: Pick<TiledKernelOptions, 'dimQK' | 'dimRope' | 'dimV' | 'config'>): Layout {
  const c = o.config;
  const dqk4 = Math.ceil((o.dimQK + o.dimRope) / 4);
  const dv4 = Math.ceil(o.dimV / 4);
  const chunkStride = odd(c.dimChunk);
  const scoring = 2 * (c.owned + c.other) * chunkStride;
  const accumulation = c.otherChunk * (kind === 'kv' ? dqk4 + dv4 : dqk4);
  return {
    goCount: c.owned / c.pairOwned,
    gmCount: c.other / c.pairOther,
    gcCount: c.owned / c.accOwned,
    lanes: c.threads / (c.owned / c.accOwned),
    dqk4,
    dv4,
    chunkStride,
    pStride: c.other / 4 + 1,
    scratch: Math.max(scoring, accumulation),
    accStageV: c.otherChunk * dqk4,
  };
}

/** Why `c` cannot build a kernel, or undefined. */
export function checkTiledConfig(c: TiledBackwardConfig): string | undefined {
  const whole = (n: number) => Number.isInteger(n) && n >= 1;
  if (!whole(c.owned / c.pairOwned) || !whole(c.other / c.pairOther)) return `pairOwned (${c.pairOwned}) / pairOther (${c.pairOther}) must divide owned (${c.owned}) / other (${c.other})`;
  if ((c.owned / c.pairOwned) * (c.other / c.pairOther) !== c.threads) return `(owned / pairOwned) × (other / pairOther) must be threads (${c.threads})`;
  if (!whole(c.owned / c.accOwned) || !whole(c.threads / (c.owned / c.accOwned))) return `owned / accOwned (${c.owned} / ${c.accOwned}) must divide threads (${c.threads})`;
  if (c.other % 4 !== 0 || c.otherChunk % 4 !== 0 || c.other % c.otherChunk !== 0) return `otherChunk (${c.otherChunk}) must be a multiple of 4 dividing other (${c.other})`;
  if (!whole(c.dimChunk)) return `dimChunk (${c.dimChunk}) must be a positive integer`;
  return undefined;
}

/** Workgroup bytes of a tiled kernel. */
export function tiledWorkgroupBytes(kind: 'kv' | 'q', o: Pick<TiledKernelOptions, 'dimQK' | 'dimRope' | 'dimV' | 'config'>): number {
  const l = layout(kind, o);
  const tiles = kind === 'kv' ? 2 : 1;
  const stats = kind === 'kv' ? o.config.other : o.config.owned;
  return 16 * (l.scratch + tiles * o.config.owned * l.pStride) + 8 * stats;
}

/** One source tensor part: its strides / offset uniforms, its head variable and its loader prefix. */
interface Part { strides: string; off: string; head: string; load: string }
const part = (buf: string, head: string, load = buf, off = buf): Part => ({ strides: `${buf}_strides`, off: `${off}_off`, head, load });
const Q_PARTS = [part('q', 'h'), part('qr', 'h')];
const K_PARTS = [part('k', 'hk'), part('kr', 'hk')];
const V_PARTS = [part('v', 'hk')];
const DO_PARTS = [part('o', 'h', 'do', 'do')];

/**
 * Stages `count` rows (row index expression `row` of r; rows failing `valid` are 0) into the
 * scratch at vec4 `dst`, rows `stride` vec4s apart: quads `first` .. first + width of the head dim
 * `dim4` (quads past it are 0). Two parts: quads from DQ / 4 on come from the second (the RoPE part).
 */
function stage(quads: boolean, dst: string, stride: string, count: string, first: string, width: string, dim: 'DQK' | 'DV', valid: string, row: string, parts: Part[]): string {
  const base = (p: Part) => `params.${p.off} + b * params.${p.strides}.x + ${p.head} * params.${p.strides}.y + (${row}) * params.${p.strides}.z`;
  if (quads) {
    const read = (p: Part, d4: string) => `x = ${p.load}_quad((${base(p)}) / 4u + ${d4});`;
    const pick = parts.length === 1 ? read(parts[0], 'd4') : `if (d4 < DQ / 4u) { ${read(parts[0], 'd4')} } else { ${read(parts[1], 'd4 - DQ / 4u')} }`;
    return `for (var e = lid; e < ${count} * ${width}; e += THREADS) {
        let r = e / ${width};
        let d4 = ${first} + e % ${width};
        var x = vec4<f32>();
        if (${valid} && d4 < ${dim}4) { ${pick} }
        scratch[${dst} + r * ${stride} + d4 - ${first}] = x;
      }`;
  }
  const read = (p: Part, d: string) => `x = ${p.load}_at(${base(p)} + ${d} * params.${p.strides}.w);`;
  const pick = parts.length === 1 ? read(parts[0], 'd') : `if (d < DQ) { ${read(parts[0], 'd')} } else { ${read(parts[1], '(d - DQ)')} }`;
  return `for (var e = lid; e < ${count} * ${width} * 4u; e += THREADS) {
        let r = e / (${width} * 4u);
        let c = e % (${width} * 4u);
        let d = 4u * ${first} + c;
        var x = 0.0;
        if (${valid} && d < ${dim}) { ${pick} }
        scratch[${dst} + r * ${stride} + c / 4u][c % 4u] = x;
      }`;
}

function constants(kind: 'kv' | 'q', o: TiledKernelOptions): string {
  const c = o.config;
  const l = layout(kind, o);
  return `const THREADS: u32 = ${c.threads}u;
const OWNED: u32 = ${c.owned}u;         // ${kind === 'kv' ? 'keys' : 'query rows'} of the workgroup
const OTHER: u32 = ${c.other}u;         // ${kind === 'kv' ? 'query rows' : 'keys'} per step
const PAIR_OWNED: u32 = ${c.pairOwned}u;
const PAIR_OTHER: u32 = ${c.pairOther}u;
const GO: u32 = ${l.goCount}u;          // scoring: owned entries go + GO·x, other entries gm + GM·y
const GM: u32 = ${l.gmCount}u;
const ACC_OWNED: u32 = ${c.accOwned}u;
const GC: u32 = ${l.gcCount}u;          // accumulating: owned entries gc + GC·x, quads ql + LANES·v
const LANES: u32 = ${l.lanes}u;
const DIM_CHUNK: u32 = ${c.dimChunk}u;
const CHUNK_STRIDE: u32 = ${l.chunkStride}u;
const OTHER_CHUNK: u32 = ${c.otherChunk}u;
const P_STRIDE: u32 = ${l.pStride}u;     // vec4s per row of P / dS (OTHER entries and a pad)
const DQ: u32 = ${o.dimQK}u;     // NoPE part of the query/key head dim
const DQK: u32 = ${o.dimQK + o.dimRope}u;    // whole query/key head dim (NoPE + RoPE)
const DV: u32 = ${o.dimV}u;
const DQK4: u32 = ${l.dqk4}u;
const DV4: u32 = ${l.dv4}u;
const QK_CHUNKS: u32 = ${Math.ceil(l.dqk4 / c.dimChunk)}u;
const V_CHUNKS: u32 = ${Math.ceil(l.dv4 / c.dimChunk)}u;
const CHUNKS: u32 = ${Math.ceil(Math.max(l.dqk4, l.dv4) / c.dimChunk)}u;
// scoring chunks: owned Q/K part, other Q/K part, owned V/dO part, other V/dO part
const A_OWN_QK: u32 = 0u;
const A_OTHER_QK: u32 = ${c.owned * l.chunkStride}u;
const A_OWN_V: u32 = ${(c.owned + c.other) * l.chunkStride}u;
const A_OTHER_V: u32 = ${(2 * c.owned + c.other) * l.chunkStride}u;
const C_QK: u32 = 0u;   // accumulation rows (full head dims)
const C_V: u32 = ${l.accStageV}u;
const LSE_MASKED: f32 = 3.0e38;   // the LSE of a row that sees no key: exp(s - LSE_MASKED) = 0

var<workgroup> scratch: array<vec4<f32>, ${l.scratch}>;`;
}

/** Quads per lane of a gradient of `dim4` quads, and the guard for lanes past it. */
function quadsOf(dim4: number, lanes: number): { count: number; guard: (c: string) => string } {
  const count = Math.ceil(dim4 / lanes);
  return { count, guard: (c) => (dim4 % lanes === 0 ? 'true' : `${c} < ${dim4}u`) };
}

/** The scoring loop: S and dP of this thread's pairs, the owned / other rows staged by `stageChunks`. */
/**
 * Which entries a thread scores: owned go + GO·x and other gm + GM·y (spread: rows of a warp on
 * different banks), or, for the key side under dropout, PAIR·g + n (the thread's keys adjacent,
 * so the pairs of one key octet share one Philox call).
 */
interface PairIndex { owned: (x: string) => string; other: (y: string) => string; shareWords: boolean }
function pairIndex(kind: 'kv' | 'q', o: TiledKernelOptions): PairIndex {
  // a thread's keys share an octet when their count divides 8 and every step starts on a multiple of it
  const perThread = kind === 'kv' ? o.config.pairOwned : o.config.pairOther;
  const step = kind === 'kv' ? o.config.owned : o.config.other;
  const adjacent = o.dropout && 8 % perThread === 0 && step % perThread === 0;
  return {
    shareWords: adjacent,
    owned: (x) => (adjacent && kind === 'kv' ? `(go * PAIR_OWNED + ${x})` : `(go + GO * ${x})`),
    other: (y) => (adjacent && kind === 'q' ? `(gm * PAIR_OTHER + ${y})` : `(gm + GM * ${y})`),
  };
}

function scoring(stageQK: string, stageV: string, ix: PairIndex): string {
  const dots = (own: string, other: string, acc: string) => `for (var d4 = 0u; d4 < DIM_CHUNK; d4++) {
          var a: array<vec4<f32>, PAIR_OWNED>;
          for (var x = 0u; x < PAIR_OWNED; x++) { a[x] = scratch[${own} + ${ix.owned('x')} * CHUNK_STRIDE + d4]; }
          for (var y = 0u; y < PAIR_OTHER; y++) {
            let w = scratch[${other} + ${ix.other('y')} * CHUNK_STRIDE + d4];
            for (var x = 0u; x < PAIR_OWNED; x++) { ${acc}[x * PAIR_OTHER + y] += dot(a[x], w); }
          }
        }`;
  return `var s_acc: array<f32, PAIR_OWNED * PAIR_OTHER>;
    var dp_acc: array<f32, PAIR_OWNED * PAIR_OTHER>;
    for (var n = 0u; n < PAIR_OWNED * PAIR_OTHER; n++) { s_acc[n] = 0.0; dp_acc[n] = 0.0; }
    for (var ck = 0u; ck < CHUNKS; ck++) {
      workgroupBarrier();   // the previous chunk (or accumulation rows) fully read
      if (ck < QK_CHUNKS) {
      ${stageQK}
      }
      if (ck < V_CHUNKS) {
      ${stageV}
      }
      workgroupBarrier();
      if (ck < QK_CHUNKS) {
        ${dots('A_OWN_QK', 'A_OTHER_QK', 's_acc')}
      }
      if (ck < V_CHUNKS) {
        ${dots('A_OWN_V', 'A_OTHER_V', 'dp_acc')}
      }
    }`;
}

function gradWrite(acc: string, quads: { count: number; guard: (c: string) => string }, split: boolean, buf: string, strides: string, head: string, row: string, scale: string): string {
  const at = (s: string) => `b * params.${s}.x + ${head} * params.${s}.y + (${row}) * params.${s}.z`;
  const rope = strides.replace('_strides', 'r_strides');
  return `for (var v = 0u; v < ${quads.count}u; v++) {
        let cq = ql + LANES * v;
        if (${quads.guard('cq')}) {
          let val = ${acc}[x * ${quads.count}u + v] * ${scale};
          for (var e = 0u; e < 4u; e++) {
            let d = 4u * cq + e;
            ${split ? `if (d < DQ) { ${buf}[${at(strides)} + d * params.${strides}.w] = val[e]; } else if (d < DQK) { grad_rope[${at(rope)} + (d - DQ) * params.${rope}.w] = val[e]; }`
    : `if (d < ${buf === 'grad_v' ? 'DV' : 'DQK'}) { ${buf}[${at(strides)} + d * params.${strides}.w] = val[e]; }`}
          }
        }
      }`;
}

function header(kind: 'kv' | 'q', o: TiledKernelOptions): string {
  const B = BACKWARD_BINDINGS;
  const rope = o.dimRope > 0;
  const lines = [common(o, o.quads).join('\n')];
  if (kind === 'kv') {
    lines.push(`@group(0) @binding(${B.grad}) var<storage, read_write> grad_k: array<f32>;`, `@group(0) @binding(${B.gradV}) var<storage, read_write> grad_v: array<f32>;`);
  } else {
    lines.push(`@group(0) @binding(${B.grad}) var<storage, read_write> grad_q: array<f32>;`);
  }
  if (rope) lines.push(`@group(0) @binding(${B.gradRope}) var<storage, read_write> grad_rope: array<f32>;`);
  lines.push(constants(kind, o));
  return lines.join('\n');
}

/** kv: dK, dV (and dkRope) per block of OWNED keys; one workgroup per (key block, kv head, batch). */
export function buildTiledBackwardKv(o: TiledKernelOptions): string {
  const bad = checkTiledConfig(o.config);
  if (bad) throw new Error(`buildTiledBackwardKv: ${bad}`);
  const l = layout('kv', o);
  const ix = pairIndex('kv', o);
  const rope = o.dimRope > 0;
  const dk = quadsOf(l.dqk4, l.lanes);
  const dv = quadsOf(l.dv4, l.lanes);
  const kParts = rope ? K_PARTS : [K_PARTS[0]];
  const qParts = rope ? Q_PARTS : [Q_PARTS[0]];
  const first = 'ck * DIM_CHUNK';
  const stageQK = [
    stage(o.quads, 'A_OWN_QK', 'CHUNK_STRIDE', 'OWNED', first, 'DIM_CHUNK', 'DQK', 'j0 + r < sk', 'start_k + j0 + r', kParts),
    stage(o.quads, 'A_OTHER_QK', 'CHUNK_STRIDE', 'OTHER', first, 'DIM_CHUNK', 'DQK', 'i0 + r < sq', 'start_q + i0 + r', qParts),
  ].join('\n      ');
  const stageV = [
    stage(o.quads, 'A_OWN_V', 'CHUNK_STRIDE', 'OWNED', first, 'DIM_CHUNK', 'DV', 'j0 + r < sk', 'start_k + j0 + r', V_PARTS),
    stage(o.quads, 'A_OTHER_V', 'CHUNK_STRIDE', 'OTHER', first, 'DIM_CHUNK', 'DV', 'i0 + r < sq', 'start_q + i0 + r', DO_PARTS),
  ].join('\n      ');
  return `// fusedattn portable backward (register tiles), kv: dK, dV${rope ? ', dkRope' : ''} per key block (${o.dtype} storage${o.quads ? ' read by quads' : ''}, f32 math)
${header('kv', o)}
var<workgroup> p_tile: array<vec4<f32>, ${o.config.owned * l.pStride}>;    // P∘Z as [key][row]
var<workgroup> ds_tile: array<vec4<f32>, ${o.config.owned * l.pStride}>;   // dS (softcap factor applied)
var<workgroup> row_stats: array<vec2<f32>, ${o.config.other}>;

@compute @workgroup_size(${o.config.threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let nb = sp.batch;
  let b = wg.z;
  let hk = wg.y;
  let start_q = seq_meta[b];
  let start_k = seq_meta[nb + b];
  let sq = seq_meta[2u * nb + b];
  let sk = seq_meta[3u * nb + b];
  let j0 = wg.x * OWNED;
  if (j0 >= sk) { return; }   // the grid covers the longest sequence
  let go = lid % GO;
  let gm = lid / GO;
  let gc = lid / LANES;
  let ql = lid % LANES;
  var dk_acc: array<vec4<f32>, ${o.config.accOwned * dk.count}>;
  var dv_acc: array<vec4<f32>, ${o.config.accOwned * dv.count}>;
  for (var n = 0u; n < ${o.config.accOwned * dk.count}u; n++) { dk_acc[n] = vec4<f32>(); }
  for (var n = 0u; n < ${o.config.accOwned * dv.count}u; n++) { dv_acc[n] = vec4<f32>(); }
  // the queries that can see keys j0 .. j_last (window), in steps of OTHER rows
${visibleQuerySteps('OWNED', 'OTHER', '  ')}
  for (var h = hk * params.group; h < (hk + 1u) * params.group; h++) {
    let slope = ${o.alibi ? 'bitcast<f32>(seq_meta[4u * nb + b * sp.alibi_stride_b + h])' : '0.0'};
    for (var t = t_first; t < t_end; t++) {
      let i0 = t * OTHER;
      ${blockStatusCheck(o, '      ')}
      workgroupBarrier();   // the previous step's row statistics, P and dS fully read
      for (var r = lid; r < OTHER; r += THREADS) {
        let li = b * params.lse_strides.x + h * params.lse_strides.y + (start_q + i0 + r) * params.lse_strides.z;
        row_stats[r] = select(vec2<f32>(LSE_MASKED, 0.0), rowstats[li], i0 + r < sq);
      }
      ${scoring(stageQK, stageV, ix)}
      // P and dS of this thread's pairs (rows outer: under dropout its keys share a row's Philox words)
      for (var y = 0u; y < PAIR_OTHER; y++) {
        let r = ${ix.other('y')};
        let i = i0 + r;
${ix.shareWords ? '        let words = dropout_words(dp.seed, dp.offset, b * dp.heads + h, i, (j0 + go * PAIR_OWNED) >> 3u);\n' : ''}        for (var x = 0u; x < PAIR_OWNED; x++) {
          let jj = ${ix.owned('x')};
          let j = j0 + jj;
          let qk = s_acc[x * PAIR_OTHER + y];
          let dpv = dp_acc[x * PAIR_OTHER + y];
          let st = row_stats[r];
          var p = 0.0;
          var ds = 0.0;
          var dsr = 0.0;
      ${pairGradient(o, ix.shareWords ? 'words' : undefined)}
          p_tile[jj * P_STRIDE + r / 4u][r % 4u] = p;
          ds_tile[jj * P_STRIDE + r / 4u][r % 4u] = ds;
          _ = dsr;
        }
      }
      // dV += (P∘Z)ᵀ·dO and dK += dSᵀ·Q, OTHER_CHUNK rows at a time
      for (var r0 = 0u; r0 < OTHER; r0 += OTHER_CHUNK) {
        workgroupBarrier();   // P and dS written, the previous rows fully read
        ${stage(o.quads, 'C_QK', 'DQK4', 'OTHER_CHUNK', '0u', 'DQK4', 'DQK', 'i0 + r0 + r < sq', 'start_q + i0 + r0 + r', qParts)}
        ${stage(o.quads, 'C_V', 'DV4', 'OTHER_CHUNK', '0u', 'DV4', 'DV', 'i0 + r0 + r < sq', 'start_q + i0 + r0 + r', DO_PARTS)}
        workgroupBarrier();
        for (var r4 = 0u; r4 < OTHER_CHUNK / 4u; r4++) {
          var pv: array<vec4<f32>, ACC_OWNED>;
          var dsv: array<vec4<f32>, ACC_OWNED>;
          for (var x = 0u; x < ACC_OWNED; x++) {
            let e = (gc + GC * x) * P_STRIDE + r0 / 4u + r4;
            pv[x] = p_tile[e];
            dsv[x] = ds_tile[e];
          }
          for (var rr = 0u; rr < 4u; rr++) {
            let r = 4u * r4 + rr;
            for (var v = 0u; v < ${dv.count}u; v++) {
              let cq = ql + LANES * v;
              if (${dv.guard('cq')}) {
                let w = scratch[C_V + r * DV4 + cq];
                for (var x = 0u; x < ACC_OWNED; x++) { dv_acc[x * ${dv.count}u + v] += pv[x][rr] * w; }
              }
            }
            for (var v = 0u; v < ${dk.count}u; v++) {
              let cq = ql + LANES * v;
              if (${dk.guard('cq')}) {
                let w = scratch[C_QK + r * DQK4 + cq];
                for (var x = 0u; x < ACC_OWNED; x++) { dk_acc[x * ${dk.count}u + v] += dsv[x][rr] * w; }
              }
            }
          }
        }
      }
    }
  }
  for (var x = 0u; x < ACC_OWNED; x++) {
    let j = j0 + gc + GC * x;
    if (j < sk) {
      ${gradWrite('dk_acc', dk, rope, 'grad_k', 'k_strides', 'hk', 'start_k + j', 'sp.scale')}
      ${gradWrite('dv_acc', dv, false, 'grad_v', 'v_strides', 'hk', 'start_k + j', '1.0')}
    }
  }
}
`;
}

/** q: dQ (and dqRope) per block of OWNED query rows; one workgroup per (row block, query head, batch). */
export function buildTiledBackwardQ(o: TiledKernelOptions): string {
  const bad = checkTiledConfig(o.config);
  if (bad) throw new Error(`buildTiledBackwardQ: ${bad}`);
  const l = layout('q', o);
  const ix = pairIndex('q', o);
  const rope = o.dimRope > 0;
  const dq = quadsOf(l.dqk4, l.lanes);
  const kParts = rope ? K_PARTS : [K_PARTS[0]];
  const qParts = rope ? Q_PARTS : [Q_PARTS[0]];
  const first = 'ck * DIM_CHUNK';
  const stageQK = [
    stage(o.quads, 'A_OWN_QK', 'CHUNK_STRIDE', 'OWNED', first, 'DIM_CHUNK', 'DQK', 'i0 + r < sq', 'start_q + i0 + r', qParts),
    stage(o.quads, 'A_OTHER_QK', 'CHUNK_STRIDE', 'OTHER', first, 'DIM_CHUNK', 'DQK', 'j0 + r < sk', 'start_k + j0 + r', kParts),
  ].join('\n      ');
  const stageV = [
    stage(o.quads, 'A_OWN_V', 'CHUNK_STRIDE', 'OWNED', first, 'DIM_CHUNK', 'DV', 'i0 + r < sq', 'start_q + i0 + r', DO_PARTS),
    stage(o.quads, 'A_OTHER_V', 'CHUNK_STRIDE', 'OTHER', first, 'DIM_CHUNK', 'DV', 'j0 + r < sk', 'start_k + j0 + r', V_PARTS),
  ].join('\n      ');
  return `// fusedattn portable backward (register tiles), q: dQ${rope ? ', dqRope' : ''} per block of query rows (${o.dtype} storage${o.quads ? ' read by quads' : ''}, f32 math)
${header('q', o)}
var<workgroup> ds_tile: array<vec4<f32>, ${o.config.owned * l.pStride}>;   // dS as [row][key]
var<workgroup> row_stats: array<vec2<f32>, ${o.config.owned}>;

@compute @workgroup_size(${o.config.threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${queryBlockStart(o, 'OWNED')}
  let go = lid % GO;
  let gm = lid / GO;
  let gc = lid / LANES;
  let ql = lid % LANES;
  for (var r = lid; r < OWNED; r += THREADS) {
    let li = b * params.lse_strides.x + h * params.lse_strides.y + (start_q + i0 + r) * params.lse_strides.z;
    row_stats[r] = select(vec2<f32>(LSE_MASKED, 0.0), rowstats[li], i0 + r < sq);
  }
  var dq_acc: array<vec4<f32>, ${o.config.accOwned * dq.count}>;
  for (var n = 0u; n < ${o.config.accOwned * dq.count}u; n++) { dq_acc[n] = vec4<f32>(); }
  // key steps this block can see: the window of its first row to the window of its last
${visibleKeySteps(o.windowed, 'OWNED', 'OTHER')}
  for (var t = t_first; t < t_end; t++) {
    let j0 = t * OTHER;
    ${blockStatusCheck(o, '    ')}
    ${scoring(stageQK, stageV, ix)}
    // dS of this thread's pairs
    for (var x = 0u; x < PAIR_OWNED; x++) {
      let r = ${ix.owned('x')};
      let i = i0 + r;
      let st = row_stats[r];
${ix.shareWords ? '      let words = dropout_words(dp.seed, dp.offset, b * dp.heads + h, i, (j0 + gm * PAIR_OTHER) >> 3u);\n' : ''}      for (var y = 0u; y < PAIR_OTHER; y++) {
        let jj = ${ix.other('y')};
        let j = j0 + jj;
        let qk = s_acc[x * PAIR_OTHER + y];
        let dpv = dp_acc[x * PAIR_OTHER + y];
        var p = 0.0;
        var ds = 0.0;
        var dsr = 0.0;
      ${pairGradient(o, ix.shareWords ? 'words' : undefined)}
        ds_tile[r * P_STRIDE + jj / 4u][jj % 4u] = ds;
        _ = p;
        _ = dsr;
      }
    }
    // dQ += dS·K, OTHER_CHUNK keys at a time
    for (var k0 = 0u; k0 < OTHER; k0 += OTHER_CHUNK) {
      workgroupBarrier();   // dS written, the previous keys fully read
      ${stage(o.quads, 'C_QK', 'DQK4', 'OTHER_CHUNK', '0u', 'DQK4', 'DQK', 'j0 + k0 + r < sk', 'start_k + j0 + k0 + r', kParts)}
      workgroupBarrier();
      for (var r4 = 0u; r4 < OTHER_CHUNK / 4u; r4++) {
        var dsv: array<vec4<f32>, ACC_OWNED>;
        for (var x = 0u; x < ACC_OWNED; x++) { dsv[x] = ds_tile[(gc + GC * x) * P_STRIDE + k0 / 4u + r4]; }
        for (var rr = 0u; rr < 4u; rr++) {
          let r = 4u * r4 + rr;
          for (var v = 0u; v < ${dq.count}u; v++) {
            let cq = ql + LANES * v;
            if (${dq.guard('cq')}) {
              let w = scratch[C_QK + r * DQK4 + cq];
              for (var x = 0u; x < ACC_OWNED; x++) { dq_acc[x * ${dq.count}u + v] += dsv[x][rr] * w; }
            }
          }
        }
      }
    }
  }
  for (var x = 0u; x < ACC_OWNED; x++) {
    let i = i0 + gc + GC * x;
    if (i < sq) {
      ${gradWrite('dq_acc', dq, rope, 'grad_q', 'q_strides', 'h', 'start_q + i', 'sp.scale')}
    }
  }
}
`;
}
