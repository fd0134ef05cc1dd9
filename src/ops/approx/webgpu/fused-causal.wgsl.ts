// Causal linear attention with a built-in feature map on tensor cores, fused (issue 13): the chunk
// form of flash-linear-attention with the chunks' states kept as f16 prefix states.
// Legend as fused.wgsl.ts; KC keys per chunk, chunk c holding keys [c·KC − shift, (c+1)·KC − shift)
// (clipped at 0; shift = (KC − off % KC) % KC puts the boundaries on the tiles' diagonals when it
// can); off = Sk − Sq (row i sees keys j <= i + off).
//   1 state   fused.wgsl.ts's kernel over those chunks: part[P][C][FP][DVP], zpart[P][C][FP]
//   2 scan    exclusive prefix over the chunks in chunk order (deterministic):
//             state[P][e] = α_e · Σ_{c < e} part[P][c] as f16, z[P][e] = α_e · Σ_{c < e} zpart, with
//             α_e = 1 / ((e + 1)·KC), about one over the keys the state holds, so it fits f16
//   3 output  per (64 query rows, bh, value tile): the keys every row of the tile sees up to a chunk
//             boundary come from prefix state e, num = φ(Q)·state_e, den = φ(Q)·z_e (φ(Q) staged
//             once, the state staged through the V tile KT rows a step, prefetched in registers); the rest, [e·KC − shift,
//             q0 + 64 + off), 32 keys a step: S = φ(Q)φ(K)ᵀ on tensor cores, masked (j <= i + off)
//             and times α_e as P (f16), den += Σ P, num += P·V. out = num / den (0 where den = 0).
// α_e scales prefix and in-chunk terms alike, so it cancels in num / den.
import {
  EIGHT, FUSED_BINDINGS, FUSED_KT, FUSED_PARAMS, chunkSumHeader, type FusedFeatureMap, HEADER, LEFT, RESULT, RIGHT,
  eightFn, emitKvFetch, emitNormalizedStores, inputBinding, mmaStep, phiFn,
} from './fused.wgsl.js';

export interface FusedCausalOptions {
  dtype: 'float32' | 'float16';
  map: FusedFeatureMap;
  /** Padded features (the state's FP): the whole φ(Q) tile stays in workgroup memory. */
  fp: 64 | 128;
  /** Value columns per workgroup. */
  tn: 64 | 128;
  /** 16-byte loads of q, and of k and v (as FusedLinearOptions.vec), and 16-byte stores. */
  vecQ: boolean;
  vecKV: boolean;
  vecOut: boolean;
}

/** Query rows per causal output workgroup. */
export const CAUSAL_TM = 64;

/** Most features the causal output kernel takes: its φ(Q) tile of 64 rows x FP (<= 128) stays in workgroup memory. */
export const CAUSAL_MAX_FEATURES = 128;

export function causalGeometry(o: Pick<FusedCausalOptions, 'tn'>) {
  const sgN = o.tn / 64;
  const subgroups = 2 * sgN;
  const threads = subgroups * 32;
  // the mask pass: chunks of 8 keys of a row per thread (a warp's lanes read 8 rows, 4 chunks each)
  return { sgM: 2, sgN, subgroups, threads, maskChunks: (CAUSAL_TM * FUSED_KT) / 8 / threads };
}

/** Bytes of workgroup memory of the causal output kernel (within the H200's 48 KiB for fp, tn <= 128). */
export function causalWorkgroupBytes(o: Pick<FusedCausalOptions, 'fp' | 'tn'>): number {
  const KT = FUSED_KT;
  return (CAUSAL_TM * (o.fp / 8 + 1) + KT * (o.fp / 8 + 1) + KT * (o.tn / 8 + 1) + CAUSAL_TM * (KT / 8 + 1)) * 16 + CAUSAL_TM * KT * 4 + CAUSAL_TM * 4;
}

