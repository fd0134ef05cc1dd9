// Deno (the "deno" condition of `#platform`): web-style workers and cores (no permission needed),
// and the file system through Deno's node:fs when the caller gave read access. Deno starts a worker
// from a local file only with read access to it, so without --allow-read the CPU backend runs on
// the calling thread and says why (listBackends(), stats.threads).
import { nodeFs } from './node-fs.js';
import { webPlatform } from './browser.js';
import type { Platform } from './types.js';

interface DenoPermissions {
  permissions?: { querySync?(descriptor: { name: 'read'; path: string }): { state: string } };
}

function readGranted(url: URL): boolean {
  if (url.protocol !== 'file:') return true;
  try {
    const deno = (globalThis as { Deno?: DenoPermissions }).Deno;
    const state = deno?.permissions?.querySync?.({ name: 'read', path: decodeURIComponent(url.pathname) }).state;
    return state === undefined || state === 'granted';
  } catch {
    return false;
  }
}

export const platform: Platform = {
  ...webPlatform,
  name: 'deno',
  workersBlocked: (url) => (readGranted(url) ? undefined : `Deno starts workers from local files only with read access (run with --allow-read=${decodeURIComponent(url.pathname)} or --allow-read for worker threads)`),
  fs: nodeFs,
  os: (globalThis as { Deno?: { build?: { os?: string } } }).Deno?.build?.os ?? 'unknown',
};
