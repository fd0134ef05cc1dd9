// Host side of the portable WebGPU backward: tiles that fit the device, why a problem cannot run
// (naming the limit), and one call = three dispatches (pre, kv, q) through the GpuRuntime, plus a
// float16 cast of each gradient when float16 inputs live on the GPU. Gradients come back where the
// inputs were: read back to the CPU, or left on the device as GPU tensors the caller owns.
import { floatsToHalf } from '../../../../core/dtype.js';
import { UnsupportedError } from '../../../../core/errors.js';
import { Tensor, numel } from '../../../../core/tensor.js';
import { type Operand, bindingBytes, operandOf, releaseOperands } from '../../../../engines/webgpu/operands.js';
import { type GpuRuntime, type Pipeline, defineKernel } from '../../../../engines/webgpu/runtime.js';
import { dropoutParams } from '../../dropout/philox.wgsl.js';
import { backwardModsKernel, packModData } from '../../mods/plan.js';
import { needsModData } from '../../mods/wgsl.js';
import { type BlockGrid, lcm, statusTable } from '../../block-mask/grid.js';
import { kernelGrid } from '../../block-mask/kernel-grid.js';
import type { AttentionProblem, StridedView } from '../../problem.js';
import { scoreOptionsOf, scoreParamsOf, sequenceTable } from '../../webgpu/attention-io.js';
import type { AttentionGrads } from '../options.js';
import { type BackwardProblem, biasFold } from '../problem.js';
import { sinkGradTensor } from '../sink.js';
import { biasPlanesSumKernel, queueBiasPlanesSum } from './bias-planes.js';
import {
  BACKWARD_BINDINGS as B, BACKWARD_PARAMS, type BackwardKernelOptions, type BackwardTile, type KvKernelOptions,
  PRE_ROWS, backwardWorkgroupBytes, buildBackwardKv, buildBackwardPre, buildBackwardQ, buildCastHalf, checkBackwardTile,
} from './portable.wgsl.js';

export const backwardPreKernel = defineKernel<Pick<BackwardKernelOptions, 'dtype' | 'dimV'>>('attention-backward-pre', buildBackwardPre);
export const backwardKvKernel = defineKernel<KvKernelOptions>('attention-backward-kv', buildBackwardKv);
export const backwardQKernel = defineKernel<BackwardKernelOptions>('attention-backward-q', buildBackwardQ);
export const castHalfKernel = defineKernel<{ kind: 'f32-to-f16' }>('cast-f32-f16', buildCastHalf);

/** Tiles best first; the first that fits the device's limits for the head dims is used. */
export const KV_TILES: readonly BackwardTile[] = [
  { threads: 256, keys: 32, rows: 32 },
  { threads: 128, keys: 32, rows: 16 },
  { threads: 128, keys: 16, rows: 16 },
  { threads: 128, keys: 16, rows: 8 },
  { threads: 64, keys: 8, rows: 8 },
  { threads: 32, keys: 8, rows: 4 },
  { threads: 16, keys: 4, rows: 4 },
];
export const Q_TILES: readonly BackwardTile[] = [
  { threads: 256, rows: 32, keys: 32 },
  { threads: 128, rows: 16, keys: 32 },
  { threads: 128, rows: 16, keys: 16 },
  { threads: 128, rows: 16, keys: 8 },
  { threads: 64, rows: 8, keys: 8 },
  { threads: 32, rows: 8, keys: 4 },
  { threads: 16, rows: 4, keys: 4 },
];

export type BackwardLimits = Pick<GPUSupportedLimits, 'maxComputeWorkgroupStorageSize' | 'maxComputeInvocationsPerWorkgroup' | 'maxComputeWorkgroupSizeX' |
  'maxComputeWorkgroupsPerDimension' | 'maxStorageBuffersPerShaderStage' | 'maxStorageBufferBindingSize' | 'minStorageBufferOffsetAlignment'>;

