// The float64 reference of attentionDecode(), written for clarity, not speed: every backend is
// tested against it. It reads the cache through the same addressing rule as the kernels
// (problem.ts), dequantizes int8 rows with their scales, and sees appended rows as they will be
// stored (rounded / quantized to the cache dtype), without writing anything.
import type { Tensor } from '../../core/tensor.js';
import { type DecodeProblem, cacheIndex, decodeKeyRange, rowIndex, visibleKeys } from './problem.js';
import { int8Scale, roundToStorage, storedValue } from './storage.js';

export interface DecodeReference {
  /** Output in outShape (the problem's layout). */
  out: Float64Array;
  /** [B, Nq, Sq], natural log; -Infinity for a row that sees no key. */
  lse: Float64Array;
}

/** Rows of keys / values a sequence sees, as float64, for the reference and the CPU path's tests. */
export interface CacheRows {
  key(j: number, out: Float64Array): void;
  value(j: number, out: Float64Array): void;
}

function cpuData(t: Tensor, name: string) {
  if (!t.data) throw new Error(`referenceDecode: ${name} must be CPU data (read GPU tensors back first)`);
  return t.data;
}

/** The keys and values of (sequence b, kv head h) as they are after the append. */
export function cacheRows(p: DecodeProblem, b: number, h: number): CacheRows {
  const c = p.cache;
  const table = c.blockTable ? (cpuData(c.blockTable, 'cache.blockTable') as Int32Array) : undefined;
  const length = (cpuData(p.lengths, 'cache.lengths') as Int32Array)[b];
  const k = cpuData(c.k, 'cache.k');
  const v = c.v ? cpuData(c.v, 'cache.v') : undefined;
  const ks = c.kScale ? (cpuData(c.kScale, 'cache.kScale') as Float32Array) : undefined;
  const vs = c.vScale ? (cpuData(c.vScale, 'cache.vScale') as Float32Array) : undefined;
  const Dq = p.dimQK;
  const Dv = p.dimV;
  const appended = (t: Tensor, strides: typeof p.qStrides, dim: number, i: number): Float64Array => {
    const values = t.toFloat32();
    const at = rowIndex(strides, b, h, i);
    const row = Float64Array.from(values.subarray(at, at + dim));
    const scale = c.dtype === 'int8' ? int8Scale(row) : 0;
    return row.map((x) => roundToStorage(c.dtype, x, scale));
  };
  const newKeys = p.append ? Array.from({ length: p.seqQ }, (_, i) => appended(p.append!.k, p.append!.kStrides, Dq, i)) : [];
  const newValues = p.append?.v ? Array.from({ length: p.seqQ }, (_, i) => appended(p.append!.v!, p.append!.vStrides, Dv, i)) : newKeys;
  const read = (data: typeof k, scales: Float32Array | undefined, strides: typeof c.kStrides, j: number, dim: number, out: Float64Array) => {
    const at = cacheIndex(c, table, strides, b, h, j);
    const scale = scales ? scales[cacheIndex(c, table, c.scaleStrides, b, h, j)] : 1;
    for (let d = 0; d < dim; d++) out[d] = storedValue(c.dtype, data, at + d) * scale;
  };
  return {
    key(j, out) {
      if (j >= length) out.set(newKeys[j - length]);
      else read(k, ks, c.kStrides, j, Dq, out);
    },
    value(j, out) {
      if (j >= length) out.set(newValues[j - length].subarray(0, Dv));
      else if (v) read(v, vs, c.vStrides, j, Dv, out);
      else read(k, ks, c.kStrides, j, Dv, out);
    },
  };
}

export function referenceDecode(p: DecodeProblem): DecodeReference {
  const out = new Float64Array(p.outShape.reduce((a, b) => a * b, 1));
  const lse = new Float64Array(p.batch * p.headsQ * p.seqQ);
  const q = p.q.toFloat32();
  const lengths = cpuData(p.lengths, 'cache.lengths') as Int32Array;
  const group = p.headsQ / p.headsKv;
  const key = new Float64Array(p.dimQK);
  const value = new Float64Array(p.dimV);
  for (let b = 0; b < p.batch; b++) {
    const keys = visibleKeys(p, lengths[b]);
    for (let hk = 0; hk < p.headsKv; hk++) {
      const rows = cacheRows(p, b, hk);
      for (let hq = hk * group; hq < (hk + 1) * group; hq++) {
        const slope = p.alibi ? p.alibi[b * p.alibiStrideB + hq] : 0;
        for (let i = 0; i < p.seqQ; i++) {
          const [lo, hi] = decodeKeyRange(p, keys, i);
          const qAt = rowIndex(p.qStrides, b, hq, i);
          const scores = new Float64Array(Math.max(0, hi - lo + 1));
          let max = -Infinity;
          for (let j = lo; j <= hi; j++) {
            rows.key(j, key);
            let dot = 0;
            for (let d = 0; d < p.dimQK; d++) dot += q[qAt + d] * key[d];
            let s = dot * p.scale;
            if (p.softcap > 0) s = p.softcap * Math.tanh(s / p.softcap);
            if (p.alibi) s -= slope * Math.abs(i + keys - p.seqQ - j);
            scores[j - lo] = s;
            max = Math.max(max, s);
          }
          const lseAt = (b * p.headsQ + hq) * p.seqQ + i;
          if (max === -Infinity) {
            lse[lseAt] = -Infinity; // sees no key: output 0
            continue;
          }
          let sum = 0;
          const acc = new Float64Array(p.dimV);
          for (let j = lo; j <= hi; j++) {
            const w = Math.exp(scores[j - lo] - max);
            sum += w;
            rows.value(j, value);
            for (let d = 0; d < p.dimV; d++) acc[d] += w * value[d];
          }
          lse[lseAt] = max + Math.log(sum);
          const outAt = rowIndex(p.outStrides, b, hq, i);
          for (let d = 0; d < p.dimV; d++) out[outAt + d] = acc[d] / sum;
        }
      }
    }
  }
  return { out, lse };
}
