// attentionDecode() on WebGPU: bind the problem's tensors (GPU tensors in place, CPU tensors
// uploaded), assemble the small per-call table (lengths, block table, ALiBi slopes), plan, queue
// (queue.ts), and hand results back as GPU tensors (GPU inputs: no readback) or CPU tensors.
// A CPU-resident cache is appended to on the host first (the uploaded copy would be thrown away).
import { BYTES_PER_ELEMENT } from '../../../core/dtype.js';
import { UnsupportedError } from '../../../core/errors.js';
import { Tensor } from '../../../core/tensor.js';
import type { AttentionResult } from '../../attention/backend.js';
import { type Operand, operandOf, releaseOperands } from '../../../engines/webgpu/operands.js';
import { type BindingResource, type GpuRuntime, getRuntime } from '../../../engines/webgpu/runtime.js';
import type { CacheStrides, DecodeProblem, RowStrides } from '../problem.js';
import { appendOnHost } from '../cpu/decode.js';
import { type DecodePlan, type DecodeShape, planDecode } from './plan.js';
import { decodePlanDevice } from './plan-device.js';
import { type GpuCacheTensor, type GpuDecodeCall, type GpuRows, prepareDecode, queueAttentionDecode } from './queue.js';

/** The plan-level shape of a problem (append is in-kernel only for GPU-resident caches). */
export function decodeShapeOf(p: DecodeProblem): DecodeShape {
  return {
    dimQK: p.dimQK, dimV: p.dimV, group: p.headsQ / p.headsKv, headsKv: p.headsKv, batch: p.batch, tokens: p.seqQ, maxKeys: p.maxKeys,
    cache: p.cache.dtype, io: p.dtype, paged: p.cache.paged, sharedKV: p.cache.v === undefined,
    append: p.append !== undefined && p.cache.k.location === 'webgpu', rope: false,
    softcap: p.softcap > 0, alibi: p.alibi !== undefined, lse: p.returnLse,
  };
}

/** The plan for a problem on a runtime, or UnsupportedError saying why there is none. */
export function planFor(runtime: GpuRuntime, p: DecodeProblem): DecodePlan {
  const plan = planDecode(decodeShapeOf(p), runtime.limits, undefined, decodePlanDevice(runtime));
  if (typeof plan === 'string') throw new UnsupportedError('options.backend', `backend webgpu cannot run this decode: ${plan}`);
  return plan;
}

export async function runDecodeWebGpu(problem: DecodeProblem, device: GPUDevice | undefined): Promise<AttentionResult> {
  const runtime = await getRuntime(problem.q.gpu?.device ?? device);
  const onGpu = problem.q.location === 'webgpu';
  const plan = planFor(runtime, problem);
  await prepareDecode(runtime, plan, problem.returnLse);
  let p = problem;
  if (p.append && !plan.kernel.append) {
    // a CPU-resident cache: store the new rows on the host, then attend over lengths + Sq keys
    appendOnHost(p);
    const lengths = Int32Array.from(p.hostLengths!, (n) => n + p.seqQ);
    p = { ...p, append: undefined, lengths: Tensor.fromData(lengths, [p.batch], 'int32'), hostLengths: lengths };
  }
  const operands: Operand[] = [];
  const bind = (t: Tensor, name: string, quantum: number): Operand => {
    const o = operandOf(runtime, t, name);
    operands.push(o);
    if (o.elementBase % quantum !== 0) {
      throw new UnsupportedError(name, `${name} starts ${o.elementBase} elements into its aligned binding; the decode kernel needs a multiple of ${quantum} (align the tensor's byteOffset)`);
    }
    return o;
  };
  const transient: GPUBuffer[] = [];
  const dispatchesBefore = runtime.counters.dispatches;
  const meter = runtime.meter();
  const outBytes = Math.max(4, p.outShape.reduce((a, b) => a * b, 1) * BYTES_PER_ELEMENT[p.dtype]);
  const lseBytes = Math.max(4, p.batch * p.headsQ * p.seqQ * 4);
  const alloc = (bytes: number, label: string) => (onGpu ? runtime.createBuffer(bytes, label) : runtime.acquire(bytes, 'output', label));
  const out = alloc(outBytes, 'decode output');
  const lse = p.returnLse ? alloc(lseBytes, 'decode lse') : undefined;
  let queued = false;
  try {
    const E = plan.kernel.chunk;
    const c = p.cache;
    const keys = bind(c.k, 'cache.k', E);
    const values = c.v ? bind(c.v, 'cache.v', E) : undefined;
    const tensorOf = (o: Operand, s: CacheStrides): GpuCacheTensor => ({ binding: o.binding, off: o.elementBase, sp: s.page, sh: s.head, spos: s.pos });
    const q = bind(p.q, 'query', 4);
    const call: GpuDecodeCall = {
      batch: p.batch, tokens: p.seqQ, headsQ: p.headsQ, headsKv: p.headsKv,
      q: { binding: q.binding, ...rows(q.elementBase, p.qStrides) },
      keys: tensorOf(keys, c.kStrides),
      values: values ? tensorOf(values, c.vStrides) : undefined,
      kScales: c.kScale ? tensorOf(bind(c.kScale, 'cache.kScale', 1), c.scaleStrides) : undefined,
      vScales: c.vScale ? tensorOf(bind(c.vScale, 'cache.vScale', 1), c.scaleStrides) : undefined,
      pageSize: c.pageSize, maxPages: c.maxPages, numPages: c.numPages,
      meta: metaTable(runtime, p, transient),
      append: plan.kernel.append ? appendRows(runtime, p, transient, bind) : undefined,
      out: { binding: out, off: 0, sb: p.outStrides.b, sh: p.outStrides.h, si: p.outStrides.i },
      lse,
      scale: p.scale, softcap: p.softcap, window: p.window,
    };
    await queueAttentionDecode(runtime, plan, call);
    queued = true;
  } finally {
    releaseOperands(runtime, operands);
    for (const b of transient) runtime.release(b);
    if (!queued) {
      meter.stop();
      if (onGpu) {
        out.destroy();
        lse?.destroy();
      } else {
        runtime.release(out);
        runtime.release(lse);
      }
    }
  }
  try {
    const stats = () => ({ launches: runtime.counters.dispatches - dispatchesBefore, intermediateBytes: meter.peakIntermediateBytes });
    if (onGpu) {
      await runtime.flush();
      const gpu = (buffer: GPUBuffer, shape: readonly number[], dtype: 'float32' | 'float16') => Tensor.fromGpuBuffer({ device: runtime.device, buffer, byteOffset: 0 }, shape, dtype);
      return { out: gpu(out, p.outShape, p.dtype), lse: lse ? gpu(lse, p.lseShape, 'float32') : undefined, stats: stats() };
    }
    try {
      const data = await runtime.read(out, 0, outBytes);
      const outTensor = Tensor.fromData(p.dtype === 'float16' ? new Uint16Array(data, 0, outBytes / 2) : new Float32Array(data, 0, outBytes / 4), p.outShape, p.dtype);
      const lseTensor = lse ? Tensor.fromData(new Float32Array(await runtime.read(lse, 0, lseBytes)), p.lseShape, 'float32') : undefined;
      return { out: outTensor, lse: lseTensor, stats: stats() };
    } finally {
      runtime.release(out);
      runtime.release(lse);
    }
  } finally {
    meter.stop();
  }
}

