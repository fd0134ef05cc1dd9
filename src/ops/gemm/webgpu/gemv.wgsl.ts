// Skinny GEMM ("GEMV") for decode: y = x Wᵀ (+ b) with few rows of x (M <= 8: the sequences of a
// decode batch) against a weight W [N, K] in PyTorch layout, float32 or float16 halves. Decode is
// bound by reading W once, so the kernel is shaped for bandwidth, not reuse:
//   - a workgroup computes RPW output columns n; TPR = WG / RPW threads share each n and walk its
//     contiguous weight row with 16-byte loads (4 floats or 8 halves), 4 loads issued before use;
//   - every weight load is used for all M rows of x (x is tiny and stays in cache);
//   - the TPR partial sums of each (row, n) are added by a tree through workgroup memory, once.
// TPR is chosen from K so each thread has a few loads to do and the grid has many workgroups
// (the tiled matmul of ops/gemm/webgpu/matmul.wgsl.ts reads 32 rows of W per workgroup with scalar loads
// and wastes 31/32 of its rows at M = 1).
// Epilogues: bias; `accumulate` (y += result: the residual add fused into the projection); `pair`
// (two weights W and W2 of the same shape: y = silu(x Wᵀ + b) * (x W2ᵀ + b2), SwiGLU's gate and up
// projections in one pass over x); `norm` (RMSNorm of each row of x in front of the projection:
// the kernel multiplies x by the norm's weight as it reads it and scales the sums by each row's
// 1/rms, which the workgroup computes from x itself, so the norm needs no pass of its own).
// Without `vec` (K not a multiple of 4, or of 8 for halves) the loads are scalar.
//
//   x    [M, x_stride] float32, row m at m * x_stride
//   w    rows n of this weight part, [n, K]
//   out  out[m * out_stride + out_col + n] (out_col: the part's first row, for weights in parts)
import { UniformLayout } from '../../../engines/webgpu/uniforms.js';
import { type FloatDType, arrayElement, loadFloat, loadQuad, quadElement } from '../../../engines/webgpu/wgsl.js';

export interface GemvOptions {
  weight: FloatDType;
  /** Rows of x (M), 1 .. GEMV_MAX_ROWS. */
  rows: number;
  /** Threads per output column (a power of two); RPW = workgroupSize / threadsPerColumn. */
  threadsPerColumn: number;
  workgroupSize: number;
  bias: FloatDType | 'none';
  accumulate: boolean;
  pair: boolean;
  /** 16-byte loads (K % 4 == 0 for float32, K % 8 == 0 for float16; x_stride % 4 == 0). */
  vec: boolean;
  /** RMSNorm of x fused in front (the norm weight's dtype), with params.eps. */
  norm?: FloatDType;
}

export const GEMV_MAX_ROWS = 8;

export const GEMV_PARAMS = new UniformLayout('GemvParams', { n: 'u32', k: 'u32', x_stride: 'u32', out_stride: 'u32', out_col: 'u32', eps: 'f32' });
export const GEMV_BINDINGS = { params: 0, x: 1, w: 2, out: 3, bias: 4, w2: 5, bias2: 6, norm: 7 } as const;

/** Threads per output column for a row length K: about 4 loads per thread, 32 .. workgroupSize. */
export function gemvThreadsPerColumn(k: number, weight: FloatDType, vec: boolean, workgroupSize: number): number {
  const chunks = vec ? Math.ceil(k / (weight === 'float16' ? 8 : 4)) : k;
  let t = 32;
  while (t < workgroupSize && t * 4 < chunks) t *= 2;
  return Math.min(t, workgroupSize);
}

