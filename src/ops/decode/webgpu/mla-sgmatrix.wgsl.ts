// MLA latent decode on subgroup matrices (issue 15): with 16+ query rows over one shared latent KV
// head the decode is a matrix product, so per tile of 64 keys
//   S = Q (16 rows x Dq) · Kᵀ        each of the 4 subgroups: 16 keys x Dq (Dq/16 MMAs)
//   online softmax of S (f32)        128 threads, 8 per row, row state (m, l) in registers
//   O += P (16 x 64) · V (64 x Dv)   each subgroup: its Dv/4 columns (Dv/64 result matrices)
// on 16x16x16 f16 matrices with f32 results. K and V matrices are loaded straight from storage
// (Kᵀ as a column-major load of key rows, V row-major): the cache is read once and never staged,
// so no barrier waits on global loads and each subgroup keeps Dq/16 loads in flight. Q (16 rows)
// sits in workgroup memory; O stays in matrices (Dv/64 per subgroup: 64 registers at Dv 512).
// The split-KV grid and the partial format are the split-KV kernel's, so the combine pass merges.
// That is the direct form. The staged form (the default, `stage`) reads K and V instead in 16-byte
// words into workgroup memory, slab by slab, the next slab's words in registers while the current
// slab's multiplies run, with two score accumulators per subgroup (`kChains`: two dependent chains
// of 36 multiplies interleave) and Q in words: on the H200 (2026-12-03, session 8) 1.4x the direct
// form at 64 and 128 heads, 2.4-2.7x the fifth session's kernel at 32K keys. Loads straight from
// storage, one matrix at a time, waited a memory latency each; batching them did not help (call 1).
//
// Rows: row R of kv head g is (head g G + R / Sq, token R % Sq), R < G Sq; workgroup x holds rows
// 16 (x mod blocks) ... of kv head x / blocks. Keys: as split-kv.wgsl.ts (same params, same
// window rule with diag = K_b - Sq + i bottom-right or i top-left); the workgroup's key range is
// split in whole 64-key tiles starting at a multiple of 64, so every 16-key chunk lies in one page
// when the page size is a multiple of 16.
// Softmax in log2 units; m moves only when the tile's max passes it by more than THRESHOLD (then
// O is rescaled through workgroup memory), so P <= 2^8 fits f16.
// Keys past a row's range are masked by index; a 16-key chunk wholly past the range is skipped.
// The one chunk that ends past the range (its last key not a multiple of 16) is staged through
// workgroup memory with the rows behind the range zeroed. What robustness makes of a matrix load
// reaching past the binding's end is not specified: on the H200 a 16-row load from a 6-row cache
// (one key) came back wrong (err ~2) while one reaching 10 rows past a 102-row cache (97 keys) was
// right. And stale rows behind the last key could hold NaN, which P = 0 would not hide. A finite left window (rows hidden below the range inside the first chunk) is left to
// split-KV by the host (effectivePlan) for the same reason.
import { SPLIT_KV_BINDINGS, SPLIT_KV_PARAMS, cacheAtFn } from './split-kv.wgsl.js';
import { NO_SCORE } from '../../../engines/webgpu/wgsl.js';

export interface MlaDecodeOptions {
  dimQK: number;
  dimV: number;
  /** Nq / Nkv. */
  group: number;
  paged: boolean;
  /** Values are the first Dv columns of the key rows (one latent cache binding). */
  sharedKV: boolean;
  /**
   * Kᵀ matrix loads a subgroup issues before their multiplies (a divisor of Dq / 16; default 1, the
   * first kernel's one load per step): the loads go straight to storage, so one at a time leaves
   * each subgroup waiting a whole memory latency per 16 columns of Dq.
   */
  keyBatch?: number;
  /** 16-key chunks of V whose loads are issued together (1, 2 or 4; default 1). */
  valueBatch?: number;
  /**
   * Stage K and V through workgroup memory with 16-byte loads, the next slab's words in registers
   * while the current slab's multiplies run (the GEMMs' and the forward's way), instead of matrix
   * loads straight from storage.
   */
  stage?: boolean;
  /** Slabs loaded ahead in the staged form (1 or 2; default 1): 2 holds two slabs' words in registers. */
  stageDepth?: number;
  /** Score accumulators per subgroup in the staged form (1 or 2; default 1). */
  kChains?: number;
  /** Q read in 16-byte words (every q offset and stride a multiple of 8 halves: effectivePlan checks). */
  qWords?: boolean;
  /**
   * Staged form, whole tiles (head dims up to ~128): a tile's K and V rows are staged at once and
   * the next tile's words load while this tile computes, one memory latency per tile. The slab
   * steps wait one per slab: five per tile at D 128, where the grouped-query decode read ~650 GB/s
   * whatever the grid (H200, session 14, call 1).
   */
  wholeTile?: boolean;
  /**
   * Whole tiles in about half the workgroup memory (needs qWords): Q's matrices held in registers
   * across the key loop (loaded once from a staging of Q's words), and a tile's V rows staged into
   * the K rows' place once S is computed, the next tile's V words loading from there. The H200
   * gives a workgroup's pipelines about 56 KiB of workgroup memory per SM in all (session 14,
   * bench/ceiling/occupancy.mjs): 46 KiB workgroups run one per SM, 24 KiB ones two.
   */
  compact?: boolean;
}

