// dBias of a bias shared by the batch or the KV heads, summed deterministically over partial planes.
//
// WebGPU has no float atomics, so the tensor-core kv kernel sums a shared bias's gradient by giving
// every contribution to an element to one workgroup: the folded axes (batch, KV heads) leave the
// grid and each workgroup walks them in order (SgBiasGrad.foldBatch / foldHeads). When both fold,
// the grid keeps only the key blocks: 32 workgroups at B2 H16 S2048, 10x the time without dBias on
// the H200 (session 12, call 4). Planes give the grid its width back: the folded (b, hk) pairs are
// cut into P contiguous ranges, workgroup (key block, range g) adds its range into plane g of a
// P-plane float32 buffer, and one more pass sums the planes in plane order into dBias. Each element
// is then a fixed sum (loop order inside a plane, plane order across them): bit-identical from run
// to run, for P fixed by the problem's shape and the device's limits alone.
import { envInt } from '../../../../core/env.js';
import { type GpuRuntime, type Pipeline, defineKernel } from '../../../../engines/webgpu/runtime.js';

/** Workgroups the kv grid should reach before planes stop being added (a few per SM on the H200's 132). */
export const BIAS_PLANES_TARGET_WORKGROUPS = 1024;

/** Most bytes the partial planes may take (they are float32 copies of the bias). */
export const BIAS_PLANES_MAX_BYTES = 256 * 1024 * 1024;

export interface BiasPlanesShape {
  /** (b, hk) pairs the kv kernel walks inside a workgroup: batch (when folded) x KV heads (when folded). */
  folded: number;
  /** kv workgroups without planes: key blocks x the axes that stay in the grid. */
  workgroups: number;
  /** Elements of the bias (one plane). */
  elements: number;
}

export interface BiasPlanesLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupsPerDimension: number;
}

/**
 * Planes for a folded dBias: as many as bring the grid to BIAS_PLANES_TARGET_WORKGROUPS, at most
 * one per folded pair, within the memory cap and the device's limits; 1 means none (fold as before).
 */
export function biasPlanes(s: BiasPlanesShape, limits: BiasPlanesLimits, target = BIAS_PLANES_TARGET_WORKGROUPS): number {
  if (s.folded < 2 || s.elements < 1) return 1;
  const bytes = Math.min(BIAS_PLANES_MAX_BYTES, limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const byMemory = Math.floor(bytes / (4 * s.elements));
  const wanted = Math.ceil(target / Math.max(1, s.workgroups));
  // FUSEDATTN_DBIAS_PLANES caps them (1: fold only), for the checks of several pairs per plane
  const cap = envInt('FUSEDATTN_DBIAS_PLANES', 1) ?? Infinity;
  const planes = Math.min(s.folded, wanted, byMemory, limits.maxComputeWorkgroupsPerDimension, cap);
  // the same number of pairs per plane but the last: no plane is left empty
  return planes < 2 ? 1 : Math.ceil(s.folded / Math.ceil(s.folded / planes));
}

/** planes x elements float32 partials (plane g at g·elements) summed in plane order into total. */
export function buildBiasPlanesSum(): string {
  return `// fusedattn: dBias = the sum of its partial planes, in plane order (deterministic)
struct PlanesParams { elements: u32, planes: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> pp: PlanesParams;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> total: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
  let e = gid.x + gid.y * groups.x * 256u;
  if (e >= pp.elements) { return; }
  var s = 0.0;
  for (var g = 0u; g < pp.planes; g++) { s += part[g * pp.elements + e]; }
  total[e] = s;
}
`;
}

export const biasPlanesSumKernel = defineKernel<{ kind: 'sum' }>('attention-backward-dbias-planes', buildBiasPlanesSum);

/** Queues the planes' sum into `total` (elements floats) with biasPlanesSumKernel's pipeline. */
export function queueBiasPlanesSum(runtime: GpuRuntime, pipeline: Pipeline, part: GPUBuffer, total: GPUBuffer, planes: number, elements: number): void {
  const [x, y] = runtime.foldedGrid(Math.ceil(elements / 256));
  runtime.dispatch({
    label: 'attention-backward-dbias-planes',
    pipeline,
    bindGroups: [runtime.bindGroup(pipeline, 0, { 0: runtime.uniform(Uint32Array.of(elements, planes, 0, 0), 'dBias planes params'), 1: part, 2: total })],
    workgroups: [x, y, 1],
  });
}
