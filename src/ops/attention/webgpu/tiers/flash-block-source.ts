// The tensor-core flash kernel's "block source" (an internal option, for the fused attention block
// of src/block): instead of separate Q, K, V tensors it reads one packed QKV buffer, the output of
// the block's QKV GEMM, applies RoPE to Q and to the new K rows while staging them, and with a KV
// cache reads positions < start from the cache and appends the new rotated K and V rows to it.
// FlashAttention's flash_attn_with_kvcache(q, k_cache, v_cache, k, v, rotary_cos, rotary_sin,
// cache_seqlens, causal) is the precedent: rotary and the cache append inside the kernel.
//
//   QKV    [rows, W] float16 (array<vec4<u32>>, 8 halves per element): Q of head h of token t of
//          sequence b at P.qOff + b P.qSb + t P.qSs + h P.qSh (the Params strides), K and V likewise
//   ROPE   float32 cos [R, D/2] then sin [R, D/2]; position p uses table row p - rope_base
//   STEP   u32 [start, rope_base]: token t is at position start + t (a buffer, so a recorded scope
//          replays with the caller's new start)
//   caches float32 [capacity, B, Nkv D] (SBH rows), after RoPE: read below `past`, written from it
// Keys: position j < past comes from the cache, j >= past is new token j - past. past = start with
// a cache; 0 without one (the tokens attend only to each other, start only shifts RoPE positions).
// Only the first query-head tile of each KV group writes the group's new rows, and no workgroup
// reads cache positions >= past, so the writes race with nothing.
import { UniformLayout } from '../../../../engines/webgpu/uniforms.js';

export interface FlashBlockSource {
  /** Read positions < start from the f32 KV cache and append the new rows to it. */
  cache: boolean;
}

export const FLASH_BLOCK_PARAMS = new UniformLayout('FlashBlockParams', {
  /** S, new tokens per sequence. */
  seq: 'u32',
  /** Nkv D, the cache row width. */
  kv_width: 'u32',
  /** Element offsets of the cache bindings. */
  kc_off: 'u32',
  vc_off: 'u32',
  /** R, rows of the cos table (sin starts at R D/2). */
  rope_rows: 'u32',
});

/** Bindings in block mode (0, 2 and 5 keep their meaning: Params, Q source, O). */
export const FLASH_BLOCK_BINDINGS = { params: 0, step: 1, qkv: 2, rope: 3, blockParams: 4, out: 5, kCache: 6, vCache: 7 } as const;

/** Why the kernel options cannot take a block source (undefined: they can). */
export function blockSourceProblem(o: { dimQK: number; dimRope: number; dimV: number; vectorLoads: boolean; smemVec4: boolean; returnLse: boolean; alibi: boolean }): string | undefined {
  if (o.dimRope !== 0 || o.dimQK !== o.dimV) return 'the block source needs Dq = Dv and no split RoPE part';
  if (o.dimQK % 16 !== 0) return 'the block source rotates whole 8-half chunks: the head dim must be a multiple of 16';
  if (!o.vectorLoads || !o.smemVec4) return 'the block source needs vectorLoads and smemVec4';
  if (o.returnLse || o.alibi) return 'the block source returns no LSE and has no ALiBi';
  return undefined;
}