/** The largest divisor of n that is at most want (at least 1). */
function divisorAtMost(n: number, want: number): number {
  for (let d = Math.max(1, Math.min(n, Math.floor(want))); d > 1; d--) if (n % d === 0) return d;
  return 1;
}

export const MLA_SUBGROUPS = 4;
export const MLA_TILE = 64;
const ROWS = 16;
const THRESHOLD = 8;

/** Why `o` cannot make a kernel, or undefined. */
export function mlaDecodeUnsupported(o: MlaDecodeOptions): string | undefined {
  if (o.dimQK % 16 !== 0) return `Dq must be a multiple of 16, got ${o.dimQK}`;
  if (o.dimV % (16 * MLA_SUBGROUPS) !== 0) return `Dv must be a multiple of ${16 * MLA_SUBGROUPS}, got ${o.dimV}`;
  if (o.dimV > 512) return `Dv up to 512 (accumulator registers), got ${o.dimV}`;
  if (o.sharedKV && o.dimV > o.dimQK) return `a shared latent cache needs Dv <= Dq, got ${o.dimV} > ${o.dimQK}`;
  if (o.valueBatch !== undefined && ![1, 2, 4].includes(o.valueBatch)) return `valueBatch must be 1, 2 or 4, got ${o.valueBatch}`;
  if (o.stageDepth !== undefined && ![1, 2].includes(o.stageDepth)) return `stageDepth must be 1 or 2, got ${o.stageDepth}`;
  if (o.kChains !== undefined && ![1, 2].includes(o.kChains)) return `kChains must be 1 or 2, got ${o.kChains}`;
  if (o.wholeTile && !o.stage) return 'wholeTile is a staged form (stage: true)';
  if (o.compact && !(o.wholeTile && o.qWords)) return 'compact needs wholeTile and qWords';
  return undefined;
}

const qStride = (o: MlaDecodeOptions) => o.dimQK + 8; // halves; +8 staggers the rows' banks
const tailStride = (o: MlaDecodeOptions) => Math.max(o.dimQK, o.dimV) + 8;
const S_STRIDE = MLA_TILE + 4;
/** Two score chains (staged form, kChains 2): both S buffers unpadded, so the second fits in 48 KiB. */
const sStride = (o: MlaDecodeOptions) => (twoChains(o) ? MLA_TILE : S_STRIDE);
const twoChains = (o: MlaDecodeOptions) => o.stage === true && o.kChains === 2;
const P_STRIDE = MLA_TILE + 8;

/** Workgroup memory bytes of the kernel. */
export function mlaDecodeSharedBytes(o: MlaDecodeOptions): number {
  const common = (o.compact ? 0 : ROWS * qStride(o) * 2) + ROWS * sStride(o) * 4 * (twoChains(o) ? 2 : 1) + ROWS * P_STRIDE * 2 + ROWS * 16 + 16 + 16;
  return common + (o.stage ? stageWords(o) * 16 : ROWS * tailStride(o) * 2 + MLA_SUBGROUPS * 256 * 4);
}

/** Most bytes of one K slab (64 keys x KC halves, rows padded by 8). */
const SLAB_BYTES = 20480;
/** Key slabs per tile in the staged form: Dq in SQ slabs of KC columns (a multiple of 16). */
export function stagedSlabs(o: Pick<MlaDecodeOptions, 'dimQK'>): { slabs: number; kc: number } {
  for (let slabs = 1; slabs <= o.dimQK / 16; slabs++) {
    const kc = o.dimQK / slabs;
    if (kc % 16 === 0 && MLA_TILE * (kc + 8) * 2 <= SLAB_BYTES) return { slabs, kc };
  }
  return { slabs: o.dimQK / 16, kc: 16 };
}
/** vec4<u32> words of the staging buffer: the larger of a K slab and a V slab (16 keys x Dv). */
const stageWords = (o: MlaDecodeOptions) => (o.wholeTile ? wholeTileWords(o).total : Math.max(MLA_TILE * (stagedSlabs(o).kc + 8) / 8, 16 * (o.dimV + 8) / 8));
/** The whole-tile stage: 64 key rows then 64 value rows, rows padded by 8 halves (row strides in words). */
function wholeTileWords(o: MlaDecodeOptions): { LK: number; LV: number; voff: number; total: number } {
  const LK = (o.dimQK + 8) / 8;
  const LV = (o.dimV + 8) / 8;
  // compact: K, then V, then (first) Q's 16 rows, all in one region
  if (o.compact) return { LK, LV, voff: 0, total: Math.max(MLA_TILE * LK, MLA_TILE * LV) };
  return { LK, LV, voff: MLA_TILE * LK, total: MLA_TILE * (LK + LV) };
}

/** Loads each thread issues before storing them, in the copies to workgroup memory. */
const COPY_BATCH = 24;
/** The batch for copies of 16 rows of `dim` halves by the workgroup's threads: a divisor of the per-thread count. */
const copyBatch = (dim: number) => divisorAtMost((16 * dim) / (32 * MLA_SUBGROUPS), COPY_BATCH);

/**
 * A copy loop over `total` elements (a multiple of the workgroup's threads x batch), element t =
 * tb + NT u (tb = li, li + NT batch, ...) for u < batch: all the batch's loads, then its stores, so one memory latency
 * per batch rather than per element.
 */
