// The GEMMs' 16-byte output stores: eight consecutive results v0..v7 of row m from column n (a
// multiple of 8) written as two vec4<f32> or one vec4<u32> of packed halves, so the scratch
// epilogues of gemm-tensorcore.wgsl.ts and gemm-sgmat-tiled.wgsl.ts write whole 16-byte words.

/** Emits the store of v0..v7 (WGSL lets already declared) into `c` at row m, column n. */
export function emitEightOutputs(add: (line: string) => void, out: 'float32' | 'float16'): void {
  if (out === 'float32') {
    add('      let at = (params.c_off + m * params.c_stride + n) / 4u;');
    add('      c[at] = vec4<f32>(v0, v1, v2, v3);');
    add('      c[at + 1u] = vec4<f32>(v4, v5, v6, v7);');
  } else {
    add('      c[(params.c_off + m * params.c_stride + n) / 8u] = vec4<u32>(pack2x16float(vec2<f32>(v0, v1)), pack2x16float(vec2<f32>(v2, v3)), pack2x16float(vec2<f32>(v4, v5)), pack2x16float(vec2<f32>(v6, v7)));');
  }
}
