// Dawn prints informational warnings straight to the process's stderr from native code while it
// enumerates adapters ("maxDynamicUniformBuffersPerPipelineLayout artificially reduced ..." on
// every OpenGL ES adapter, "Couldn't load Vulkan" with a native source line), which no JavaScript
// API of the `webgpu` package lets us intercept. So around those synchronous native calls, file
// descriptor 2 is pointed at /dev/null and back (Node has no dup2: the lowest free descriptor is
// reused, and /proc/self/fd (Linux) or /dev/fd (macOS) reopens the original). FUSEDATTN_DEBUG=1
// keeps everything. Where any step is not possible (Windows, no /proc, stderr a socket) the call
// runs unfiltered; a failure of the call itself still comes back as its exception or null adapter.
import { debugEnabled } from '../../core/env.js';

type Fs = typeof import('node:fs');
let fs: Fs | undefined;

/** Loads node:fs once (the first Dawn call is after an `await import('webgpu')` anyway). */
export async function prepareQuietStderr(): Promise<void> {
  if (fs || !globalThis.process?.versions?.node) return;
  try {
    const specifier = 'node:fs'; // a variable, so bundlers leave it out of browser builds
    fs = (await import(/* @vite-ignore */ specifier)) as Fs;
  } catch {
    fs = undefined;
  }
}

function fdDir(): string | undefined {
  if (process.platform === 'linux') return '/proc/self/fd';
  if (process.platform === 'darwin') return '/dev/fd';
  return undefined;
}

/** Runs `fn` (synchronous native work) with stderr silenced, unless FUSEDATTN_DEBUG is on. */
export function withQuietStderr<T>(fn: () => T): T {
  const dir = fdDir();
  if (!fs || !dir || debugEnabled()) return fn();
  let saved: number;
  try {
    saved = fs.openSync(`${dir}/2`, 'a');
  } catch {
    return fn();
  }
  let silenced = false;
  try {
    fs.closeSync(2);
    const nul = fs.openSync('/dev/null', 'a');
    silenced = nul === 2;
    if (!silenced) fs.closeSync(nul); // descriptor 2 was taken meanwhile: give it back below
  } catch {
    // fall through to the restore
  }
  try {
    return fn();
  } finally {
    try {
      if (silenced) fs.closeSync(2);
      const back = fs.openSync(`${dir}/${saved}`, 'a');
      if (back !== 2) fs.closeSync(back);
    } finally {
      fs.closeSync(saved);
    }
  }
}