function batchedCopy(total: string, batch: number, load: (t: string, u: number) => string, store: (t: string, u: number) => string, indent = ''): string {
  const us = Array.from({ length: batch }, (_, u) => u);
  const t = (u: number) => `t${u}`;
  return `${indent}  for (var tb = li; tb < ${total}; tb += NT * ${batch}u) {
${us.map((u) => `${indent}    let ${t(u)} = tb + ${u * 32 * MLA_SUBGROUPS}u;`).join('\n')}
${us.map((u) => indentLines(load(t(u), u), indent)).join('\n')}
${us.map((u) => indentLines(store(t(u), u), indent)).join('\n')}
${indent}  }`;
}
const indentLines = (code: string, indent: string) => code.split('\n').map((l) => indent + l).join('\n');

export function buildMlaDecode(o: MlaDecodeOptions): string {
  const why = mlaDecodeUnsupported(o);
  if (why) throw new Error(`buildMlaDecode: ${why}`);
  const B = SPLIT_KV_BINDINGS;
  const NT = 32 * MLA_SUBGROUPS;
  const QS = qStride(o);
  const chunksQ = o.dimQK / 16;
  const chunksT = MLA_TILE / 16;
  const colsPer = o.dimV / MLA_SUBGROUPS;
  const mats = colsPer / 16;
  const vBuf = o.sharedKV ? 'keys' : 'values';
  const keyBatch = divisorAtMost(chunksQ, o.keyBatch ?? 1);
  const valueBatch = o.valueBatch ?? 1;
  const idx = (n: number) => Array.from({ length: n }, (_, i) => i);
  const qPrologue = o.qWords ? `  // Q rows -> workgroup memory (dead rows 0) in 16-byte words, a thread's loads all in flight at once
${batchedCopy('ROWS * DQ8', (16 * o.dimQK) / 8 / (32 * MLA_SUBGROUPS), (t, u) => `    let rr${u} = ${t} / DQ8;
    let RR${u} = rb * ROWS + rr${u};
    let Rc${u} = min(RR${u}, rows_kv - 1u);
    let x${u} = select(vec4<u32>(), q[(params.q_off + b * params.q_sb + (kv_head * G + Rc${u} / params.tokens) * params.q_sh + (Rc${u} % params.tokens) * params.q_si) / 8u + ${t} % DQ8], RR${u} < rows_kv);`,
    (t, u) => o.compact ? `    Stage[rr${u} * ${(o.dimQK + 8) / 8}u + ${t} % DQ8] = x${u};` : `    let qa${u} = rr${u} * QS + (${t} % DQ8) * 8u;
${[0, 1, 2, 3].map((c) => `    Qs[qa${u} + ${2 * c}u] = bitcast<vec2<f16>>(x${u}.${'xyzw'[c]}).x; Qs[qa${u} + ${2 * c + 1}u] = bitcast<vec2<f16>>(x${u}.${'xyzw'[c]}).y;`).join('\n')}`)}
` : `  // Q rows -> workgroup memory (dead rows 0), ${COPY_BATCH} loads in flight per thread: one at a
  // time, its 72 scalar loads (Dq 576) waited a memory latency each and cost more than the tiles
${batchedCopy('ROWS * DQ', copyBatch(o.dimQK), (t, u) => `    let rr${u} = ${t} / DQ;
    let RR${u} = rb * ROWS + rr${u};
    let Rc${u} = min(RR${u}, rows_kv - 1u);
    let x${u} = select(f16(0.0), q[params.q_off + b * params.q_sb + (kv_head * G + Rc${u} / params.tokens) * params.q_sh + (Rc${u} % params.tokens) * params.q_si + ${t} % DQ], RR${u} < rows_kv);`,
    (t, u) => `    Qs[rr${u} * QS + ${t} % DQ] = x${u};`)}
`;
  const OB = o.stage ? 'Ss' : 'Os';
  const cacheElem = o.stage ? 'vec4<u32>' : 'f16';
  const softmax = `    // online softmax of row r over its 8 columns
    var sv: array<f32, 8>;
    var tmax = NEG;
    for (var k = 0u; k < 8u; k++) {
      let j = i32(kv0 + part + 8u * k);
      var x = NEG;
      if (j >= lo_r && j <= hi_r) { x = ${twoChains(o) ? '(Ss[r * S_STRIDE + part + 8u * k] + Ss2[r * S_STRIDE + part + 8u * k])' : 'Ss[r * S_STRIDE + part + 8u * k]'} * qk_scale; }
      sv[k] = x;
      tmax = max(tmax, x);
    }
    tmax = max(tmax, subgroupShuffleXor(tmax, 1u));
    tmax = max(tmax, subgroupShuffleXor(tmax, 2u));
    tmax = max(tmax, subgroupShuffleXor(tmax, 4u));
    var alpha = 1.0;
    if (tmax > m) {
      if (m == NEG) {
        m = tmax;   // O and l still 0: nothing to rescale
      } else if (tmax - m > THRESHOLD) {
        alpha = exp2(m - tmax);
        m = tmax;
        atomicOr(&flagW[0], 1u);
      }
    }
    l *= alpha;
    var sum = 0.0;
    for (var k = 0u; k < 8u; k++) {
      let p = select(0.0, exp2(sv[k] - m), sv[k] != NEG);
      sum += p;
      Ps[r * P_STRIDE + part + 8u * k] = f16(p);
    }
    sum += subgroupShuffleXor(sum, 1u);
    sum += subgroupShuffleXor(sum, 2u);
    sum += subgroupShuffleXor(sum, 4u);
    l += sum;
    if (part == 0u) { alphaW[r].x = alpha; }
    if (workgroupUniformLoad(&flagW[0]) != 0u) {
      // some row's max moved: scale this subgroup's O rows through workgroup memory
      let ob = sg * 256u;
${idx(mats).map((n) => `      subgroupMatrixStore<row_major>(&${OB}, ob, om${n}, 16u);
      workgroupBarrier();
      for (var e = lane; e < 256u; e += 32u) { ${OB}[ob + e] *= alphaW[e / 16u].x; }
      workgroupBarrier();
      om${n} = subgroupMatrixLoad<subgroup_matrix_result<f32, 16, 16>, row_major>(&${OB}, ob, 16u);
      workgroupBarrier();`).join('\n')}
    }
`;
  // the tile loop of the direct form (built only when it is the one asked for)
  const directLoop = () => `  for (var kv0 = lo; kv0 < hi; kv0 += BC) {
    let tail_here = has_tail && tail < kv0 + BC;
    if (tail_here) {
${batchedCopy('16u * DQ', copyBatch(o.dimQK), (t, u) => `      let p${u} = tail + ${t} / DQ;
      let x${u} = select(f16(0.0), keys[cache_at(b, kv_head, min(p${u}, hi - 1u), params.k_off, params.k_sp, params.k_sh, params.k_spos) + ${t} % DQ], p${u} < hi);`,
    (t, u) => `      Tail[(${t} / DQ) * TS + ${t} % DQ] = x${u};`, '  ')}
      workgroupBarrier();
    }
    // S chunk of this subgroup: keys kv0 + 16 sg ..., Kᵀ straight from storage (column-major)
    let kc = kv0 + sg * 16u;
    {
      var s = subgroup_matrix_result<f32, 16, 16>();
      if (kc < hi) {
        if (tail_here && kc == tail) {
          for (var c = 0u; c < DQ / 16u; c++) {
            let qm = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Qs, c * 16u, QS);
            s = subgroupMatrixMultiplyAccumulate(qm, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&Tail, c * 16u, TS), s);
          }
        } else {
          let kb = cache_at(b, kv_head, kc, params.k_off, params.k_sp, params.k_sh, params.k_spos);
          // ${keyBatch} loads in flight before their multiplies
          for (var c = 0u; c < DQ / 16u; c += ${keyBatch}u) {
${idx(keyBatch).map((u) => `            let km${u} = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&keys, kb + (c + ${u}u) * 16u, params.k_spos);`).join('\n')}
${idx(keyBatch).map((u) => `            s = subgroupMatrixMultiplyAccumulate(subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Qs, (c + ${u}u) * 16u, QS), km${u}, s);`).join('\n')}
          }
        }
      }
      subgroupMatrixStore<row_major>(&Ss, sg * 16u, s, S_STRIDE);
    }
    workgroupBarrier();

${o.sharedKV ? '' : `    if (tail_here) {
      // separate values: the tail's V rows take the K rows' place (the barrier above ended their reads)
${batchedCopy('16u * DV', copyBatch(o.dimV), (t, u) => `      let p${u} = tail + ${t} / DV;
      let x${u} = select(f16(0.0), values[cache_at(b, kv_head, min(p${u}, hi - 1u), params.v_off, params.v_sp, params.v_sh, params.v_spos) + ${t} % DV], p${u} < hi);`,
    (t, u) => `      Tail[(${t} / DV) * TS + ${t} % DV] = x${u};`, '  ')}
    }
