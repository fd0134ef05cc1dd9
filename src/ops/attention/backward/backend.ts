// What a backend implements for attentionBackward(), and the choice of one (the forward's rules:
// GPU tensors force WebGPU, 'auto' as autoBackend() says). Backends load lazily, as the forward's do.
import { UnsupportedError } from '../../../core/errors.js';
import type { RunContext } from '../backend.js';
import type { BackendChoice, BackendName } from '../options.js';
import { autoBackend } from '../registry.js';
import type { AttentionGrads } from './options.js';
import type { BackwardProblem } from './problem.js';

export interface BackwardBackend {
  readonly name: BackendName;
  /** Why this backend cannot run `problem`, or undefined when it can. */
  unsupported(problem: BackwardProblem): string | undefined;
  /** The fused backward (O(N) memory: no Sq×Sk buffer). */
  run(problem: BackwardProblem, context: RunContext): Promise<AttentionGrads>;
  /** The unfused backward (P, dP and dS materialised), the baseline benchmarks compare against. */
  runNaive(problem: BackwardProblem, context: RunContext): Promise<AttentionGrads>;
}

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
