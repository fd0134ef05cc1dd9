// Non-causal linear attention with a built-in feature map ('elu+1', 'relu') on tensor cores, fused
// (issue 13; FUSEDATTN_APPROX_TIER=fused): no f32 φ, [V|1] or numerator planes in global memory.
// The state kernel and the helpers below also serve the causal form (fused-causal.wgsl.ts).
// Shape legend: P = B·Nkv key planes, bh = b·Nq + h query planes, F = D features (FP padded to the
// feature tile), Dv (DVP padded to the value tile), C key chunks of KC keys.
//   1 state   grid (C, P, fTiles·vTiles): φ(K chunk) applied while staged (16-byte loads, f16 in
//             workgroup memory), V chunk f16; part[P][C][FP][DVP] = φ(K)ᵀ·V in f32 result matrices
//             (the left operand φ(K)ᵀ loaded col_major from the [key][feature] tile), zpart[P][C][FP]
//             = Σ_k φ(k) (registers while staging, then a fixed-order sum over the threads)
//   2 reduce  the chunks summed in chunk order (deterministic, no atomics), times alpha = 1/Sk so
//             the state fits f16 (alpha cancels in num / den, tier.ts): state f16 [P][FP][DVP],
//             z f32 [P][FP]
//   3 output  grid (query blocks, bh, vTiles): num = φ(Q)·state on tensor cores (K steps over FP),
//             den = φ(Q)·z (registers while staging), out = num / den (0 where den = 0) in q's
//             layout and dtype.
// Tiles: M x N outputs per workgroup over (M/32) x (N/64) subgroups of 2 x 4 result matrices.
// Every workgroup variable is a multiple of 16 bytes and every matrix load starts on a 16-byte
// boundary (docs/GPU-NOTES.md); staged rows are padded by 16 bytes; matrix offsets and strides
// into array<vec4<u32>> count vec4s (8 halves). Index arithmetic is in named `let`s that
// test/approx-fused-wgsl.test.ts replays.
import { UniformLayout } from '../../../engines/webgpu/uniforms.js';

/** The built-in maps, or 'identity': q and k are features already (Performer, expression maps: fused-features.ts). */
export type FusedFeatureMap = 'elu+1' | 'relu' | 'identity';

export interface FusedLinearOptions {
  dtype: 'float32' | 'float16';
  map: FusedFeatureMap;
  /**
   * Inputs read 8 elements at a time (16 bytes f16, 2 x 16 f32): d contiguous, offsets and b/h/s
   * strides multiples of 8, D and Dv multiples of 8. Otherwise 8 strided, bounds-checked scalars.
   */
  vec: boolean;
  /** Rows of a tile (state: features; output: query rows) and its columns (value columns). */
  tm: 64 | 128;
  tn: 64 | 128;
}

export interface FusedOutputOptions extends FusedLinearOptions {
  /** Outputs stored 8 at a time (Dv and the output's b/h/s strides multiples of 8). */
  vecOut: boolean;
}

/** Keys (state) or features (output) per staged step. */
export const FUSED_KT = 32;

export const FUSED_PARAMS = new UniformLayout('FusedParams', {
  /** Element strides (b, h, s, d) of q, k, v and out. */
  q_str: 'vec4u',
  k_str: 'vec4u',
  v_str: 'vec4u',
  o_str: 'vec4u',
  q_off: 'u32',
  k_off: 'u32',
  v_off: 'u32',
  /** Query heads, query heads per key head, key heads. */
  heads: 'u32',
  group: 'u32',
  kv_heads: 'u32',
  seq_q: 'u32',
  seq_k: 'u32',
  dim: 'u32',
  dim_v: 'u32',
  /** Keys per chunk (a multiple of FUSED_KT) and chunks. */
  chunk_keys: 'u32',
  chunks: 'u32',
  fp: 'u32',
  dvp: 'u32',
  /** 1 / Sk (reduce). */
  alpha: 'f32',
  /** Vec4 quads per plane of the reduce: FP·DVP/4 state quads, then FP/4 z quads. */
  quads: 'u32',
  /**
   * Causal: chunk c holds keys [c·KC − key_shift, (c+1)·KC − key_shift) (clipped at 0), so that
   * chunk boundaries fall on the query tiles' diagonals where they can; 0 when non-causal.
   */
  key_shift: 'u32',
  /** Causal: Sk − Sq (row i sees keys j <= i + off, bottom-right aligned). */
  off: 'u32',
});