`}${softmax}    // O += P·V, V rows straight from storage (row-major), this subgroup's columns; the tail chunk
    // from workgroup memory; ${valueBatch} chunk(s) of loads in flight before their multiplies
    for (var c0 = 0u; c0 < ${chunksT}u; c0 += ${valueBatch}u) {
      if (tail_here && kv0 + c0 * 16u <= tail && tail < kv0 + (c0 + ${valueBatch}u) * 16u) {
        for (var c = c0; c < c0 + ${valueBatch}u; c++) {
          let vc = kv0 + c * 16u;
          if (vc < hi) {
            let pm = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Ps, c * 16u, P_STRIDE);
            if (vc == tail) {
${idx(mats).map((n) => `              om${n} = subgroupMatrixMultiplyAccumulate(pm, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&Tail, col0 + ${n * 16}u, TS), om${n});`).join('\n')}
            } else {
              let vb = cache_at(b, kv_head, vc, params.v_off, params.v_sp, params.v_sh, params.v_spos) + col0;
${idx(mats).map((n) => `              om${n} = subgroupMatrixMultiplyAccumulate(pm, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&${vBuf}, vb + ${n * 16}u, params.v_spos), om${n});`).join('\n')}
            }
          }
        }
      } else if (kv0 + (c0 + ${valueBatch}u) * 16u <= hi) {
        // whole chunks, none the tail
${idx(valueBatch).map((u) => `        let vb${u} = cache_at(b, kv_head, kv0 + (c0 + ${u}u) * 16u, params.v_off, params.v_sp, params.v_sh, params.v_spos) + col0;
${idx(mats).map((n) => `        let vm${u}_${n} = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&${vBuf}, vb${u} + ${n * 16}u, params.v_spos);`).join('\n')}`).join('\n')}
${idx(valueBatch).map((u) => `        let pm${u} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Ps, (c0 + ${u}u) * 16u, P_STRIDE);
${idx(mats).map((n) => `        om${n} = subgroupMatrixMultiplyAccumulate(pm${u}, vm${u}_${n}, om${n});`).join('\n')}`).join('\n')}
      } else {
        // the range ends inside these chunks (not in a tail: at a multiple of 16)
        for (var c = c0; c < c0 + ${valueBatch}u; c++) {
          let vc = kv0 + c * 16u;
          if (vc < hi) {
            let pm = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Ps, c * 16u, P_STRIDE);
            let vb = cache_at(b, kv_head, vc, params.v_off, params.v_sp, params.v_sh, params.v_spos) + col0;
${idx(mats).map((n) => `            om${n} = subgroupMatrixMultiplyAccumulate(pm, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&${vBuf}, vb + ${n * 16}u, params.v_spos), om${n});`).join('\n')}
          }
        }
      }
    }
    workgroupBarrier();
    if (li == 0u) { atomicStore(&flagW[0], 0u); }
  }

`;
  return `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);

${SPLIT_KV_PARAMS.wgsl()}
@group(0) @binding(${B.params}) var<uniform> params: DecodeParams;
@group(0) @binding(${B.q}) var<storage, read> q: array<${o.qWords ? 'vec4<u32>' : 'f16'}>;
@group(0) @binding(${B.keys}) var<storage, read> keys: array<${cacheElem}>;
${o.sharedKV ? '' : `@group(0) @binding(${B.values}) var<storage, read> values: array<${cacheElem}>;`}
@group(0) @binding(${B.meta}) var<storage, read> seqs: array<u32>;
@group(0) @binding(${B.out}) var<storage, read_write> partials: array<vec4<f32>>;

const NT = ${NT}u;
const ROWS = ${ROWS}u;
const BC = ${MLA_TILE}u;
const DQ = ${o.dimQK}u;
const DQ8 = ${o.dimQK / 8}u;
const DV = ${o.dimV}u;
const DV4 = ${o.dimV / 4}u;
const G = ${o.group}u;
const QS = ${QS}u;
const TS = ${tailStride(o)}u;      // the staged tail chunk's row stride (halves)
const S_STRIDE = ${sStride(o)}u;
const P_STRIDE = ${P_STRIDE}u;
const COLS = ${colsPer}u;      // value columns per subgroup
const THRESHOLD = ${THRESHOLD.toFixed(1)};
const NEG = ${NO_SCORE};
const LOG2E = 1.4426950408889634;
const LN2 = 0.6931471805599453;

// every workgroup variable a multiple of 16 bytes (docs/GPU-NOTES.md: matrix arrays misaligned otherwise)
${o.compact ? '// Q: words in Stage, then matrices in registers' : `var<workgroup> Qs: array<f16, ${ROWS * QS}>;`}
${o.stage ? `var<workgroup> Stage: array<vec4<u32>, ${stageWords(o)}>;   // a K slab (64 keys x KC) or a V slab (16 keys x Dv)` : `var<workgroup> Tail: array<f16, ${ROWS * tailStride(o)}>;  // the chunk ending past the range, rows behind it 0`}
var<workgroup> Ss: array<f32, ${ROWS * sStride(o)}>;${o.stage ? '   // also the O staging (Os) of the direct form' : ''}${twoChains(o) ? `
var<workgroup> Ss2: array<f32, ${ROWS * sStride(o)}>;  // the second score chain` : ''}
var<workgroup> Ps: array<f16, ${ROWS * P_STRIDE}>;
${o.stage ? '' : `var<workgroup> Os: array<f32, ${MLA_SUBGROUPS * 256}>;   // per subgroup: one O matrix (rescale, final write)`}
var<workgroup> alphaW: array<vec4<f32>, ROWS>;            // per row: (alpha, m, l, 0)
var<workgroup> flagW: array<atomic<u32>, 4>;
var<workgroup> rangeW: vec4<i32>;