function fits(kind: 'kv' | 'q', t: BackwardTile, p: AttentionProblem, limits: BackwardLimits, biasGrad: boolean): boolean {
  return checkBackwardTile(kind, t) === undefined && t.threads <= limits.maxComputeInvocationsPerWorkgroup && t.threads <= limits.maxComputeWorkgroupSizeX &&
    backwardWorkgroupBytes(kind, { ...p, tile: t }, biasGrad) <= limits.maxComputeWorkgroupStorageSize;
}

export function backwardTiles(bp: BackwardProblem, limits: BackwardLimits): { kv: BackwardTile | undefined; q: BackwardTile | undefined } {
  return {
    kv: KV_TILES.find((t) => fits('kv', t, bp.forward, limits, bp.biasGrad)),
    q: Q_TILES.find((t) => fits('q', t, bp.forward, limits, false)),
  };
}

/** Storage buffers of the kv kernel (the q kernel binds fewer). */
function kvStorageBuffers(bp: BackwardProblem): number {
  const p = bp.forward;
  return 8 + (p.qRope ? 3 : 0) + (p.mask ? 1 : 0) + (p.bias ? 1 : 0) + (bp.biasGrad ? 1 : 0) + (needsModData(backwardModsKernel(p.mods), p.blockMask !== undefined) ? 1 : 0);
}

/**
 * A block mask's structure at blocks every kv and q tile lies inside (the bool mask, when there
 * is one, intersected as the forward does), for the kernels' status lookups; undefined without one.
 */
export function blockGridOf(p: AttentionProblem, tiles: { kv: BackwardTile; q: BackwardTile }): BlockGrid | undefined {
  if (!p.blockMask) return undefined;
  const rows = lcm(tiles.kv.rows, tiles.q.rows);
  const keys = lcm(tiles.kv.keys, tiles.q.keys);
  return kernelGrid(p, { rows, keys, denseKeys: keys });
}

/** Why the portable backward cannot run `bp` on a device with `limits`, or undefined. */
export function portableBackwardUnsupported(bp: BackwardProblem, limits: BackwardLimits): string | undefined {
  const p = bp.forward;
  const buffers = kvStorageBuffers(bp);
  if (buffers > limits.maxStorageBuffersPerShaderStage) {
    return `the backward's kv kernel binds ${buffers} storage buffers for this call but maxStorageBuffersPerShaderStage is ${limits.maxStorageBuffersPerShaderStage}`;
  }
  const tiles = backwardTiles(bp, limits);
  if (!tiles.kv || !tiles.q) {
    const smallest = KV_TILES[KV_TILES.length - 1];
    const need = backwardWorkgroupBytes('kv', { ...p, tile: smallest }, bp.biasGrad);
    return `head dims Dq ${p.dimQK}${p.dimRope ? ` + Dr ${p.dimRope}` : ''} / Dv ${p.dimV} need at least ${need} bytes of workgroup memory in the backward but maxComputeWorkgroupStorageSize is ${limits.maxComputeWorkgroupStorageSize}`;
  }
  const sizes: Array<[string, number]> = [];
  for (const [name, view] of [['query', p.q], ['key', p.k], ['value', p.v], ['qRope', p.qRope], ['kRope', p.kRope]] as const) {
    if (view) sizes.push([name, bindingBytes(view.tensor, limits.minStorageBufferOffsetAlignment)], [`d${name}`, 4 * view.tensor.size]);
  }
  sizes.push(['out', bindingBytes(bp.out, limits.minStorageBufferOffsetAlignment)], ['dOut', bindingBytes(bp.dOut, limits.minStorageBufferOffsetAlignment)]);
  if (p.bias) sizes.push(['bias', bindingBytes(p.bias.tensor, limits.minStorageBufferOffsetAlignment)], ['dBias', 4 * p.bias.tensor.size]);
  if (p.mask) sizes.push(['mask', bindingBytes(p.mask.tensor, limits.minStorageBufferOffsetAlignment)]);
  for (const [name, bytes] of sizes) {
    if (bytes > limits.maxStorageBufferBindingSize) return `${name} needs a storage binding of ${bytes} bytes but maxStorageBufferBindingSize is ${limits.maxStorageBufferBindingSize}`;
  }
  const max = limits.maxComputeWorkgroupsPerDimension;
  for (const n of [Math.ceil(p.seqQ / tiles.q.rows), Math.ceil(p.seqK / tiles.kv.keys), p.headsQ, p.batch]) {
    if (n > max) return `the grid needs ${n} workgroups along one axis but maxComputeWorkgroupsPerDimension is ${max}`;
  }
  return undefined;
}