export const FUSED_BINDINGS = { params: 0, q: 1, k: 1, v: 2, part: 3, zpart: 4, state: 5, z: 6, out: 7, keys: 8 } as const;

export function fusedGeometry(o: { tm: number; tn: number }) {
  const sgM = o.tm / 32;
  const sgN = o.tn / 64;
  const threads = sgM * sgN * 32;
  return { sgM, sgN, threads, fragM: 2, fragN: 4 };
}

/** Bytes of workgroup memory of each kernel (every array a multiple of 16 bytes). */
export function fusedWorkgroupBytes(kind: 'state' | 'output', o: { tm: number; tn: number }): number {
  const g = fusedGeometry(o);
  const ktRow = FUSED_KT / 8 + 1;
  if (kind === 'state') return (FUSED_KT * (o.tm / 8 + 1) + FUSED_KT * (o.tn / 8 + 1)) * 16 + g.threads * 32;
  const chunksA = (o.tm * FUSED_KT) / 8 / g.threads;
  return (o.tm * ktRow + FUSED_KT * (o.tn / 8 + 1)) * 16 + g.sgM * g.sgN * 16 * 20 * 4 + g.threads * chunksA * 4 + o.tm * 4;
}

export const HEADER = `enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium.subgroup_matrix_uniformity);
`;

/** φ of 4 values, per the built-in map. */
export function phiFn(map: FusedFeatureMap): string {
  const body = map === 'elu+1' ? 'select(exp(x), x + vec4<f32>(1.0), x > vec4<f32>(0.0))' : map === 'relu' ? 'max(x, vec4<f32>(0.0))' : 'x';
  return `fn phi4(x: vec4<f32>) -> vec4<f32> { return ${body}; }`;
}

/**
 * `fn eight_NAME(base: u32, d: u32, dim: u32, sd: u32) -> Eight`: elements d .. d+7 of the row at
 * element `base` (its d = 0) of tensor NAME, as f32, 0 past `dim`.
 */
export function eightFn(name: string, o: FusedLinearOptions): string {
  if (o.vec && o.dtype === 'float16') {
    return `fn eight_${name}(base: u32, d: u32, dim: u32, sd: u32) -> Eight {
  if (d >= dim) { return Eight(); }
  let w = ${name}_buf[(base + d) / 8u];
  return Eight(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)), vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w)));
}`;
  }
  if (o.vec) {
    return `fn eight_${name}(base: u32, d: u32, dim: u32, sd: u32) -> Eight {
  if (d >= dim) { return Eight(); }
  let i = (base + d) / 4u;
  return Eight(${name}_buf[i], ${name}_buf[i + 1u]);
}`;
  }
  const at = o.dtype === 'float16' ? `unpack2x16float(${name}_buf[e >> 1u])[e & 1u]` : `${name}_buf[e]`;
  return `fn eight_${name}(base: u32, d: u32, dim: u32, sd: u32) -> Eight {
  var x = array<f32, 8>();
  for (var i = 0u; i < 8u; i++) {
    if (d + i < dim) {
      let e = base + (d + i) * sd;
      x[i] = ${at};
    }
  }
  return Eight(vec4<f32>(x[0], x[1], x[2], x[3]), vec4<f32>(x[4], x[5], x[6], x[7]));
}`;
}

export function inputBinding(binding: number, name: string, o: FusedLinearOptions): string {
  const elem = o.dtype === 'float16' ? (o.vec ? 'vec4<u32>' : 'u32') : (o.vec ? 'vec4<f32>' : 'f32');
  return `@group(0) @binding(${binding}) var<storage, read> ${name}_buf: array<${elem}>;`;
}

export const EIGHT = `struct Eight { lo: vec4<f32>, hi: vec4<f32> }
fn pack8(x: Eight) -> vec4<u32> {
  return vec4<u32>(pack2x16float(x.lo.xy), pack2x16float(x.lo.zw), pack2x16float(x.hi.xy), pack2x16float(x.hi.zw));
}
fn unpack8(w: vec4<u32>) -> Eight {
  return Eight(vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)), vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w)));
}
// φ of the in-range elements of a chunk whose first element is feature d (0 past dim: φ(0) is not 0)
fn phi8(x: Eight, d: u32, dim: u32) -> Eight {
  let lo = select(vec4<f32>(0.0), phi4(x.lo), vec4<u32>(d) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(dim));
  let hi = select(vec4<f32>(0.0), phi4(x.hi), vec4<u32>(d) + vec4<u32>(4u, 5u, 6u, 7u) < vec4<u32>(dim));
  return Eight(lo, hi);
}`;