${cacheAtFn(o.paged)}

${o.stage ? stagedWordReads(o) : ''}

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32, @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let rows_kv = G * params.tokens;
  let blocks = (rows_kv + ROWS - 1u) / ROWS;
  let kv_head = wid.x / blocks;
  let rb = wid.x % blocks;
  let b = wid.y;
  let split = wid.z;
  let splits = nwg.z;
  let nkeys = seqs[params.len_at + b * params.len_sb] + params.len_add;

  // this thread's softmax row (8 threads a row, columns part, part + 8, ...)
  let r = li / 8u;
  let part = li % 8u;
  let R = rb * ROWS + r;
  let live = R < rows_kv;
  let head = kv_head * G + R / params.tokens;
  let i = R % params.tokens;
  let diag = select(i32(i), i32(nkeys) - i32(params.tokens) + i32(i), params.bottom_right != 0u);
  let lo_r = select(1, max(0, diag - params.win_left), live);
  let hi_r = select(0, min(i32(nkeys) - 1, diag + params.win_right), live);
  // the workgroup's key range: the union of its rows' (every row has 8 threads: reduce over all)
  var wlo = i32(nkeys);
  var whi = 0;
  if (lo_r <= hi_r) { wlo = lo_r; whi = hi_r + 1; }
  wlo = subgroupMin(wlo);
  whi = subgroupMax(whi);
  if (lane == 0u) { alphaW[sg] = vec4<f32>(f32(wlo), f32(whi), 0.0, 0.0); }

