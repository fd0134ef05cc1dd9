// What differs between the runtimes fusedattn runs on, behind one interface. package.json's
// "imports" map picks the implementation by export condition (`#platform`: bun, deno, node, else
// browser), so a browser bundle never sees node:fs or node:os and no code probes its runtime with
// guarded dynamic imports. Everything here is synchronous at import: no top-level await.

/** Positioned reads of one local file (a safetensors shard), opened lazily. */
export interface LocalFile {
  readonly name: string;
  size(): Promise<number>;
  /** Exactly `length` bytes from `offset` into a fresh buffer. */
  read(offset: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** The local file system (Node, Bun, Deno). */
export interface LocalFs {
  join(...parts: string[]): string;
  dirname(path: string): string;
  kind(path: string): Promise<'file' | 'folder' | undefined>;
  readText(path: string): Promise<string>;
  open(path: string): LocalFile;
  writeFile(path: string, data: Uint8Array | string): Promise<void>;
  mkdir(path: string): Promise<void>;
  /** Synchronous small-file access (the autotune cache). */
  readTextSync(path: string): string | undefined;
  writeTextSync(path: string, text: string): void;
  /** The per-user cache folder (XDG_CACHE_HOME is read by the caller). */
  homeCacheDir(): string;
}

/** The `webgpu` npm package's entry point (Dawn for Node). */
export interface DawnModule {
  create(flags: string[]): GPU;
}

export interface Platform {
  readonly name: 'node' | 'bun' | 'deno' | 'browser';
  /** Logical cores (os.availableParallelism in Node, navigator.hardwareConcurrency elsewhere). */
  hardwareThreads(): number;
  /** Why CPU workers cannot start from `url` here (Deno without read access), or undefined. */
  workersBlocked(url: URL): string | undefined;
  /** The local file system, where there is one. */
  readonly fs: LocalFs | undefined;
  /** Loads Dawn (Node, Bun); throws an Error saying what to install when it is missing. */
  loadDawn(): Promise<DawnModule>;
  /** Whether Dawn's default backend (Vulkan on Linux) has its loader here. */
  vulkanLoaderPresent(): boolean;
  /**
   * Sets a variable in the process environment that native code (Mesa's EGL under Dawn) reads, when
   * unset. Node's process.env writes reach getenv(); Bun's do not, so Bun calls libc's setenv.
   */
  defaultNativeEnv(name: string, value: string): void;
  /** 'linux', 'darwin', 'win32', or 'browser'. */
  readonly os: string;
}
