// attentionDecode() on the CPU: the appended rows are stored into the cache first (rounded or
// quantized as storage.ts says), then each sequence's visible keys and values are gathered out of
// the cache (pages in table order, dequantized to float32) into one variable-length batch, and the
// CPU backend's flash attention (WASM SIMD on the worker pool, layout TND) runs it with the same
// options: causal / window relative to each sequence's own keys, softcap, ALiBi, LSE. The flash
// job stages its keys and values into panels anyway, so the gather costs a copy of the same order;
// it measured 7x faster than a scalar JS loop over the cache (Qwen2-0.5B heads, 1024 keys).
import { floatsToHalf, fromHalfBits, type TypedStorage } from '../../../core/dtype.js';
import { Tensor } from '../../../core/tensor.js';
import type { AttentionResult } from '../../attention/backend.js';
import { attention } from '../../attention/api.js';
import { type DecodeProblem, cacheIndex, rowIndex, visibleKeys } from '../problem.js';
import { storeRow } from '../storage.js';

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

/**
 * Copies `dim` stored elements from `at` to `out` at `to` as float32 (int8 times its row scale),
 * the first `dim` of a row of `rowDim` (a shared latent cache's values are a row's first columns).
 */
function copyRow(dtype: DecodeProblem['cache']['dtype'], data: TypedStorage, at: number, dim: number, scale: number, out: Float32Array, to: number): void {
  switch (dtype) {
    case 'float32':
      out.set((data as Float32Array).subarray(at, at + dim), to);
      return;
    case 'float16':
      for (let d = 0; d < dim; d++) out[to + d] = fromHalfBits((data as Uint16Array)[at + d]);
      return;
    case 'bfloat16': {
      const bits = new Uint32Array(out.buffer, out.byteOffset + 4 * to, dim);
      for (let d = 0; d < dim; d++) bits[d] = (data as Uint16Array)[at + d] << 16;
      return;
    }
    case 'int8':
      for (let d = 0; d < dim; d++) out[to + d] = (data as Int8Array)[at + d] * scale;
  }
}

export async function runDecodeCpu(p: DecodeProblem): Promise<AttentionResult> {
  appendOnHost(p);
  const c = p.cache;
  const lengths = p.lengths.data as Int32Array;
  const table = c.blockTable?.data as Int32Array | undefined;
  const { batch: B, headsQ: Nq, headsKv: Nkv, seqQ: Sq, dimQK: Dq, dimV: Dv } = p;
  const keys = Array.from(lengths, (n) => visibleKeys(p, n));
  const cuK = [0];
  for (const n of keys) cuK.push(cuK[cuK.length - 1] + n);
  const total = cuK[B];
  // keys and values of every sequence, TND [total, Nkv, D]
  const k = new Float32Array(Math.max(1, total) * Nkv * Dq);
  const v = new Float32Array(Math.max(1, total) * Nkv * Dv);
  const kScales = c.kScale?.data as Float32Array | undefined;
  const vScales = (c.v ? c.vScale : c.kScale)?.data as Float32Array | undefined;
  const vData = (c.v ?? c.k).data!;
  const vStrides = c.v ? c.vStrides : c.kStrides;
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < keys[b]; j++) {
      const row = cuK[b] + j;
      for (let h = 0; h < Nkv; h++) {
        const s = kScales || vScales ? cacheIndex(c, table, c.scaleStrides, b, h, j) : 0;
        copyRow(c.dtype, c.k.data!, cacheIndex(c, table, c.kStrides, b, h, j), Dq, kScales ? kScales[s] : 1, k, (row * Nkv + h) * Dq);
        copyRow(c.dtype, vData, cacheIndex(c, table, vStrides, b, h, j), Dv, vScales ? vScales[s] : 1, v, (row * Nkv + h) * Dv);
      }
    }
  }
  // queries TND [B * Sq, Nq, Dq] in float32
  const qIn = p.q.toFloat32();
  const q = new Float32Array(B * Sq * Nq * Dq);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Nq; h++) {
      for (let i = 0; i < Sq; i++) {
        const at = rowIndex(p.qStrides, b, h, i);
        q.set(qIn.subarray(at, at + Dq), ((b * Sq + i) * Nq + h) * Dq);
      }
    }
  }
  const causal = p.window.align === 'top-left' ? 'top-left' : undefined;
  const window: [number, number] | undefined = p.window.align === 'bottom-right' && (p.window.left !== Infinity || p.window.right !== Infinity)
    ? [p.window.left === Infinity ? -1 : p.window.left, p.window.right === Infinity ? -1 : p.window.right] : undefined;
  const result = await attention(
    Tensor.fromData(q, [B * Sq, Nq, Dq]),
    Tensor.fromData(k.subarray(0, total * Nkv * Dq), [total, Nkv, Dq]),
    Tensor.fromData(v.subarray(0, total * Nkv * Dv), [total, Nkv, Dv]),
    {
      layout: 'TND', cuSeqlensQ: Array.from({ length: B + 1 }, (_, b) => b * Sq), cuSeqlensK: cuK,
      scale: p.scale, softcap: p.softcap, ...(causal ? { causal } : {}), ...(window ? { window } : {}),
      ...(p.alibi ? { alibiSlopes: Tensor.fromData(alibiTable(p), [p.batch, p.headsQ]) } : {}), returnLse: p.returnLse, backend: 'cpu',
    },
  );
  // back to the problem's layout: out [B, Nq, Sq, Dv] (or BSND), LSE [B, Nq, Sq] from [Nq, T]
  const flat = result.out.data as Float32Array;
  const out = new Float32Array(p.outShape.reduce((a, n) => a * n, 1));
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Nq; h++) {
      for (let i = 0; i < Sq; i++) {
        const from = ((b * Sq + i) * Nq + h) * Dv;
        out.set(flat.subarray(from, from + Dv), rowIndex(p.outStrides, b, h, i));
      }
    }
  }
  let lse: Tensor | undefined;
  if (p.returnLse) {
    const src = result.lse!.data as Float32Array;
    const dst = new Float32Array(B * Nq * Sq);
    for (let b = 0; b < B; b++) for (let h = 0; h < Nq; h++) for (let i = 0; i < Sq; i++) dst[(b * Nq + h) * Sq + i] = src[h * B * Sq + b * Sq + i];
    lse = Tensor.fromData(dst, p.lseShape, 'float32');
  }
  return {
    out: p.dtype === 'float16' ? Tensor.fromData(floatsToHalf(out), p.outShape, 'float16') : Tensor.fromData(out, p.outShape, 'float32'),
    lse,
    stats: { launches: result.stats?.launches ?? 0, intermediateBytes: (result.stats?.intermediateBytes ?? 0) + 4 * (k.length + v.length + q.length) },
  };
}

/** ALiBi slopes as [B, Nq] (the problem keeps [Nq] with stride 0 or [B, Nq]). */
function alibiTable(p: DecodeProblem): Float32Array {
  const out = new Float32Array(p.batch * p.headsQ);
  for (let b = 0; b < p.batch; b++) for (let h = 0; h < p.headsQ; h++) out[b * p.headsQ + h] = p.alibi![b * p.alibiStrideB + h];
  return out;
}
