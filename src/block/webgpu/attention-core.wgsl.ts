// The inner loop of the block attention kernel (attention.wgsl.ts builds the rest: bindings,
// RoPE, the cache, tile loads), in two layouts of threads over a query block x key tile. Both keep
// every per-thread score and accumulator in a named variable written out statement by statement
// (no array indexed in a loop), so the shader compiler keeps them in registers.
//
// Each core returns WGSL pieces that attention.wgsl.ts places in this order inside the key-tile
// loop: scores (K tile in kv_tile) | barrier, V tile loaded | probabilities | barrier | accumulate.

/**
 * How a workgroup divides its query block x key tile:
 * - 'rows': PER_ROW = threads / rows threads share each query row; each scores keys / PER_ROW keys
 *   and owns D / (2 PER_ROW) column pairs of the output (measured on the H200: ~2 TFLOP/s, its
 *   inner loops load shared memory once per FMA);
 * - 'tiled': a tx x ty grid of threads, each owning rt rows x kt keys of the score tile and rt rows x
 *   D / tx output columns (register blocking, like the runtime's tiled matmul): rt + kt shared loads
 *   per rt kt FMAs in QKᵀ, rt + D / tx per rt D / tx in PV.
 */
export type BlockAttentionTile =
  | { kind: 'rows'; threads: number; rows: number; keys: number }
  | { kind: 'tiled'; tx: number; ty: number; rt: number; kt: number };

/** Threads, query rows and keys per tile of either kind. */
export function tileShape(t: BlockAttentionTile): { threads: number; rows: number; keys: number } {
  return t.kind === 'rows' ? { threads: t.threads, rows: t.rows, keys: t.keys } : { threads: t.tx * t.ty, rows: t.ty * t.rt, keys: t.tx * t.kt };
}

export interface BlockAttentionOptions {
  headDim: number;
  cache: boolean;
  tile: BlockAttentionTile;
  /**
   * Split the keys over params.splits workgroups per query block ("flash decoding"): each writes
   * its unnormalised partial (m, l, acc) to a workspace and block-attention-combine merges them.
   * For decode, where (query blocks x heads x batch) workgroups are too few to fill a GPU.
   */
  split: boolean;
}

