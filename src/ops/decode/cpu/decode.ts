// attentionDecode() on the CPU: the appended rows are stored into the cache first (rounded or
// quantized as storage.ts says), then one pass per (sequence, KV head) walks its visible keys
// once, dequantizing each key and value row into float32 and updating an online softmax for all
// G * Sq query rows of the group (each K/V row is read once per group, as on the GPU). float32
// arithmetic throughout, on the calling thread: decode reads O(L D) per head, nothing to tile.
import { floatsToHalf, type TypedStorage } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';
import type { AttentionResult } from '../../attention/backend.js';
import { type DecodeProblem, cacheIndex, decodeKeyRange, rowIndex, visibleKeys } from '../problem.js';
import { storeRow, storedValue } from '../storage.js';

/** Writes options.append into the (CPU) cache tensors at positions lengths[b] ... */
export function appendOnHost(p: DecodeProblem): void {
  if (!p.append) return;
  const c = p.cache;
  const lengths = p.lengths.data as Int32Array;
  const table = c.blockTable?.data as Int32Array | undefined;
  const newK = p.append.k.toFloat32();
  const newV = p.append.v?.toFloat32();
  const scales = (t: Tensor | undefined) => t?.data as Float32Array | undefined;
  for (let b = 0; b < p.batch; b++) {
    for (let h = 0; h < p.headsKv; h++) {
      for (let i = 0; i < p.seqQ; i++) {
        const pos = lengths[b] + i;
        const sAt = c.kScale ? cacheIndex(c, table, c.scaleStrides, b, h, pos) : 0;
        storeRow(c.dtype, c.k.data!, cacheIndex(c, table, c.kStrides, b, h, pos), newK, rowIndex(p.append.kStrides, b, h, i), p.dimQK, scales(c.kScale), sAt);
        if (c.v && newV) storeRow(c.dtype, c.v.data!, cacheIndex(c, table, c.vStrides, b, h, pos), newV, rowIndex(p.append.vStrides, b, h, i), p.dimV, scales(c.vScale), sAt);
      }
    }
  }
}

/** Dequantizes `dim` stored elements from `at` into `out`. */
function loadRow(p: DecodeProblem, data: TypedStorage, at: number, dim: number, scale: number, out: Float32Array): void {
  const dtype = p.cache.dtype;
  if (dtype === 'float32') {
    out.set((data as Float32Array).subarray(at, at + dim));
    return;
  }
  for (let d = 0; d < dim; d++) out[d] = storedValue(dtype, data, at + d) * scale;
}

export function runDecodeCpu(p: DecodeProblem): AttentionResult {
  appendOnHost(p);
  const c = p.cache;
  const lengths = p.lengths.data as Int32Array;
  const table = c.blockTable?.data as Int32Array | undefined;
  const kData = c.k.data!;
  const vData = (c.v ?? c.k).data!;
  const vStrides = c.v ? c.vStrides : c.kStrides;
  const kScales = c.kScale?.data as Float32Array | undefined;
  const vScales = (c.v ? c.vScale : c.kScale)?.data as Float32Array | undefined;
  const q = p.q.toFloat32();
  const { headsQ: Nq, headsKv: Nkv, seqQ: Sq, dimQK: Dq, dimV: Dv } = p;
  const G = Nq / Nkv;
  const rows = G * Sq; // query rows of one (sequence, KV head): head-major, then i
  const out = new Float32Array(p.outShape.reduce((a, b) => a * b, 1));
  const lse = new Float32Array(p.batch * Nq * Sq);
  const qRows = new Float32Array(rows * Dq);
  const acc = new Float32Array(rows * Dv);
  const max = new Float32Array(rows);
  const sum = new Float32Array(rows);
  const lo = new Int32Array(rows);
  const hi = new Int32Array(rows);
  const key = new Float32Array(Dq);
  const value = new Float32Array(Dv);
  const score = new Float32Array(rows);
  for (let b = 0; b < p.batch; b++) {
    const keys = visibleKeys(p, lengths[b]);
    for (let hk = 0; hk < Nkv; hk++) {
      let first = keys;
      let last = -1;
      for (let r = 0; r < rows; r++) {
        const h = hk * G + Math.floor(r / Sq);
        const i = r % Sq;
        const at = rowIndex(p.qStrides, b, h, i);
        for (let d = 0; d < Dq; d++) qRows[r * Dq + d] = q[at + d] * p.scale;
        [lo[r], hi[r]] = decodeKeyRange(p, keys, i);
        first = Math.min(first, lo[r]);
        last = Math.max(last, hi[r]);
      }
      max.fill(-Infinity);
      sum.fill(0);
      acc.fill(0);
      for (let j = first; j <= last; j++) {
        const kScale = kScales ? kScales[cacheIndex(c, table, c.scaleStrides, b, hk, j)] : 1;
        loadRow(p, kData, cacheIndex(c, table, c.kStrides, b, hk, j), Dq, kScale, key);
        let seen = false;
        for (let r = 0; r < rows; r++) {
          if (j < lo[r] || j > hi[r]) {
            score[r] = -Infinity;
            continue;
          }
          let s = 0;
          const qAt = r * Dq;
          for (let d = 0; d < Dq; d++) s += qRows[qAt + d] * key[d];
          if (p.softcap > 0) s = p.softcap * Math.tanh(s / p.softcap);
          if (p.alibi) s -= p.alibi[b * p.alibiStrideB + hk * G + Math.floor(r / Sq)] * Math.abs((r % Sq) + keys - Sq - j);
          score[r] = s;
          seen = true;
        }
        if (!seen) continue;
        const vScale = vScales ? vScales[cacheIndex(c, table, c.scaleStrides, b, hk, j)] : 1;
        loadRow(p, vData, cacheIndex(c, table, vStrides, b, hk, j), Dv, vScale, value);
        for (let r = 0; r < rows; r++) {
          const s = score[r];
          if (s === -Infinity) continue;
          const a = r * Dv;
          if (s > max[r]) {
            const rescale = Math.exp(max[r] - s);
            for (let d = 0; d < Dv; d++) acc[a + d] *= rescale;
            sum[r] *= rescale;
            max[r] = s;
          }
          const w = Math.exp(s - max[r]);
          sum[r] += w;
          for (let d = 0; d < Dv; d++) acc[a + d] += w * value[d];
        }
      }
      for (let r = 0; r < rows; r++) {
        const h = hk * G + Math.floor(r / Sq);
        const i = r % Sq;
        const outAt = rowIndex(p.outStrides, b, h, i);
        const seen = sum[r] > 0;
        for (let d = 0; d < Dv; d++) out[outAt + d] = seen ? acc[r * Dv + d] / sum[r] : 0;
        lse[(b * Nq + h) * Sq + i] = seen ? max[r] + Math.log(sum[r]) : -Infinity;
      }
    }
  }
  const outTensor = p.dtype === 'float16' ? Tensor.fromData(floatsToHalf(out), p.outShape, 'float16') : Tensor.fromData(out, p.outShape, 'float32');
  return {
    out: outTensor,
    lse: p.returnLse ? Tensor.fromData(lse, p.lseShape, 'float32') : undefined,
    stats: { launches: 1, intermediateBytes: 4 * (qRows.length + acc.length) },
  };
}
