// Causal linear attention (fused, issue 13): the chunks' prefix states in one pass, a workgroup per
// (key plane, 64 features x 64 value columns) walking the keys in order with the running state
// φ(K)ᵀV in its result matrices. At each chunk boundary e it writes what the causal output kernel
// reads (fused-causal.wgsl.ts): state[P][e] = α_e · Σ_{keys before chunk e} φ(k)ᵀv as f16 and
// z[P][e] = α_e · Σ φ(k), with α_e = 1 / ((e + 1)·KC).
//
// Why: the two-kernel form (fused.wgsl.ts's state kernel per chunk, then an exclusive scan) writes
// an f32 partial state per chunk and reads it back (B4 H32 S4096 D128: 268 MB each way at 128-key
// chunks, 0.57 + 0.12 ms on the H200), more than the non-causal call's whole state work. Here the
// only traffic is K, V once and the f16 states once, and shorter chunks cost only their f16 writes.
//
// Legend as fused.wgsl.ts (chunk c holds keys [c·KC − shift, (c+1)·KC − shift), clipped at 0). The
// accumulators reach the f16 state through an f32 staging tile (matrices are opaque), one barrier
// pair per boundary; the next step's K and V are in registers across every barrier, including the
// chunk boundaries. Index arithmetic is in named `let`s that test/approx-fused-causal-wgsl.test.ts replays.
import {
  EIGHT, FUSED_BINDINGS, FUSED_KT, FUSED_PARAMS, type FusedLinearOptions, HEADER, LEFT, RESULT, RIGHT,
  eightFn, emitKvFetch, fusedGeometry, inputBinding, mmaStep, phiFn,
} from './fused.wgsl.js';

/** Features and value columns per prefix workgroup: 64 x 64 (2 subgroups), so the f32 staging tile fits beside the K/V tiles. */
export const PREFIX_TILE = 64;

/** Bytes of workgroup memory of the prefix kernel. */
export function prefixWorkgroupBytes(): number {
  const T = PREFIX_TILE;
  const threads = fusedGeometry({ tm: T, tn: T }).threads;
  return 2 * FUSED_KT * (T / 8 + 1) * 16 + T * (T + 4) * 4 + 2 * threads * 16;
}

/** Workgroups of the prefix kernel: [1, key planes, feature tiles x value tiles]. */
export function prefixGrid(plan: { planes: number; fp: number; dvp: number }): [number, number, number] {
  return [1, plan.planes, (plan.fp / PREFIX_TILE) * (plan.dvp / PREFIX_TILE)];
}