/** The matrix products of one staged step: 2 x 4 result matrices per subgroup. */
export function mmaStep(add: (s: string) => void, left: (i: number, kk: number) => string, right: (j: number, kk: number) => string): void {
  for (let kk = 0; kk < FUSED_KT; kk += 16) {
    add('    {');
    for (let i = 0; i < 2; i++) add(`      let a${i} = ${left(i, kk)};`);
    for (let j = 0; j < 4; j++) add(`      let b${j} = ${right(j, kk)};`);
    for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) add(`      acc_${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, acc_${i}_${j});`);
    add('    }');
  }
}

export const LEFT = 'subgroup_matrix_left<f16, 16, 16>';
export const RIGHT = 'subgroup_matrix_right<f16, 16, 16>';
export const RESULT = 'subgroup_matrix_result<f32, 16, 16>';

/** Kernel 1: per (key chunk, key plane, tile) the partial state φ(K)ᵀV and Σ φ(k). */
export function buildFusedState(o: FusedLinearOptions): string {
  const g = fusedGeometry(o);
  const B = FUSED_BINDINGS;
  const KT = FUSED_KT;
  const cprK = o.tm / 8; // 8-half chunks per staged K row (features)
  const cprV = o.tn / 8;
  const chunksK = (KT * cprK) / g.threads;
  const chunksV = (KT * cprV) / g.threads;
  const lines: string[] = [];
  const add = (s: string) => lines.push(s);
  add(`// fusedattn linear attention (fused, ${o.map}, ${o.dtype}${o.vec ? ', 16-byte loads' : ', strided loads'}): partial states of one key chunk, ${o.tm} features x ${o.tn} value columns`);
  add(HEADER);
  add(FUSED_PARAMS.wgsl());
  add(`@group(0) @binding(${B.params}) var<uniform> p: FusedParams;`);
  add(inputBinding(B.k, 'k', o));
  add(inputBinding(B.v, 'v', o));
  add(`@group(0) @binding(${B.part}) var<storage, read_write> part: array<f32>;`);
  add(`@group(0) @binding(${B.zpart}) var<storage, read_write> zpart: array<f32>;`);
  add(phiFn(o.map));
  add(EIGHT);
  add(eightFn('k', o));
  add(eightFn('v', o));
  add('');
  add(`const TM = ${o.tm}u; const TN = ${o.tn}u; const KT = ${KT}u; const NT = ${g.threads}u;`);
  add(`const K_LD = ${cprK + 1}u;   // staged K row (one key, TM features) in vec4s, +16 bytes`);
  add(`const V_LD = ${cprV + 1}u;   // staged V row (one key, TN columns)`);
  add(`const CPR_K = ${cprK}u; const CPR_V = ${cprV}u; const ZROWS = ${g.threads / cprK}u;`);
  add(`var<workgroup> k_tile: array<vec4<u32>, ${KT * (cprK + 1)}>;   // [key][feature], φ applied`);
  add(`var<workgroup> v_tile: array<vec4<u32>, ${KT * (cprV + 1)}>;   // [key][column]`);
  add(`var<workgroup> z_red: array<vec4<f32>, ${2 * g.threads}>;   // per thread: Σ φ over its keys, 8 features`);
  add('');
  add(`@compute @workgroup_size(${g.threads})`);
  add('fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sg: u32) {');
  add('  let chunk = wg.x;');
  add('  let plane = wg.y;');
  add('  let v_tiles = p.dvp / TN;');
  add('  let f0 = (wg.z / v_tiles) * TM;');
  add('  let v0 = (wg.z % v_tiles) * TN;');
  add('  let b = plane / p.kv_heads;');
  add('  let head = plane % p.kv_heads;');
  add('  let k_row0 = p.k_off + b * p.k_str.x + head * p.k_str.y;');
  add('  let v_row0 = p.v_off + b * p.v_str.x + head * p.v_str.y;');
  add('  let key0 = max(chunk * p.chunk_keys, p.key_shift) - p.key_shift;   // (key_shift: the causal chunks, else 0)');
  add('  let key_end = min((chunk + 1u) * p.chunk_keys - p.key_shift, p.seq_k);');
  add('  let steps = (key_end - min(key0, key_end) + KT - 1u) / KT;');
  add(`  let sm = (sg / ${g.sgN}u) * 32u;   // this subgroup's features and columns in the tile`);
  add(`  let sn = (sg % ${g.sgN}u) * 64u;`);
  // NT is a multiple of CPR_K: a thread stages the same 8 features every step (z in registers)
  for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) add(`  var acc_${i}_${j} = ${RESULT}();`);
  add('  var z_lo = vec4<f32>(0.0);');
  add('  var z_hi = vec4<f32>(0.0);');
  for (let u = 0; u < chunksK; u++) add(`  var rk${u} = vec4<u32>();`);
  for (let u = 0; u < chunksV; u++) add(`  var rv${u} = vec4<u32>();`);
  // chunk t of the K tile: key t / CPR_K, features (t % CPR_K)·8; of the V tile: key t / CPR_V
  const fetch = (step: string) => emitKvFetch(add, step, { chunksK, chunksV, threads: g.threads, first: 'key0', end: 'key_end', cprK: 'CPR_K', f0: 'f0 + ' });
  add('  if (steps > 0u) {');
  fetch('0u');
  add('  }');
  add('  for (var step = 0u; step < steps; step++) {');
  add('    workgroupBarrier();   // the previous step\'s matrix loads are done with the tiles');
  for (let u = 0; u < chunksK; u++) {
    add(`    { let tk = lid + ${u * g.threads}u; let k_dst = (tk / CPR_K) * K_LD + tk % CPR_K; k_tile[k_dst] = rk${u}; }`);
    add(`    { let zf = unpack8(rk${u}); z_lo += zf.lo; z_hi += zf.hi; }`);
  }
  for (let u = 0; u < chunksV; u++) add(`    { let tv = lid + ${u * g.threads}u; let v_dst = (tv / CPR_V) * V_LD + tv % CPR_V; v_tile[v_dst] = rv${u}; }`);
  add('    workgroupBarrier();');
  add('    if (step + 1u < steps) {   // the next step\'s global loads in flight during the math');
  fetch('(step + 1u)');
  add('    }');
  // left (feature f, key c) = k_tile[key c][f]: column-major, a column per key, stride K_LD
  mmaStep(add,
    (i, kk) => `subgroupMatrixLoad<${LEFT}, col_major>(&k_tile, ${kk}u * K_LD + (sm + ${i * 16}u) / 8u, K_LD)`,
    (j, kk) => `subgroupMatrixLoad<${RIGHT}, row_major>(&v_tile, ${kk}u * V_LD + (sn + ${j * 16}u) / 8u, V_LD)`);
  add('  }');
  add('  // partial state: padded planes, so every result matrix is stored whole');
  add('  let part_base = ((plane * p.chunks + chunk) * p.fp + f0) * p.dvp + v0;');
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 4; j++) add(`  subgroupMatrixStore<row_major>(&part, part_base + (sm + ${i * 16}u) * p.dvp + sn + ${j * 16}u, acc_${i}_${j}, p.dvp);`);
  }
  add('  // Σ φ(k): the threads staging the same features, summed in thread order');
  add('  z_red[2u * lid] = z_lo;');
  add('  z_red[2u * lid + 1u] = z_hi;');
  add('  workgroupBarrier();');
  add('  if (v0 == 0u && lid < 2u * CPR_K) {');
  add('    var z = vec4<f32>(0.0);');
  add('    for (var r = 0u; r < ZROWS; r++) {');
  add('      let z_src = 2u * (r * CPR_K + lid / 2u) + lid % 2u;');
  add('      z += z_red[z_src];');
  add('    }');
  add('    let z_dst = (plane * p.chunks + chunk) * p.fp + f0 + lid * 4u;');
  add('    zpart[z_dst] = z.x; zpart[z_dst + 1u] = z.y; zpart[z_dst + 2u] = z.z; zpart[z_dst + 3u] = z.w;');
  add('  }');
  add('}');
  return lines.join('\n') + '\n';
}