export function backwardKernelOptions(p: AttentionProblem, tile: BackwardTile, blockTable: boolean): BackwardKernelOptions {
  // the backward's mods: no sink (the LSE holds it), the score function's derivative added
  return {
    ...scoreOptionsOf(p), mods: backwardModsKernel(p.mods), dtype: p.dtype, dimQK: p.dimQK, dimRope: p.dimRope, dimV: p.dimV, tile, dropout: p.dropout !== undefined,
    ...(blockTable ? { blockTable } : {}),
  };
}

/**
 * The kv and q kernels of a tier for one problem: pipelines and grids (the pre kernel, the
 * bindings, the uniforms and the float16 cast are the same for every tier).
 */
export interface BackwardKernelPlan {
  kv: { pipeline: Pipeline; grid: [number, number, number] };
  q: { pipeline: Pipeline; grid: [number, number, number] };
  /** Key blocks of the kv kernel (the folded loop's bound), i.e. ceil(Sk / keys per workgroup). */
  keyBlocks: number;
  label: string;
  /** The block mask's structure the kernels look tiles up in (mod_data), when they do. */
  blockGrid?: BlockGrid;
  /**
   * The forward problem the kernels were planned for where the tier rewrote the call's (the
   * tensor-core tier's softcap() as the option: sgBackwardProblem); its uniforms are bound.
   */
  forward?: AttentionProblem;
  /**
   * The kv kernel adds dBias into `planes` partial planes of `elements` floats (bias-planes.ts);
   * a last pass sums them in plane order.
   */
  biasPlanes?: { planes: number; elements: number };
}

/** The portable tier's plan for `bp` (tiles that fit the device). */
export async function portablePlan(runtime: GpuRuntime, bp: BackwardProblem): Promise<BackwardKernelPlan> {
  const reason = portableBackwardUnsupported(bp, runtime.limits);
  if (reason) throw new UnsupportedError('options.backend', `WebGPU portable backward: ${reason}`);
  const p = bp.forward;
  const tiles = backwardTiles(bp, runtime.limits) as { kv: BackwardTile; q: BackwardTile };
  const fold = biasFold(p, bp.biasGrad);
  const bias = p.bias?.strides;
  const blockGrid = blockGridOf(p, tiles);
  const kvOptions: KvKernelOptions = {
    ...backwardKernelOptions(p, tiles.kv, blockGrid !== undefined),
    biasGrad: bp.biasGrad && bias ? { rowsBroadcast: bias.i === 0, keysBroadcast: bias.j === 0, foldBatch: fold.batch, foldHeads: fold.kvHeads, foldKeys: fold.keyBlocks } : undefined,
  };
  const [kvPipeline, qPipeline] = await Promise.all([runtime.pipeline(backwardKvKernel, kvOptions), runtime.pipeline(backwardQKernel, backwardKernelOptions(p, tiles.q, blockGrid !== undefined))]);
  return {
    kv: { pipeline: kvPipeline, grid: [fold.keyBlocks ? 1 : Math.ceil(p.seqK / tiles.kv.keys), fold.kvHeads ? 1 : p.headsKv, fold.batch ? 1 : p.batch] },
    q: { pipeline: qPipeline, grid: [Math.ceil(p.seqQ / tiles.q.rows), p.headsQ, p.batch] },
    keyBlocks: Math.ceil(p.seqK / tiles.kv.keys),
    label: 'portable',
    blockGrid,
  };
}

