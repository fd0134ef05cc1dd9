// Smallest check of what the flash kernel relies on: Q·Kᵀ with Kᵀ loaded column-major from workgroup
// memory, f32 result stored row-major with a padded stride, and subgroup_id-based offsets (2 subgroups).
import { HALF, compile, openDevice, randomHalf, readback, upload, buffer } from './gpu-harness.mjs';

const dev = process.env.NO_DEVICE ? undefined : await openDevice();
export async function matrixSanity({ device }) {
  const code = `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium_experimental.subgroup_matrix_uniformity);
@group(0) @binding(0) var<storage, read> A: array<f16>;   // [32 x 16] row-major (2 subgroups x 16 rows)
@group(0) @binding(1) var<storage, read> B: array<f16>;   // [16 x 16] rows = keys
@group(0) @binding(2) var<storage, read_write> C: array<f32>; // [32 x 16]
var<workgroup> As: array<f16, ${32 * 24}>;
var<workgroup> Bs: array<f16, ${16 * 24}>;
var<workgroup> Cs: array<f32, ${32 * 20}>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(subgroup_id) sg: u32) {
  for (var t = li; t < 512u; t += 64u) { As[(t / 16u) * 24u + t % 16u] = A[t]; }
  for (var t = li; t < 256u; t += 64u) { Bs[(t / 16u) * 24u + t % 16u] = B[t]; }
  workgroupBarrier();
  let a = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&As, sg * 16u * 24u, 24u);
  let b = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&Bs, 0u, 24u);
  let c = subgroupMatrixMultiply<f32>(a, b);
  subgroupMatrixStore<row_major>(&Cs, sg * 16u * 20u, c, 20u);
  workgroupBarrier();
  for (var t = li; t < 512u; t += 64u) { C[t] = Cs[(t / 16u) * 20u + t % 16u]; }
}`;
  const p = await compile(device, code, 'matrix-sanity');
  const a = randomHalf(512, 1), b = randomHalf(256, 2);
  const bufs = [upload(device, a), upload(device, b), buffer(device, 512 * 4)];
  const bg = device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: bufs.map((x, i) => ({ binding: i, resource: { buffer: x } })) });
  const e = device.createCommandEncoder(); const pass = e.beginComputePass(); pass.setPipeline(p); pass.setBindGroup(0, bg); pass.dispatchWorkgroups(1); pass.end(); device.queue.submit([e.finish()]);
  const got = new Float32Array(await readback(device, bufs[2], 2048));
  let maxErr = 0;
  for (let i = 0; i < 32; i++) for (let j = 0; j < 16; j++) {
    let s = 0; for (let d = 0; d < 16; d++) s += HALF[a[i * 16 + d]] * HALF[b[j * 16 + d]];
    maxErr = Math.max(maxErr, Math.abs(s - got[i * 16 + j]));
  }
  return maxErr;
}
if (dev) { console.log('matrix sanity: max |A·Bᵀ - ref| =', await matrixSanity(dev)); process.exit(0); }