function rows(off: number, s: RowStrides): GpuRows {
  return { off, sb: s.b, sh: s.h, si: s.i };
}

/**
 * The u32 table the kernel reads: lengths, block table, ALiBi slopes. Lengths and table already
 * in one GPU buffer (PagedKVCache's) are bound in place; otherwise the table is assembled (CPU
 * parts uploaded, GPU parts copied on the GPU: no readback).
 */
function metaTable(runtime: GpuRuntime, p: DecodeProblem, transient: GPUBuffer[]): GpuDecodeCall['meta'] {
  const lengths = p.lengths;
  const table = p.cache.blockTable;
  const slopes = p.alibi;
  const align = runtime.limits.minStorageBufferOffsetAlignment;
  const sameBuffer = lengths.gpu && (!table || (table.gpu && table.gpu.buffer === lengths.gpu.buffer));
  if (sameBuffer && !slopes) {
    const first = Math.min(lengths.gpu!.byteOffset, table?.gpu!.byteOffset ?? Infinity);
    const start = first - (first % align);
    const end = Math.max(lengths.gpu!.byteOffset + 4 * p.batch, table ? table.gpu!.byteOffset + 4 * table.size : 0);
    return {
      binding: { buffer: lengths.gpu!.buffer, offset: start, size: end - start },
      lengthsAt: (lengths.gpu!.byteOffset - start) / 4,
      tableAt: table ? (table.gpu!.byteOffset - start) / 4 : 0,
    };
  }
  const tableWords = table ? table.size : 0;
  const words = new Uint32Array(p.batch + tableWords + (slopes?.length ?? 0));
  if (lengths.data) words.set(lengths.data as Int32Array, 0);
  if (table?.data) words.set(table.data as Int32Array, p.batch);
  if (slopes) new Float32Array(words.buffer, 4 * (p.batch + tableWords), slopes.length).set(slopes);
  const meta = { lengthsAt: 0, tableAt: p.batch, slopesAt: p.batch + tableWords, slopesStrideB: p.alibiStrideB };
  if (!lengths.gpu && !table?.gpu) return { binding: runtime.uploadTransient(words, 'decode table'), ...meta };
  const buffer = runtime.acquire(words.byteLength, 'intermediate', 'decode table');
  transient.push(buffer);
  runtime.write(buffer, 0, words);
  if (lengths.gpu) runtime.copy(lengths.gpu.buffer, lengths.gpu.byteOffset, buffer, 0, 4 * p.batch, 'decode lengths');
  if (table?.gpu) runtime.copy(table.gpu.buffer, table.gpu.byteOffset, buffer, 4 * p.batch, 4 * tableWords, 'decode block table');
  return { binding: { buffer, offset: 0, size: words.byteLength }, ...meta };
}

/** The appended keys (and values) in one binding: one upload, or GPU copies into one buffer. */
function appendRows(runtime: GpuRuntime, p: DecodeProblem, transient: GPUBuffer[], bind: (t: Tensor, name: string, quantum: number) => Operand): GpuDecodeCall['append'] {
  const a = p.append!;
  if (!a.v) {
    const k = bind(a.k, 'options.append.k', 4);
    return { binding: k.binding, k: rows(k.elementBase, a.kStrides) };
  }
  const bpe = BYTES_PER_ELEMENT[p.dtype];
  const kBytes = a.k.size * bpe;
  const vBytes = a.v.size * bpe;
  const buffer = runtime.acquire(kBytes + vBytes, 'intermediate', 'decode append');
  transient.push(buffer);
  for (const [t, at] of [[a.k, 0], [a.v, kBytes]] as const) {
    if (t.gpu) runtime.copy(t.gpu.buffer, t.gpu.byteOffset, buffer, at, t.size * bpe, 'decode append rows');
    else runtime.write(buffer, at, t.data as ArrayBufferView);
  }
  const binding: BindingResource = { buffer, offset: 0, size: kBytes + vBytes };
  return { binding, k: rows(0, a.kStrides), v: rows(kBytes / bpe, a.vStrides) };
}
