// What this JavaScript engine offers the CPU backend, probed once: core count, shared memory
// (SharedArrayBuffer + shared WebAssembly.Memory: Node, or a cross-origin-isolated browser),
// WASM SIMD and relaxed SIMD. And how to start a worker in Node (worker_threads) or a browser
// (module Web Worker) from the same worker script.

interface NodeProcess {
  versions?: { node?: string };
  env?: Record<string, string | undefined>;
}

const nodeProcess = (globalThis as { process?: NodeProcess }).process;
export const isNode = typeof nodeProcess?.versions?.node === 'string';

export function envVar(name: string): string | undefined {
  return nodeProcess?.env?.[name];
}

/** Logical cores: os.availableParallelism() in Node, navigator.hardwareConcurrency in a browser. */
export async function hardwareThreads(): Promise<number> {
  if (isNode) {
    const os = await import('node:os');
    return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  }
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  return nav?.hardwareConcurrency ?? 1;
}

/**
 * Whether workers can share memory with us: the SharedArrayBuffer global exists (browsers hide it
 * without cross-origin isolation) and a shared WebAssembly.Memory can be made.
 */
export function sharedMemoryAvailable(): boolean {
  if (typeof SharedArrayBuffer !== 'function') return false;
  const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated;
  if (isolated === false) return false;
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    return true;
  } catch {
    return false;
  }
}

// A module with one function (v128) -> v128 using the instruction named in `body` (after the
// operands were pushed), for WebAssembly.validate() probes.
function probe(body: number[]): Uint8Array<ArrayBuffer> {
  const code = [0x00, ...body, 0x0b];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    0x01, 0x06, 0x01, 0x60, 0x01, 0x7b, 0x01, 0x7b, // type: (v128) -> v128
    0x03, 0x02, 0x01, 0x00, // one function of type 0
    0x0a, code.length + 2, 0x01, code.length, ...code,
  ]);
}

/** WASM SIMD (128-bit): local.get 0; f32x4.sqrt-free check with f32x4.add. */
export function simdAvailable(): boolean {
  try {
    return WebAssembly.validate(probe([0x20, 0x00, 0x20, 0x00, 0xfd, 0xe4, 0x01]));
  } catch {
    return false;
  }
}

/** Relaxed SIMD: f32x4.relaxed_madd (0xFD 0x105). Node 20 needs --experimental-wasm-relaxed-simd. */
export function relaxedSimdAvailable(): boolean {
  try {
    return WebAssembly.validate(probe([0x20, 0x00, 0x20, 0x00, 0x20, 0x00, 0xfd, 0x85, 0x02]));
  } catch {
    return false;
  }
}

/** The least a worker handle must do, over Node's Worker and the browser's. */
export interface WorkerHandle {
  post(message: unknown): void;
  onMessage(handler: (message: unknown) => void): void;
  onError(handler: (error: Error) => void): void;
  /** Node: let the process exit while this worker is idle (no-op in browsers). */
  ref(keepAlive: boolean): void;
  terminate(): void;
}

export async function startWorker(url: URL): Promise<WorkerHandle> {
  if (isNode) {
    const { Worker } = await import('node:worker_threads');
    // Workers would inherit the parent's execArgv: --input-type (node -e, stdin scripts) breaks a
    // file worker, and per-process V8 flags are refused there. Our worker needs none of them
    // (V8 flags such as --experimental-wasm-relaxed-simd apply to the whole process anyway).
    const w = new Worker(url, { execArgv: [] });
    w.unref();
    return {
      post: (m) => w.postMessage(m),
      onMessage: (h) => w.on('message', h),
      onError: (h) => w.on('error', h),
      ref: (keep) => (keep ? w.ref() : w.unref()),
      terminate: () => void w.terminate(),
    };
  }
  const W = (globalThis as unknown as { Worker: new (u: URL, o: { type: 'module' }) => Worker }).Worker;
  const w = new W(url, { type: 'module' });
  return {
    post: (m) => w.postMessage(m),
    onMessage: (h) => w.addEventListener('message', (e) => h((e as MessageEvent).data)),
    onError: (h) => w.addEventListener('error', (e) => h(new Error((e as ErrorEvent).message))),
    ref: () => {},
    terminate: () => w.terminate(),
  };
}
