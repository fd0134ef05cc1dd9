// Deno (the "deno" condition of `#platform`): web-style cores (no permission needed), and the file
// system through Deno's node:fs when the caller gave read access. CPU workers need no permission
// (cpu-spawn.deno.ts starts them from source through node:worker_threads).
import { nodeFs } from './node-fs.js';
import { webPlatform } from './browser.js';
import type { Platform } from './types.js';

export const platform: Platform = {
  ...webPlatform,
  name: 'deno',
  fs: nodeFs,
  os: (globalThis as { Deno?: { build?: { os?: string } } }).Deno?.build?.os ?? 'unknown',
};