/** Declarations of block mode: bindings, the per-workgroup position state, the load functions. */
export function blockSourceDeclarations(o: FlashBlockSource, dim: number): string {
  const B = FLASH_BLOCK_BINDINGS;
  const half = dim / 2;
  const rot = [0, 1, 2, 3].map((q) => {
    const cs = q < 2 ? `c0.${q === 0 ? 'xy' : 'zw'}` : `c1.${q === 2 ? 'xy' : 'zw'}`;
    const sn = q < 2 ? `s0.${q === 0 ? 'xy' : 'zw'}` : `s1.${q === 2 ? 'xy' : 'zw'}`;
    return `unpack2x16float(x[${q}]) * ${cs} + sgn * unpack2x16float(y[${q}]) * ${sn}`;
  });
  const lines = [
    FLASH_BLOCK_PARAMS.wgsl(),
    `@group(0) @binding(${B.step}) var<storage, read> STEP: array<u32>;`,
    `@group(0) @binding(${B.qkv}) var<storage, read> QKV: array<vec4<u32>>;`,
    `@group(0) @binding(${B.rope}) var<storage, read> ROPE: array<vec4<f32>>;`,
    `@group(0) @binding(${B.blockParams}) var<uniform> BP: FlashBlockParams;`,
    `@group(0) @binding(${B.out}) var<storage, read_write> O: array<f16>;`,
    ...(o.cache ? [
      `@group(0) @binding(${B.kCache}) var<storage, read_write> KC: array<vec4<f32>>;`,
      `@group(0) @binding(${B.vCache}) var<storage, read_write> VC: array<vec4<f32>>;`,
    ] : []),
    '',
    `const HALF = ${half}u;   // RoPE rotates pairs (d, d + HALF)`,
    'var<private> gStart: u32;      // position of new token 0',
    'var<private> gRopeBase: u32;   // position of RoPE table row 0',
    'var<private> gPast: u32;       // keys read from the cache',
    '',
    '/** Elements c .. c+7 (c % 8 == 0) of the head vector at QKV half `base`, rotated with table row trow, in f32. */',
    'fn ropeChunkF32(base: u32, c: u32, trow: u32) -> array<vec4<f32>, 2> {',
    '  let x = QKV[(base + c) / 8u];',
    '  let lower = c < HALF;',
    '  let y = QKV[(base + select(c - HALF, c + HALF, lower)) / 8u];',
    '  // rotate half: d < HALF: x cos - x[d + HALF] sin; d >= HALF: x cos + x[d - HALF] sin',
    '  let sgn = select(1.0, -1.0, lower);',
    '  let cb = trow * (HALF / 4u) + (c % HALF) / 4u;',
    '  let sb = (BP.rope_rows + trow) * (HALF / 4u) + (c % HALF) / 4u;',
    '  let c0 = ROPE[cb]; let c1 = ROPE[cb + 1u];',
    '  let s0 = ROPE[sb]; let s1 = ROPE[sb + 1u];',
    `  let r0 = ${rot[0]};`,
    `  let r1 = ${rot[1]};`,
    `  let r2 = ${rot[2]};`,
    `  let r3 = ${rot[3]};`,
    '  return array<vec4<f32>, 2>(vec4<f32>(r0, r1), vec4<f32>(r2, r3));',
    '}',
    '',
    'fn packChunk(v: array<vec4<f32>, 2>) -> vec4<u32> {',
    '  return vec4<u32>(pack2x16float(v[0].xy), pack2x16float(v[0].zw), pack2x16float(v[1].xy), pack2x16float(v[1].zw));',
    '}',
    '',
    'fn unpackChunk(w: vec4<u32>) -> array<vec4<f32>, 2> {',
    '  return array<vec4<f32>, 2>(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)), vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w)));',
    '}',
    '',
    '/** 8 halves of Q (row = token) for the Q tile, rotated. */',
    'fn fetchRowsQ(c: u32, valid: bool, b: u32, h: u32, row: u32) -> vec4<u32> {',
    '  if (!valid || c >= DQ) { return vec4<u32>(); }',
    '  return packChunk(ropeChunkF32(P.qOff + b * P.qSb + row * P.qSs + h * P.qSh, c, gStart + row - gRopeBase));',
    '}',
    'fn copyRowsQ(dst: u32, c: u32, valid: bool, b: u32, h: u32, row: u32) { KVs[dst / 8u] = fetchRowsQ(c, valid, b, h, row); }',
    '',
    '/** 8 halves of the key at position j (cache below gPast, else new token j - gPast, rotated). */',
    'fn fetchRowsK(c: u32, valid: bool, b: u32, h: u32, j: u32) -> vec4<u32> {',
    '  if (!valid || c >= DQ) { return vec4<u32>(); }',
    ...(o.cache ? [
      '  if (j < gPast) {',
      '    let at = (BP.kc_off + (j * P.batch + b) * BP.kv_width + h * DQ + c) / 4u;',
      '    return packChunk(array<vec4<f32>, 2>(KC[at], KC[at + 1u]));',
      '  }',
    ] : []),
    '  let t = j - gPast;',
    '  return packChunk(ropeChunkF32(P.kOff + b * P.kSb + t * P.kSs + h * P.kSh, c, gStart + t - gRopeBase));',
    '}',
    'fn copyRowsK(dst: u32, c: u32, valid: bool, b: u32, h: u32, j: u32) { KVs[dst / 8u] = fetchRowsK(c, valid, b, h, j); }',
    '',
    '/** 8 halves of the value at position j. */',
    'fn fetchRowsV(c: u32, valid: bool, b: u32, h: u32, j: u32) -> vec4<u32> {',
    '  if (!valid || c >= DV) { return vec4<u32>(); }',
    ...(o.cache ? [
      '  if (j < gPast) {',
      '    let at = (BP.vc_off + (j * P.batch + b) * BP.kv_width + h * DV + c) / 4u;',
      '    return packChunk(array<vec4<f32>, 2>(VC[at], VC[at + 1u]));',
      '  }',
    ] : []),
    '  let t = j - gPast;',
    '  return QKV[(P.vOff + b * P.vSb + t * P.vSs + h * P.vSh + c) / 8u];',
    '}',
    'fn copyRowsV(dst: u32, c: u32, valid: bool, b: u32, h: u32, j: u32) { KVs[dst / 8u] = fetchRowsV(c, valid, b, h, j); }',
  ];
  return lines.join('\n');
}

