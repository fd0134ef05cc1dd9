// The block structure of a dense bool mask that lives on the GPU, found on the GPU in the same
// submission as the attention kernel (no readback): one workgroup per tile says EMPTY / PARTIAL /
// FULL from the mask bytes it reads, then one thread per query block writes its key-block lists
// into the block table region of the call's mod_data buffer (format: grid.ts). CPU masks get the
// same table from a scan on the host (grid.ts denseMaskGrid).
import { type GpuRuntime, type Pipeline, defineKernel } from '../../../engines/webgpu/runtime.js';
import { UniformLayout } from '../../../engines/webgpu/uniforms.js';
import { loadByte } from '../../../engines/webgpu/wgsl.js';
import type { Operand } from '../../../engines/webgpu/operands.js';
import type { AttentionProblem } from '../problem.js';

const DENSE_PARAMS = new UniformLayout('DenseParams', {
  mask_strides: 'vec4u',
  mask_off: 'u32',
  /** Table rows: (b · th + h) · qt + qb, where b < tb, h < th. */
  th: 'u32',
  qt: 'u32',
  kt: 'u32',
  block_q: 'u32',
  block_k: 'u32',
  seq_q: 'u32',
  seq_k: 'u32',
  /** Word offset of the table in mod_data, and its rows. */
  table: 'u32',
  rows: 'u32',
});

const STATUS_WGSL = `// fusedattn: EMPTY (0) / PARTIAL (1) / FULL (2) of one tile of a dense bool mask
${DENSE_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> dp: DenseParams;
@group(0) @binding(1) var<storage, read> mask_buf: array<u32>;
@group(0) @binding(2) var<storage, read_write> status: array<u32>;
${loadByte('mask_at', 'mask_buf')}

var<workgroup> seen: atomic<u32>;   // bit 0: a hidden pair, bit 1: a kept pair

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let kb = wg.x;
  let qb = wg.y;
  let b = wg.z / dp.th;
  let h = wg.z % dp.th;
  let i0 = qb * dp.block_q;
  let j0 = kb * dp.block_k;
  let rows = min(dp.block_q, dp.seq_q - i0);
  let cols = min(dp.block_k, dp.seq_k - j0);
  if (li == 0u) { atomicStore(&seen, 0u); }
  workgroupBarrier();
  var bits = 0u;
  let ms = dp.mask_strides;
  for (var e = li; e < rows * cols; e += 64u) {
    let i = i0 + e / cols;
    let j = j0 + e % cols;
    bits |= select(1u, 2u, mask_at(dp.mask_off + b * ms.x + h * ms.y + i * ms.z + j * ms.w) != 0u);
  }
  atomicOr(&seen, bits);
  workgroupBarrier();
  if (li == 0u) {
    let s = atomicLoad(&seen);
    status[(wg.z * dp.qt + qb) * dp.kt + kb] = select(select(0u, 2u, s == 2u), 1u, s == 3u);
  }
}
`;

const LISTS_WGSL = `// fusedattn: per query block, its partial then full key blocks into the block table
${DENSE_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> dp: DenseParams;
@group(0) @binding(2) var<storage, read_write> status: array<u32>;
@group(0) @binding(3) var<storage, read_write> mod_data: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r = gid.x;
  if (r >= dp.rows) { return; }
  let base = dp.table + 8u + 2u * dp.rows + r * dp.kt;
  var n = 0u;
  for (var want = 1u; want <= 2u; want++) {
    var count = 0u;
    for (var kb = 0u; kb < dp.kt; kb++) {
      if (status[r * dp.kt + kb] == want) {
        mod_data[base + n] = kb;
        n++;
        count++;
      }
    }
    mod_data[dp.table + 8u + 2u * r + want - 1u] = count;
  }
}
`;

const statusKernel = defineKernel<Record<string, never>>('dense-mask-status', () => STATUS_WGSL);
const listsKernel = defineKernel<Record<string, never>>('dense-mask-lists', () => LISTS_WGSL);

/** Table geometry of a dense mask at tiles of rows × keys (broadcast dims of the mask stay 1). */
export function denseTableShape(p: AttentionProblem, rows: number, keys: number): { tb: number; th: number; qt: number; kt: number; words: number } {
  const st = p.mask!.strides;
  const tb = st.b ? p.batch : 1;
  const th = st.h ? p.headsQ : 1;
  const qt = Math.max(1, Math.ceil(p.seqQ / rows));
  const kt = Math.max(1, Math.ceil(p.seqK / keys));
  const R = tb * th * qt;
  return { tb, th, qt, kt, words: 8 + 2 * R + R * kt };
}

export interface DensePipelines {
  status: Pipeline;
  lists: Pipeline;
}

export async function densePipelines(runtime: GpuRuntime): Promise<DensePipelines> {
  return { status: await runtime.pipeline(statusKernel, {}), lists: await runtime.pipeline(listsKernel, {}) };
}

/**
 * mod_data for a call whose dense mask is a GPU tensor: `words` (header and captured tensors,
 * plan.ts) followed by the block table, which two kernels queued here fill in before the attention
 * kernel reads it. The buffer goes back to the pool after the submit.
 */
export function denseMaskModData(runtime: GpuRuntime, pipes: DensePipelines, p: AttentionProblem, mask: Operand, rows: number, keys: number, words: Uint32Array): GPUBuffer {
  const shape = denseTableShape(p, rows, keys);
  const table = Math.max(4, words.length);
  const all = new Uint32Array(table + shape.words);
  all.set(words);
  all[0] = table;
  all.set([shape.tb, shape.th, shape.qt, shape.kt, rows, keys], table);
  const data = runtime.uploadTransient(all, 'mods data (dense mask table)');
  const R = shape.tb * shape.th * shape.qt;
  const status = runtime.acquire(Math.max(16, 4 * R * shape.kt), 'intermediate', 'dense mask tile status');
  const st = p.mask!.strides;
  const params = runtime.uniform(DENSE_PARAMS.pack({
    mask_strides: [st.b, st.h, st.i, st.j], mask_off: mask.elementBase, th: shape.th, qt: shape.qt, kt: shape.kt,
    block_q: rows, block_k: keys, seq_q: p.seqQ, seq_k: p.seqK, table, rows: R,
  }), 'dense mask params');
  runtime.dispatch({ label: 'dense-mask-status', pipeline: pipes.status, bindGroups: [runtime.bindGroup(pipes.status, 0, { 0: params, 1: mask.binding, 2: status })], workgroups: [shape.kt, shape.qt, shape.tb * shape.th] });
  runtime.dispatch({ label: 'dense-mask-lists', pipeline: pipes.lists, bindGroups: [runtime.bindGroup(pipes.lists, 0, { 0: params, 2: status, 3: data })], workgroups: [Math.ceil(R / 64), 1, 1] });
  runtime.release(status);
  return data;
}
