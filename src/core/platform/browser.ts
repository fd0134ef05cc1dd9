// Browsers and other web-style runtimes (the default condition of `#platform`): no file system,
// no Dawn (navigator.gpu is the WebGPU there), cores from navigator.hardwareConcurrency.
import type { Platform } from './types.js';

const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;

export const webPlatform: Platform = {
  name: 'browser',
  hardwareThreads: () => Math.max(1, nav?.hardwareConcurrency ?? 1),
  workersBlocked: () => undefined,
  fs: undefined,
  loadDawn: async () => {
    throw new Error('Dawn (the "webgpu" package) is for Node; in a browser WebGPU is navigator.gpu (none here: the browser lacks WebGPU or it is disabled), or pass options.device');
  },
  vulkanLoaderPresent: () => false,
  defaultNativeEnv: () => {},
  os: 'browser',
};

export const platform: Platform = webPlatform;
