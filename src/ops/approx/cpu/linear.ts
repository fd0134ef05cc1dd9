// Linear attention and Performer on the CPU pool: one task per (batch, query head), every step a
// WASM SIMD kernel of the engine's program (the GEMMs, the online-softmax exp, finalize) or the
// feature map's generated kernel; JavaScript only copies rows and handles per-row scalars.
//   features   φ(K) [Sk × F], φ(Q) [Sq × F]: elementwise φ on copied rows (generated kernel), or
//              Performer's X·Wᵀ (gemm_nt) then exp(· − row max) (softmax_update), the keys
//              re-weighted by e^(r_j − G) so one stabiliser serves the whole head
//   [V | 1]    V with a column of ones (its row weights folded in), row-major and transposed
//   non-causal state = [V|1]ᵀ φ(K) [(Dv+1) × F] (gemm_nn); num = φ(Q) stateᵀ (gemm_nt)
//   causal     per chunk of C query rows: state += keys that every row of the chunk sees, then
//              num = φ(Q_c) stateᵀ + mask(φ(Q_c) φ(K_c)ᵀ) [V_c | 1]: O(N·F·Dv + N·C·(F + Dv))
//   out = num[:, :Dv] / num[:, Dv] (finalize_rows; 0 where the normaliser is 0).
import type { StagedOperand } from '../../attention/cpu/flash.js';
import type { AttentionKernels } from '../../attention/cpu/kernels.js';
import type { GemmKernels } from '../../gemm/cpu/kernels.js';
import { type CompiledMods, type ModsHost, modsKernel } from '../../attention/mods/cpu/kernel.js';

export interface ApproxParams {
  q: StagedOperand;
  k: StagedOperand;
  v: StagedOperand;
  out: StagedOperand;
  headsQ: number;
  group: number;
  seqQ: number;
  seqK: number;
  dimQK: number;
  dimV: number;
  features: number;
  causal: boolean;
  chunk: number;
  /** Elementwise φ: its generated kernel and packed data (byte address). */
  map: { compiled: CompiledMods; data: number } | undefined;
  /** Performer: byte address of the projection [F × D], and sqrt(scale). */
  projection: number;
  scaleSqrt: number;
}

const round4 = (n: number) => Math.ceil(n / 4) * 4;

/**
 * Keys per block of the non-causal state's product (see approxTask). Measured at B1 H8 S4096 D128,
 * one thread: unblocked 124.6 ms (Performer M256 303.3), 512 120.1 (267.3), 256 117.4 (263.9),
 * 128 116.4 (276.2).
 */
const STATE_KEYS = 256;

/** Byte offsets of one worker's scratch regions. */
export function approxScratch(p: Pick<ApproxParams, 'seqQ' | 'seqK' | 'dimV' | 'features' | 'chunk' | 'causal'>): Record<'phiK' | 'phiQ' | 'vAug' | 'vAugT' | 'state' | 'a' | 'num' | 'mx' | 'sum' | 'alpha' | 'den', number> & { bytes: number } {
  const F = round4(p.features);
  const W = round4(p.dimV + 1);
  const rows = p.causal ? Math.min(p.chunk, p.seqQ) : p.seqQ;
  const stats = round4(Math.max(p.seqQ, p.seqK, 4));
  const sizes: Record<string, number> = {
    phiK: 4 * p.seqK * F, phiQ: 4 * p.seqQ * F, vAug: 4 * p.seqK * W, vAugT: 4 * W * round4(p.seqK),
    state: 4 * W * F, a: 4 * p.chunk * round4(p.chunk), num: 4 * rows * W, mx: 4 * stats, sum: 4 * stats, alpha: 4 * stats, den: 4 * stats,
  };
  const at: Record<string, number> = {};
  let offset = 0;
  for (const [name, size] of Object.entries(sizes)) {
    at[name] = offset;
    offset += Math.ceil(size / 64) * 64 + 64;
  }
  return { ...(at as Record<'phiK', number>), bytes: offset } as ReturnType<typeof approxScratch>;
}

