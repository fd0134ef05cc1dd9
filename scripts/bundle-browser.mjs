#!/usr/bin/env node
// After tsc and the worker bundle: dist/browser/, the package prebuilt for a page without a bundler
// (an import map, a CDN that serves the package's files as they are). The tree in dist/ imports
// `#platform` and `#cpu-spawn`, which only package-aware tools resolve (bundlers, Node, Deno, Bun);
// a browser would need import-map entries for them. Here esbuild resolves them as a browser
// bundler does (the default condition) into ES modules that import nothing by bare name:
//   index.js, model.js, testing.js   the three entry points (fusedattn, fusedattn/model, fusedattn/testing)
//   chunk-*.js                        what they share (one copy of the engine when a page loads two)
//   cpu-worker.js                     the worker script, where the chunk's `new URL('./cpu-worker.js', import.meta.url)` looks
// Minified, names kept (typed errors are told apart by name), with source maps into src/ (shipped)
// and the sources the package does not ship (the tokenizer) embedded in the maps.
import { build } from 'esbuild';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const BROWSER_OUT = 'dist/browser';

export async function bundleBrowser() {
  const out = join(root, BROWSER_OUT);
  const result = await build({
    absWorkingDir: root,
    entryPoints: { index: 'dist/index.js', model: 'dist/model/index.js', testing: 'dist/testing/index.js' },
    outdir: BROWSER_OUT,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    keepNames: true,
    sourcemap: true,
    sourcesContent: true,
    // the bundled tokenizer's license notices stay in its chunk
    legalComments: 'inline',
    logLevel: 'warning',
    metafile: true,
  });
  // node: modules stay external in a browser build: seen as the outputs' imports, not as inputs
  const nodeOnly = Object.entries(result.metafile.outputs).flatMap(([file, o]) => o.imports.filter((i) => i.path.startsWith('node:')).map((i) => `${file} imports ${i.path}`));
  if (nodeOnly.length) throw new Error(`the browser build must not import Node modules: ${nodeOnly.join(', ')}`);
  // the maps keep the text only of sources the package does not ship (the tokenizer's, under node_modules)
  const outputs = Object.keys(result.metafile.outputs);
  for (const file of outputs.filter((f) => f.endsWith('.map'))) {
    const path = join(root, file);
    const map = JSON.parse(readFileSync(path, 'utf8'));
    const shipped = (s) => !relative(root, join(dirname(path), s)).split(/[\\/]/).some((part) => part === '..' || part === 'node_modules');
    map.sourcesContent = map.sources.map((s, i) => (shipped(s) ? null : map.sourcesContent[i]));
    writeFileSync(path, JSON.stringify(map));
  }
  for (const f of ['cpu-worker.js', 'cpu-worker.js.map']) copyFileSync(join(root, 'dist', 'ops', f), join(out, f));
  copyFileSync(join(root, 'node_modules', '@huggingface', 'tokenizers', 'LICENSE'), join(out, 'LICENSE.huggingface-tokenizers'));
  const js = outputs.filter((f) => f.endsWith('.js'));
  const bytes = js.reduce((n, f) => n + result.metafile.outputs[f].bytes, 0);
  return { dir: relative(root, out), files: js.length + 1, bytes };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { dir, files, bytes } = await bundleBrowser();
  console.log(`[build] ${dir}/: the browser build, ${files} modules, ${(bytes / 1024).toFixed(0)} KiB`);
}
