#!/usr/bin/env node
// `npm test`: the whole test run from a fresh clone. Installs dependencies, builds, prepares
// WebGPU-on-CPU (Mesa llvmpipe) and Chromium for the browser tests, then runs the vitest suite. Extra arguments go to vitest.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { build, ensureChromium, ensureDependencies, ensureMesa, root } from './setup.mjs';

ensureDependencies();
build();
const mesaProblem = ensureMesa();
const env = { ...process.env, EGL_PLATFORM: process.env.EGL_PLATFORM ?? 'surfaceless' };
if (mesaProblem) {
  env.FUSEDATTN_WEBGPU_SKIP_REASON = mesaProblem;
  console.warn(`\n!!! WebGPU tests will be SKIPPED: ${mesaProblem}\n`);
}
const browserProblem = ensureChromium();
if (browserProblem) {
  env.FUSEDATTN_BROWSER_SKIP_REASON = browserProblem;
  console.warn(`\n!!! Browser tests will be SKIPPED: ${browserProblem}\n`);
}
const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');
const r = spawnSync(process.execPath, [vitest, 'run', ...process.argv.slice(2)], { stdio: 'inherit', cwd: root, env });
if (mesaProblem) console.warn(`\n!!! WebGPU tests were SKIPPED: ${mesaProblem}\n`);
if (browserProblem) console.warn(`\n!!! Browser tests were SKIPPED: ${browserProblem}\n`);
process.exit(r.status ?? 1);
