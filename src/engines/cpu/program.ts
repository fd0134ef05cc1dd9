// What the CPU engine runs: a *program* that the ops assemble (src/ops/cpu-program.ts) and the
// engine executes without knowing any op. A program is one WebAssembly module of micro-kernels
// (compiled once on the main thread, instantiated by every worker on the shared memory), the
// scalar-JavaScript twins of those kernels (the fallback without WASM SIMD), and a table of task
// functions by job kind. The engine only stages memory, counts tasks and moves messages.

export type KernelKind = 'wasm-relaxed-simd' | 'wasm-simd' | 'scalar';

/** The least every kernel set says about itself. */
export interface KernelSet {
  readonly kind: KernelKind;
}

/** A compiled module and what it was built for (sent to the workers, which compile nothing). */
export interface CompiledProgram {
  module: WebAssembly.Module;
  kind: Exclude<KernelKind, 'scalar'>;
  /** The program's own build options (tile sizes, register blocks), plain data. */
  tuning: unknown;
}

export interface CompileRequest<T> {
  /** The memory is shared (workers) or private (main thread only). */
  shared: boolean;
  maximumPages: number;
  /** Use relaxed SIMD (the engine validated it). */
  relaxed: boolean;
  tuning: Partial<T>;
}

/**
 * One task of a job: `task` is the index claimed from the job's counter, `scratch` this
 * participant's scratch region (byte address), `buffer()` the memory's current buffer (it changes
 * when the memory grows).
 */
export type Task<K, P> = (kernels: K, buffer: () => ArrayBufferLike, params: P, task: number, scratch: number) => void;

export interface CpuProgram<K extends KernelSet, J extends object, T = unknown> {
  compile(request: CompileRequest<T>): Promise<CompiledProgram>;
  instantiate(compiled: CompiledProgram, memory: WebAssembly.Memory): K;
  scalar(memory: { readonly buffer: ArrayBufferLike }, tuning: Partial<T>): K;
  readonly tasks: { readonly [N in keyof J]: Task<K, J[N]> };
}
