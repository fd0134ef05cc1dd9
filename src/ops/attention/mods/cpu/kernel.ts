// The CPU side of a call's score/mask functions: the WebAssembly module generated for them
// (compiled once per expression structure on the calling thread, posted with each job, and
// instantiated once per worker on the shared memory), or, where WebAssembly SIMD is missing, the
// same programs evaluated element by element in float32 (evaluate.ts). Captured tensors are read
// from the call's packed data in the arena (plan.ts), so one module serves any data and sizes.
import { readEnv } from '../../../../core/env.js';
import { stableKey } from '../../../../engines/webgpu/stable-key.js';
import type { KernelKind } from '../../../../engines/cpu/program.js';
import { type Env, type TensorData, VAR_INDEX, makeEnv, programEvaluator } from '../evaluate.js';
import { HEADER_BASE, HEADER_WORDS, type ModsKernelOptions } from '../plan.js';
import { MODS_SIGNATURES, buildModsModule } from './wasm.js';

/** What the generated kernels need of the program's kernels: their kind and the memory they run on. */
export interface ModsHost {
  readonly kind: KernelKind;
  readonly memory: WebAssembly.Memory | { readonly buffer: ArrayBufferLike };
}

/** What a job carries: the programs, and the compiled module unless the kernels are scalar. */
export interface CompiledMods {
  key: string;
  mods: ModsKernelOptions;
  module: WebAssembly.Module | undefined;
}

export interface CpuModsKernel {
  /** See wasm.ts: score mod on visible scores, mask (withMask != 0) on the S tile, in place. */
  apply(s: number, lds: number, rows: number, cols: number, b: number, h: number, i0: number, j0: number, sq: number, sk: number, data: number, withMask: number, beta: number): void;
  /** Pairs of the tile the mask keeps. */
  count(rows: number, cols: number, b: number, h: number, i0: number, j0: number, sq: number, sk: number, data: number): number;
}

const modules = new Map<string, Promise<WebAssembly.Module>>();

/** Compiles (once per structure and memory kind) the module for `mods`; scalar kernels get none. */
export async function compileMods(mods: ModsKernelOptions, kernels: Pick<ModsHost, 'kind'>, memory: { shared: boolean; maximumPages: number }): Promise<CompiledMods> {
  const key = stableKey({ mods, shared: memory.shared, pages: memory.maximumPages });
  if (kernels.kind === 'scalar') return { key, mods, module: undefined };
  let module = modules.get(key);
  if (!module) {
    const builder = buildModsModule({ mods, shared: memory.shared, maximumPages: memory.maximumPages });
    if (readEnv('FUSEDATTN_DEBUG_WASM')) console.log(builder.wat());
    module = WebAssembly.compile(builder.bytes());
    modules.set(key, module);
    module.catch(() => modules.delete(key));
  }
  return { key, mods, module: await module };
}

const instances = new WeakMap<object, Map<string, CpuModsKernel>>();

/** The kernel for `compiled` on the memory of `kernels` (instantiated once per thread and key). */
export function modsKernel(kernels: Pick<ModsHost, 'memory'>, compiled: CompiledMods): CpuModsKernel {
  let byKey = instances.get(kernels.memory);
  if (!byKey) {
    byKey = new Map();
    instances.set(kernels.memory, byKey);
  }
  let kernel = byKey.get(compiled.key);
  if (!kernel) {
    kernel = compiled.module && kernels.memory instanceof WebAssembly.Memory
      ? wasmKernel(compiled.module, kernels.memory)
      : scalarModsKernel(compiled.mods, kernels.memory);
    byKey.set(compiled.key, kernel);
  }
  return kernel;
}

function wasmKernel(module: WebAssembly.Module, memory: WebAssembly.Memory): CpuModsKernel {
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  const exports = instance.exports as unknown as CpuModsKernel;
  for (const name of Object.keys(MODS_SIGNATURES)) {
    if (typeof (exports as unknown as Record<string, unknown>)[name] !== 'function') throw new Error(`mods kernel: export ${name} missing`);
  }
  return { apply: exports.apply, count: exports.count };
}

/** The captured tensors of the packed data at byte address `data`, as views of the memory. */
export function arenaTensors(buffer: ArrayBufferLike, data: number, mods: ModsKernelOptions): TensorData[] {
  const words = new Uint32Array(buffer, data);
  return mods.tensors.map((slot, t) => {
    const h = HEADER_BASE + HEADER_WORDS * t;
    const shape = Array.from({ length: slot.rank }, (_, d) => words[h + 1 + d]);
    const size = shape.reduce((a, b) => a * b, 1);
    const at = data + 4 * words[h];
    return { data: slot.kind === 'float' ? new Float32Array(buffer, at, size) : new Int32Array(buffer, at, size), shape, rank: slot.rank };
  });
}

/** The float32 element-by-element twin (the fallback without WebAssembly SIMD). */
export function scalarModsKernel(mods: ModsKernelOptions, memory: { readonly buffer: ArrayBufferLike }): CpuModsKernel {
  let cached: { buffer: ArrayBufferLike; data: number; score?: (env: Env) => number; mask?: (env: Env) => number } | undefined;
  const programs = (data: number) => {
    const buffer = memory.buffer;
    if (!cached || cached.buffer !== buffer || cached.data !== data) {
      const tensors = arenaTensors(buffer, data, mods);
      cached = {
        buffer, data,
        score: mods.score ? programEvaluator(mods.score, tensors, 'float32') : undefined,
        mask: mods.mask ? programEvaluator(mods.mask, tensors, 'float32') : undefined,
      };
    }
    return cached;
  };
  const env = makeEnv();
  const setRow = (b: number, h: number, i: number, sq: number, sk: number) => {
    env[VAR_INDEX.b] = b;
    env[VAR_INDEX.h] = h;
    env[VAR_INDEX.q] = i;
    env[VAR_INDEX.qLen] = sq;
    env[VAR_INDEX.kvLen] = sk;
  };
  return {
    apply(s, lds, rows, cols, b, h, i0, j0, sq, sk, data, withMask, beta) {
      const { score, mask } = programs(data);
      const f = new Float32Array(memory.buffer);
      for (let r = 0; r < rows; r++) {
        setRow(b, h, i0 + r, sq, sk);
        const row = (s + r * lds) >>> 2;
        for (let c = 0; c < cols; c++) {
          env[VAR_INDEX.kv] = j0 + c;
          let x = f[row + c];
          // finite scores only, in natural units (see wasm.ts)
          if (score && Number.isFinite(x)) {
            env[VAR_INDEX.score] = Math.fround(x * beta);
            x = score(env) / beta;
          }
          if (mask && withMask && !mask(env)) x = -Infinity;
          f[row + c] = x;
        }
      }
    },
    count(rows, cols, b, h, i0, j0, sq, sk, data) {
      const { mask } = programs(data);
      if (!mask) return 0;
      let n = 0;
      for (let r = 0; r < rows; r++) {
        setRow(b, h, i0 + r, sq, sk);
        for (let c = 0; c < cols; c++) {
          env[VAR_INDEX.kv] = j0 + c;
          if (mask(env)) n++;
        }
      }
      return n;
    },
  };
}
