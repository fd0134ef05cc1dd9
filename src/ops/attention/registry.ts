// Finds backends by name. They are loaded lazily so a browser bundle that never asks for the CPU
// worker pool, or a Node process without a GPU, does not pay for the other one.
import { UnsupportedError } from '../../core/errors.js';
import type { BackendChoice, BackendName } from './options.js';
import type { AttentionProblem } from './problem.js';
import type { AttentionBackend, RunContext } from './backend.js';

const loaders: Record<BackendName, () => Promise<AttentionBackend>> = {
  cpu: async () => (await import('./cpu/index.js')).cpuBackend,
  webgpu: async () => (await import('./webgpu/index.js')).webgpuBackend,
};

const loaded = new Map<BackendName, Promise<AttentionBackend>>();

export function getBackend(name: BackendName): Promise<AttentionBackend> {
  let backend = loaded.get(name);
  if (!backend) {
    backend = loaders[name]();
    loaded.set(name, backend);
  }
  return backend;
}

/**
 * What 'auto' picks: WebGPU when the caller passed a device or a hardware adapter exists, else the
 * CPU. A software adapter (llvmpipe, SwiftShader) counts as none: it is slower than the CPU backend.
 */
export async function autoBackend(context: RunContext = {}): Promise<BackendName> {
  if (context.device) return 'webgpu';
  const { hasHardwareAdapter } = await import('../../engines/webgpu/device.js');
  return (await hasHardwareAdapter()) ? 'webgpu' : 'cpu';
}

/**
 * The backend for a call: GPU tensors force WebGPU; 'auto' as autoBackend() says.
 * Throws UnsupportedError when the named backend cannot run this problem, saying why.
 */
export async function chooseBackend(problem: AttentionProblem, choice: BackendChoice, context: RunContext): Promise<AttentionBackend> {
  const onGpu = problem.q.tensor.location === 'webgpu';
  if (onGpu && choice === 'cpu') {
    throw new UnsupportedError('options.backend', 'backend "cpu" cannot read GPU tensors; read them back first or use backend "webgpu"');
  }
  const name: BackendName = onGpu || choice === 'webgpu' || (choice === 'auto' && (await autoBackend(context)) === 'webgpu') ? 'webgpu' : 'cpu';
  const backend = await getBackend(name);
  const reason = backend.unsupported(problem);
  if (reason !== undefined) throw new UnsupportedError('options.backend', `backend ${name} cannot run this attention: ${reason}`);
  return backend;
}

export interface BackendInfo {
  name: BackendName;
  available: boolean;
  /** Adapter / thread description, or why the backend is unavailable. */
  detail: string;
}

/** Which backends this process can use, for `fusedattn info` and the tests. */
export async function listBackends(): Promise<BackendInfo[]> {
  const cpu = await import('../cpu-engine.js');
  const gpu = await import('../../engines/webgpu/device.js');
  let cpuInfo: Omit<BackendInfo, 'name'>;
  try {
    cpuInfo = { available: true, detail: await cpu.describeCpu() };
  } catch (e) {
    // a malformed FUSEDATTN_CPU_THREADS / FUSEDATTN_CPU_KERNELS: every CPU call would refuse too
    cpuInfo = { available: false, detail: e instanceof Error ? e.message : String(e) };
  }
  return [
    { name: 'cpu', ...cpuInfo },
    { name: 'webgpu', ...(await gpu.describeAdapter()) },
  ];
}
