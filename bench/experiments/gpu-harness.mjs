// Shared by the GPU experiments: device creation with the Dawn toggles, fast f16 random data,
// timestamp-query timing, readback, and a float64 reference for sampled rows of big problems.
// Raw WebGPU on purpose: these scripts run before (and independently of) the GpuRuntime.
import { create, globals } from 'webgpu';

Object.assign(globalThis, globals);

export async function openDevice({ robustness = true } = {}) {
  const toggles = (process.env.GPU_DAWN_TOGGLES ?? 'allow_unsafe_apis,vulkan_enable_f16_on_nvidia').split(',').filter(Boolean);
  if (!robustness) toggles.push('disable_robustness');
  const backend = process.env.BACKEND ?? 'vulkan';
  const gpu = create([`backend=${backend}`, `enable-dawn-features=${toggles.join(',')}`]);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('no adapter');
  const want = ['shader-f16', 'subgroups', 'timestamp-query', 'chromium-experimental-subgroup-matrix', 'subgroup-size-control'];
  const requiredFeatures = want.filter((f) => adapter.features.has(f));
  const L = adapter.limits;
  const requiredLimits = {};
  for (const k of ['maxComputeWorkgroupStorageSize', 'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeInvocationsPerWorkgroup', 'maxStorageBuffersPerShaderStage']) requiredLimits[k] = L[k];
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  device.addEventListener('uncapturederror', (e) => console.log('uncaptured GPU error:', e.error?.message));
  const info = adapter.info;
  return { gpu, adapter, device, info: { vendor: info.vendor, architecture: info.architecture, description: info.description, subgroupMinSize: info.subgroupMinSize, subgroupMaxSize: info.subgroupMaxSize, features: requiredFeatures, robustness } };
}

export function buffer(device, bytes, usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST) {
  return device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 16) * 16), usage });
}

export function upload(device, data, usage) {
  const bytes = new Uint8Array(Math.ceil(data.byteLength / 16) * 16);
  bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  const b = buffer(device, bytes.byteLength, usage);
  device.queue.writeBuffer(b, 0, bytes);
  return b;
}

export async function readback(device, src, bytes) {
  const size = Math.ceil(bytes / 4) * 4;
  const r = device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const e = device.createCommandEncoder();
  e.copyBufferToBuffer(src, 0, r, 0, size);
  device.queue.submit([e.finish()]);
  await r.mapAsync(GPUMapMode.READ);
  const out = r.getMappedRange().slice(0, bytes);
  r.unmap();
  r.destroy();
  return out;
}

export async function compile(device, code, label) {
  const module = device.createShaderModule({ code, label });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === 'error');
  if (errors.length) throw new Error(`${label}: WGSL errors:\n${errors.map((m) => `${m.lineNum}: ${m.message}`).join('\n')}`);
  device.pushErrorScope('validation');
  const pipeline = await device.createComputePipelineAsync({ label, layout: 'auto', compute: { module, entryPoint: 'main' } });
  const err = await device.popErrorScope();
  if (err) throw new Error(`${label}: ${err.message}`);
  return pipeline;
}

/**
 * Runs `iters` dispatches of (pipeline, bindGroup, grid) in one compute pass after `warmup` passes;
 * returns ms per dispatch from timestamp queries (wall clock when the device has none).
 */
export async function timeDispatches(device, pipeline, bindGroup, grid, { iters = 10, warmup = 2 } = {}) {
  const pass = (enc, n, timestampWrites) => {
    const p = enc.beginComputePass(timestampWrites ? { timestampWrites } : undefined);
    p.setPipeline(pipeline);
    p.setBindGroup(0, bindGroup);
    for (let i = 0; i < n; i++) p.dispatchWorkgroups(...grid);
    p.end();
  };
  let enc = device.createCommandEncoder();
  pass(enc, warmup);
  device.queue.submit([enc.finish()]);
  await device.queue.onSubmittedWorkDone();
  if (iters === 0) return NaN;
  const hasTs = device.features.has('timestamp-query');
  const t0 = performance.now();
  enc = device.createCommandEncoder();
  let qs, resolve, read;
  if (hasTs) {
    qs = device.createQuerySet({ type: 'timestamp', count: 2 });
    resolve = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    read = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    pass(enc, iters, { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 });
    enc.resolveQuerySet(qs, 0, 2, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
  } else pass(enc, iters);
  device.queue.submit([enc.finish()]);
  await device.queue.onSubmittedWorkDone();
  const wall = (performance.now() - t0) / iters;
  if (!hasTs) return wall;
  await read.mapAsync(GPUMapMode.READ);
  const [a, b] = new BigUint64Array(read.getMappedRange());
  const ns = Number(b - a);
  read.unmap();
  qs.destroy();
  return ns > 0 ? ns / 1e6 / iters : wall;
}

// ---- random f16 data: N(0, 1) quantiles, picked by a fast xorshift (big tensors in ~1 s)
const NORMAL_HALF = (() => {
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const table = new Uint16Array(65536);
  // inverse normal CDF (Acklam) of the mid-points of 65536 equal-probability cells
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const inv = (p) => {
    if (p < 0.02425) { const q = Math.sqrt(-2 * Math.log(p)); return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1); }
    if (p > 1 - 0.02425) return -inv(1 - p);
    const q = p - 0.5; const r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  };
  for (let i = 0; i < 65536; i++) {
    f32[0] = inv((i + 0.5) / 65536);
    const u = u32[0];
    const sign = (u >>> 16) & 0x8000;
    const e = ((u >>> 23) & 0xff) - 127 + 15;
    const m = u & 0x7fffff;
    table[i] = e <= 0 ? sign : sign | (e << 10) | ((m + 0x1000) >>> 13);
  }
  return table;
})();