/**
 * The chunk sums' kernels (the reduce here, the causal scan): bindings and the start of main(), one
 * thread per quad `e` of a plane's FP·DVP/4 state quads then FP/4 z quads.
 */
export function chunkSumHeader(comment: string): string {
  const B = FUSED_BINDINGS;
  return `${comment}
${FUSED_PARAMS.wgsl()}
@group(0) @binding(${B.params}) var<uniform> p: FusedParams;
@group(0) @binding(${B.part}) var<storage, read> part: array<vec4<f32>>;
@group(0) @binding(${B.zpart}) var<storage, read> zpart: array<vec4<f32>>;
@group(0) @binding(${B.state}) var<storage, read_write> state: array<vec2<u32>>;
@group(0) @binding(${B.z}) var<storage, read_write> z: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = wg.x * 256u + lid;
  let plane = wg.y;
  let state_quads = p.fp * p.dvp / 4u;`;
}

/** Kernel 2: the chunks' partial states and sums added in chunk order, times alpha; state as f16. */
export function buildFusedReduce(): string {
  return `${chunkSumHeader('// fusedattn linear attention (fused): key chunks summed in order, state times 1/Sk as f16, z times 1/Sk')}
  if (e >= p.quads) { return; }
  var acc = vec4<f32>(0.0);
  if (e < state_quads) {
    for (var c = 0u; c < p.chunks; c++) { acc += part[(plane * p.chunks + c) * state_quads + e]; }
    acc *= p.alpha;
    state[plane * state_quads + e] = vec2<u32>(pack2x16float(acc.xy), pack2x16float(acc.zw));
  } else {
    let zq = e - state_quads;
    for (var c = 0u; c < p.chunks; c++) { acc += zpart[(plane * p.chunks + c) * (p.fp / 4u) + zq]; }
    z[plane * (p.fp / 4u) + zq] = acc * p.alpha;
  }
}
`;
}