export interface AttentionCore {
  constants: string;
  workgroup: string;
  threadSetup: string;
  state: string;
  scores: string;
  probabilities: string;
  accumulate: string;
  output(split: boolean): string;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const lines = (n: number, f: (i: number) => string) => range(n).map(f).join('\n');

/** PER_ROW threads per query row; thread `lane` scores keys lane + PER_ROW u and owns column pairs. */
export function rowsCore(o: BlockAttentionOptions, tile: Extract<BlockAttentionTile, { kind: 'rows' }>): AttentionCore {
  const D = o.headDim;
  const half = D / 2;
  const perRow = tile.threads / tile.rows;
  if (!Number.isInteger(perRow) || tile.keys % perRow !== 0) throw new Error(`rowsCore: bad tile ${JSON.stringify(tile)}`);
  const keysPerThread = tile.keys / perRow;
  const pairs = Math.ceil(half / perRow);
  // pair v of lane: columns 2 (lane + PER_ROW v) and + 1; present in every lane when PER_ROW divides D/2
  const guard = (v: number, body: string) => (half % perRow === 0 ? body : `if (lane + ${perRow * v}u < HALF) { ${body} }`);
  return {
    constants: `const PER_ROW: u32 = ${perRow}u;          // threads sharing one query row`,
    workgroup: `var<workgroup> p_tile: array<f32, ${tile.rows * tile.keys}>;
var<workgroup> part_max: array<f32, ${tile.rows * perRow}>;
var<workgroup> part_sum: array<f32, ${tile.rows * perRow}>;`,
    threadSetup: `  let row = lid / PER_ROW;
  let lane = lid % PER_ROW;
  let i = i0 + row;
  let row_valid = i < params.seq;`,
    state: `  var m = NO_SCORE;   // running max (NO_SCORE: nothing seen yet)
  var l = 0.0;        // running sum of exp(score - m)
${lines(pairs, (v) => `  var a${v} = vec2<f32>(0.0);`)}`,
    scores: `${lines(keysPerThread, (u) => `    var s${u} = 0.0;`)}
    for (var d = 0u; d < D; d++) {
      let qd = q_tile[row * STRIDE + d];
${lines(keysPerThread, (u) => `      s${u} += qd * kv_tile[(lane + ${perRow * u}u) * STRIDE + d];`)}
    }
    var tile_max = NO_SCORE;
${lines(keysPerThread, (u) => `    if (!row_valid || j0 + lane + ${perRow * u}u > past + i) { s${u} = NO_SCORE; }
    tile_max = max(tile_max, s${u});`)}
    part_max[row * PER_ROW + lane] = tile_max;`,
    probabilities: `    var m_new = m;
    for (var c = 0u; c < PER_ROW; c++) { m_new = max(m_new, part_max[row * PER_ROW + c]); }
    var psum = 0.0;
${lines(keysPerThread, (u) => `    let p${u} = weight_of(s${u}, m_new);
    p_tile[row * KEYS + lane + ${perRow * u}u] = p${u};
    psum += p${u};`)}
    part_sum[row * PER_ROW + lane] = psum;`,
    accumulate: `    let alpha = exp(m - m_new);
    var tile_sum = 0.0;
    for (var c = 0u; c < PER_ROW; c++) { tile_sum += part_sum[row * PER_ROW + c]; }
    l = l * alpha + tile_sum;
    m = m_new;
${lines(pairs, (v) => `    a${v} *= alpha;`)}
    for (var jj = 0u; jj < KEYS; jj++) {
      let p = p_tile[row * KEYS + jj];
      let base = jj * STRIDE + 2u * lane;
${lines(pairs, (v) => `      ${guard(v, `a${v} += p * vec2<f32>(kv_tile[base + ${2 * perRow * v}u], kv_tile[base + ${2 * perRow * v + 1}u]);`)}`)}
    }`,
    output: (split) => split
      ? `  if (!row_valid) { return; }
  // unnormalised partial of this split: m, l, then acc (a split that saw no key has l = 0)
  let pb = (((b * params.heads + h) * params.seq + i) * params.splits + split) * (D + 2u);
  if (lane == 0u) {
    out[pb] = m;
    out[pb + 1u] = l;
  }
  let ob = pb + 2u + 2u * lane;
${lines(pairs, (v) => `  ${guard(v, `out[ob + ${2 * perRow * v}u] = a${v}.x; out[ob + ${2 * perRow * v + 1}u] = a${v}.y;`)}`)}`
      : `  if (!row_valid) { return; }
  // every row sees at least its own key, so l > 0
  let inv = 1.0 / l;
  let ob = new_row(b, i) * params.out_width + h * D + 2u * lane;
${lines(pairs, (v) => `  ${guard(v, `out[ob + ${2 * perRow * v}u] = a${v}.x * inv; out[ob + ${2 * perRow * v + 1}u] = a${v}.y * inv;`)}`)}`,
  };
}

/**
 * A TX x TY grid of threads; thread (tx, ty) owns query rows ty + TY i (i < RT), keys tx + TX j
 * (j < KT) of each key tile, and output columns tx + TX c (c < CT = ceil(D / TX)). Rows, keys and
 * columns are interleaved so neighbouring threads hit neighbouring banks.
 */
export function tiledCore(o: BlockAttentionOptions, tile: Extract<BlockAttentionTile, { kind: 'tiled' }>): AttentionCore {
  const D = o.headDim;
  const { tx: TX, ty: TY, rt: RT, kt: KT } = tile;
  const rows = TY * RT;
  const keys = TX * KT;
  const CT = Math.ceil(D / TX);
  const pStride = keys + 1;
  // column c of this thread exists in every thread when TX divides D
  const col = (c: number) => `tx + ${TX * c}u`;
  const guard = (c: number, body: string) => (D % TX === 0 || TX * (c + 1) <= D ? body : `if (${col(c)} < D) { ${body} }`);
  const each = (f: (i: number, j: number) => string, n2: number) => range(RT).flatMap((i) => range(n2).map((j) => f(i, j))).join('\n');
  return {
    constants: `const TX: u32 = ${TX}u;
const TY: u32 = ${TY}u;
const P_STRIDE: u32 = ${pStride}u;        // row stride of p_tile (odd: no bank conflicts between rows)`,
    workgroup: `var<workgroup> p_tile: array<f32, ${rows * pStride}>;
var<workgroup> part_max: array<f32, ${rows * TX}>;
var<workgroup> part_sum: array<f32, ${rows * TX}>;`,
    threadSetup: `  let tx = lid % TX;
  let ty = lid / TX;
${lines(RT, (i) => `  let r${i} = ty + ${TY * i}u;
  let valid${i} = i0 + r${i} < params.seq;`)}`,
    state: `${lines(RT, (i) => `  var m${i} = NO_SCORE;
  var l${i} = 0.0;`)}
${each((i, c) => `  var a${i}_${c} = 0.0;`, CT)}`,
    scores: `${each((i, j) => `    var s${i}_${j} = 0.0;`, KT)}
    for (var d = 0u; d < D; d++) {
${lines(RT, (i) => `      let q${i} = q_tile[r${i} * STRIDE + d];`)}
${lines(KT, (j) => `      let k${j} = kv_tile[(tx + ${TX * j}u) * STRIDE + d];`)}
${each((i, j) => `      s${i}_${j} += q${i} * k${j};`, KT)}
    }
${lines(RT, (i) => `    var tmax${i} = NO_SCORE;
${lines(KT, (j) => `    if (!valid${i} || j0 + tx + ${TX * j}u > past + i0 + r${i}) { s${i}_${j} = NO_SCORE; }
    tmax${i} = max(tmax${i}, s${i}_${j});`)}
    part_max[r${i} * TX + tx] = tmax${i};`)}`,
    probabilities: `${lines(RT, (i) => `    var mnew${i} = m${i};
    for (var c = 0u; c < TX; c++) { mnew${i} = max(mnew${i}, part_max[r${i} * TX + c]); }
    var psum${i} = 0.0;
${lines(KT, (j) => `    let p${i}_${j} = weight_of(s${i}_${j}, mnew${i});
    p_tile[r${i} * P_STRIDE + tx + ${TX * j}u] = p${i}_${j};
    psum${i} += p${i}_${j};`)}
    part_sum[r${i} * TX + tx] = psum${i};`)}`,
    accumulate: `${lines(RT, (i) => `    let alpha${i} = exp(m${i} - mnew${i});
    var tsum${i} = 0.0;
    for (var c = 0u; c < TX; c++) { tsum${i} += part_sum[r${i} * TX + c]; }
    l${i} = l${i} * alpha${i} + tsum${i};
    m${i} = mnew${i};
${lines(CT, (c) => `    a${i}_${c} *= alpha${i};`)}`)}
    for (var jj = 0u; jj < KEYS; jj++) {
${lines(RT, (i) => `      let pp${i} = p_tile[r${i} * P_STRIDE + jj];`)}
${lines(CT, (c) => `      ${guard(c, `let v${c} = kv_tile[jj * STRIDE + ${col(c)}];
${lines(RT, (i) => `      a${i}_${c} += pp${i} * v${c};`)}`)}`)}
    }`,
    output: (split) => split
      ? lines(RT, (i) => `  if (valid${i}) {
    // unnormalised partial of this split: m, l, then acc (a split that saw no key has l = 0)
    let pb${i} = (((b * params.heads + h) * params.seq + i0 + r${i}) * params.splits + split) * (D + 2u);
    if (tx == 0u) {
      out[pb${i}] = m${i};
      out[pb${i} + 1u] = l${i};
    }
${lines(CT, (c) => `    ${guard(c, `out[pb${i} + 2u + ${col(c)}] = a${i}_${c};`)}`)}
  }`)
      : lines(RT, (i) => `  if (valid${i}) {
    // every row sees at least its own key, so l > 0
    let inv${i} = 1.0 / l${i};
    let ob${i} = new_row(b, i0 + r${i}) * params.out_width + h * D;
${lines(CT, (c) => `    ${guard(c, `out[ob${i} + ${col(c)}] = a${i}_${c} * inv${i};`)}`)}
  }`),
  };
}
