#!/usr/bin/env node
// `npm run playground`: build the package if needed, write the tiny model, start Vite's dev
// server (cross-origin isolated) and print its address. Ctrl-C stops it.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build, ensureDependencies } from '../scripts/setup.mjs';

ensureDependencies();
if (!existsSync(fileURLToPath(new URL('../dist/index.js', import.meta.url)))) build();
const { makeTinyModel } = await import('./make-model.mjs');
await makeTinyModel();
const { createServer } = await import('vite');
const server = await createServer({ configFile: fileURLToPath(new URL('./vite.config.js', import.meta.url)), server: { port: Number(process.env.PORT ?? 5173) } });
await server.listen();
server.printUrls();
