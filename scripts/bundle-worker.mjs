#!/usr/bin/env node
// After tsc: replaces dist/…/worker.js by one self-contained ES module (the worker script and the
// kernels, jobs and encoder it imports, bundled by esbuild). A bundler that inlines the worker as a
// data: or blob: URL (Vite does in production) or copies only that one file then still gets a
// worker that runs: an unbundled worker's `import './kernels.js'` cannot resolve from a data: URL.
// Node and Bun do not use this file (they start cpu-worker-node.js, which imports the unbundled modules).
import { build } from 'esbuild';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const WORKER_SOURCE = 'src/ops/cpu-worker.ts';
export const WORKER_OUT = 'dist/ops/cpu-worker.js';

export async function bundleWorker() {
  const result = await build({
    absWorkingDir: root,
    entryPoints: [WORKER_SOURCE],
    outfile: WORKER_OUT,
    bundle: true,
    format: 'esm',
    // what the package targets (tsconfig: ES2022); no top-level await in the result
    target: 'es2022',
    platform: 'neutral',
    // the map points at ../../../src/*.ts, which the package ships
    sourcemap: true,
    sourcesContent: false,
    legalComments: 'none',
    logLevel: 'warning',
    metafile: true,
  });
  const inputs = Object.keys(result.metafile.inputs);
  const nodeOnly = inputs.filter((p) => p.startsWith('node:'));
  if (nodeOnly.length) throw new Error(`the CPU worker bundle must not import Node modules: ${nodeOnly.join(', ')}`);
  return { file: relative(root, join(root, WORKER_OUT)), inputs: inputs.length };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { file, inputs } = await bundleWorker();
  console.log(`[build] ${file}: CPU worker bundled from ${inputs} modules`);
}
