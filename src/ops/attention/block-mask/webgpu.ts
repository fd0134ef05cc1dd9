// createBlockMask on the GPU: one workgroup per (batch, head, query block, key block) tile counts
// the pairs the mask keeps, evaluating the same generated mask_mod the attention kernels compile
// (ops/attention/mods/wgsl.ts); the host turns counts into EMPTY / PARTIAL / FULL.
import { type GpuRuntime, defineKernel, getRuntime } from '../../../engines/webgpu/runtime.js';
import { UniformLayout } from '../../../engines/webgpu/uniforms.js';
import type { ModsKernelOptions, ModsPlan } from '../mods/plan.js';
import { packModData } from '../mods/plan.js';
import { buildModsWgsl, needsModData } from '../mods/wgsl.js';
import { UnsupportedError } from '../../../core/errors.js';
import type { BlockGrid } from './grid.js';

const THREADS = 256;

const COUNT_PARAMS = new UniformLayout('CountParams', {
  heads: 'u32',
  /** batch · heads rows of the grid */
  rows: 'u32',
  q_blocks: 'u32',
  block_q: 'u32',
  block_k: 'u32',
  seq_q: 'u32',
  seq_k: 'u32',
});

export interface BlockCountOptions {
  mods: ModsKernelOptions;
}

export function buildBlockCount(o: BlockCountOptions): string {
  return `// fusedattn createBlockMask: visible pairs of one mask tile per workgroup
${COUNT_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> cp: CountParams;
@group(0) @binding(2) var<storage, read_write> counts: array<u32>;

${buildModsWgsl(o.mods, { group: 0, binding: 1 })}

var<workgroup> visible: atomic<u32>;

@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) grid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let kb = wg.x;
  let qb = wg.y % cp.q_blocks;
  let bh = wg.z * (grid.y / cp.q_blocks) + wg.y / cp.q_blocks;
  if (bh >= cp.rows) { return; }
  let b = bh / cp.heads;
  let h = bh % cp.heads;
  let i0 = qb * cp.block_q;
  let j0 = kb * cp.block_k;
  let rows = min(cp.block_q, cp.seq_q - i0);
  let cols = min(cp.block_k, cp.seq_k - j0);
  if (li == 0u) { atomicStore(&visible, 0u); }
  workgroupBarrier();
  var n = 0u;
  for (var e = li; e < rows * cols; e += ${THREADS}u) {
    if (mask_mod(b, h, i0 + e / cols, j0 + e % cols, cp.seq_q, cp.seq_k)) { n++; }
  }
  atomicAdd(&visible, n);
  workgroupBarrier();
  if (li == 0u) { counts[(bh * cp.q_blocks + qb) * grid.x + kb] = atomicLoad(&visible); }
}
`;
}

const blockCountKernel = defineKernel<BlockCountOptions>('block-mask-count', buildBlockCount);

/** Visible pairs of every tile of `g` (index as the grid's status), counted on the GPU. */
export async function gpuBlockCounts(plan: ModsPlan, g: BlockGrid, device?: GPUDevice): Promise<Uint32Array> {
  const runtime: GpuRuntime = await getRuntime(device);
  const pipeline = await runtime.pipeline(blockCountKernel, { mods: plan.kernel });
  const tiles = g.batch * g.heads * g.qBlocks * g.kBlocks;
  const counts = runtime.acquire(4 * tiles, 'output', 'block mask counts');
  try {
    const rows = g.batch * g.heads;
    const params = COUNT_PARAMS.pack({ heads: g.heads, rows, q_blocks: g.qBlocks, block_q: g.blockQ, block_k: g.blockK, seq_q: g.seqQ, seq_k: g.seqK });
    // (batch·head) rows split over y and z so neither passes the 65535 limit
    const max = runtime.limits.maxComputeWorkgroupsPerDimension;
    const bhY = Math.min(rows, Math.max(1, Math.floor(max / g.qBlocks)));
    if (g.kBlocks > max || Math.ceil(rows / bhY) > max) throw new UnsupportedError('options.backend', `createBlockMask on webgpu: ${g.kBlocks} key blocks x ${rows} rows exceed the grid limit ${max}; use larger blocks or backend "cpu"`);
    const bindings: Record<number, GPUBuffer> = { 0: runtime.uniform(params, 'block mask params'), 2: counts };
    if (needsModData(plan.kernel, false)) bindings[1] = runtime.uploadTransient(packModData(plan.tensors), 'mods data');
    runtime.dispatch({ label: 'block-mask-count', pipeline, bindGroups: [runtime.bindGroup(pipeline, 0, bindings)], workgroups: [g.kBlocks, bhY * g.qBlocks, Math.ceil(rows / bhY)] });
    return new Uint32Array(await runtime.read(counts, 0, 4 * tiles));
  } finally {
    runtime.release(counts);
  }
}
