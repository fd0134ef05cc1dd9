// `node bundle-rollup.mjs ENTRY OUTDIR` in the consumer project: a Rollup build with the one
// plugin every Rollup project that uses npm packages has (@rollup/plugin-node-resolve, defaults)
// and nothing else: Rollup emits no worker file, so the CPU pool starts from the package's embedded
// copy of its worker. FUSEDATTN_REPO points at the checkout whose node_modules hold Rollup.
import { join, resolve } from 'node:path';

const [entry, outdir] = process.argv.slice(2);
const modules = join(process.env.FUSEDATTN_REPO, 'node_modules');
const { rollup } = await import(join(modules, 'rollup', 'dist', 'es', 'rollup.js'));
const { default: nodeResolve } = await import(join(modules, '@rollup', 'plugin-node-resolve', 'dist', 'es', 'index.js'));
const bundle = await rollup({ input: resolve(entry), plugins: [nodeResolve()], onwarn: () => {} });
const { output } = await bundle.write({ dir: resolve(outdir), format: 'es' });
console.log(JSON.stringify(output.map((o) => o.fileName)));
