// The occupancy probe's WGSL (bench/ceiling/occupancy.mjs), apart so it can be compiled without a GPU.
/** WGSL of one probe: `matrices` accumulators (0: FMAs), `pad` vec4 words of workgroup memory. */
export function probe({ matrices, pad, extension, iterations }) {
  const ext = matrices > 0 || extension;
  const idx = Array.from({ length: matrices }, (_, i) => i);
  return `${ext ? 'enable f16;\nenable subgroups;\nenable chromium_experimental_subgroup_matrix;\ndiagnostic(off, chromium.subgroup_matrix_uniformity);\n' : ''}
@group(0) @binding(0) var<storage, read_write> sink: array<f32>;
${matrices > 0 ? '@group(0) @binding(1) var<storage, read> src: array<f16>;' : ''}
${pad ? `var<workgroup> padW: array<vec4<f32>, ${pad}>;` : ''}
@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  var x = f32(li) * 1e-3;
${pad ? `  // touch the workgroup memory so it is allocated
  for (var i = li; i < ${pad}u; i += 128u) { padW[i] = vec4<f32>(x); }
  workgroupBarrier();
  x += padW[(li * 7u) % ${pad}u].x;` : ''}
${matrices > 0 ? `  let a = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>(&src, 0u, 16u);
  let b = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&src, 256u, 16u);
${idx.map((i) => `  var acc${i} = subgroup_matrix_result<f32, 16, 16>();`).join('\n')}
  for (var i = 0u; i < ${iterations}u; i++) {
${idx.map((i) => `    acc${i} = subgroupMatrixMultiplyAccumulate(a, b, acc${i});`).join('\n')}
  }
  if (wid.x == 0xffffffu) {
${idx.map((i) => `    subgroupMatrixStore<row_major>(&sink, ${i * 256}u, acc${i}, 16u);`).join('\n')}
  }` : `  for (var i = 0u; i < ${iterations}u; i++) { x = fma(x, 0.99999, 0.5); }`}
  if (x == 1234.5) { sink[0] = x; }
}`;
}