/** Kernel 2: exclusive prefix of the chunks' partial states and sums, each entry times its α_e; states as f16. */
export function buildFusedScan(): string {
  return `${chunkSumHeader('// fusedattn causal linear attention (fused): exclusive prefix states over the key chunks, in chunk order, entry e times 1 / ((e + 1)·KC)')}
  let z_quads = p.fp / 4u;
  if (e >= p.quads) { return; }
  var acc = vec4<f32>(0.0);
  if (e < state_quads) {
    for (var c = 0u; c < p.chunks; c++) {
      let at = (plane * p.chunks + c) * state_quads + e;
      let s = acc * (1.0 / f32((c + 1u) * p.chunk_keys));
      state[at] = vec2<u32>(pack2x16float(s.xy), pack2x16float(s.zw));
      acc += part[at];
    }
  } else {
    let zq = e - state_quads;
    for (var c = 0u; c < p.chunks; c++) {
      let at = (plane * p.chunks + c) * z_quads + zq;
      z[at] = acc * (1.0 / f32((c + 1u) * p.chunk_keys));
      acc += zpart[at];
    }
  }
}
`;
}

/** Kernel 3: per (64 query rows, query plane, value tile) the prefix state's part and the in-chunk part, then num / den. */
export function buildFusedCausalOutput(o: FusedCausalOptions): string {
  const g = causalGeometry(o);
  const B = FUSED_BINDINGS;
  const KT = FUSED_KT;
  const TM = CAUSAL_TM;
  const cprQ = o.fp / 8;
  const cprV = o.tn / 8;
  const chunksQ = (TM * cprQ) / g.threads;
  const chunksK = (KT * cprQ) / g.threads;
  const chunksV = (KT * cprV) / g.threads;
  // S matrices per subgroup: its row blocks (TM/16 over the subgroups) times every KT/16 key block,
  // so each φ(Q) matrix and each φ(K) matrix is loaded once per feature step
  const rowBlocks = TM / 16 / g.subgroups;
  const keyBlocks = KT / 16;
  const f16 = o.dtype === 'float16';
  const lin = { dtype: o.dtype, map: o.map, tm: 64 as const, tn: o.tn };
  const lines: string[] = [];
  const add = (s: string) => lines.push(s);
  // the K and V chunks of in-chunk step `step` into registers (φ applied to K)
  const fetch = (step: string) => emitKvFetch(add, step, { chunksK, chunksV, threads: g.threads, first: 'key_lo', end: 'key_hi', cprK: 'CPR_Q', f0: '' });
  add(`// fusedattn causal linear attention (fused, ${o.map}, ${o.dtype}, ${o.fp} features, ${o.tn} columns${o.vecQ ? ', 16-byte q loads' : ''}${o.vecKV ? ', 16-byte k/v loads' : ''}${o.vecOut ? ', 16-byte stores' : ''}): prefix state + masked chunk, out = num / den`);
  add(HEADER);
  add(FUSED_PARAMS.wgsl());
  add(`@group(0) @binding(${B.params}) var<uniform> p: FusedParams;`);
  add(inputBinding(B.q, 'q', { ...lin, vec: o.vecQ }));
  add(inputBinding(B.keys, 'k', { ...lin, vec: o.vecKV }));
  add(inputBinding(B.v, 'v', { ...lin, vec: o.vecKV }));
  add(`@group(0) @binding(${B.state}) var<storage, read> state: array<vec4<u32>>;`);
  add(`@group(0) @binding(${B.z}) var<storage, read> z: array<vec4<f32>>;`);
  const outElem = o.vecOut ? (f16 ? 'vec4<u32>' : 'vec4<f32>') : (f16 ? 'f16' : 'f32');
  add(`@group(0) @binding(${B.out}) var<storage, read_write> out: array<${outElem}>;`);
  add(phiFn(o.map));
  add(EIGHT);
  add(eightFn('q', { ...lin, vec: o.vecQ }));
  add(eightFn('k', { ...lin, vec: o.vecKV }));
  add(eightFn('v', { ...lin, vec: o.vecKV }));
  add('');
  add(`const TM = ${TM}u; const TN = ${o.tn}u; const KT = ${KT}u; const NT = ${g.threads}u; const FP = ${o.fp}u;`);
  add(`const Q_LD = ${cprQ + 1}u;   // staged φ(Q) / φ(K) rows (FP features) in vec4s, +16 bytes`);
  add(`const V_LD = ${cprV + 1}u;   // staged V row (TN columns)`);
  add(`const P_LD = ${KT / 8 + 1}u;   // staged P row (KT keys)`);
  add(`const CPR_Q = ${cprQ}u; const CPR_V = ${cprV}u; const CPR_P = ${KT / 8}u; const CS = 20u;`);
  add(`var<workgroup> q_tile: array<vec4<u32>, ${TM * (cprQ + 1)}>;   // [query][feature], φ applied`);
  add(`var<workgroup> k_tile: array<vec4<u32>, ${KT * (cprQ + 1)}>;   // [key][feature], φ applied`);
  add(`var<workgroup> v_tile: array<vec4<u32>, ${KT * (cprV + 1)}>;   // [key][column]`);
  add(`var<workgroup> p_tile: array<vec4<u32>, ${TM * (KT / 8 + 1)}>;   // [query][key], masked, times alpha`);
  add(`var<workgroup> s_tile: array<f32, ${TM * KT}>;   // the prefix den's shares [query][8 features] first; scores [query][key]; at the end the epilogue's scratch`);
  add(`var<workgroup> den: array<f32, ${TM}>;`);
  add('');
  add(`@compute @workgroup_size(${g.threads})`);
  add('fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,');
  add('        @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32) {');
  add('  let q0 = wg.x * TM;');
  add('  let bh = wg.y;');
  add('  let v0 = wg.z * TN;');
  add('  let b = bh / p.heads;');
  add('  let head = bh % p.heads;');
  add('  let kv_head = head / p.group;');
  add('  let plane = b * p.kv_heads + kv_head;');
  add('  let q_row0 = p.q_off + b * p.q_str.x + head * p.q_str.y;');
  add('  let k_row0 = p.k_off + b * p.k_str.x + kv_head * p.k_str.y;');
  add('  let v_row0 = p.v_off + b * p.v_str.x + kv_head * p.v_str.y;');
  add('  let seen = q0 + p.off;   // every row of the tile sees keys 0 ..= seen');
  add('  let e = (seen + p.key_shift) / p.chunk_keys;   // prefix state e: keys [0, e·KC − shift)');
  add('  let key_lo = max(e * p.chunk_keys, p.key_shift) - p.key_shift;');
  add('  let key_hi = min(p.seq_k, q0 + TM + p.off);');
  add('  let isteps = (key_hi - min(key_lo, key_hi) + KT - 1u) / KT;');
  add('  let alpha = 1.0 / f32((e + 1u) * p.chunk_keys);');
  add('  let st_row0 = (plane * p.chunks + e) * p.fp;   // row 0 of state e (and its z)');
  add(`  let sm = (sg / ${g.sgN}u) * 32u;   // this subgroup's rows and columns of the output tile`);
  add(`  let sn = (sg % ${g.sgN}u) * 64u;`);
  const fetchState = (step: string) => {
    for (let u = 0; u < chunksV; u++) {
      add('  {');
      add(`    let ts = lid + ${u * g.threads}u;`);
      add(`    let st_src = ((st_row0 + ${step} * KT + ts / CPR_V) * p.dvp + v0 + (ts % CPR_V) * 8u) / 8u;`);
      add(`    rs${u} = state[st_src];`);
      add('  }');
    }
  };
  add('  // ---- the first KT rows of state e in flight while φ(Q) is staged');
  for (let u = 0; u < chunksV; u++) add(`  var rs${u} = vec4<u32>();`);
  fetchState('0u');
  add('  // ---- φ(Q), once');
  for (let u = 0; u < chunksQ; u++) {
    add('  {');
    add(`    let tq = lid + ${u * g.threads}u;`);
    add('    let row = q0 + tq / CPR_Q;');
    add('    let fd = (tq % CPR_Q) * 8u;');
    add('    var w = vec4<u32>();');
    add('    if (row < p.seq_q) { w = pack8(phi8(eight_q(q_row0 + row * p.q_str.z, fd, p.dim, p.q_str.w), fd, p.dim)); }');
    add('    let q_dst = (tq / CPR_Q) * Q_LD + tq % CPR_Q;');
    add('    q_tile[q_dst] = w;');
    add('    // this chunk\'s share of the prefix den, φ(q)·z_e over its 8 features (the f16-rounded φ(q) the products use)');
    add('    let x = unpack8(w);');
    add('    let zi = (st_row0 + fd) / 4u;');
    add('    s_tile[tq] = dot(x.lo, z[zi]) + dot(x.hi, z[zi + 1u]);');
    add('  }');
  }
  // the first in-chunk step's K and V in flight during the prefix products
  for (let u = 0; u < chunksK; u++) add(`  var rk${u} = vec4<u32>();`);
  for (let u = 0; u < chunksV; u++) add(`  var rv${u} = vec4<u32>();`);
  add('  if (isteps > 0u) {');
  fetch('0u');
  add('  }');
  add('  // ---- num = φ(Q)·state_e, KT state rows a step through v_tile');
  for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) add(`  var acc_${i}_${j} = ${RESULT}();`);
  add('  for (var fstep = 0u; fstep < FP / KT; fstep++) {');
  add('    workgroupBarrier();   // φ(Q) staged (first step), the previous step\'s products done with v_tile');
  for (let u = 0; u < chunksV; u++) add(`    { let ts = lid + ${u * g.threads}u; let s_dst = (ts / CPR_V) * V_LD + ts % CPR_V; v_tile[s_dst] = rs${u}; }`);
  add('    workgroupBarrier();');
  add('    if (fstep + 1u < FP / KT) {');
  fetchState('(fstep + 1u)');
  add('    }');
  mmaStep((x) => add('  ' + x),
    (i, kk) => `subgroupMatrixLoad<${LEFT}, row_major>(&q_tile, (sm + ${i * 16}u) * Q_LD + fstep * ${KT / 8}u + ${kk / 8}u, Q_LD)`,
    (j, kk) => `subgroupMatrixLoad<${RIGHT}, row_major>(&v_tile, ${kk}u * V_LD + (sn + ${j * 16}u) / 8u, V_LD)`);
  add('  }');
  add('  // ---- den of the prefix per row: its chunks\' shares (s_tile, written while staging φ(Q)) in order');
  add('  for (var r = lid; r < TM; r += NT) {');
  add('    var d0 = 0.0;');
  add('    for (var c = 0u; c < CPR_Q; c++) { let dq_src = r * CPR_Q + c; d0 += s_tile[dq_src]; }');
  add('    den[r] = d0;');
  add('  }');
  add('  // ---- the keys after the prefix, KT a step');
  for (let u = 0; u < g.maskChunks; u++) add(`  var dsum${u} = 0.0;   // Σ P over this thread's ${u === 0 ? 'first' : 'next'} chunk of 8 keys, every step`);
  for (let r = 0; r < rowBlocks; r++) add(`  let srow${r} = (sg * ${rowBlocks}u + ${r}u) * 16u;   // S rows this subgroup computes (all KT keys)`);
  add('  for (var istep = 0u; istep < isteps; istep++) {');
  add('    workgroupBarrier();   // the previous step\'s products are done with the tiles');
  for (let u = 0; u < chunksK; u++) add(`    { let tk = lid + ${u * g.threads}u; let k_dst = (tk / CPR_Q) * Q_LD + tk % CPR_Q; k_tile[k_dst] = rk${u}; }`);
  for (let u = 0; u < chunksV; u++) add(`    { let tv = lid + ${u * g.threads}u; let v_dst = (tv / CPR_V) * V_LD + tv % CPR_V; v_tile[v_dst] = rv${u}; }`);
  add('    workgroupBarrier();');
  add('    if (istep + 1u < isteps) {   // the next step\'s global loads in flight during the math');
  fetch('(istep + 1u)');
  add('    }');
  add('    // S = φ(Q)·φ(K)ᵀ: the right operand (feature, key) = k_tile[key][feature], column-major');
  const mats = Array.from({ length: rowBlocks * keyBlocks }, (_, t) => ({ t, r: Math.floor(t / keyBlocks), k: t % keyBlocks }));
  for (const { t } of mats) add(`    var sacc${t} = ${RESULT}();`);
  add('    for (var kf = 0u; kf < FP; kf += 16u) {');
  for (let r = 0; r < rowBlocks; r++) add(`      let qa${r} = subgroupMatrixLoad<${LEFT}, row_major>(&q_tile, srow${r} * Q_LD + kf / 8u, Q_LD);`);
  for (let k = 0; k < keyBlocks; k++) add(`      let kb${k} = subgroupMatrixLoad<${RIGHT}, col_major>(&k_tile, ${16 * k}u * Q_LD + kf / 8u, Q_LD);`);
  for (const { t, r, k } of mats) add(`      sacc${t} = subgroupMatrixMultiplyAccumulate(qa${r}, kb${k}, sacc${t});`);
  add('    }');
  for (const { t, r, k } of mats) add(`    subgroupMatrixStore<row_major>(&s_tile, srow${r} * KT + ${16 * k}u, sacc${t}, KT);`);
  add('    workgroupBarrier();');
  add('    // P = mask(S)·alpha as f16; den sums the rounded values the product uses');
  add('    let kbase = key_lo + istep * KT;');
  for (let u = 0; u < g.maskChunks; u++) {
    add('    {');
    add(`      let mt = lid + ${u * g.threads}u;   // chunk mt: row mt / CPR_P, keys (mt % CPR_P)·8 ..`);
    add('      let mrow = mt / CPR_P;');
    add('      let mc = mt % CPR_P;');
    add('      let mlast = q0 + mrow + p.off;   // the last key row mrow sees');
    add('      var x = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);');
    add('      for (var i = 0u; i < 8u; i++) {');
    add('        let kl = mc * 8u + i;');
    add('        let key = kbase + kl;');
    add('        let s_src = mrow * KT + kl;');
    add('        if (key <= mlast && key < key_hi) { x[i] = s_tile[s_src] * alpha; }');
    add('      }');
    add('      let w = pack8(Eight(vec4<f32>(x[0], x[1], x[2], x[3]), vec4<f32>(x[4], x[5], x[6], x[7])));');
    add('      let r16 = unpack8(w);');
    add(`      dsum${u} += dot(r16.lo, vec4<f32>(1.0)) + dot(r16.hi, vec4<f32>(1.0));`);
    add('      let p_dst = mrow * P_LD + mc;');
    add('      p_tile[p_dst] = w;');
    add('    }');
  }
  add('    workgroupBarrier();');
  mmaStep((s) => add('  ' + s),
    (i, kk) => `subgroupMatrixLoad<${LEFT}, row_major>(&p_tile, (sm + ${i * 16}u) * P_LD + ${kk / 8}u, P_LD)`,
    (j, kk) => `subgroupMatrixLoad<${RIGHT}, row_major>(&v_tile, ${kk}u * V_LD + (sn + ${j * 16}u) / 8u, V_LD)`);
  add('  }');
  add('  // ---- den per row: the prefix\'s, then its CPR_P chunks\' in-chunk sums in order');
  add('  workgroupBarrier();');
  for (let u = 0; u < g.maskChunks; u++) add(`  s_tile[lid + ${u * g.threads}u] = dsum${u};`);
  add('  workgroupBarrier();');
  add('  for (var r = lid; r < TM; r += NT) {');
  add('    var d = den[r];');
  add('    for (var c = 0u; c < CPR_P; c++) { let dp_src = r * CPR_P + c; d += s_tile[dp_src]; }');
  add('    den[r] = d;');
  add('  }');
  add('  workgroupBarrier();');
  emitNormalizedStores(add, { vecOut: o.vecOut, f16, scratch: 's_tile', e: 'e8' });
  add('}');
  return lines.join('\n') + '\n';
}