export function randomHalf(n, seed) {
  const out = new Uint16Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = NORMAL_HALF[x & 0xffff];
  }
  return out;
}

export const HALF = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1; const e = (h >>> 10) & 31; const m = h & 1023;
    t[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
})();

const F16 = new Float32Array(1);
/** Rounds to the nearest float16 value (through the table: exact for values in range). */
function round16(x) {
  if (!Number.isFinite(x)) return x;
  F16[0] = x;
  const u = new Uint32Array(F16.buffer)[0];
  const sign = (u >>> 16) & 0x8000, e = ((u >>> 23) & 0xff) - 127 + 15, m = u & 0x7fffff;
  if (e >= 31) return sign ? -Infinity : Infinity;
  if (e <= 0) return Math.round(x / 2 ** -24) * 2 ** -24;
  let h = sign | (e << 10) | (m >>> 13);
  const rest = m & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
  return HALF[h];
}

/**
 * float64 reference of one output row (b, h, i) of a problem whose q/k/v are f16 CPU tensors
 * (window/causal, softcap, alibi, GQA, split RoPE; no mask/bias). Returns { out, lse }.
 * With { naive16: true }: naive float16 attention instead (QKᵀ, scale, P and PV rounded to f16,
 * softmax in f32 — like src/ops/attention/reference.ts at precision 'float16').
 */
export function referenceRow(p, b, h, i, { naive16 = false } = {}) {
  const r = naive16 ? round16 : (x) => x;
  const hk = Math.floor(h / (p.headsQ / p.headsKv));
  const sq = p.seqLensQ[b], sk = p.seqLensK[b];
  const diag = (p.window.align === 'bottom-right' ? sk - sq : 0) + i;
  const lo = Math.max(0, p.window.left === Infinity ? 0 : diag - p.window.left);
  const hi = Math.min(sk - 1, p.window.right === Infinity ? Infinity : diag + p.window.right);
  const at = (view, starts, hh, s, d) => view.offset + b * view.strides.b + (starts[b] + s) * view.strides.s + hh * view.strides.h + d;
  const qd = p.q.tensor.data, kd = p.k.tensor.data, vd = p.v.tensor.data;
  const qr = p.qRope?.tensor.data, kr = p.kRope?.tensor.data;
  const slope = p.alibi ? p.alibi.tensor.toFloat32()[b * p.alibi.strideB + h] : 0;
  const scores = new Float64Array(sk).fill(-Infinity);
  let max = -Infinity;
  for (let j = lo; j <= hi; j++) {
    let s = 0;
    const qi = at(p.q, p.seqStartsQ, h, i, 0), kj = at(p.k, p.seqStartsK, hk, j, 0);
    for (let d = 0; d < p.dimQK; d++) s += HALF[qd[qi + d]] * HALF[kd[kj + d]];
    if (qr) {
      const a = at(p.qRope, p.seqStartsQ, h, i, 0), c = at(p.kRope, p.seqStartsK, hk, j, 0);
      for (let d = 0; d < p.dimRope; d++) s += HALF[qr[a + d]] * HALF[kr[c + d]];
    }
    s = r(r(s) * p.scale);
    if (p.softcap > 0) s = r(p.softcap * Math.tanh(s / p.softcap));
    if (p.alibi) s = r(s - slope * Math.abs(i + sk - sq - j));
    scores[j] = s;
    if (s > max) max = s;
  }
  const out = new Float64Array(p.dimV);
  if (max === -Infinity) return { out, lse: -Infinity };
  let sum = 0;
  for (let j = lo; j <= hi; j++) { scores[j] = Math.exp(scores[j] - max); sum += scores[j]; }
  for (let j = lo; j <= hi; j++) {
    const w = r(scores[j] / sum);
    const vj = at(p.v, p.seqStartsK, hk, j, 0);
    for (let d = 0; d < p.dimV; d++) out[d] += w * HALF[vd[vj + d]];
  }
  if (naive16) for (let d = 0; d < p.dimV; d++) out[d] = r(out[d]);
  return { out, lse: max + Math.log(sum) };
}