/** The fused backward on the portable tier. */
export async function runPortableBackward(runtime: GpuRuntime, bp: BackwardProblem): Promise<AttentionGrads> {
  return runBackwardPlan(runtime, bp, await portablePlan(runtime, bp));
}

/** Runs a tier's plan: pre kernel, kv and q kernels, casts or readback. */
export async function runBackwardPlan(runtime: GpuRuntime, bp: BackwardProblem, plan: BackwardKernelPlan): Promise<AttentionGrads> {
  const p = plan.forward ?? bp.forward;
  const prePipeline = await runtime.pipeline(backwardPreKernel, { dtype: p.dtype, dimV: p.dimV });
  const kvPipeline = plan.kv.pipeline;
  const qPipeline = plan.q.pipeline;
  const onGpu = p.q.tensor.gpu !== undefined;
  const castPipeline = onGpu && (p.dtype === 'float16' || p.bias?.tensor.dtype === 'float16') ? await runtime.pipeline(castHalfKernel, { kind: 'f32-to-f16' }) : undefined;
  const planes = bp.biasGrad && p.bias ? plan.biasPlanes : undefined;
  const planesPipeline = planes ? await runtime.pipeline(biasPlanesSumKernel, { kind: 'sum' }) : undefined;

  const dispatchesBefore = runtime.counters.dispatches;
  const meter = runtime.meter();
  const bound: Array<Operand | undefined> = [];
  const bind = (t: Tensor | undefined, name: string) => {
    const o = t ? operandOf(runtime, t, name) : undefined;
    bound.push(o);
    return o;
  };
  const scratch: GPUBuffer[] = [];
  // results handed to the caller (GPU inputs): destroyed if the call fails
  const created: GPUBuffer[] = [];
  const create = (bytes: number, label: string) => {
    const b = runtime.createBuffer(bytes, label);
    created.push(b);
    return b;
  };
  const intermediate = (bytes: number, label: string) => {
    const b = runtime.acquire(Math.max(16, bytes), 'intermediate', label);
    scratch.push(b);
    return b;
  };
  try {
    const q = bind(p.q.tensor, 'query')!;
    const k = bind(p.k.tensor, 'key')!;
    const v = bind(p.v.tensor, 'value')!;
    const qr = bind(p.qRope?.tensor, 'qRope');
    const kr = bind(p.kRope?.tensor, 'kRope');
    const out = bind(bp.out, 'out')!;
    const dOut = bind(bp.dOut, 'dOut')!;
    const lse = bind(bp.lse, 'lse')!;
    const mask = bind(p.mask?.tensor, 'mask');
    const biasOp = bind(p.bias?.tensor, 'bias');
    const meta = runtime.uploadTransient(sequenceTable(p), 'sequences');
    const rowstats = intermediate(8 * numel(p.lseShape), 'backward row stats');
    // float32 gradients (pooled: read back, or cast to float16 on the GPU; GPU float32 results are the caller's)
    const gradBuffer = (size: number, label: string, dtype: 'float32' | 'float16') => {
      const bytes = Math.max(16, 4 * size);
      const buffer = onGpu && dtype === 'float32' ? create(bytes, label) : intermediate(bytes, label);
      runtime.clear(buffer);
      return buffer;
    };
    const grads = {
      dq: gradBuffer(p.q.tensor.size, 'dq', p.dtype),
      dk: gradBuffer(p.k.tensor.size, 'dk', p.dtype),
      dv: gradBuffer(p.v.tensor.size, 'dv', p.dtype),
      dqRope: p.qRope ? gradBuffer(p.qRope.tensor.size, 'dqRope', p.dtype) : undefined,
      dkRope: p.kRope ? gradBuffer(p.kRope.tensor.size, 'dkRope', p.dtype) : undefined,
      dBias: bp.biasGrad && p.bias ? gradBuffer(p.bias.tensor.size, 'dBias', p.bias.tensor.dtype as 'float32' | 'float16') : undefined,
    };
    const view = (sv: StridedView | undefined) => (sv ? [sv.strides.b, sv.strides.h, sv.strides.s, sv.strides.d] : [0, 0, 0, 0]);
    const params = runtime.uniform(BACKWARD_PARAMS.pack({
      q_strides: view(p.q),
      k_strides: view(p.k),
      v_strides: view(p.v),
      qr_strides: view(p.qRope),
      kr_strides: view(p.kRope),
      o_strides: [p.outStrides.b, p.outStrides.h, p.outStrides.s, p.outStrides.d],
      // w: the dBias planes' stride in floats (the tensor-core kv kernel with planes; 0 otherwise)
      lse_strides: [p.lseStrides.b, p.lseStrides.h, p.lseStrides.s, planes?.elements ?? 0],
      q_off: p.q.offset + q.elementBase,
      k_off: p.k.offset + k.elementBase,
      v_off: p.v.offset + v.elementBase,
      qr_off: p.qRope ? p.qRope.offset + qr!.elementBase : 0,
      kr_off: p.kRope ? p.kRope.offset + kr!.elementBase : 0,
      o_off: out.elementBase,
      do_off: dOut.elementBase,
      lse_off: lse.elementBase,
      group: p.headsQ / p.headsKv,
      heads_kv: p.headsKv,
      key_blocks: plan.keyBlocks,
      batch: p.batch,
    }), 'backward params');
    const scoreParams = runtime.uniform(scoreParamsOf(p, mask, biasOp), 'score params');
    const dropout = p.dropout ? runtime.uniform(dropoutParams(p.dropout, p.headsQ), 'dropout params') : undefined;
    const shared: Record<number, GPUBuffer | GPUBufferBinding> = {
      [B.params]: params, [B.scoreParams]: scoreParams, [B.meta]: meta,
      [B.q]: q.binding, [B.k]: k.binding, [B.v]: v.binding, [B.dOut]: dOut.binding, [B.rowstats]: rowstats,
    };
    if (dropout) shared[B.dropout] = dropout;
    if (qr && kr) Object.assign(shared, { [B.qRope]: qr.binding, [B.kRope]: kr.binding });
    if (mask) shared[B.mask] = mask.binding;
    if (biasOp) shared[B.bias] = biasOp.binding;
    // captured tensors of the score / mask functions (the slots are the forward's: mods/plan.ts),
    // then the block mask's status table
    const table = plan.blockGrid ? statusTable(plan.blockGrid) : undefined;
    if (needsModData(backwardModsKernel(p.mods), table !== undefined)) shared[B.modData] = runtime.uploadTransient(packModData(p.mods?.tensors ?? [], table), 'mods data');
    if (p.seqQ > 0 && p.seqK > 0) {
      runtime.dispatch({
        label: 'attention-backward-pre',
        pipeline: prePipeline,
        bindGroups: [runtime.bindGroup(prePipeline, 0, { [B.params]: params, [B.meta]: meta, [B.out]: out.binding, [B.dOut]: dOut.binding, [B.lse]: lse.binding, [B.rowstats]: rowstats })],
        workgroups: [Math.min(Math.ceil(p.seqQ / PRE_ROWS), runtime.limits.maxComputeWorkgroupsPerDimension), p.headsQ, p.batch],
      });
      const kvEntries: Record<number, GPUBuffer | GPUBufferBinding> = { ...shared, [B.grad]: grads.dk, [B.gradV]: grads.dv };
      if (grads.dkRope) kvEntries[B.gradRope] = grads.dkRope;
      // with planes the kv kernel adds into the partial planes, summed into dBias after it
      const dBiasPlanes = planes ? intermediate(4 * planes.planes * planes.elements, 'dBias planes') : undefined;
      if (dBiasPlanes) runtime.clear(dBiasPlanes);
      if (grads.dBias) kvEntries[B.dBias] = dBiasPlanes ?? grads.dBias;
      runtime.dispatch({
        label: `attention-backward-kv-${plan.label}`,
        pipeline: kvPipeline,
        bindGroups: [runtime.bindGroup(kvPipeline, 0, kvEntries)],
        workgroups: plan.kv.grid,
      });
      if (dBiasPlanes && grads.dBias) queueBiasPlanesSum(runtime, planesPipeline!, dBiasPlanes, grads.dBias, planes!.planes, planes!.elements);
      const qEntries: Record<number, GPUBuffer | GPUBufferBinding> = { ...shared, [B.grad]: grads.dq };
      if (grads.dqRope) qEntries[B.gradRope] = grads.dqRope;
      runtime.dispatch({
        label: `attention-backward-q-${plan.label}`,
        pipeline: qPipeline,
        bindGroups: [runtime.bindGroup(qPipeline, 0, qEntries)],
        workgroups: plan.q.grid,
      });
    }
    const shapes: Record<string, [readonly number[], 'float32' | 'float16']> = {
      dq: [p.q.tensor.shape, p.dtype], dk: [p.k.tensor.shape, p.dtype], dv: [p.v.tensor.shape, p.dtype],
      dqRope: [p.qRope?.tensor.shape ?? [], p.dtype], dkRope: [p.kRope?.tensor.shape ?? [], p.dtype],
      dBias: [p.bias?.tensor.shape ?? [], (p.bias?.tensor.dtype ?? 'float32') as 'float32' | 'float16'],
    };
    const result: Partial<AttentionGrads> = {};
    if (bp.sinkGrad) {
      // dSink from the pre pass's row statistics (lse, D), 8 bytes a row (sink.ts); with no key at
      // all no kernel ran, and every D is 0
      const rows = p.seqQ > 0 && p.seqK > 0 ? new Float32Array(await runtime.read(rowstats, 0, 8 * numel(p.lseShape))) : undefined;
      const ls = p.lseStrides;
      const at = (b: number, h: number, t: number) => 2 * (b * ls.b + h * ls.h + t * ls.s);
      result.dSink = sinkGradTensor(bp, { lse: (b, h, t) => (rows ? rows[at(b, h, t)] : 0), delta: (b, h, t) => (rows ? rows[at(b, h, t) + 1] : 0) });
    }
    for (const [name, buffer] of Object.entries(grads)) {
      if (!buffer) continue;
      const [shape, dtype] = shapes[name];
      const size = numel(shape);
      const layout = name === 'dBias' ? undefined : p.layout;
      let tensor: Tensor;
      if (onGpu) {
        let target = buffer;
        if (dtype === 'float16') {
          target = create(Math.max(4, 4 * Math.ceil(size / 2)), `${name} float16`);
          const words = Math.ceil(size / 2);
          const groups = Math.ceil(words / 256);
          const x = Math.min(groups, runtime.limits.maxComputeWorkgroupsPerDimension);
          runtime.dispatch({
            label: 'cast-f32-f16',
            pipeline: castPipeline!,
            bindGroups: [runtime.bindGroup(castPipeline!, 0, { 0: runtime.uniform(Uint32Array.of(size, 0, 0, 0), 'cast params'), 1: buffer, 2: target })],
            workgroups: [x, Math.ceil(groups / x), 1],
          });
        }
        tensor = Tensor.fromGpuBuffer({ device: runtime.device, buffer: target, byteOffset: 0 }, shape, dtype, layout);
      } else {
        const values = new Float32Array(await runtime.read(buffer, 0, 4 * size));
        tensor = dtype === 'float16' ? Tensor.fromData(floatsToHalf(values), shape, 'float16', layout) : Tensor.fromData(values, shape, 'float32', layout);
      }
      (result as Record<string, Tensor>)[name] = tensor;
    }
    if (onGpu) await runtime.flush();
    created.length = 0;
    return { ...(result as AttentionGrads), stats: { launches: runtime.counters.dispatches - dispatchesBefore, intermediateBytes: meter.peakIntermediateBytes } };
  } catch (e) {
    for (const b of created) b.destroy();
    throw e;
  } finally {
    releaseOperands(runtime, bound);
    for (const b of scratch) runtime.release(b);
    meter.stop();
  }
}
