// Starts a CPU worker in a browser or Deno (the default and "deno" conditions of `#cpu-spawn` in
// package.json). The `new Worker(new URL('./cpu-worker.js', import.meta.url), { type: 'module' })`
// expression is written out literally: that is the pattern Vite, webpack 5, Rollup and Parcel
// recognise to emit the worker script and rewrite its URL. Do not factor it into a helper.
import { type WorkerSpawner, webWorkerHandle } from '../engines/cpu/platform.js';

const SCRIPT = 'cpu-worker.js';

export const cpuWorkerSpawner: WorkerSpawner = {
  // For messages and Deno's permission check only; not a literal, so bundlers do not emit the
  // script a second time as an asset. Where a bundler rewrote the Worker's URL, this is the
  // unbundled location.
  get url() {
    return new URL(`./${SCRIPT}`, import.meta.url);
  },
  spawn: () => webWorkerHandle(new Worker(new URL('./cpu-worker.js', import.meta.url), { type: 'module' }), cpuWorkerSpawner.url),
};
