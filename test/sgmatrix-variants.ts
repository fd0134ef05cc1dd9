// Option sets of the tensor-core tier's 16-row kernel for WGSL checks that need no GPU: the grid
// of plain kernels (no mask, bias or score/mask/sink function: the path the H200 numbers were
// measured on, which the score hook must leave byte for byte as it was) and the hook's variants.
import { type SgMatrixKernelOptions, sgMatrixOptionsProblem } from '../dist/ops/attention/webgpu/tiers/flash-sgmatrix-wgsl.js';

export const SG_BASE: SgMatrixKernelOptions = {
  dimQK: 128, dimRope: 0, dimV: 128, subgroups: 4, blockKeys: 32, headsPerTile: 1, sharedKV: false, vectorLoads: true,
  rescaleThreshold: 8, causalOrWindow: true, softcap: false, alibi: false, returnLse: true, rowPad: 8, smemVec4: true, prefetch: true, unrolled: false,
};

const DIMS: Array<Partial<SgMatrixKernelOptions>> = [
  { dimQK: 128, dimV: 128 },
  { dimQK: 64, dimV: 64 },
  { dimQK: 59, dimV: 111, vectorLoads: false },
  { dimQK: 128, dimRope: 64, dimV: 128 },
];
const LAYOUTS: Array<Partial<SgMatrixKernelOptions>> = [
  { smemVec4: true, prefetch: true, sharedKV: false },
  { smemVec4: true, prefetch: false, sharedKV: false },
  { smemVec4: false, prefetch: false, sharedKV: true },
];
const FLAGS: Array<Partial<SgMatrixKernelOptions>> = [
  {},
  { causalOrWindow: false, returnLse: false },
  { softcap: true, alibi: true },
  { dropout: true, headsPerTile: 2 },
];

/** Every valid combination of the grid's axes, without any score hook. */
export function plainVariants(): SgMatrixKernelOptions[] {
  const out: SgMatrixKernelOptions[] = [];
  for (const dims of DIMS) for (const layout of LAYOUTS) for (const flags of FLAGS) {
    for (const subgroups of [2, 4]) for (const blockKeys of [16, 32, 64]) for (const unrolled of [false, true]) {
      const o: SgMatrixKernelOptions = { ...SG_BASE, ...dims, ...layout, ...flags, subgroups, blockKeys, unrolled };
      if (sgMatrixOptionsProblem(o) === undefined) out.push(o);
    }
  }
  return out;
}
