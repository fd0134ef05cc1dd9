// What a backend implements for attention(). Backends receive a validated AttentionProblem and
// only decide whether they support it (a reason string when not) and how to run it.
import type { Tensor } from '../../core/tensor.js';
import type { BackendName } from './options.js';
import type { AttentionProblem } from './problem.js';

/** What one call cost, for the demo and benchmarks (the profiler gives more detail). */
export interface RunStats {
  /** Kernel launches: GPU dispatches, or parallel jobs handed to the CPU pool. */
  launches: number;
  /** Peak bytes of intermediates the call allocated beyond inputs and outputs (S×S for naive). */
  intermediateBytes: number;
  /** The backend that ran the call (attention() and naiveAttention() always set it). */
  backend?: BackendName;
  /**
   * What ran: CPU kernels 'wasm-relaxed-simd' | 'wasm-simd' | 'scalar'; WebGPU flash tier
   * 'sgmatrix' | 'portable' | 'subgroup', or 'naive' for naiveAttention().
   */
  tier?: string;
  /** CPU threads that computed it (1: the calling thread only); 1 on WebGPU. */
  threads?: number;
  /**
   * CPU with a worker pool: where its workers' script came from. 'url': the worker file beside the
   * module (or where a bundler emitted it); 'embedded': the package's copy started as a blob: URL,
   * because the file did not load (esbuild and Rollup emit none; listBackends() says why).
   */
  workerScript?: 'url' | 'embedded';
  /** Why it ran on a slower path than this runtime could offer (single-threaded, scalar kernels). */
  fallback?: string;
  /**
   * The CPU backward: wall milliseconds of each phase in order (stage: operands into the shared
   * memory; plan; one entry per pool job; readBack: gradients out), for benchmarks.
   */
  phasesMs?: Record<string, number>;
  /**
   * The CPU backward's pool jobs: milliseconds each participating worker spent in the job's tasks
   * (mean); the phase's wall time minus this is the job's dispatch and wake-up cost.
   */
  busyMs?: Record<string, number>;
}

export interface AttentionResult {
  /** Output in the layout of q with head dim Dv, dtype of q; on the device the inputs were on. */
  out: Tensor;
  /** float32 logsumexp, [B, Nq, Sq] (TND: [Nq, T]), when returnLse was set. */
  lse?: Tensor;
  stats?: RunStats;
}

export interface RunContext {
  /** A caller-provided GPUDevice (webgpu backend). */
  device?: GPUDevice;
}

export interface AttentionBackend {
  readonly name: BackendName;
  /** Why this backend cannot run `problem` (e.g. a GPU limit), or undefined when it can. */
  unsupported(problem: AttentionProblem): string | undefined;
  /** Fused flash attention. */
  run(problem: AttentionProblem, context: RunContext): Promise<AttentionResult>;
  /**
   * The unfused three-step way (S = scale·QKᵀ materialised, softmax, P·V), same semantics and
   * options: the baseline the demo and benchmarks compare against.
   */
  runNaive(problem: AttentionProblem, context: RunContext): Promise<AttentionResult>;
}
