// The Node implementation of the platform (selected by the "node" condition of `#platform`).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { envString } from '../env.js';
import { nodeFs } from './node-fs.js';
import type { DawnModule, Platform } from './types.js';

/** Whether libvulkan.so.1 is on LD_LIBRARY_PATH, in a usual library folder, or in ldconfig's cache. */
function vulkanLoaderPresent(): boolean {
  const dirs = [
    ...(envString('LD_LIBRARY_PATH') ?? '').split(':').filter(Boolean),
    '/usr/lib/x86_64-linux-gnu', '/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/lib/aarch64-linux-gnu',
    '/usr/lib64', '/lib64', '/usr/lib', '/lib', '/usr/local/lib',
  ];
  if (dirs.some((dir) => existsSync(`${dir}/libvulkan.so.1`))) return true;
  try {
    return execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).includes('libvulkan.so.1');
  } catch {
    return false;
  }
}

/** Dawn, from the optional peer dependency `webgpu`; the message says how to get it. */
export async function loadDawn(): Promise<DawnModule> {
  try {
    const specifier = 'webgpu'; // a variable: a server bundle without Dawn still builds
    return (await import(/* @vite-ignore */ specifier)) as DawnModule;
  } catch (e) {
    const missing = (e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' || /Cannot find (package|module) ['"]?webgpu/.test(String((e as Error).message));
    throw new Error(missing
      ? 'the optional peer dependency "webgpu" (Dawn for Node) is not installed: run `npm install webgpu` to use WebGPU in Node (browsers use navigator.gpu and never need it)'
      : `cannot load the "webgpu" package (Dawn for Node): ${(e as Error).message}`);
  }
}

export function nodePlatform(name: 'node' | 'bun', defaultNativeEnv: Platform['defaultNativeEnv']): Platform {
  return {
    name,
    hardwareThreads: () => (typeof availableParallelism === 'function' ? availableParallelism() : cpus().length),
    workersBlocked: () => undefined,
    fs: nodeFs,
    loadDawn,
    vulkanLoaderPresent,
    defaultNativeEnv,
    os: process.platform,
  };
}

export const platform: Platform = nodePlatform('node', (name, value) => {
  // Node's process.env is the C environment: Mesa's getenv() sees this
  if (process.env[name] === undefined) process.env[name] = value;
});
