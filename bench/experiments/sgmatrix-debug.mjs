// Debug call: tiny flash cases (full reference) from the simplest (1 subgroup, 1 block, D16) upward,
// plus micro-kernels for each matrix pattern the flash kernel uses. Writes GPU outputs as JSON so
// they can be compared with hypotheses off the GPU machine.
import { writeFileSync } from 'node:fs';
import { validateAttention, referenceAttention } from '../../dist/index.js';
import { makeCase, caseName, compare } from '../../dist/testing/index.js';
import { HALF, compile, openDevice, randomHalf, readback, upload, buffer } from './gpu-harness.mjs';
import { runSgMatrix } from './sgmatrix-run.mjs';

const outDir = process.argv[2] ?? '/tmp';
const dev = await openDevice({ robustness: process.env.ROBUST !== '0' });
const dump = {};
const CASES = [
  [{ dtype: 'float16', batch: 1, headsQ: 1, seqQ: 16, seqK: 1, dimQK: 16, returnLse: true }, { subgroups: 1, blockKeys: 16 }],
  [{ dtype: 'float16', batch: 1, headsQ: 1, seqQ: 16, seqK: 16, dimQK: 16, returnLse: true }, { subgroups: 1, blockKeys: 16 }],
  [{ dtype: 'float16', batch: 1, headsQ: 1, seqQ: 16, seqK: 16, dimQK: 32, returnLse: true }, { subgroups: 1, blockKeys: 16 }],
  [{ dtype: 'float16', batch: 1, headsQ: 1, seqQ: 16, seqK: 32, dimQK: 16, returnLse: true }, { subgroups: 1, blockKeys: 16 }],
  [{ dtype: 'float16', batch: 1, headsQ: 1, seqQ: 32, seqK: 16, dimQK: 16, returnLse: true }, { subgroups: 2, blockKeys: 16 }],
  [{ dtype: 'float16', batch: 1, headsQ: 1, seqQ: 16, seqK: 16, dimQK: 16, returnLse: true }, { subgroups: 1, blockKeys: 16, vectorLoads: false }],
  [{ dtype: 'float16', batch: 2, headsQ: 3, seqQ: 97, seqK: 97, dimQK: 64, returnLse: true }, { subgroups: 4, blockKeys: 32 }],
];
for (const [c, variant] of CASES) {
  const { q, k, v, options } = makeCase(c, 42);
  const problem = validateAttention(q, k, v, options);
  const ref = referenceAttention(problem);
  const r = await runSgMatrix(dev, problem, variant);
  const got = Array.from(r.out, (h) => HALF[h]);
  const name = `${caseName(c)} | ${JSON.stringify(variant)}`;
  console.log(`${name}: out err ${compare(got, ref.out).maxAbsError.toExponential(3)} lse err ${compare(r.lse, ref.lse).maxAbsError.toExponential(3)}`);
  dump[name] = { out: got, lse: Array.from(r.lse) };
}
writeFileSync(`${outDir}/debug-outputs.json`, JSON.stringify(dump));

