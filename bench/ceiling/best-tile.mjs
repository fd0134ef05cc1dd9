#!/usr/bin/env node
// Prints the ceiling study's fastest GEMM configuration that the block and the runner can run, as a
// JSON tile for FUSEDATTN_GEMM_TILE (staged operands, f32 accumulation, W [N, K] operand: what a
// Linear layer needs; dtypes, bias and edge checks are the call's). Prints nothing when no row fits.
//   node bench/ceiling/best-tile.mjs DIR [tag=robust]
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir = 'ceiling-out', tag = 'robust'] = process.argv.slice(2);
const file = join(dir, 'gemm.jsonl');
const rows = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)) : [];
const usable = rows.filter((r) => r.tag === tag && r.kind === 'result' && r.impl === 'tensorcore' && r.tflops && r.check?.pass)
  .filter((r) => r.options.operands === 'staged' && r.options.accumulate === 'f32' && r.options.b === 'nt' && r.options.epilogue === 'scratch')
  .sort((a, b) => b.tflops - a.tflops);
const best = usable[0];
if (best) {
  const o = best.options;
  const tile = { kind: 'tensorcore', sgM: o.sgM, sgN: o.sgN, fragM: o.fragM, fragN: o.fragN, shape: o.shape, k: o.k, load: o.load, layout: o.layout, stages: o.stages, prefetch: o.prefetch, raster: o.raster };
  console.error(`best block tile: ${best.name} (${best.tflops.toFixed(1)} TFLOP/s in the study)`);
  console.log(JSON.stringify(tile));
}