/** Kernel 3: per (query block, query plane, value tile) out = φ(Q)·state / φ(Q)·z. */
export function buildFusedOutput(o: FusedOutputOptions): string {
  const g = fusedGeometry(o);
  const B = FUSED_BINDINGS;
  const KT = FUSED_KT;
  const cprA = KT / 8; // chunks per staged φ(Q) row (KT features)
  const cprB = o.tn / 8;
  const chunksA = (o.tm * cprA) / g.threads;
  const chunksB = (KT * cprB) / g.threads;
  const f16 = o.dtype === 'float16';
  const lines: string[] = [];
  const add = (s: string) => lines.push(s);
  add(`// fusedattn linear attention (fused, ${o.map}, ${o.dtype}${o.vec ? ', 16-byte loads' : ', strided loads'}${o.vecOut ? ', 16-byte stores' : ''}): out = φ(Q)·state / φ(Q)·z, ${o.tm} rows x ${o.tn} columns`);
  add(HEADER);
  add(FUSED_PARAMS.wgsl());
  add(`@group(0) @binding(${B.params}) var<uniform> p: FusedParams;`);
  add(inputBinding(B.q, 'q', o));
  add(`@group(0) @binding(${B.state}) var<storage, read> state: array<vec4<u32>>;`);
  add(`@group(0) @binding(${B.z}) var<storage, read> z: array<vec4<f32>>;`);
  // scalar f16 stores as array<f16> elements: two invocations never share a 32-bit word's read-modify-write
  const outElem = o.vecOut ? (f16 ? 'vec4<u32>' : 'vec4<f32>') : (f16 ? 'f16' : 'f32');
  add(`@group(0) @binding(${B.out}) var<storage, read_write> out: array<${outElem}>;`);
  add(phiFn(o.map));
  add(EIGHT);
  add(eightFn('q', o));
  add('');
  add(`const TM = ${o.tm}u; const TN = ${o.tn}u; const KT = ${KT}u; const NT = ${g.threads}u;`);
  add(`const A_LD = ${cprA + 1}u;   // staged φ(Q) row (one query, KT features) in vec4s`);
  add(`const B_LD = ${cprB + 1}u;   // staged state row (one feature, TN columns)`);
  add(`const CPR_A = ${cprA}u; const CPR_B = ${cprB}u; const CS = 20u;`);
  add(`var<workgroup> a_tile: array<vec4<u32>, ${o.tm * (cprA + 1)}>;   // [query][feature], φ applied`);
  add(`var<workgroup> b_tile: array<vec4<u32>, ${KT * (cprB + 1)}>;   // [feature][column]`);
  add(`var<workgroup> c_tile: array<f32, ${g.sgM * g.sgN * 16 * 20}>;   // per subgroup: one result matrix, rows of CS`);
  add(`var<workgroup> den_part: array<f32, ${g.threads * chunksA}>;   // per thread and staged row: its features' share of φ(q)·z`);
  add(`var<workgroup> den: array<f32, ${o.tm}>;`);
  add('');
  add(`@compute @workgroup_size(${g.threads})`);
  add('fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,');
  add('        @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32) {');
  add('  let q0 = wg.x * TM;');
  add('  let bh = wg.y;');
  add('  let v0 = wg.z * TN;');
  add('  let b = bh / p.heads;');
  add('  let head = bh % p.heads;');
  add('  let plane = b * p.kv_heads + head / p.group;');
  add('  let q_row0 = p.q_off + b * p.q_str.x + head * p.q_str.y;');
  add('  let steps = p.fp / KT;');
  add(`  let sm = (sg / ${g.sgN}u) * 32u;   // this subgroup's rows and columns in the tile`);
  add(`  let sn = (sg % ${g.sgN}u) * 64u;`);
  for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) add(`  var acc_${i}_${j} = ${RESULT}();`);
  for (let u = 0; u < chunksA; u++) add(`  var ra${u} = vec4<u32>();`);
  for (let u = 0; u < chunksB; u++) add(`  var rb${u} = vec4<u32>();`);
  for (let u = 0; u < chunksA; u++) add(`  var dp${u} = 0.0;`);
  const fetch = (step: string) => {
    for (let u = 0; u < chunksA; u++) {
      add('    {');
      add(`      let ta = lid + ${u * g.threads}u;`);
      add('      let row = q0 + ta / CPR_A;');
      add(`      let fd = ${step} * KT + (ta % CPR_A) * 8u;`);
      add(`      ra${u} = vec4<u32>();`);
      add(`      if (row < p.seq_q) { ra${u} = pack8(phi8(eight_q(q_row0 + row * p.q_str.z, fd, p.dim, p.q_str.w), fd, p.dim)); }`);
      add('    }');
    }
    for (let u = 0; u < chunksB; u++) {
      add('    {');
      add(`      let tb = lid + ${u * g.threads}u;`);
      add(`      let st_src = ((plane * p.fp + ${step} * KT + tb / CPR_B) * p.dvp + v0 + (tb % CPR_B) * 8u) / 8u;`);
      add(`      rb${u} = state[st_src];`);
      add('    }');
    }
  };
  fetch('0u');
  add('  for (var step = 0u; step < steps; step++) {');
  add('    workgroupBarrier();');
  for (let u = 0; u < chunksA; u++) {
    add(`    { let ta = lid + ${u * g.threads}u; let a_dst = (ta / CPR_A) * A_LD + ta % CPR_A; a_tile[a_dst] = ra${u};`);
    add(`      let zi = (plane * p.fp + step * KT + (ta % CPR_A) * 8u) / 4u; let x = unpack8(ra${u}); dp${u} += dot(x.lo, z[zi]) + dot(x.hi, z[zi + 1u]); }`);
  }
  for (let u = 0; u < chunksB; u++) add(`    { let tb = lid + ${u * g.threads}u; let b_dst = (tb / CPR_B) * B_LD + tb % CPR_B; b_tile[b_dst] = rb${u}; }`);
  add('    workgroupBarrier();');
  add('    if (step + 1u < steps) {');
  fetch('(step + 1u)');
  add('    }');
  mmaStep(add,
    (i, kk) => `subgroupMatrixLoad<${LEFT}, row_major>(&a_tile, (sm + ${i * 16}u) * A_LD + ${kk / 8}u, A_LD)`,
    (j, kk) => `subgroupMatrixLoad<${RIGHT}, row_major>(&b_tile, ${kk}u * B_LD + (sn + ${j * 16}u) / 8u, B_LD)`);
  add('  }');
  add('  // den per row: the CPR_A threads that staged its features, in order');
  for (let u = 0; u < chunksA; u++) add(`  den_part[lid + ${u * g.threads}u] = dp${u};`);
  add('  workgroupBarrier();');
  add('  for (var r = lid; r < TM; r += NT) {');
  add('    var sum = 0.0;');
  add('    for (var c = 0u; c < CPR_A; c++) { let dp_src = r * CPR_A + c; sum += den_part[dp_src]; }');
  add('    den[r] = sum;');
  add('  }');
  add('  workgroupBarrier();');
  emitNormalizedStores(add, { vecOut: o.vecOut, f16, scratch: 'c_tile' });
  add('}');
  return lines.join('\n') + '\n';
}

