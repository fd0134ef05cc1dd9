// Storing rows into a paged cache on the GPU (PagedKVCache.write, the runner's prefill): rows of
// new keys or values, float32 or float16, into the pages of one sequence at positions
// start .. start + T - 1, converted to the cache dtype (int8: quantized with one scale per row,
// as the decode kernel does on append). One thread per (row, head): a row is at most a few
// hundred elements, and prefill writes each once.
//   src    element (t, h, d) at src_off + t * src_st + h * src_sh + d   (float32 / float16 quads)
//   pool   element (page, h, p, d) at page * sp + h * sh + p * spos + d; page = pages[(start + t) / P]
import { UniformLayout } from '../../../engines/webgpu/uniforms.js';
import { ACCESS_HELPERS, type StoredDType, chunkStorer, int8QuantizedChunk, quadLoad, quadType, wordType } from './access.wgsl.js';

export interface PageWriteOptions {
  dim: number;
  /** Elements per store (4, 8, 16; divides dim). */
  chunk: number;
  cache: StoredDType;
  io: 'float32' | 'float16';
}

export const PAGE_WRITE_PARAMS = new UniformLayout('PageWriteParams', {
  rows: 'u32', heads: 'u32', start: 'u32', page_size: 'u32',
  src_off: 'u32', src_st: 'u32', src_sh: 'u32', dst_off: 'u32',
  sp: 'u32', sh: 'u32', spos: 'u32', s_off: 'u32',
  s_sp: 'u32', s_sh: 'u32', s_spos: 'u32',
});
export const PAGE_WRITE_WORKGROUP = 64;

export function buildPageWrite(o: PageWriteOptions): string {
  const E = o.chunk;
  const V = E / 4;
  const int8 = o.cache === 'int8';
  const vs = Array.from({ length: V }, (_, v) => v);
  return `${PAGE_WRITE_PARAMS.wgsl()}
@group(0) @binding(0) var<uniform> params: PageWriteParams;
@group(0) @binding(1) var<storage, read> src: array<${quadType(o.io)}>;
@group(0) @binding(2) var<storage, read> pages: array<u32>;
@group(0) @binding(3) var<storage, read_write> pool: array<${wordType(o.cache, E)}>;
${int8 ? '@group(0) @binding(4) var<storage, read_write> scales: array<f32>;' : ''}

${ACCESS_HELPERS}
${chunkStorer('store', 'pool', o.cache, E)}

fn chunk_at(base: u32, c: u32) -> array<vec4<f32>, ${V}> {
  return array<vec4<f32>, ${V}>(${vs.map((v) => quadLoad(o.io, `src[base / 4u + c * ${V}u + ${v}u]`)).join(', ')});
}

@compute @workgroup_size(${PAGE_WRITE_WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let x = gid.x;
  if (x >= params.rows * params.heads) { return; }
  let t = x / params.heads;
  let h = x % params.heads;
  let p = params.start + t;
  let page = pages[p / params.page_size];
  let base = params.src_off + t * params.src_st + h * params.src_sh;
  let row = params.dst_off + page * params.sp + h * params.sh + (p % params.page_size) * params.spos;
${int8 ? `  var mx = 0.0;
  for (var c = 0u; c < ${o.dim / E}u; c++) {
    let q = chunk_at(base, c);
${vs.map((v) => `    mx = max(mx, max(max(abs(q[${v}].x), abs(q[${v}].y)), max(abs(q[${v}].z), abs(q[${v}].w))));`).join('\n')}
  }
  let s = mx * (1.0 / 127.0);
  let inv = select(0.0, 1.0 / s, s > 0.0);
  scales[params.s_off + page * params.s_sp + h * params.s_sh + (p % params.page_size) * params.s_spos] = s;` : ''}
  for (var c = 0u; c < ${o.dim / E}u; c++) {
    let q = chunk_at(base, c);
    store(row + c * ${E}u, ${int8 ? int8QuantizedChunk((v) => `q[${v}]`, V, 'inv') : 'q'});
  }
}
`;
}