type Kernels = AttentionKernels & GemmKernels & ModsHost;

/**
 * φ of `rows` rows of q or k (head `head`) into dst (row stride 4·F rounded up); returns for keys
 * the per-row log weight r_j (Performer; undefined otherwise, weights 1).
 */
function features(kernels: Kernels, buffer: () => ArrayBufferLike, p: ApproxParams, x: StagedOperand, b: number, head: number, rows: number, dst: number, s: ReturnType<typeof approxScratch> & { base: number }, isKey: boolean): Float64Array | undefined {
  const F = p.features;
  const ld = 4 * round4(F);
  const src = x.addr + b * x.sb + head * x.sh;
  if (p.map) {
    const f = new Float32Array(buffer());
    for (let r = 0; r < rows; r++) {
      const from = (src + r * x.ss) >>> 2;
      f.set(f.subarray(from, from + p.dimQK), (dst + r * ld) >>> 2);
    }
    modsKernel(kernels, p.map.compiled).apply(dst, ld, rows, F, b, head, 0, 0, p.seqQ, p.seqK, p.map.data, 0, 1);
    return undefined;
  }
  // Performer: X·Wᵀ·sqrt(scale), then exp(· − row max) in place; mx holds the row maxima
  kernels.gemm_nt(src, x.ss, p.projection, 4 * p.dimQK, p.dimQK, 0, 0, 0, 0, 0, dst, ld, rows, F, p.scaleSqrt, 0);
  const f = new Float32Array(buffer());
  const mx = (s.base + s.mx) >>> 2;
  f.fill(-Infinity, mx, mx + round4(rows));
  f.fill(0, (s.base + s.sum) >>> 2, ((s.base + s.sum) >>> 2) + round4(rows));
  kernels.softmax_update(dst, ld, rows, F, s.base + s.mx, s.base + s.sum, s.base + s.alpha, 1);
  if (!isKey) return undefined;
  const g = new Float32Array(buffer());
  const logWeights = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const row = (src + r * x.ss) >>> 2;
    let norm = 0;
    for (let d = 0; d < p.dimQK; d++) norm += g[row + d] * g[row + d];
    logWeights[r] = g[mx + r] - (norm * p.scaleSqrt * p.scaleSqrt) / 2;
  }
  return logWeights;
}