/**
 * The output kernels' epilogue: each of a subgroup's 2 x 4 result matrices through its 16 x CS
 * f32 scratch in `scratch`; lane pair (2r, 2r+1) writes row r, 8 columns each, num · (1 / den[row])
 * (0 where den = 0), in the output's dtype, 16 bytes at a time when `vecOut`. `e` names the scalar
 * path's loop variable (the caller may have a `let e` of its own).
 */
export function emitNormalizedStores(add: (s: string) => void, o: { vecOut: boolean; f16: boolean; scratch: string; e?: string }): void {
  const t = o.scratch;
  const e = o.e ?? 'e';
  add('  // epilogue: each result matrix through this subgroup\'s scratch; lane pair (2r, 2r+1) writes row r, 8 columns each');
  add('  let sbase = sg * 16u * CS;');
  add('  let rr = lane / 2u;');
  add('  let side = lane % 2u;');
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 4; j++) {
      add(`  subgroupMatrixStore<row_major>(&${t}, sbase, acc_${i}_${j}, CS);`);
      add('  workgroupBarrier();');
      add('  {');
      add(`    let lrow = sm + ${i * 16}u + rr;`);
      add('    let row = q0 + lrow;');
      add(`    let col = v0 + sn + ${j * 16}u + side * 8u;`);
      add('    let src = sbase + rr * CS + side * 8u;');
      add('    let o_at = b * p.o_str.x + head * p.o_str.y + row * p.o_str.z + col * p.o_str.w;');
      add('    let d = den[lrow];');
      add('    let inv = select(0.0, 1.0 / d, d != 0.0);');
      if (o.vecOut) {
        add('    if (row < p.seq_q && col < p.dim_v) {');
        add(`      let lo = vec4<f32>(${t}[src], ${t}[src + 1u], ${t}[src + 2u], ${t}[src + 3u]) * inv;`);
        add(`      let hi = vec4<f32>(${t}[src + 4u], ${t}[src + 5u], ${t}[src + 6u], ${t}[src + 7u]) * inv;`);
        if (o.f16) add('      out[o_at / 8u] = pack8(Eight(lo, hi));');
        else add('      out[o_at / 4u] = lo;\n      out[o_at / 4u + 1u] = hi;');
        add('    }');
      } else {
        add('    if (row < p.seq_q) {');
        add(`      for (var ${e} = 0u; ${e} < 8u; ${e}++) {`);
        const value = o.f16 ? `f16(${t}[src + ${e}] * inv)` : `${t}[src + ${e}] * inv`;
        add(`        if (col + ${e} < p.dim_v) { out[o_at + ${e} * p.o_str.w] = ${value}; }`);
        add('      }');
        add('    }');
      }
      add('  }');
      add('  workgroupBarrier();   // the scratch is read before the next matrix overwrites it');
    }
  }
}