export function buildFusedPrefixStates(o: Pick<FusedLinearOptions, 'dtype' | 'map' | 'vec'>): string {
  const T = PREFIX_TILE;
  const lin: FusedLinearOptions = { ...o, tm: T, tn: T };
  const g = fusedGeometry(lin);
  const B = FUSED_BINDINGS;
  const KT = FUSED_KT;
  const cpr = T / 8; // 8-half chunks per staged row (features of K, columns of V, columns of the state)
  const chunksK = (KT * cpr) / g.threads;
  const chunksV = (KT * cpr) / g.threads;
  const chunksS = (T * cpr) / g.threads;
  const lines: string[] = [];
  const add = (s: string) => lines.push(s);
  const fetch = (first: string, end: string) => emitKvFetch(add, '0u', { chunksK, chunksV, threads: g.threads, first, end, cprK: 'CPR_K', f0: 'f0 + ' });
  add(`// fusedattn causal linear attention (fused, ${o.map}, ${o.dtype}${o.vec ? ', 16-byte loads' : ', strided loads'}): every chunk's prefix state in one pass, ${T} features x ${T} value columns`);
  add(HEADER);
  add(FUSED_PARAMS.wgsl());
  add(`@group(0) @binding(${B.params}) var<uniform> p: FusedParams;`);
  add(inputBinding(B.k, 'k', lin));
  add(inputBinding(B.v, 'v', lin));
  add(`@group(0) @binding(${B.state}) var<storage, read_write> state: array<vec4<u32>>;`);
  add(`@group(0) @binding(${B.z}) var<storage, read_write> z: array<vec4<f32>>;`);
  add(phiFn(o.map));
  add(EIGHT);
  add(eightFn('k', lin));
  add(eightFn('v', lin));
  add('');
  add(`const TM = ${T}u; const TN = ${T}u; const KT = ${KT}u; const NT = ${g.threads}u;`);
  add(`const K_LD = ${cpr + 1}u;   // staged K row (one key, TM features) in vec4s, +16 bytes`);
  add(`const V_LD = ${cpr + 1}u;   // staged V row (one key, TN columns)`);
  add(`const S_LD = ${T + 4}u;   // staged state row (TN f32 columns), +16 bytes`);
  add(`const CPR_K = ${cpr}u; const CPR_V = ${cpr}u; const ZROWS = ${g.threads / cpr}u;`);
  add(`var<workgroup> k_tile: array<vec4<u32>, ${KT * (cpr + 1)}>;   // [key][feature], φ applied`);
  add(`var<workgroup> v_tile: array<vec4<u32>, ${KT * (cpr + 1)}>;   // [key][column]`);
  add(`var<workgroup> s_tile: array<f32, ${T * (T + 4)}>;   // the running state at a chunk boundary [feature][column]`);
  add(`var<workgroup> z_red: array<vec4<f32>, ${2 * g.threads}>;   // per thread: Σ φ over its keys so far, 8 features`);
  add('');
  add(`@compute @workgroup_size(${g.threads})`);
  add('fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_id) sg: u32) {');
  add('  let plane = wg.y;');
  add('  let v_tiles = p.dvp / TN;');
  add('  let f0 = (wg.z / v_tiles) * TM;');
  add('  let v0 = (wg.z % v_tiles) * TN;');
  add('  let b = plane / p.kv_heads;');
  add('  let head = plane % p.kv_heads;');
  add('  let k_row0 = p.k_off + b * p.k_str.x + head * p.k_str.y;');
  add('  let v_row0 = p.v_off + b * p.v_str.x + head * p.v_str.y;');
  add(`  let sm = (sg / ${g.sgN}u) * 32u;   // this subgroup's features and columns in the tile`);
  add(`  let sn = (sg % ${g.sgN}u) * 64u;`);
  for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) add(`  var acc_${i}_${j} = ${RESULT}();`);
  add('  var z_lo = vec4<f32>(0.0);   // NT is a multiple of CPR_K: a thread stages the same 8 features every step');
  add('  var z_hi = vec4<f32>(0.0);');
  for (let u = 0; u < chunksK; u++) add(`  var rk${u} = vec4<u32>();`);
  for (let u = 0; u < chunksV; u++) add(`  var rv${u} = vec4<u32>();`);
  add('  // chunk 0\'s first step in flight (a step: KT keys from its first, short of its chunk\'s end)');
  add('  let first_end = min(p.chunk_keys - p.key_shift, p.seq_k);');
  add('  if (0u < first_end) {');
  fetch('0u', 'first_end');
  add('  }');
  add('  for (var c = 0u; c < p.chunks; c++) {');
  add('    let key0 = max(c * p.chunk_keys, p.key_shift) - p.key_shift;');
  add('    let key_end = min((c + 1u) * p.chunk_keys - p.key_shift, p.seq_k);');
  add('    let steps = (key_end - min(key0, key_end) + KT - 1u) / KT;');
  add('    let alpha = 1.0 / f32((c + 1u) * p.chunk_keys);');
  add('    // ---- prefix state c (every key before key0) times alpha, through s_tile as f16');
  add('    workgroupBarrier();   // the previous boundary\'s reads of s_tile and z_red are done');
  for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) add(`    subgroupMatrixStore<row_major>(&s_tile, (sm + ${i * 16}u) * S_LD + sn + ${j * 16}u, acc_${i}_${j}, S_LD);`);
  add('    z_red[2u * lid] = z_lo;');
  add('    z_red[2u * lid + 1u] = z_hi;');
  add('    workgroupBarrier();');
  add('    let st_base = ((plane * p.chunks + c) * p.fp + f0) * p.dvp + v0;   // element (f0, v0) of state c');
  for (let u = 0; u < chunksS; u++) {
    add('    {');
    add(`      let ts = lid + ${u * g.threads}u;`);
    add('      let srow = ts / CPR_V;');
    add('      let scol = (ts % CPR_V) * 8u;');
    add('      let s_src = srow * S_LD + scol;');
    add('      let lo = vec4<f32>(s_tile[s_src], s_tile[s_src + 1u], s_tile[s_src + 2u], s_tile[s_src + 3u]) * alpha;');
    add('      let hi = vec4<f32>(s_tile[s_src + 4u], s_tile[s_src + 5u], s_tile[s_src + 6u], s_tile[s_src + 7u]) * alpha;');
    add('      let st_dst = (st_base + srow * p.dvp + scol) / 8u;');
    add('      state[st_dst] = pack8(Eight(lo, hi));');
    add('    }');
  }
  add('    if (v0 == 0u && lid < 2u * CPR_K) {   // Σ φ(k) so far: the threads staging the same features, in thread order');
  add('      var zs = vec4<f32>(0.0);');
  add('      for (var r = 0u; r < ZROWS; r++) {');
  add('        let z_src = 2u * (r * CPR_K + lid / 2u) + lid % 2u;');
  add('        zs += z_red[z_src];');
  add('      }');
  add('      let z_dst = ((plane * p.chunks + c) * p.fp + f0) / 4u + lid;');
  add('      z[z_dst] = zs * alpha;');
  add('    }');
  add('    // ---- chunk c\'s keys into the running state');
  add('    for (var step = 0u; step < steps; step++) {');
  add('      workgroupBarrier();   // the previous step\'s matrix loads are done with the tiles');
  for (let u = 0; u < chunksK; u++) {
    add(`      { let tk = lid + ${u * g.threads}u; let k_dst = (tk / CPR_K) * K_LD + tk % CPR_K; k_tile[k_dst] = rk${u}; }`);
    add(`      { let zf = unpack8(rk${u}); z_lo += zf.lo; z_hi += zf.hi; }`);
  }
  for (let u = 0; u < chunksV; u++) add(`      { let tv = lid + ${u * g.threads}u; let v_dst = (tv / CPR_V) * V_LD + tv % CPR_V; v_tile[v_dst] = rv${u}; }`);
  add('      workgroupBarrier();');
  add('      // the next step\'s global loads in flight during the math: this chunk\'s, else the next chunk\'s first');
  add('      let next_first = select(key0 + (step + 1u) * KT, key_end, step + 1u >= steps);');
  add('      let next_end = select(key_end, min(key_end + p.chunk_keys, p.seq_k), step + 1u >= steps);');
  add('      if (next_first < next_end) {');
  fetch('next_first', 'next_end');
  add('      }');
  // left (feature f, key c) = k_tile[key c][f]: column-major, a column per key, stride K_LD
  mmaStep((s) => add('  ' + s),
    (i, kk) => `subgroupMatrixLoad<${LEFT}, col_major>(&k_tile, ${kk}u * K_LD + (sm + ${i * 16}u) / 8u, K_LD)`,
    (j, kk) => `subgroupMatrixLoad<${RIGHT}, row_major>(&v_tile, ${kk}u * V_LD + (sn + ${j * 16}u) / 8u, V_LD)`);
  add('    }');
  add('  }');
  add('}');
  return lines.join('\n') + '\n';
}