/** One (batch, query head). */
export function approxTask(kernels: Kernels, buffer: () => ArrayBufferLike, p: ApproxParams, t: number, scratch: number): void {
  const b = Math.floor(t / p.headsQ);
  const h = t % p.headsQ;
  const hk = Math.floor(h / p.group);
  const s = { ...approxScratch(p), base: scratch };
  const at = (name: keyof ReturnType<typeof approxScratch>) => scratch + s[name];
  const F = p.features;
  const ldF = 4 * round4(F);
  const W = p.dimV + 1;
  const ldW = 4 * round4(W);
  const ldT = 4 * round4(p.seqK);
  const logWeights = features(kernels, buffer, p, p.k, b, hk, p.seqK, at('phiK'), s, true);
  features(kernels, buffer, p, p.q, b, h, p.seqQ, at('phiQ'), s, false);

  // [V | 1] with the keys' weights folded in, row-major (intra-chunk products) and transposed (states)
  const f = new Float32Array(buffer());
  let top = -Infinity;
  if (logWeights) for (const w of logWeights) top = Math.max(top, w);
  const vSrc = p.v.addr + b * p.v.sb + hk * p.v.sh;
  // rows here, the transposed copy in WASM (a strided store per element was most of this step)
  const vAug = at('vAug') >>> 2;
  const ldWf = ldW >>> 2;
  for (let j = 0; j < p.seqK; j++) {
    const row = (vSrc + j * p.v.ss) >>> 2;
    const aug = vAug + j * ldWf;
    if (logWeights) {
      const w = Math.exp(logWeights[j] - top);
      for (let d = 0; d < p.dimV; d++) f[aug + d] = f[row + d] * w;
      f[aug + p.dimV] = w;
    } else {
      f.copyWithin(aug, row, row + p.dimV);
      f[aug + p.dimV] = 1;
    }
  }
  // (transpose reads rows rounded up to 4: the rows past seqK land in columns no product reads)
  kernels.transpose(at('vAug'), ldW, p.seqK, W, at('vAugT'), ldT);

  const out = p.out.addr + b * p.out.sb + h * p.out.sh;
  const finish = (i0: number, rows: number) => {
    const g = new Float32Array(buffer());
    const num = at('num') >>> 2;
    for (let r = 0; r < rows; r++) g[(at('den') >>> 2) + r] = g[num + r * (ldW >>> 2) + p.dimV];
    kernels.finalize_rows(at('num'), ldW, out + i0 * p.out.ss, p.out.ss, rows, p.dimV, at('den'));
  };

  if (!p.causal) {
    // the depth (keys) in blocks, so each block's φ(K) rows stay in cache while every column block
    // of the state sweeps them (one sweep of all 4096 keys is 2 MiB at F 128); the sums' order is
    // the unblocked one (each block adds onto the stored float32 partial)
    for (let j0 = 0; j0 < p.seqK; j0 += STATE_KEYS) {
      kernels.gemm_nn(at('vAugT') + 4 * j0, ldT, at('phiK') + j0 * ldF, ldF, Math.min(STATE_KEYS, p.seqK - j0), at('state'), ldF, W, F, j0 ? 1 : 0, 0);
    }
    kernels.gemm_nt(at('phiQ'), ldF, at('state'), ldF, F, 0, 0, 0, 0, 0, at('num'), ldW, p.seqQ, W, 1, 0);
    finish(0, p.seqQ);
    return;
  }
  new Float32Array(buffer()).fill(0, at('state') >>> 2, (at('state') >>> 2) + W * (ldF >>> 2));
  const offset = p.seqK - p.seqQ;
  let folded = 0;
  for (let i0 = 0; i0 < p.seqQ; i0 += p.chunk) {
    const rows = Math.min(p.chunk, p.seqQ - i0);
    // keys every row of the chunk sees join the state; the chunk's own keys are masked below
    const seen = Math.max(0, Math.min(p.seqK, i0 + offset + 1));
    const last = Math.max(0, Math.min(p.seqK, i0 + rows + offset));
    if (seen > folded) kernels.gemm_nn(at('vAugT') + 4 * folded, ldT, at('phiK') + folded * ldF, ldF, seen - folded, at('state'), ldF, W, F, 1, 0);
    folded = Math.max(folded, seen);
    const q = at('phiQ') + i0 * ldF;
    kernels.gemm_nt(q, ldF, at('state'), ldF, F, 0, 0, 0, 0, 0, at('num'), ldW, rows, W, 1, 0);
    const cols = last - seen;
    if (cols > 0) {
      const lda = 4 * round4(p.chunk);
      kernels.gemm_nt(q, ldF, at('phiK') + seen * ldF, ldF, F, 0, 0, 0, 0, 0, at('a'), lda, rows, cols, 1, 0);
      const g = new Float32Array(buffer());
      for (let r = 0; r < rows; r++) {
        // row r sees keys up to i0 + r + offset
        const visible = Math.max(0, Math.min(cols, i0 + r + offset + 1 - seen));
        g.fill(0, ((at('a') + r * lda) >>> 2) + visible, ((at('a') + r * lda) >>> 2) + cols);
      }
      kernels.gemm_nn(at('a'), lda, at('vAug') + seen * ldW, ldW, cols, at('num'), ldW, rows, W, 1, 0);
    }
    finish(i0, rows);
  }
}
