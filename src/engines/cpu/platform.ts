// What this JavaScript engine offers the CPU backend, probed once: core count, shared memory
// (SharedArrayBuffer + shared WebAssembly.Memory: Node, or a cross-origin-isolated browser),
// WASM SIMD and relaxed SIMD. And the worker handle over Node's worker_threads and module Web
// Workers: the worker itself is started by the program's spawner (a bundler must see the literal
// `new Worker(new URL(...), ...)` in the program's own module, next to the worker script).
import { platform } from '#platform';

/** Logical cores: os.availableParallelism() in Node and Bun, navigator.hardwareConcurrency elsewhere. */
export function hardwareThreads(): number {
  return platform.hardwareThreads();
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
  /** A failure of the worker: its script did not load, or threw. */
  onError(handler: (error: Error) => void): void;
  /** The worker's thread ended (Node: its 'exit' event; browsers: after terminate()). */
  onExit(handler: (code: number) => void): void;
  /** Whether the runtime reports exits by itself (Node); a browser worker that threw lives on. */
  readonly emitsExit: boolean;
  /** Node: let the process exit while this worker is idle (no-op in browsers). */
  ref(keepAlive: boolean): void;
  terminate(): void;
}

/** How an engine starts the workers of its program: `url` names the script (for messages). */
export interface WorkerSpawner {
  readonly url: URL;
  spawn(): WorkerHandle;
  /**
   * Another way to start the same workers, tried when those of `spawn` do not start (their script
   * did not load: a bundler that emits no worker file): the browser spawner's embedded copy of the
   * script. Loaded only when needed.
   */
  fallback?(): Promise<WorkerSpawner>;
  /**
   * Turns on WASM features this runtime has behind a flag (Node 20: relaxed SIMD, on by default
   * from V8 11.4), before the engine probes for them. Runtimes without such flags leave it out.
   */
  enableWasmFeatures?(): void;
}

/** What node:worker_threads' Worker offers (typed here so the engine imports no Node module). */
export interface NodeWorkerLike {
  postMessage(message: unknown): void;
  on(event: 'message', handler: (message: unknown) => void): unknown;
  on(event: 'error', handler: (error: Error) => void): unknown;
  on(event: 'exit', handler: (code: number) => void): unknown;
  ref(): void;
  unref(): void;
  terminate(): unknown;
}

export function nodeWorkerHandle(w: NodeWorkerLike, url: URL): WorkerHandle {
  w.unref();
  return {
    post: (m) => w.postMessage(m),
    onMessage: (h) => w.on('message', h),
    onError: (h) => w.on('error', (e) => h(new Error(`CPU worker ${url.href} failed: ${e.message}`))),
    onExit: (h) => w.on('exit', h),
    emitsExit: true,
    ref: (keep) => (keep ? w.ref() : w.unref()),
    terminate: () => void w.terminate(),
  };
}

/**
 * A module Web Worker (browsers, Deno). A script that fails to load fires an `error` event with no
 * message (404, a wrong MIME type, a CSP worker-src refusal): the handler gets the URL and, for an
 * http(s) URL, the status a HEAD request finds.
 */
export function webWorkerHandle(w: Worker, url: URL, loadCause: (url: URL) => Promise<string> = loadFailureCause, name = `script ${url.href}`): WorkerHandle {
  const exits: Array<(code: number) => void> = [];
  let ended = false;
  return {
    onExit: (h) => void exits.push(h),
    emitsExit: false,
    post: (m) => w.postMessage(m),
    onMessage: (h) => w.addEventListener('message', (e) => h((e as MessageEvent).data)),
    onError: (h) => {
      w.addEventListener('error', (event) => {
        const e = event as ErrorEvent;
        e.preventDefault?.();
        if (e.message) {
          h(new Error(`CPU worker ${url.href} failed: ${e.message}${e.filename ? ` (${e.filename}:${e.lineno})` : ''}`));
          return;
        }
        void loadCause(url).then((cause) => h(new Error(`CPU worker ${name} failed to load: ${cause}`)));
      });
      w.addEventListener('messageerror', () => h(new Error(`CPU worker ${url.href}: a message could not be deserialized`)));
    },
    ref: () => {},
    terminate: () => {
      w.terminate();
      if (ended) return;
      ended = true;
      // browsers fire no exit event: report it ourselves, on a later turn as Node does
      setTimeout(() => exits.forEach((h) => h(1)), 0);
    },
  };
}

