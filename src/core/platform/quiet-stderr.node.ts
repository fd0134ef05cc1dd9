// Dawn prints informational warnings straight to the process's stderr from native code while it
// enumerates adapters ("maxDynamicUniformBuffersPerPipelineLayout artificially reduced ..." on
// every OpenGL ES adapter, "Couldn't load Vulkan" with a native source line), which no JavaScript
// API of the `webgpu` package lets us intercept. So around those synchronous native calls, file
// descriptor 2 is pointed at /dev/null and back (Node has no dup2: the lowest free descriptor is
// reused, and /proc/self/fd (Linux) or /dev/fd (macOS) reopens the original). FUSEDATTN_DEBUG=1
// keeps everything. Where any step is not possible (Windows, no /proc, stderr a socket) the call
// runs unfiltered; a failure of the call itself still comes back as its exception or null adapter.
// Node and Bun only (the platform's quietStderr, picked by `#platform`): node:fs is imported
// statically here, so no browser build ever sees it.
import { closeSync, openSync } from 'node:fs';
import { debugEnabled } from '../env.js';

function fdDir(): string | undefined {
  if (process.platform === 'linux') return '/proc/self/fd';
  if (process.platform === 'darwin') return '/dev/fd';
  return undefined;
}

/** Runs `fn` (synchronous native work) with stderr silenced, unless FUSEDATTN_DEBUG is on. */
export function quietStderr<T>(fn: () => T): T {
  const dir = fdDir();
  if (!dir || debugEnabled()) return fn();
  let saved: number;
  try {
    saved = openSync(`${dir}/2`, 'a');
  } catch {
    return fn();
  }
  let silenced = false;
  try {
    closeSync(2);
    const nul = openSync('/dev/null', 'a');
    silenced = nul === 2;
    if (!silenced) closeSync(nul); // descriptor 2 was taken meanwhile: give it back below
  } catch {
    // fall through to the restore
  }
  try {
    return fn();
  } finally {
    try {
      if (silenced) closeSync(2);
      const back = openSync(`${dir}/${saved}`, 'a');
      if (back !== 2) closeSync(back);
    } finally {
      closeSync(saved);
    }
  }
}
