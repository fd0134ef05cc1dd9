#!/usr/bin/env node
// `npm test`: the whole test run from a fresh clone. Installs dependencies, builds, prepares
// WebGPU-on-CPU (Mesa llvmpipe) and Chromium for the browser tests, then runs the vitest suite. Extra arguments go to vitest.
import { spawn, spawnSync } from 'node:child_process';
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
// Dawn prints two informational lines per WebGPU process from native code; the library silences
// them where stderr can be reopened (terminals, pipes, files), but vitest's workers write through
// sockets. So the log is filtered here (FUSEDATTN_DEBUG=1 keeps everything).
const filter = !process.env.FUSEDATTN_DEBUG;
const DAWN_INFO = /^Warning: maxDynamic(Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/;
if (filter && process.stdout.isTTY) env.FORCE_COLOR ??= '1';
const r = filter ? await runFiltered(process.execPath, [vitest, 'run', ...process.argv.slice(2)], env) : spawnSync(process.execPath, [vitest, 'run', ...process.argv.slice(2)], { stdio: 'inherit', cwd: root, env });
if (mesaProblem) console.warn(`\n!!! WebGPU tests were SKIPPED: ${mesaProblem}\n`);
if (browserProblem) console.warn(`\n!!! Browser tests were SKIPPED: ${browserProblem}\n`);
process.exit(r.status ?? 1);

/** Runs a command with stdout/stderr passed through line by line, less Dawn's informational lines. */
function runFiltered(command, args, childEnv) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, env: childEnv, stdio: ['inherit', 'pipe', 'pipe'] });
    const pass = (from, to) => {
      let rest = '';
      from.setEncoding('utf8');
      from.on('data', (chunk) => {
        const lines = (rest + chunk).split('\n');
        rest = lines.pop();
        const kept = lines.filter((line) => !DAWN_INFO.test(line));
        if (kept.length) to.write(`${kept.join('\n')}\n`);
      });
      from.on('end', () => {
        if (rest && !DAWN_INFO.test(rest)) to.write(rest);
      });
    };
    pass(child.stdout, process.stdout);
    pass(child.stderr, process.stderr);
    child.on('close', (status) => resolve({ status }));
  });
}
