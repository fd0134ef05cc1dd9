// Bun (the "bun" condition of `#platform`): Node's implementation, except for environment writes.
// Bun's process.env is a JavaScript copy, so EGL_PLATFORM set there never reaches Mesa's getenv()
// under Dawn; libc's setenv() does, through bun:ffi.
import { nodePlatform } from './node.js';
import type { Platform } from './types.js';

interface BunFfi {
  dlopen(path: string, symbols: Record<string, { args: string[]; returns: string }>): { symbols: Record<string, (...args: unknown[]) => number> };
  ptr(buffer: Uint8Array): unknown;
}

function libcSetenv(name: string, value: string): void {
  if (process.env[name] === undefined) process.env[name] = value;
  if (process.platform === 'win32') return;
  try {
    // import.meta.require: Bun's synchronous require inside an ES module (bun:ffi has no npm types)
    const require = (import.meta as { require?: (id: string) => unknown }).require;
    const ffi = require?.('bun:ffi') as BunFfi | undefined;
    if (!ffi) return;
    const libc = process.platform === 'darwin' ? 'libc.dylib' : 'libc.so.6';
    const { symbols } = ffi.dlopen(libc, { setenv: { args: ['ptr', 'ptr', 'i32'], returns: 'i32' } });
    const cString = (s: string) => new TextEncoder().encode(`${s}\0`);
    // overwrite = 0: a value given at launch (EGL_PLATFORM=x bun app.js) wins
    symbols.setenv(ffi.ptr(cString(name)), ffi.ptr(cString(value)), 0);
  } catch {
    // no FFI (bun --no-ffi or a libc elsewhere): launch with EGL_PLATFORM=surfaceless instead (README)
  }
}

export const platform: Platform = nodePlatform('bun', libcSetenv);
