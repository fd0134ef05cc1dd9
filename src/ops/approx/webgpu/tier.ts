// Where the approximate attentions run on WebGPU (issue 13): the fused tensor-core kernels, the
// portable f32 matmul, or that strided batched matmul on tensor cores
// (gemm/webgpu/matmul-sgmat.wgsl.ts: operands staged as f16, f32 accumulation, f32 results).
//   auto         float16 inputs on an adapter with subgroup matrices: 'fused', i.e. non-causal
//                linear attention with elu+1 or relu on the fused kernels (fused.wgsl.ts: φ applied
//                while staged, f16 tiles, no f32 planes in global memory; H200, fifth session,
//                bench/gpu/linear-fused.sh, B4 H32 S4096 D128 f16: 0.81 ms against the portable
//                path's 7.48 and PyTorch's fp16 einsum's 0.82 in the same call, 41 float64 checks
//                first); non-causal Performer and expression maps take the same kernels through
//                float16 feature planes (fused-features.ts); causal takes the chunk form on fused kernels
//                (fused-causal.wgsl.ts: f16 prefix states per key chunk, the in-chunk keys masked on
//                tensor cores) up to 128 features, beyond that the portable path.
//                float32 inputs stay portable (full precision), as on the attention tiers.
//   FUSEDATTN_APPROX_TIER=portable|tensorcore|fused forces one (tensorcore or fused on an adapter
//                without subgroup matrices is an UnsupportedError naming the reason). The
//                tensorcore products are right on the H200 but slower than portable (fourth
//                session: ~2 TFLOP/s per product, f32 operands staged one element at a time).
// Performer's projection X·Wᵀ stays on the portable matmul on every tier: its logits go through
// exp, where f16's 3-digit rounding becomes ~1% relative error.
//
// f16 operands overflow at 65504. The states Σ_j φ(k_j)[v_j|1] and the chunk scores φ(q)·φ(k)
// grow with the keys and the head dim, and both are staged again as operands of the numerator
// products, so on this tier they are computed times alpha = 1/Sk (the matmul's alpha, before the
// f32 store). Every numerator column and the normaliser then carry the same alpha, which cancels
// in num / den.
import { envChoice, envInt } from '../../../core/env.js';
import { UnsupportedError } from '../../../core/errors.js';
import { defineKernel } from '../../../engines/webgpu/runtime.js';
import { type TierDevice, sgMatrixAdapterUnsupported } from '../../attention/webgpu/tiers/sgmatrix.js';
import {
  SGMAT_MATMUL_TILES, type SgmatMatmulOptions, type SgmatMatmulTile, buildSgmatMatmul,
} from '../../gemm/webgpu/matmul-sgmat.wgsl.js';
import { CAUSAL_CHUNK_EPILOGUE } from './kernels.wgsl.js';

export type ApproxTier = 'portable' | 'tensorcore' | 'fused';
export const APPROX_TIERS: readonly ApproxTier[] = ['portable', 'tensorcore', 'fused'];

/**
 * The products, by the contiguity of their operands in the intermediates' layouts
 * (φ [bh][S][F], [V|1] [bh][Sk][W], states [bh][chunk][F][W], scores [bh][chunk][C][C]):
 *   state   φ(K)ᵀ[V|1]: A = φ(K) read with swapped strides (m = feature is contiguous)
 *   num     φ(Q)·state
 *   scores  φ(Q_c)φ(K_c)ᵀ with the causal epilogue (B transposed: k = feature is contiguous)
 *   split   A_c·[V_c|1] + φ(Q_c)·P_c (two operand pairs along K)
 */
export type ApproxProduct = 'state' | 'num' | 'scores' | 'split';

const PRODUCT_OPTIONS: Record<ApproxProduct, Omit<SgmatMatmulOptions, 'tile'>> = {
  state: { a: 'float32', b: 'float32', transposeB: false, splitK: false, aContig: 'm', bContig: 'n' },
  num: { a: 'float32', b: 'float32', transposeB: false, splitK: false, aContig: 'k', bContig: 'n' },
  scores: { a: 'float32', b: 'float32', transposeB: true, splitK: false, aContig: 'k', bContig: 'k' },
  split: { a: 'float32', b: 'float32', transposeB: false, splitK: true, aContig: 'k', bContig: 'n' },
};

/** Products whose results are scaled by alpha = 1/Sk on the tensor-core tier (they are staged as f16 again). */
export const ALPHA_SCALED: ReadonlySet<ApproxProduct> = new Set(['state', 'scores']);

export const approxSgmatKernel = defineKernel<SgmatMatmulOptions & { product: ApproxProduct }>(
  'approx-sgmat-matmul',
  (o) => buildSgmatMatmul(o, o.product === 'scores' ? { wgsl: CAUSAL_CHUNK_EPILOGUE } : undefined),
);

/**
 * The tile of the products on tensor cores: SGMAT_MATMUL_TILES[FUSEDATTN_APPROX_SGMAT_TILE]
 * (default 0, 64 x 64; the benchmark times the candidates, none is measured as best yet).
 */
export function approxSgmatTile(): SgmatMatmulTile {
  return SGMAT_MATMUL_TILES[envInt('FUSEDATTN_APPROX_SGMAT_TILE', 0, SGMAT_MATMUL_TILES.length - 1) ?? 0];
}

/** Kernel options of one product on tensor cores (what the compile checks and the host both use). */
export function approxSgmatOptions(product: ApproxProduct, tile: SgmatMatmulTile = approxSgmatTile(), halfFeatures = false): SgmatMatmulOptions & { product: ApproxProduct } {
  const o = { ...PRODUCT_OPTIONS[product], tile, product };
  if (!halfFeatures) return o;
  // float16 φ and [V | 1] (non-causal): the state reads both, the numerator φ(Q) and the f32 state
  if (product === 'state') return { ...o, a: 'float16', b: 'float16' };
  if (product === 'num') return { ...o, a: 'float16' };
  throw new Error(`approxSgmatOptions: float16 features are for the non-causal products, not ${product}`);
}

export const APPROX_PRODUCTS = Object.keys(PRODUCT_OPTIONS) as ApproxProduct[];

/** The tier for inputs of `dtype` on `device` (FUSEDATTN_APPROX_TIER forces one; auto: the header). */
export function approxTier(dtype: string, device: TierDevice): ApproxTier {
  const forced = envChoice('FUSEDATTN_APPROX_TIER', APPROX_TIERS);
  const adapter = sgMatrixAdapterUnsupported(device);
  if ((forced === 'tensorcore' || forced === 'fused') && adapter) {
    throw new UnsupportedError('FUSEDATTN_APPROX_TIER', `approximate attention on tensor cores (forced by FUSEDATTN_APPROX_TIER=${forced}) cannot run here: ${adapter}`);
  }
  if (forced) return forced;
  return dtype === 'float16' && !adapter ? 'fused' : 'portable';
}
