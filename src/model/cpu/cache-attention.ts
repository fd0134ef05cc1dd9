// Causal attention of new query rows against a KV cache, on the CPU: the decode path (one query per
// sequence against a long cache) and prefill. Per query row it keeps one vector of L scores (two
// passes: scores and max, then exp-sum and P·V); there is never a T x L matrix, so memory stays at
// the cache plus O(L). GQA reads the shared KV head directly (no repeat).
//   q    [T * B, Nq * D], row t * B + b, already rotated
//   keys, values  [capacity, B, Nkv * D] (one layer of the cache, SBH), positions 0 .. start + T - 1 filled
//   out  [T * B, Nq * D]
export interface CacheAttentionShape {
  batch: number;
  /** New tokens per sequence. */
  tokens: number;
  /** Cache positions before the new tokens; new token t sees positions 0 .. start + t. */
  start: number;
  headsQ: number;
  headsKv: number;
  headDim: number;
}

export function attendCache(q: Float32Array, keys: Float32Array, values: Float32Array, shape: CacheAttentionShape, out?: Float32Array): Float32Array {
  const { batch: B, tokens: T, start, headsQ: Nq, headsKv: Nkv, headDim: D } = shape;
  const result = out ?? new Float32Array(T * B * Nq * D);
  const scale = 1 / Math.sqrt(D);
  const group = Nq / Nkv;
  const kvStride = B * Nkv * D; // one cache position
  const scores = new Float32Array(start + T);
  for (let t = 0; t < T; t++) {
    const visible = start + t + 1;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < Nq; h++) {
        const qOff = ((t * B + b) * Nq + h) * D;
        const kvOff = (b * Nkv + Math.floor(h / group)) * D;
        let max = -Infinity;
        for (let j = 0; j < visible; j++) {
          const kOff = j * kvStride + kvOff;
          let s = 0;
          for (let d = 0; d < D; d++) s += q[qOff + d] * keys[kOff + d];
          s *= scale;
          scores[j] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let j = 0; j < visible; j++) {
          const e = Math.exp(scores[j] - max);
          scores[j] = e;
          sum += e;
        }
        const inv = 1 / sum;
        result.fill(0, qOff, qOff + D);
        for (let j = 0; j < visible; j++) {
          const p = scores[j] * inv;
          const vOff = j * kvStride + kvOff;
          for (let d = 0; d < D; d++) result[qOff + d] += p * values[vOff + d];
        }
      }
    }
  }
  return result;
}
