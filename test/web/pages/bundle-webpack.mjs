// `node bundle-webpack.mjs ENTRY OUTDIR` in the consumer project: a webpack 5 production build
// with nothing configured but the entry and the output folder (webpack-cli's `webpack --entry
// ENTRY -o OUTDIR`; the test runs webpack's API to need no CLI package). FUSEDATTN_REPO points at
// the checkout whose node_modules hold webpack (the consumer installs only fusedattn).
import { join, resolve } from 'node:path';

const [entry, outdir] = process.argv.slice(2);
const { default: webpack } = await import(join(process.env.FUSEDATTN_REPO, 'node_modules', 'webpack', 'lib', 'index.js'));
const stats = await new Promise((done, fail) => webpack({ mode: 'production', entry: resolve(entry), output: { path: resolve(outdir) } }, (e, s) => (e ? fail(e) : done(s))));
if (stats.hasErrors()) {
  console.error(stats.toString({ all: false, errors: true }));
  process.exit(1);
}
console.log(JSON.stringify(stats.toJson({ all: false, assets: true }).assets.map((a) => [a.name, a.size])));