export function buildGemv(o: GemvOptions): string {
  const { rows: M, threadsPerColumn: TPR, workgroupSize: WG, pair, vec } = o;
  if (!Number.isInteger(M) || M < 1 || M > GEMV_MAX_ROWS) throw new Error(`buildGemv: rows must be 1..${GEMV_MAX_ROWS}, got ${M}`);
  if (WG % TPR !== 0 || (TPR & (TPR - 1)) !== 0) throw new Error(`buildGemv: threadsPerColumn ${TPR} must be a power of two dividing ${WG}`);
  const B = GEMV_BINDINGS;
  const rowsX = Array.from({ length: M }, (_, m) => m);
  const P = pair ? 2 : 1;
  const weights = pair ? ['w', 'w2'] : ['w'];
  const accs = (w: number) => rowsX.map((m) => `acc${w}_${m}`);
  const half = o.weight === 'float16';
  // the chunk type a 16-byte load reads, and one chunk's contribution to every row's sum
  const element = vec ? (half ? 'vec4<u32>' : 'vec4<f32>') : arrayElement(o.weight);
  const norm = o.norm !== undefined;
  // x (times the norm's weight when fused) at chunk c of row m
  const nw = (u: number, part = '') => (norm ? ` * nw${part}${u}` : '');
  const chunkSum = (w: number, v: string, c: string, u: number) => {
    if (!vec) return rowsX.map((m) => `    acc${w}_${m} += ${v} * x[${m}u * params.x_stride + ${c}]${nw(u)};`).join('\n');
    if (!half) return rowsX.map((m) => `    acc${w}_${m} += dot(${v}, xv[${m}u * xs4 + ${c}]${nw(u)});`).join('\n');
    return `    {
      let lo = vec4<f32>(unpack2x16float(${v}.x), unpack2x16float(${v}.y));
      let hi = vec4<f32>(unpack2x16float(${v}.z), unpack2x16float(${v}.w));
${rowsX.map((m) => `      acc${w}_${m} += dot(lo, xv[${m}u * xs4 + 2u * ${c}]${nw(u, 'lo')}) + dot(hi, xv[${m}u * xs4 + 2u * ${c} + 1u]${nw(u, 'hi')});`).join('\n')}
    }`;
  };
  const normLoads = (U: number) => {
    if (!norm) return [];
    return Array.from({ length: U }, (_, u) => {
      if (!half || !vec) return `    let nw${u} = load_nw(ci${u});`;
      return `    let nwlo${u} = load_nw(2u * ci${u});\n    let nwhi${u} = load_nw(2u * ci${u} + 1u);`;
    });
  };
  const load = (w: string, at: string) => (vec ? `${w}[${at}]` : `load_${w}(${at})`);
  // U chunks per thread per step, loads first. Chunk u's index is named once (ci<u>) and every
  // expression uses the name: spliced in as text, `2u * c + u * TPR` once read x at the wrong
  // place for u >= 1 (issue 8: float16 weights, K > 96 * 8, i.e. every real model width).
  const step = (U: number) => {
    const lines: string[] = [];
    for (let u = 0; u < U; u++) lines.push(`    let ci${u} = c + ${u}u * TPR;`);
    weights.forEach((w) => {
      for (let u = 0; u < U; u++) lines.push(`    let ld_${w}_${u} = ${load(w, `row_base + ci${u}`)};`);
    });
    lines.push(...normLoads(U));
    weights.forEach((w, wi) => {
      for (let u = 0; u < U; u++) lines.push(chunkSum(wi, `ld_${w}_${u}`, `ci${u}`, u));
    });
    return lines.join('\n');
  };

  return `${GEMV_PARAMS.wgsl()}
@group(0) @binding(${B.params}) var<uniform> params: GemvParams;
@group(0) @binding(${B.x}) var<storage, read> ${vec ? 'xv: array<vec4<f32>>' : 'x: array<f32>'};
@group(0) @binding(${B.w}) var<storage, read> w: array<${element}>;
@group(0) @binding(${B.out}) var<storage, read_write> out: array<f32>;
${o.bias !== 'none' ? `@group(0) @binding(${B.bias}) var<storage, read> bias: array<${arrayElement(o.bias)}>;\n${loadFloat('load_bias', 'bias', o.bias)}` : ''}
${pair ? `@group(0) @binding(${B.w2}) var<storage, read> w2: array<${element}>;` : ''}
${pair && o.bias !== 'none' ? `@group(0) @binding(${B.bias2}) var<storage, read> bias2: array<${arrayElement(o.bias)}>;\n${loadFloat('load_bias2', 'bias2', o.bias)}` : ''}
${vec ? '' : weights.map((w) => loadFloat(`load_${w}`, w, o.weight)).join('\n')}
${norm ? `@group(0) @binding(${B.norm}) var<storage, read> norm_weight: array<${vec ? quadElement(o.norm!) : arrayElement(o.norm!)}>;
${vec ? loadQuad('load_nw', 'norm_weight', o.norm!) : loadFloat('load_nw', 'norm_weight', o.norm!)}` : ''}

const TPR = ${TPR}u;
const RPW = ${WG / TPR}u;
const MP = ${M * P}u;
var<workgroup> partial: array<f32, ${WG * M * P}>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let lane = lid.x % TPR;
  let r = lid.x / TPR;
  let n = (wid.x + wid.y * nwg.x) * RPW + r;
  // chunks per weight row (16-byte chunks, or elements without vec)
  let chunks = ${vec ? `params.k / ${half ? 8 : 4}u` : 'params.k'};
  let xs4 = params.x_stride / 4u;
${[0, 1].slice(0, P).map((w) => accs(w).map((a) => `  var ${a} = 0.0;`).join('\n')).join('\n')}
  if (n < params.n) {
    let row_base = n * chunks;
    var c = lane;
    for (; c + 3u * TPR < chunks; c += 4u * TPR) {
${step(4)}
    }
    for (; c < chunks; c += TPR) {
${step(1)}
    }
  }
  let at = lid.x * MP;
${norm ? `  // 1/rms of each row of x: the whole workgroup sums its squares (x is tiny and cached)
${rowsX.map((m) => `  var ss${m} = 0.0;`).join('\n')}
  for (var k = lid.x; k < params.k; k += ${WG}u) {
${rowsX.map((m) => `    { let v = ${vec ? `xv[${m}u * xs4 + k / 4u][k % 4u]` : `x[${m}u * params.x_stride + k]`}; ss${m} += v * v; }`).join('\n')}
  }
${rowsX.map((m) => `  partial[at + ${m}u] = ss${m};`).join('\n')}
  workgroupBarrier();
  for (var stride = ${WG / 2}u; stride > 0u; stride /= 2u) {
    if (lid.x < stride) {
      for (var i = 0u; i < ${M}u; i++) { partial[at + i] += partial[at + stride * MP + i]; }
    }
    workgroupBarrier();
  }
  var inv: array<f32, ${M}>;
  for (var m = 0u; m < ${M}u; m++) { inv[m] = inverseSqrt(partial[m] / f32(params.k) + params.eps); }
  workgroupBarrier();
` : ''}${[0, 1].slice(0, P).map((w) => accs(w).map((a, m) => `  partial[at + ${w * M + m}u] = ${a};`).join('\n')).join('\n')}
  workgroupBarrier();
  for (var stride = TPR / 2u; stride > 0u; stride /= 2u) {
    if (lane < stride) {
      for (var i = 0u; i < MP; i++) { partial[at + i] += partial[at + stride * MP + i]; }
    }
    workgroupBarrier();
  }
  if (lane == 0u && n < params.n) {
    for (var m = 0u; m < ${M}u; m++) {
      let col = params.out_col + n;
      var y = partial[at + m]${norm ? ' * inv[m]' : ''}${o.bias !== 'none' ? ' + load_bias(col)' : ''};
${pair ? `      let up = partial[at + ${M}u + m]${norm ? ' * inv[m]' : ''}${o.bias !== 'none' ? ' + load_bias2(col)' : ''};
      y = y / (1.0 + exp(-y)) * up;` : ''}
      let o = m * params.out_stride + col;
      ${o.accumulate ? 'out[o] += y;' : 'out[o] = y;'}
    }
  }
}
`;
}
