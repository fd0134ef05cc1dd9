// The portable flash kernel's "block source" (an internal option, for the fused attention block of
// src/block; the tensor-core tier has the same in tiers/flash-block-source.ts): Q, K and V come
// from one packed float32 QKV buffer (the block's QKV GEMM output) through the FLASH_PARAMS
// strides and offsets, RoPE is applied to Q and to the new K rows while they are staged, and with
// a KV cache positions < start are read from it and the new rotated K and V rows appended to it.
//
//   qkv    [rows, W] f32: head h of token t of sequence b at q_off + b q.x + h q.y + t q.z (K, V alike)
//   rope   f32 cos [R, D/2] then sin [R, D/2]; position p uses table row p - rope_base
//   step   u32 [start, rope_base]: token t is at position start + t
//   caches f32 [capacity, B, Nkv D] (SBH rows) after RoPE: read below `past`, written from it
// Keys: position j < past from the cache, j >= past is new token j - past (past = start with a
// cache, else 0). Only the workgroup of the first query head of each KV group writes the group's
// new rows, and no workgroup reads cache positions >= past, so the writes race with nothing.
// Quads (4 elements per load) need D % 8 == 0 (so RoPE partners are whole quads) and cache offsets
// that are multiples of 4; otherwise element by element.
import { FLASH_BLOCK_PARAMS, type FlashBlockSource } from '../tiers/flash-block-source.js';

/** Bindings in block mode: the slots of meta, q, k, v, qRope, kRope are reused. */
export const PORTABLE_BLOCK_BINDINGS = { step: 1, qkv: 2, rope: 3, blockParams: 4, kCache: 5, vCache: 6 } as const;

export interface PortableBlockParts {
  /** Bindings, private position state and the load functions. */
  declarations: string;
  /** In main: sequence sizes and positions (replaces the sequence table reads). */
  sequence: string;
  /** Staging loops of the query block, a K tile and a V tile. */
  loadQ: string;
  loadK: string;
  loadV: string;
  /** In main after the query block: the cache append. */
  append: string;
}

