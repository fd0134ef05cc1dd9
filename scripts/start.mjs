#!/usr/bin/env node
// `npm start`: the demo from a fresh clone. Same set-up as `npm test` (dependencies, build, Mesa
// for WebGPU-on-CPU when we can install it), then `fusedattn demo`; extra arguments go to the demo,
// e.g. `npm start -- --seq-len 1024 --backend cpu`.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { build, ensureDependencies, ensureMesa, root } from './setup.mjs';

ensureDependencies();
build();
const mesaProblem = ensureMesa();
if (mesaProblem) console.warn(`[setup] WebGPU without a GPU is unavailable (${mesaProblem}); the demo can still use a hardware GPU or the CPU.`);
const env = { ...process.env, EGL_PLATFORM: process.env.EGL_PLATFORM ?? 'surfaceless' };
const cli = join(root, 'dist', 'cli', 'main.js');
const r = spawnSync(process.execPath, [cli, 'demo', ...process.argv.slice(2)], { stdio: 'inherit', cwd: root, env });
process.exit(r.status ?? 1);