// micro-kernels: (1) MMA accumulate over 2 K-chunks with col-major right matrices at offsets,
// (2) P·V: left from f16 written two lanes per row interleaved, right row-major.
const head = 'enable f16;\nenable subgroups;\nenable chromium_experimental_subgroup_matrix;\ndiagnostic(off, chromium_experimental.subgroup_matrix_uniformity);\n';
async function micro(label, code, inputs, outFloats, ref) {
  const p = await compile(dev.device, code, label);
  const bufs = [...inputs.map((a) => upload(dev.device, a)), buffer(dev.device, outFloats * 4)];
  const bg = dev.device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: bufs.map((x, i) => ({ binding: i, resource: { buffer: x } })) });
  const e = dev.device.createCommandEncoder(); const pass = e.beginComputePass(); pass.setPipeline(p); pass.setBindGroup(0, bg); pass.dispatchWorkgroups(1); pass.end(); dev.device.queue.submit([e.finish()]);
  const got = new Float32Array(await readback(dev.device, bufs[bufs.length - 1], outFloats * 4));
  let err = 0; for (let i = 0; i < outFloats; i++) err = Math.max(err, Math.abs(got[i] - ref[i]));
  console.log(`${label}: max err ${err}`);
  dump[label] = Array.from(got);
}
{
  const a = randomHalf(16 * 32, 3), b = randomHalf(16 * 32, 4); // A [16 x 32], B [16 keys x 32]
  const ref = []; for (let i = 0; i < 16; i++) for (let j = 0; j < 16; j++) { let s = 0; for (let d = 0; d < 32; d++) s += HALF[a[i * 32 + d]] * HALF[b[j * 32 + d]]; ref.push(s); }
  await micro('mma-accumulate-2chunks', head + `
@group(0) @binding(0) var<storage, read> A: array<f16>;
@group(0) @binding(1) var<storage, read> B: array<f16>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
var<workgroup> As: array<f16, ${16 * 40}>;
var<workgroup> Bs: array<f16, ${16 * 40}>;
var<workgroup> Cs: array<f32, ${16 * 20}>;
@compute @workgroup_size(32)
fn main(@builtin(local_invocation_index) li: u32) {
  for (var t = li; t < 512u; t += 32u) { As[(t / 32u) * 40u + t % 32u] = A[t]; Bs[(t / 32u) * 40u + t % 32u] = B[t]; }
  workgroupBarrier();
  let a0 = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&As, 0u, 40u);
  let a1 = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&As, 16u, 40u);
  var c = subgroup_matrix_result<f32, 16, 16>();
  c = subgroupMatrixMultiplyAccumulate(a0, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&Bs, 0u, 40u), c);
  c = subgroupMatrixMultiplyAccumulate(a1, subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>(&Bs, 16u, 40u), c);
  subgroupMatrixStore<row_major>(&Cs, 0u, c, 20u);
  workgroupBarrier();
  for (var t = li; t < 256u; t += 32u) { C[t] = Cs[(t / 16u) * 20u + t % 16u]; }
}`, [a, b], 256, ref);
}
{
  const pm = randomHalf(16 * 16, 5), v = randomHalf(16 * 16, 6); // P [16 x 16 keys], V [16 keys x 16]
  const ref = []; for (let i = 0; i < 16; i++) for (let n = 0; n < 16; n++) { let s = 0; for (let j = 0; j < 16; j++) s += HALF[pm[i * 16 + j]] * HALF[v[j * 16 + n]]; ref.push(s); }
  await micro('pv-interleaved-rowmajor', head + `
@group(0) @binding(0) var<storage, read> Pg: array<f16>;
@group(0) @binding(1) var<storage, read> Vg: array<f16>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
var<workgroup> Ps: array<f16, ${16 * 24}>;
var<workgroup> Vs: array<f16, ${16 * 24}>;
var<workgroup> Cs: array<f32, ${16 * 20}>;
@compute @workgroup_size(32)
fn main(@builtin(subgroup_invocation_id) lane: u32) {
  let r = lane / 2u; let side = lane % 2u;
  for (var c = 0u; c < 8u; c++) { Ps[r * 24u + 2u * c + side] = Pg[r * 16u + 2u * c + side]; }
  for (var c = 0u; c < 8u; c++) { Vs[r * 24u + 2u * c + side] = Vg[r * 16u + 2u * c + side]; }
  workgroupBarrier();
  let p = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&Ps, 0u, 24u);
  let vv = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&Vs, 0u, 24u);
  let o = subgroupMatrixMultiply<f32>(p, vv);
  subgroupMatrixStore<row_major>(&Cs, 0u, o, 20u);
  workgroupBarrier();
  for (var t = lane; t < 256u; t += 32u) { C[t] = Cs[(t / 16u) * 20u + t % 16u]; }
}`, [pm, v], 256, ref);
}
writeFileSync(`${outDir}/debug-outputs.json`, JSON.stringify(dump));
process.exit(0);