/** In main, where the plain kernel reads its sequence table: positions from STEP, lengths from BP. */
export function blockSourceSequence(o: FlashBlockSource): string {
  return [
    '  // block source: S new tokens, keys = past (cache) + S; start and the table base from STEP',
    `  if (li == 0u) { seqW = vec4<u32>(STEP[0], STEP[1], BP.seq, ${o.cache ? 'STEP[0] + ' : ''}BP.seq); }`,
    '  let seq = workgroupUniformLoad(&seqW);',
    '  gStart = seq.x; gRopeBase = seq.y; gPast = seq.w - seq.z;',
    '  let startQ = 0u; let startK = 0u; let lenQ = seq.z; let lenK = seq.w;',
  ].join('\n');
}

/**
 * In main after the Q tile is staged: the first query-head tile of each KV group appends its rows'
 * rotated K and V (as f32) to the cache at positions past + i.
 */
export function blockSourceCacheAppend(o: FlashBlockSource): string {
  if (!o.cache) return '';
  return [
    '  if (h0 % P.group == 0u) {',
    '    for (var t = li; t < ROWS_PER_HEAD * (DQ / 8u); t += NT) {',
    '      let i = q0 + t / (DQ / 8u);',
    '      let c = (t % (DQ / 8u)) * 8u;',
    '      if (i < lenQ) {',
    '        let k = ropeChunkF32(P.kOff + b * P.kSb + i * P.kSs + hk * P.kSh, c, gStart + i - gRopeBase);',
    '        let kat = (BP.kc_off + ((gPast + i) * P.batch + b) * BP.kv_width + hk * DQ + c) / 4u;',
    '        KC[kat] = k[0];',
    '        KC[kat + 1u] = k[1];',
    '        let v = unpackChunk(QKV[(P.vOff + b * P.vSb + i * P.vSs + hk * P.vSh + c) / 8u]);',
    '        let vat = (BP.vc_off + ((gPast + i) * P.batch + b) * BP.kv_width + hk * DV + c) / 4u;',
    '        VC[vat] = v[0];',
    '        VC[vat + 1u] = v[1];',
    '      }',
    '    }',
    '  }',
  ].join('\n');
}