// every worker of a pool fails alike: one HEAD request per URL
const causes = new Map<string, Promise<string>>();
function loadFailureCause(url: URL): Promise<string> {
  let cause = causes.get(url.href);
  if (!cause) causes.set(url.href, (cause = probeLoadFailure(url)));
  return cause;
}

async function probeLoadFailure(url: URL): Promise<string> {
  const generic = 'the browser gives no reason (a missing file, a non-JavaScript MIME type, a Content-Security-Policy worker-src that refuses it, or an error while evaluating it)';
  if (!/^https?:$/.test(url.protocol) || typeof fetch !== 'function') return generic;
  try {
    const response = await fetch(url, { method: 'HEAD' });
    if (!response.ok) return `HTTP ${response.status} ${response.statusText} (a bundler that emits no worker file, such as esbuild or Rollup)`;
    const type = response.headers.get('Content-Type') ?? '';
    if (!/javascript|ecmascript/i.test(type)) return `served as ${JSON.stringify(type)}, not JavaScript`;
    return `${generic}; the file is there (HTTP ${response.status})`;
  } catch (e) {
    return `${generic}; HEAD request failed: ${(e as Error).message}`;
  }
}

/**
 * Undefined when this page may compile WebAssembly, else the reason: a Content-Security-Policy
 * without 'wasm-unsafe-eval' (or 'unsafe-eval') refuses it with a CompileError. Probed with the
 * smallest module, synchronously, once.
 */
export function wasmCompileRefused(): string | undefined {
  if (compileProbe === undefined) {
    try {
      new WebAssembly.Module(Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
      compileProbe = '';
    } catch (e) {
      compileProbe = `WebAssembly compilation refused (${String((e as Error).message).slice(0, 200)}); a Content-Security-Policy needs 'wasm-unsafe-eval' in script-src for the SIMD kernels`;
    }
  }
  return compileProbe || undefined;
}
let compileProbe: string | undefined;

/**
 * Module Web Workers started from JavaScript source held in memory, through one blob: URL made on
 * the first spawn: a program's embedded copy of its worker script, for when the script's own URL
 * does not load. A Content-Security-Policy whose worker-src (or, without one, script-src) lacks
 * blob: refuses such workers; the page then sees a securitypolicyviolation event, and the load
 * failure says so.
 */
export function sourceWorkerSpawner(source: string, name: string): WorkerSpawner {
  let url: URL | undefined;
  let refused: string | undefined;
  const scope = globalThis as { addEventListener?(type: string, h: (e: Event) => void): void };
  const created = () => {
    if (url) return url;
    scope.addEventListener?.('securitypolicyviolation', (event) => {
      const e = event as SecurityPolicyViolationEvent;
      if (e.blockedURI === 'blob' || e.blockedURI.startsWith('blob:')) refused ??= `the page's Content-Security-Policy refuses blob: workers (${e.effectiveDirective || e.violatedDirective}: add blob: to worker-src)`;
    });
    url = new URL(URL.createObjectURL(new Blob([source], { type: 'text/javascript' })));
    return url;
  };
  // the violation event may come a moment after the worker's error event
  const cause = async () => {
    if (!refused) await new Promise((resolve) => setTimeout(resolve, 50));
    return refused ?? 'the browser gives no reason (a Content-Security-Policy without blob: in worker-src, or an error while evaluating it)';
  };
  const spawner: WorkerSpawner = {
    get url() {
      return url ?? new URL(`blob:${name}`);
    },
    spawn: () => {
      const at = created();
      return webWorkerHandle(new Worker(at, { type: 'module' }), at, cause, name);
    },
  };
  return spawner;
}
