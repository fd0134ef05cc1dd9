#!/usr/bin/env node
// `npm run build`: dist/ from scratch (files of moved or deleted sources must not linger and get
// packed), tsc, then the self-contained CPU worker bundle (bundle-worker.mjs).
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorker } from './bundle-worker.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
rmSync(join(root, 'dist'), { recursive: true, force: true });
const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
const { file, inputs } = await bundleWorker();
console.log(`[build] ${file}: CPU worker bundled from ${inputs} modules`);
