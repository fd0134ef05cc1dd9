// The ceiling study's GEMM variants (issue 14), most informative first: each row changes one or two
// options of the block's measured best tile (TENSORCORE_GEMM_BASE: 128 x 256 over 2 x 4 subgroups of
// 4 x 4 result matrices, K step 32, one stage with register prefetch, padded rows), so every row
// reads as "what this option is worth" against its neighbour. A budget-limited run gets the
// questions in this order: parity with the old kernel, register blocking, subgroups per workgroup,
// K step, buffering, staging layout and load width, direct operands, the 16x8x16 shape, f16
// accumulation, B layout, raster order, epilogue, float32 A. Phase 2 (mutations) then walks around
// the best rows one option at a time.
import { TENSORCORE_GEMM_BASE, tensorCoreGemmGeometry, tensorCoreGemmName, tensorCoreGemmProblem } from '../../dist/ops/gemm/webgpu/gemm-tensorcore.wgsl.js';

const base = TENSORCORE_GEMM_BASE;
const v = (question, change) => ({ question, options: { ...base, ...change } });

export const STUDY_VARIANTS = [
  v('parity: the block\'s best tile in the general builder', {}),
  v('parity: no edge checks (M, N, K multiples of the tile)', { edges: false }),
  v('the old O-projection winner: 128x128, 4x2 subgroups of 2x4, K 64', { sgM: 4, sgN: 2, fragM: 2, fragN: 4, k: 64 }),
  // register blocking at 8 subgroups
  v('register blocking 2x2', { fragM: 2, fragN: 2 }),
  v('register blocking 2x4', { fragM: 2, fragN: 4 }),
  v('register blocking 4x2', { fragM: 4, fragN: 2 }),
  v('register blocking 4x8, f16 accumulators (f32 would need 256 registers)', { sgM: 2, sgN: 2, fragM: 4, fragN: 8, accumulate: 'f16' }),
  v('register blocking 4x8, f32 accumulators (spills expected)', { sgM: 2, sgN: 2, fragM: 4, fragN: 8 }),
  v('register blocking 8x4, f16 accumulators', { sgM: 2, sgN: 2, fragM: 8, fragN: 4, accumulate: 'f16', k: 16 }),
  // subgroups per workgroup
  v('1 subgroup (64x64)', { sgM: 1, sgN: 1 }),
  v('2x2 subgroups (128x128)', { sgM: 2, sgN: 2 }),
  v('4x2 subgroups (256x128)', { sgM: 4, sgN: 2, k: 16 }),
  v('4x4 subgroups (256x256, 512 invocations), K 16', { sgM: 4, sgN: 4, k: 16 }),
  // K step
  v('K step 16', { k: 16 }),
  v('K step 64 on 128x128 (4x2 of 2x4)', { sgM: 4, sgN: 2, fragM: 2, fragN: 4, k: 64, edges: false }),
  v('K step 64 on 128x128 (2x2 of 4x4)', { sgM: 2, sgN: 2, k: 64 }),
  // buffering
  v('no prefetch (load, barrier, math, barrier)', { prefetch: false }),
  v('two stages + prefetch, K 16 (one barrier per step)', { stages: 2, k: 16 }),
  v('two stages + prefetch on 128x128, K 32', { sgM: 2, sgN: 2, stages: 2 }),
  // staging layout and load width
  v('dense rows (no padding: bank conflicts)', { layout: 'dense' }),
  v('blocked 16x16 sub-tiles', { layout: 'blocked' }),
  v('4-byte staging loads', { load: 'u32' }),
  // direct operands (no workgroup memory)
  v('direct from storage, 2x2 subgroups of 4x4', { operands: 'direct', sgM: 2, sgN: 2, edges: false, prefetch: false }),
  v('direct from storage, 1 subgroup of 2x2', { operands: 'direct', sgM: 1, sgN: 1, fragM: 2, fragN: 2, edges: false, prefetch: false }),
  v('direct from storage, 2x4 subgroups of 4x4', { operands: 'direct', edges: false, prefetch: false }),
  // the 16x8x16 shape
  v('16x8x16 matrices, 4x8 per subgroup (same 128x256 tile)', { shape: '16x8x16', fragN: 8 }),
  v('16x8x16 matrices, 4x4 per subgroup (128x128)', { shape: '16x8x16' }),
  // f16 accumulation
  v('f16 accumulators (same tile)', { accumulate: 'f16' }),
  // B layout
  v('B row-major [K, N] (row-major right matrices)', { b: 'nn' }),
  // raster order, epilogue, float32 A
  v('grouped raster of 8 tile rows', { raster: 8 }),
  v('grouped raster of 8, no edges', { raster: 8, edges: false }),
  v('f32 output through scratch', { out: 'float32' }),
  v('f32 output stored directly (subgroupMatrixStore)', { out: 'float32', epilogue: 'direct', edges: false }),
  v('f16 accumulators stored directly as the f16 output', { accumulate: 'f16', epilogue: 'direct', edges: false }),
  v('float32 A converted while staged (the block\'s QKV case)', { a: 'float32' }),
  v('float32 A, 128x128', { a: 'float32', sgM: 2, sgN: 2 }),
];

