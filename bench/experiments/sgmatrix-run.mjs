// Runs the subgroup-matrix flash kernel (src/ops/attention/webgpu/tiers/flash-sgmatrix-wgsl.ts, built to
// dist/) on a validated AttentionProblem with raw WebGPU: upload, one dispatch grid, timing, readback.
import { buildFlashSgMatrix, sgMatrixOptionsProblem, sgMatrixWorkgroupBytes } from '../../dist/ops/attention/webgpu/tiers/flash-sgmatrix-wgsl.js';
import { packParams } from '../../dist/ops/attention/webgpu/tiers/flash-params.js';
import { buffer, compile, readback, timeDispatches, upload } from './gpu-harness.mjs';

const pipelines = new Map();

/** Kernel options for `problem` from a variant { subgroups, blockKeys, sharedKV, ... }. */
export function kernelOptions(problem, variant) {
  const group = problem.headsQ / problem.headsKv;
  let headsPerTile = Math.min(variant.headsPerTile ?? 1, group, variant.subgroups);
  while (group % headsPerTile || variant.subgroups % headsPerTile) headsPerTile--;
  const views = [problem.q, problem.k, problem.v, problem.qRope, problem.kRope].filter(Boolean);
  const aligned = views.every((v) => v.offset % 8 === 0 && v.strides.b % 8 === 0 && v.strides.s % 8 === 0 && v.strides.h % 8 === 0);
  const vectorLoads = aligned && problem.dimQK % 8 === 0 && problem.dimRope % 8 === 0 && problem.dimV % 8 === 0 && variant.vectorLoads !== false;
  const causalOrWindow = problem.window.left !== Infinity || problem.window.right !== Infinity;
  const o = {
    dimQK: problem.dimQK, dimRope: problem.dimRope, dimV: problem.dimV,
    subgroups: variant.subgroups, blockKeys: variant.blockKeys, headsPerTile,
    sharedKV: variant.sharedKV ?? false, vectorLoads, rescaleThreshold: variant.rescaleThreshold ?? 8,
    causalOrWindow, softcap: problem.softcap > 0, alibi: problem.alibi !== undefined,
    returnLse: problem.returnLse, rowPad: variant.rowPad ?? 8, smemVec4: variant.smemVec4 ?? false, prefetch: variant.prefetch ?? false, unrolled: variant.unrolled ?? false,
  };
  if (o.prefetch && sgMatrixOptionsProblem(o)) o.prefetch = false;
  return o;
}

/** Returns { ms, out: Uint16Array, lse?: Float32Array, options, bytes } (ms NaN when iters = 0). */
export async function runSgMatrix(dev, problem, variant, { iters = 0, warmup = 1 } = {}) {
  const { device } = dev;
  const o = kernelOptions(problem, variant);
  const bytes = sgMatrixWorkgroupBytes(o);
  if (bytes > device.limits.maxComputeWorkgroupStorageSize) return { skipped: `needs ${bytes} B of workgroup memory`, options: o, bytes };
  const key = JSON.stringify(o);
  let pipeline = pipelines.get(key);
  if (!pipeline) {
    pipeline = await compile(device, buildFlashSgMatrix(o), 'flash-sgmatrix');
    pipelines.set(key, pipeline);
  }
  const rowsPerHead = (16 * o.subgroups) / o.headsPerTile;
  const tilesQ = Math.ceil(problem.seqQ / rowsPerHead);
  const S = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const params = upload(device, new Uint8Array(packParams(problem, tilesQ)), GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
  const seqs = upload(device, sequenceTable(problem), S);
  const owned = [params, seqs];
  const up = (t) => { const b = upload(device, t.data, S); owned.push(b); return b; };
  const outCount = problem.outShape.reduce((a, b) => a * b, 1);
  const out = buffer(device, outCount * 2);
  device.queue.writeBuffer(out, 0, new Uint16Array(Math.ceil(outCount / 8) * 8).fill(0x7e00)); // NaN: unwritten shows
  owned.push(out);
  const entries = [params, seqs, up(problem.q.tensor), up(problem.k.tensor), up(problem.v.tensor), out];
  let lse;
  if (o.returnLse) {
    const lseCount = problem.lseShape.reduce((a, b) => a * b, 1);
    lse = buffer(device, lseCount * 4);
    device.queue.writeBuffer(lse, 0, new Float32Array(Math.ceil(lseCount / 4) * 4).fill(NaN));
    owned.push(lse);
    entries.push(lse);
  }
  if (o.dimRope) entries.push(up(problem.qRope.tensor), up(problem.kRope.tensor));
  const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: entries.map((b, i) => ({ binding: i, resource: { buffer: b } })) });
  const grid = [tilesQ, problem.headsQ / o.headsPerTile, problem.batch];
  const ms = await timeDispatches(device, pipeline, bindGroup, grid, { iters, warmup });
  const result = { ms, options: o, bytes, out: new Uint16Array(await readback(device, out, outCount * 2)) };
  if (lse) result.lse = new Float32Array(await readback(device, lse, problem.lseShape.reduce((a, b) => a * b, 1) * 4));
  for (const b of owned) b.destroy();
  return result;
}

/** The per-sequence table the kernels read (same layout as src/ops/attention/webgpu/attention-io.ts). */
function sequenceTable(p) {
  const nb = p.batch;
  const slopes = p.alibi ? p.alibi.tensor.toFloat32() : new Float32Array(0);
  const table = new Uint32Array(4 * nb + slopes.length);
  table.set(p.seqStartsQ, 0);
  table.set(p.seqStartsK, nb);
  table.set(p.seqLensQ, 2 * nb);
  table.set(p.seqLensK, 3 * nb);
  new Float32Array(table.buffer, 16 * nb, slopes.length).set(slopes);
  return table;
}