${qPrologue}  if (li == 0u) { atomicStore(&flagW[0], 0u); }
  workgroupBarrier();
  if (li == 0u) {
    var glo = i32(nkeys);
    var ghi = 0;
    for (var s = 0u; s < ${MLA_SUBGROUPS}u; s++) { glo = min(glo, i32(alphaW[s].x)); ghi = max(ghi, i32(alphaW[s].y)); }
    rangeW = vec4<i32>(min(glo, ghi), ghi, 0, 0);
  }
  // the key range must be uniform (the tile loop holds barriers): through workgroupUniformLoad
  let range = workgroupUniformLoad(&rangeW);
  let first = (u32(range.x) / BC) * BC;
  let total = u32(range.y) - first;
  let per_split = ((total + splits - 1u) / splits + BC - 1u) / BC * BC;
  let lo = min(first + split * per_split, u32(range.y));
  let hi = min(lo + per_split, u32(range.y));
  // the chunk that ends past hi (uniform: hi is), staged zero-padded before its tile's S
  let tail = (hi / 16u) * 16u;
  let has_tail = hi % 16u != 0u && tail >= lo;

${idx(mats).map((n) => `  var om${n} = subgroup_matrix_result<f32, 16, 16>();`).join('\n')}
  var m = NEG;
  var l = 0.0;
  let qk_scale = params.scale * LOG2E;
  let col0 = sg * COLS;

${o.wholeTile ? wholeTileLoop(o, softmax) : o.stage ? stagedTileLoop(o, softmax) : directLoop()}  // partials: [(b Nq + head) Sq + i][split] of Dv + 4 floats: acc, then (max, sum, 0, 0), natural log
  if (part == 0u) { alphaW[r] = vec4<f32>(0.0, select(NEG, m * LN2, l > 0.0), l, 0.0); }
  workgroupBarrier();
  let ob = sg * 256u;
  let wr = lane / 2u;             // this lane writes 8 columns of row wr of each O matrix
  let wc = (lane % 2u) * 8u;
  let WR = rb * ROWS + wr;
  let wlive = WR < rows_kv;
  let whead = kv_head * G + WR / params.tokens;
  let prow = (b * params.heads_q + whead) * params.tokens + WR % params.tokens;
  let pbase = (prow * splits + split) * (DV4 + 1u);