// Workgroups per SM (session 15): Dawn's pipelines get 48-56 KiB of workgroup memory per H200 SM
// (bench/ceiling/occupancy.mjs), so the study's best tile (46 KiB) runs one workgroup per SM. These
// rows pair a tile with the same tile made smaller (the epilogue's scratch in the staging tiles,
// a shorter K step) so each pair reads as "what one more workgroup per SM is worth"; the KiB and the
// workgroups per SM the probe predicts are in the question.
const best = { ...base, sgM: 4, sgN: 2, fragM: 2, fragN: 4, k: 64, edges: false };
const o = (question, change) => ({ question, options: { ...best, ...change } });
export const OCCUPANCY_VARIANTS = [
  o('the study\'s best: 128x128, 4x2 of 2x4, K 64 (46 KiB, 1 per SM)', {}),
  o('scratch in the tiles (36 KiB, 1 per SM)', { scratchInTiles: true }),
  o('K 32 (30 KiB, 1 per SM)', { k: 32 }),
  o('K 32, scratch in the tiles (20 KiB, 2 per SM)', { k: 32, scratchInTiles: true }),
  o('K 16, scratch in the tiles (12 KiB, 4 per SM)', { k: 16, scratchInTiles: true }),
  o('K 16, two stages, scratch in the tiles (24 KiB, 2 per SM)', { k: 16, stages: 2, scratchInTiles: true }),
  o('K 32, scratch in the tiles, with edge checks (the library\'s ragged calls; 20 KiB)', { k: 32, scratchInTiles: true, edges: true }),
  o('128x256, 2x4 of 4x4, K 16, scratch in the tiles (18 KiB, 2 per SM)', { sgM: 2, sgN: 4, fragM: 4, fragN: 4, k: 16, scratchInTiles: true }),
  o('256x128, 4x2 of 4x4, K 16, scratch in the tiles (18 KiB, 2 per SM)', { sgM: 4, sgN: 2, fragM: 4, fragN: 4, k: 16, scratchInTiles: true }),
  o('128x128, 2x2 of 4x4, K 32, scratch in the tiles (20 KiB, 2 per SM; 4 subgroups)', { sgM: 2, sgN: 2, fragM: 4, fragN: 4, k: 32, scratchInTiles: true }),
  o('64x128, 2x2 of 2x4, K 32, scratch in the tiles (15 KiB, 3 per SM; 4 subgroups)', { sgM: 2, sgN: 2, fragM: 2, fragN: 4, k: 32, scratchInTiles: true }),
  o('128x128, 4x2 of 2x4, K 32, two stages, scratch in the tiles (40 KiB, 1 per SM)', { k: 32, stages: 2, scratchInTiles: true }),
  o('128x128, 4x2 of 2x4, K 32, grouped raster of 8, scratch in the tiles (20 KiB)', { k: 32, scratchInTiles: true, raster: 8 }),
  // call 1: 128x128 over 4 subgroups of 4x4 at 20 KiB was the best without a K 64 step; its pairs
  o('128x128, 2x2 of 4x4, K 32, own scratch (25 KiB, 1 per SM)', { sgM: 2, sgN: 2, fragM: 4, fragN: 4, k: 32 }),
  o('128x128, 2x2 of 4x4, K 16, scratch in the tiles (12 KiB, 4 per SM by memory)', { sgM: 2, sgN: 2, fragM: 4, fragN: 4, k: 16, scratchInTiles: true }),
  o('128x128, 2x2 of 4x4, K 64, scratch in the tiles (36 KiB, 1 per SM)', { sgM: 2, sgN: 2, fragM: 4, fragN: 4, k: 64, scratchInTiles: true }),
  o('128x128, 2x2 of 4x4, K 32, scratch in the tiles, edge checks (the library\'s ragged calls)', { sgM: 2, sgN: 2, fragM: 4, fragN: 4, k: 32, scratchInTiles: true, edges: true }),
  o('128x128, 2x2 of 4x4, K 32, scratch in the tiles, raster 8', { sgM: 2, sgN: 2, fragM: 4, fragN: 4, k: 32, scratchInTiles: true, raster: 8 }),
  o('128x64, 2x1 of 4x4, K 32, scratch in the tiles (15 KiB, 2 subgroups)', { sgM: 2, sgN: 1, fragM: 4, fragN: 4, k: 32, scratchInTiles: true }),
  o('64x128, 1x2 of 4x4, K 64, scratch in the tiles (27 KiB, 2 subgroups)', { sgM: 1, sgN: 2, fragM: 4, fragN: 4, k: 64, scratchInTiles: true }),
];

