// The choice of a backend for attentionBackward(), with the forward's rules (GPU tensors force
// WebGPU, 'auto' as autoBackend() says). Backends load lazily, as the forward's do.
import { UnsupportedError } from '../../../core/errors.js';
import type { RunContext } from '../backend.js';
import type { BackendChoice, BackendName } from '../options.js';
import { autoBackend } from '../registry.js';
import type { BackwardBackend } from './backend.js';
import type { BackwardProblem } from './problem.js';

const loaders: Record<BackendName, () => Promise<BackwardBackend>> = {
  cpu: async () => (await import('./cpu/index.js')).cpuBackward,
  webgpu: async () => (await import('./webgpu/index.js')).webgpuBackward,
};

const loaded = new Map<BackendName, Promise<BackwardBackend>>();

export function getBackwardBackend(name: BackendName): Promise<BackwardBackend> {
  let backend = loaded.get(name);
  if (!backend) {
    backend = loaders[name]();
    loaded.set(name, backend);
  }
  return backend;
}

/** The backend for a backward call; UnsupportedError, saying why, when it cannot run the problem. */
export async function chooseBackwardBackend(bp: BackwardProblem, choice: BackendChoice, context: RunContext): Promise<BackwardBackend> {
  const onGpu = bp.forward.q.tensor.location === 'webgpu';
  if (onGpu && choice === 'cpu') {
    throw new UnsupportedError('options.backend', 'backend "cpu" cannot read GPU tensors; read them back first or use backend "webgpu"');
  }
  const name: BackendName = onGpu || choice === 'webgpu' || (choice === 'auto' && (await autoBackend(context)) === 'webgpu') ? 'webgpu' : 'cpu';
  const backend = await getBackwardBackend(name);
  const reason = backend.unsupported(bp);
  if (reason !== undefined) throw new UnsupportedError('options.backend', `backend ${name} cannot run this attention backward: ${reason}`);
  return backend;
}