${idx(mats).map((n) => `  subgroupMatrixStore<row_major>(&${OB}, ob, om${n}, 16u);
  workgroupBarrier();
  if (wlive) {
    let at = pbase + (col0 + ${n * 16}u + wc) / 4u;
    partials[at] = vec4<f32>(${OB}[ob + wr * 16u + wc], ${OB}[ob + wr * 16u + wc + 1u], ${OB}[ob + wr * 16u + wc + 2u], ${OB}[ob + wr * 16u + wc + 3u]);
    partials[at + 1u] = vec4<f32>(${OB}[ob + wr * 16u + wc + 4u], ${OB}[ob + wr * 16u + wc + 5u], ${OB}[ob + wr * 16u + wc + 6u], ${OB}[ob + wr * 16u + wc + 7u]);
  }
  workgroupBarrier();`).join('\n')}
  if (wlive && sg == 0u && lane % 2u == 0u) { partials[pbase + DV4] = vec4<f32>(alphaW[wr].y, alphaW[wr].z, 0.0, 0.0); }
}
`;
}

/**
 * The staged form's tile loop: per 64-key tile, the key slabs (64 keys x KC columns of Dq) and then
 * four value slabs (16 keys x Dv), each stored from registers into Stage after a barrier; while a
 * slab's multiplies run, the next slab's 16-byte words load into the same registers (the last value
 * slab loads the next tile's first key slab). Keys past hi load as zero words: their scores are
 * masked by index and their P is 0, so there is no tail chunk to stage.
 */
function stagedTileLoop(o: MlaDecodeOptions, softmax: string): string {
  const NT = 32 * MLA_SUBGROUPS;
  const { slabs, kc } = stagedSlabs(o);
  const depth = o.stageDepth ?? 1;
  const chains = twoChains(o) ? 2 : 1;
  const LK = (kc + 8) / 8; // row strides in Stage, words
  const LV = (o.dimV + 8) / 8;
  const kcw = kc / 8; // words per key row of a slab
  const dvw = o.dimV / 8;
  const WK = (MLA_TILE * kcw) / NT; // words per thread of a key slab (kc / 16)
  const WV = (16 * dvw) / NT; // of a value slab (Dv / 64)
  const W = Math.max(WK, WV);
  const mats = o.dimV / MLA_SUBGROUPS / 16;
  const idx = (n: number) => Array.from({ length: n }, (_, i) => i);
  const vFn = o.sharedKV ? 'key_word' : 'value_word';
  // the tile's steps: key slabs 0 .. slabs-1, then value slabs 0 .. 3; register set n % depth holds step n's words
  const steps = [...idx(slabs).map((j) => ({ kind: 'k' as const, j })), ...idx(MLA_TILE / 16).map((j) => ({ kind: 'v' as const, j }))];
  const load = (n: number, tile: string) => {
    const st = steps[n];
    const set = n % depth;
    return st.kind === 'k'
      ? idx(WK).map((u) => `w${set}_${u} = key_word(b, kv_head, ${tile} + kk${u}, hi, ${st.j * kcw}u + kw${u});`).join(' ')
      : idx(WV).map((u) => `w${set}_${u} = ${vFn}(b, kv_head, ${tile} + ${st.j * 16}u + vk${u}, hi, vw${u});`).join(' ');
  };
  const store = (n: number) => {
    const st = steps[n];
    const set = n % depth;
    return st.kind === 'k'
      ? idx(WK).map((u) => `    Stage[kk${u} * ${LK}u + kw${u}] = w${set}_${u};`).join('\n')
      : idx(WV).map((u) => `    Stage[vk${u} * ${LV}u + vw${u}] = w${set}_${u};`).join('\n');
  };
  const ahead = (n: number) => (n + depth < steps.length ? `    ${load(n + depth, 'kv0')}` : `    if (kv0 + BC < hi) { ${load(n + depth - steps.length, '(kv0 + BC)')} }`);
  const compute = (n: number) => {
    const st = steps[n];
    if (st.kind === 'k' && chains === 2) {
      // two accumulators over alternate 16-column chunks: two dependent chains of multiplies interleave
      return idx(kc / 16).map((c) => `    ${c % 2 ? 's2' : 's'} = subgroupMatrixMultiplyAccumulate(subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Qs, ${st.j * kc + c * 16}u, QS), subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&Stage, sg * ${16 * LK}u + ${c * 2}u, ${LK}u), ${c % 2 ? 's2' : 's'});`).join('\n');
    }
    if (st.kind === 'k') {
      return `    for (var c = 0u; c < ${kc / 16}u; c++) {
      let qm = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Qs, ${st.j * kc}u + c * 16u, QS);
      s = subgroupMatrixMultiplyAccumulate(qm, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&Stage, sg * ${16 * LK}u + c * 2u, ${LK}u), s);
    }`;
    }
    return `    {
      let pm = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Ps, ${st.j * 16}u, P_STRIDE);
${idx(mats).map((m) => `      om${m} = subgroupMatrixMultiplyAccumulate(pm, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&Stage, (col0 + ${m * 16}u) / 8u, ${LV}u), om${m});`).join('\n')}
    }`;
  };
  const body = steps.map((st, n) => `    // step ${n}: ${st.kind === 'k' ? `key slab ${st.j}` : `value slab ${st.j}`}
    workgroupBarrier();
${store(n)}
    workgroupBarrier();
${ahead(n)}
${compute(n)}
${n === slabs - 1 ? `    subgroupMatrixStore<row_major>(&Ss, sg * 16u, s, S_STRIDE);${chains === 2 ? '\n    subgroupMatrixStore<row_major>(&Ss2, sg * 16u, s2, S_STRIDE);' : ''}
    workgroupBarrier();
${softmax}` : ''}`).join('\n');
  return `// staged: ${slabs} key slab(s) of ${kc} columns, then 4 value slabs of 16 keys, per tile; ${depth} slab(s) of ${W} words ahead per thread
${idx(depth).map((set) => idx(W).map((u) => `  var w${set}_${u} = vec4<u32>();`).join('\n')).join('\n')}
${idx(WK).map((u) => `  let kk${u} = (li + ${u * NT}u) / ${kcw}u;
  let kw${u} = (li + ${u * NT}u) % ${kcw}u;`).join('\n')}
${idx(WV).map((u) => `  let vk${u} = (li + ${u * NT}u) / ${dvw}u;
  let vw${u} = (li + ${u * NT}u) % ${dvw}u;`).join('\n')}
  if (lo < hi) {
${idx(depth).map((n) => `    ${load(n, 'lo')}`).join('\n')}
  }
  for (var kv0 = lo; kv0 < hi; kv0 += BC) {
    var s = subgroup_matrix_result<f32, 16, 16>();${chains === 2 ? '\n    var s2 = subgroup_matrix_result<f32, 16, 16>();' : ''}
${body}
    workgroupBarrier();
    if (li == 0u) { atomicStore(&flagW[0], 0u); }
  }