/** One-option changes tried around a good configuration (phase 2 of the sweep). */
export function mutations(o) {
  const out = [];
  const push = (question, change) => out.push({ question, options: { ...o, ...change } });
  for (const k of [16, 32, 64]) if (k !== o.k) push(`K ${k}`, { k });
  for (const raster of [1, 4, 8, 16]) if (raster !== o.raster) push(`raster ${raster}`, { raster });
  push('edges toggled', { edges: !o.edges });
  if (o.operands === 'staged') {
    if (o.stages === 1) push('two stages', { stages: 2, prefetch: true });
    else push('one stage', { stages: 1 });
    for (const layout of ['padded', 'dense', 'blocked']) if (layout !== o.layout) push(`layout ${layout}`, { layout });
  }
  for (const [sgM, sgN] of [[2, 2], [2, 4], [4, 2], [4, 4], [1, 2], [2, 1]]) if (sgM !== o.sgM || sgN !== o.sgN) push(`subgroups ${sgM}x${sgN}`, { sgM, sgN });
  for (const [fragM, fragN] of [[2, 4], [4, 2], [4, 4], [2, 2], [4, 8], [8, 4]]) if (fragM !== o.fragM || fragN !== o.fragN) push(`fragments ${fragM}x${fragN}`, { fragM, fragN });
  push('accumulator type toggled', { accumulate: o.accumulate === 'f32' ? 'f16' : 'f32' });
  return out;
}

/** Why a variant cannot run at `size`³ on a device with these limits (undefined: it can). */
export function variantProblem(o, limits, size) {
  const problem = tensorCoreGemmProblem(o);
  if (problem) return problem;
  const g = tensorCoreGemmGeometry(o);
  if (g.bytes > limits.maxComputeWorkgroupStorageSize) return `${g.bytes} bytes of workgroup memory (limit ${limits.maxComputeWorkgroupStorageSize})`;
  if (g.threads > limits.maxComputeInvocationsPerWorkgroup) return `${g.threads} invocations (limit ${limits.maxComputeInvocationsPerWorkgroup})`;
  if (!o.edges && (size % g.m || size % g.n || size % o.k)) return `size ${size} is not a multiple of the ${g.m} x ${g.n} x ${o.k} tile`;
  return undefined;
}

export const nameOf = tensorCoreGemmName;