export function portableBlockParts(o: FlashBlockSource, dim: number, quads: boolean): PortableBlockParts {
  const B = PORTABLE_BLOCK_BINDINGS;
  const vec = quads ? 'vec4<f32>' : 'f32';
  const unit = quads ? 4 : 1;
  const half = dim / 2;
  const declarations = [
    FLASH_BLOCK_PARAMS.wgsl(),
    `@group(0) @binding(${B.step}) var<storage, read> step_buf: array<u32>;`,
    `@group(0) @binding(${B.qkv}) var<storage, read> qkv: array<${vec}>;`,
    `@group(0) @binding(${B.rope}) var<storage, read> rope: array<${vec}>;`,
    `@group(0) @binding(${B.blockParams}) var<uniform> bp: FlashBlockParams;`,
    ...(o.cache ? [
      `@group(0) @binding(${B.kCache}) var<storage, read_write> k_cache: array<${vec}>;`,
      `@group(0) @binding(${B.vCache}) var<storage, read_write> v_cache: array<${vec}>;`,
    ] : []),
    `const HALF: u32 = ${half}u;   // RoPE rotates pairs (d, d + HALF)`,
    'var<private> g_start: u32;       // position of new token 0',
    'var<private> g_rope_base: u32;   // position of RoPE table row 0',
    'var<private> g_past: u32;        // keys read from the cache',
    '',
    `/** ${quads ? 'Elements 4 d4 .. 4 d4 + 3' : 'Element d'} of the head vector at qkv[base], rotated with table row trow. */`,
    quads
      ? `fn rotated(base: u32, d4: u32, trow: u32) -> vec4<f32> {
  let d = 4u * d4;
  let lower = d < HALF;
  let x = qkv[(base + d) / 4u];
  let y = qkv[(base + select(d - HALF, d + HALF, lower)) / 4u];
  let i = (d % HALF) / 4u;
  // rotate half: d < HALF: x cos - x[d + HALF] sin; d >= HALF: x cos + x[d - HALF] sin
  return x * rope[trow * (HALF / 4u) + i] + select(1.0, -1.0, lower) * y * rope[(bp.rope_rows + trow) * (HALF / 4u) + i];
}`
      : `fn rotated(base: u32, d: u32, trow: u32) -> f32 {
  let lower = d < HALF;
  let x = qkv[base + d];
  let y = qkv[base + select(d - HALF, d + HALF, lower)];
  let i = d % HALF;
  return x * rope[trow * HALF + i] + select(1.0, -1.0, lower) * y * rope[(bp.rope_rows + trow) * HALF + i];
}`,
  ].join('\n');

  // sizes from lets (uniform: the loops around barriers depend on them); the private copies serve
  // the load functions
  const sequence = `  let nb = sp.batch;
  let past = ${o.cache ? 'step_buf[0]' : '0u'};
  g_start = step_buf[0];
  g_rope_base = step_buf[1];
  g_past = past;
  let start_q = 0u;
  let start_k = 0u;
  let sq = bp.seq;
  let sk = past + sq;`;

  // index of the head vector of token t, head hh, in the packed rows (a quad index in quad mode)
  const head = (buf: 'q' | 'k' | 'v', hh: string, t: string) => `params.${buf}_off + b * params.${buf}_strides.x + ${hh} * params.${buf}_strides.y + ${t} * params.${buf}_strides.z`;
  const cacheAt = (which: 'k' | 'v', j: string) => `(bp.${which}c_off + (${j} * nb + b) * bp.kv_width + hk * DQK) / ${unit}u + dd`;
  const n = quads ? 'DQK4' : 'DQK';
  const zero = quads ? 'vec4<f32>()' : '0.0';
  // element by element, rows are padded to whole vec4s in the tiles: the padding is zeroed too
  const span = quads ? 'DQK4' : '(DQK4 * 4u)';
  const loop = (tile: string, stride: string, rows: string, body: string) => `for (var e = lid; e < ${rows} * ${span}; e += THREADS) {
      let r = e / ${span};
      let dd = e % ${span};
      var x = ${zero};
      ${quads ? body : `if (dd < DQK) {
        ${body}
      }`}
      ${tile}[r * ${stride} + dd${quads ? '' : ' / 4u'}]${quads ? '' : '[dd % 4u]'} = x;
    }`;
  const loadQ = loop('q_tile', 'QK_STRIDE', 'ROWS', `if (i0 + r < sq) { x = rotated(${head('q', 'h', '(i0 + r)')}, dd, g_start + i0 + r - g_rope_base); }`);
  const keyBody = (which: 'k' | 'v') => {
    const fresh = which === 'k'
      ? `x = rotated(${head('k', 'hk', 't')}, dd, g_start + t - g_rope_base);`
      : `x = qkv[(${head('v', 'hk', 't')}) / ${unit}u + dd];`;
    return `let j = j0 + r;
      if (j < sk) {
        ${o.cache ? `if (j < g_past) { x = ${which}_cache[${cacheAt(which, 'j')}]; } else { let t = j - g_past; ${fresh} }` : `let t = j; ${fresh}`}
      }`;
  };
  const loadK = loop('kv_tile', 'QK_STRIDE', 'KEYS', keyBody('k'));
  const loadV = loop('kv_tile', 'V_STRIDE', 'KEYS', keyBody('v'));
  const append = o.cache ? `  // the first query head of each KV group appends the group's new rows to the cache
  if (h % params.group == 0u) {
    for (var e = lid; e < ROWS * ${n}; e += THREADS) {
      let t = i0 + e / ${n};
      let dd = e % ${n};
      if (t < sq) {
        k_cache[${cacheAt('k', '(g_past + t)')}] = rotated(${head('k', 'hk', 't')}, dd, g_start + t - g_rope_base);
        v_cache[${cacheAt('v', '(g_past + t)')}] = qkv[(${head('v', 'hk', 't')}) / ${unit}u + dd];
      }
    }
  }` : '';
  return { declarations, sequence, loadQ, loadK, loadV, append };
}