`;
}

/**
 * The whole-tile staged loop: per 64-key tile, every thread stores its K and V words (held in
 * registers since the previous tile), one barrier, then issues the next tile's loads, which stay
 * in flight through this tile's S = Q·Kᵀ, softmax and O += P·V. Keys past hi load as zero words
 * (their scores masked by index, P = 0).
 */
function wholeTileLoop(o: MlaDecodeOptions, softmax: string): string {
  const NT = 32 * MLA_SUBGROUPS;
  const { LK, LV, voff } = wholeTileWords(o);
  const kw = o.dimQK / 8; // words per key row
  const vw = o.dimV / 8;
  const WK = (MLA_TILE * kw) / NT;
  const WV = (MLA_TILE * vw) / NT;
  const mats = o.dimV / MLA_SUBGROUPS / 16;
  const chains = twoChains(o) ? 2 : 1;
  const idx = (n: number) => Array.from({ length: n }, (_, i) => i);
  const vFn = o.sharedKV ? 'key_word' : 'value_word';
  const loads = (tile: string) => [...idx(WK).map((u) => `wk${u} = key_word(b, kv_head, ${tile} + kk${u}, hi, kw${u});`), ...idx(WV).map((u) => `wv${u} = ${vFn}(b, kv_head, ${tile} + vk${u}, hi, vw${u});`)].join(' ');
  const qMat = (c: number) => (o.compact ? `qm${c}` : `subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Qs, ${c * 16}u, QS)`);
  const kLoads = (tile: string) => idx(WK).map((u) => `wk${u} = key_word(b, kv_head, ${tile} + kk${u}, hi, kw${u});`).join(' ');
  const vLoads = (tile: string) => idx(WV).map((u) => `wv${u} = ${vFn}(b, kv_head, ${tile} + vk${u}, hi, vw${u});`).join(' ');
  const vStores = idx(WV).map((u) => `    Stage[${voff}u + vk${u} * ${LV}u + vw${u}] = wv${u};`).join('\n');
  return `// whole tiles staged: ${WK} key and ${WV} value words per thread, the next tile's in flight during this one${o.compact ? `
// compact: Q's matrices in registers; V staged into K's place after S
${idx(o.dimQK / 16).map((c) => `  let qm${c} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Stage, ${c * 2}u, ${LK}u);`).join('\n')}
  workgroupBarrier();` : ''}
${idx(WK).map((u) => `  var wk${u} = vec4<u32>();`).join('\n')}
${idx(WV).map((u) => `  var wv${u} = vec4<u32>();`).join('\n')}
${idx(WK).map((u) => `  let kk${u} = (li + ${u * NT}u) / ${kw}u;
  let kw${u} = (li + ${u * NT}u) % ${kw}u;`).join('\n')}
${idx(WV).map((u) => `  let vk${u} = (li + ${u * NT}u) / ${vw}u;
  let vw${u} = (li + ${u * NT}u) % ${vw}u;`).join('\n')}
  if (lo < hi) { ${loads('lo')} }
  for (var kv0 = lo; kv0 < hi; kv0 += BC) {
    // the previous tile's readers of Stage passed the barrier at the loop's end
${idx(WK).map((u) => `    Stage[kk${u} * ${LK}u + kw${u}] = wk${u};`).join('\n')}
${o.compact ? '' : `${vStores}\n`}    workgroupBarrier();
    if (kv0 + BC < hi) { ${o.compact ? kLoads('(kv0 + BC)') : loads('(kv0 + BC)')} }
    var s = subgroup_matrix_result<f32, 16, 16>();${chains === 2 ? '\n    var s2 = subgroup_matrix_result<f32, 16, 16>();' : ''}
${idx(o.dimQK / 16).map((c) => `    ${chains === 2 && c % 2 ? 's2' : 's'} = subgroupMatrixMultiplyAccumulate(${qMat(c)}, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&Stage, sg * ${16 * LK}u + ${c * 2}u, ${LK}u), ${chains === 2 && c % 2 ? 's2' : 's'});`).join('\n')}
    subgroupMatrixStore<row_major>(&Ss, sg * 16u, s, S_STRIDE);${chains === 2 ? '\n    subgroupMatrixStore<row_major>(&Ss2, sg * 16u, s2, S_STRIDE);' : ''}
    workgroupBarrier();
${o.compact ? `    // K's rows are read: this tile's V rows take their place, the next tile's V words load
${vStores}
    if (kv0 + BC < hi) { ${vLoads('(kv0 + BC)')} }
` : ''}${softmax}    // P (and V) are visible: the softmax ends in a workgroupUniformLoad (a barrier)
${idx(MLA_TILE / 16).map((j) => `    {
      let pm = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Ps, ${j * 16}u, P_STRIDE);
${idx(mats).map((m) => `      om${m} = subgroupMatrixMultiplyAccumulate(pm, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&Stage, ${voff + j * 16 * LV}u + (col0 + ${m * 16}u) / 8u, ${LV}u), om${m});`).join('\n')}
    }`).join('\n')}
    workgroupBarrier();
    if (li == 0u) { atomicStore(&flagW[0], 0u); }
  }
`;
}

/** The staged form's 16-byte reads of the cache (zero past hi, the position clamped to stay in range). */
function stagedWordReads(o: MlaDecodeOptions): string {
  const read = (name: string, buf: string, v: 'k' | 'v') => `fn ${name}(b: u32, h: u32, p: u32, hi: u32, word: u32) -> vec4<u32> {
  let at = cache_at(b, h, min(p, hi - 1u), params.${v}_off, params.${v}_sp, params.${v}_sh, params.${v}_spos) / 8u + word;
  return select(vec4<u32>(), ${buf}[at], p < hi);
}`;
  return o.sharedKV ? read('key_word', 'keys', 'k') : `${read('key_word', 'keys', 'k')}\n${read('value_word', 'values', 'v')}`;
}