/**
 * Staging of one key step into registers, for the state kernel and the causal output kernel:
 * rk<u> = φ(K) chunks (8 features of key `first + step·KT + t / cprK`), rv<u> = V chunks (8 columns
 * from v0), zero past `end` and past the dims (chunk t = lid + u·threads).
 */
export function emitKvFetch(add: (s: string) => void, step: string, o: { chunksK: number; chunksV: number; threads: number; first: string; end: string; cprK: string; f0: string }): void {
  for (let u = 0; u < o.chunksK; u++) {
    add('    {');
    add(`      let tk = lid + ${u * o.threads}u;`);
    add(`      let key = ${o.first} + ${step} * KT + tk / ${o.cprK};`);
    add(`      let fd = ${o.f0}(tk % ${o.cprK}) * 8u;`);
    add(`      rk${u} = vec4<u32>();`);
    add(`      if (key < ${o.end}) { rk${u} = pack8(phi8(eight_k(k_row0 + key * p.k_str.z, fd, p.dim, p.k_str.w), fd, p.dim)); }`);
    add('    }');
  }
  for (let u = 0; u < o.chunksV; u++) {
    add('    {');
    add(`      let tv = lid + ${u * o.threads}u;`);
    add(`      let vkey = ${o.first} + ${step} * KT + tv / CPR_V;`);
    add('      let vd = v0 + (tv % CPR_V) * 8u;');
    add(`      rv${u} = vec4<u32>();`);
    add(`      if (vkey < ${o.end}) { rv${u} = pack8(eight_v(v_row0 + vkey * p.v_str.z, vd, p.dim_v, p.v_str.w)); }`);
    add('    }');
  }
}
