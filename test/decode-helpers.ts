// Shared by the decode tests: moving a case's tensors to the GPU and back, and one function that
// runs a declarative decode case on a backend and checks it (and the cache it appended to)
// against the float64 reference and the host's append.
import { expect } from 'vitest';
import { Tensor, attentionDecode, referenceDecode, validateDecode } from '../dist/index.js';
import { type DecodeCase, type DecodeInputs, checkF32, cloneDecodeInputs, compare, makeDecodeCase } from '../dist/testing/index.js';
import { appendOnHost } from '../dist/ops/decode/cpu/decode.js';
import { getRuntime } from '../dist/engines/webgpu/runtime.js';

const ARRAYS = { float32: Float32Array, int32: Int32Array, float16: Uint16Array, bfloat16: Uint16Array, int8: Int8Array } as const;
const BYTES = { float32: 4, int32: 4, float16: 2, bfloat16: 2, int8: 1 } as const;

/** A GPU copy of a CPU tensor (undefined stays undefined). */
export async function toGpu(t: Tensor | undefined): Promise<Tensor | undefined> {
  if (!t) return undefined;
  const rt = await getRuntime();
  const buffer = rt.createBuffer(Math.max(4, Math.ceil((t.size * BYTES[t.dtype as keyof typeof BYTES]) / 4) * 4), 'test tensor');
  rt.write(buffer, 0, t.data as ArrayBufferView);
  return Tensor.fromGpuBuffer({ device: rt.device, buffer, byteOffset: 0 }, t.shape, t.dtype);
}

/** A CPU copy of a GPU tensor. */
export async function toCpu(t: Tensor): Promise<Tensor> {
  if (!t.gpu) return t;
  const rt = await getRuntime();
  const dtype = t.dtype as keyof typeof ARRAYS;
  const bytes = await rt.read(t.gpu.buffer, t.gpu.byteOffset, Math.ceil((t.size * BYTES[dtype]) / 4) * 4);
  return Tensor.fromData(new ARRAYS[dtype](bytes, 0, t.size), t.shape, dtype);
}

/** The case's inputs on the GPU: cache, lengths, table, q and appended rows. */
export async function inputsOnGpu(x: DecodeInputs): Promise<DecodeInputs> {
  const c = x.cache;
  const cache = { ...c, k: (await toGpu(c.k))!, v: await toGpu(c.v), kScale: await toGpu(c.kScale), vScale: await toGpu(c.vScale), lengths: (await toGpu(c.lengths))!, blockTable: await toGpu(c.blockTable) };
  for (const key of ['v', 'kScale', 'vScale', 'blockTable'] as const) if (cache[key] === undefined) delete cache[key];
  const options = { ...x.options };
  if (x.options.append) {
    const a = x.options.append as { k: Tensor; v?: Tensor };
    options.append = a.v ? { k: (await toGpu(a.k))!, v: (await toGpu(a.v))! } : { k: (await toGpu(a.k))! };
  }
  return { q: (await toGpu(x.q))!, cache, options };
}

export function destroyGpu(x: DecodeInputs): void {
  const a = x.options.append as { k: Tensor; v?: Tensor } | undefined;
  for (const t of [x.q, x.cache.k, x.cache.v, x.cache.kScale, x.cache.vScale, x.cache.lengths, x.cache.blockTable, a?.k, a?.v]) t?.gpu?.buffer.destroy();
}

export interface DecodeRunOptions {
  backend: 'cpu' | 'webgpu';
  /** Put the inputs on the GPU (the kernel appends in place; results stay there). */
  gpuResident?: boolean;
}

/** Runs `c` and asserts output, LSE and (with append) the cache contents. Returns the output's rel error. */
export async function checkDecodeCase(c: DecodeCase, seed: number, how: DecodeRunOptions): Promise<number> {
  const inputs = makeDecodeCase(c, seed);
  const reference = referenceDecode(validateDecode(inputs.q, inputs.cache, inputs.options));
  const expectedCache = cloneDecodeInputs(inputs);
  if (c.append) appendOnHost(validateDecode(expectedCache.q, expectedCache.cache, expectedCache.options));
  const run = how.gpuResident ? await inputsOnGpu(inputs) : cloneDecodeInputs(inputs);
  try {
    const result = await attentionDecode(run.q, run.cache, { ...run.options, backend: how.backend });
    expect(result.out.location).toBe(how.gpuResident ? 'webgpu' : 'cpu');
    const out = (await toCpu(result.out)).toFloat32();
    const failures: string[] = [];
    // float16 outputs are rounded once: 2^-11 of the largest value, plus float32 noise
    const rtol = c.io === 'float16' ? 1e-3 : 2e-5;
    const outFail = checkF32('out', out, reference.out, rtol);
    if (outFail) failures.push(outFail);
    if (c.returnLse) {
      const lseFail = checkF32('lse', (await toCpu(result.lse!)).toFloat32(), reference.lse, 2e-5);
      if (lseFail) failures.push(lseFail);
    } else expect(result.lse).toBeUndefined();
    if (c.append) {
      for (const key of ['k', 'v', 'kScale', 'vScale'] as const) {
        const got = run.cache[key];
        if (!got) continue;
        const want = expectedCache.cache[key]!.toFloat32();
        const have = (await toCpu(got)).toFloat32();
        // int8 rows may land one step apart where x / scale sits exactly between two steps
        const slack = c.cache === 'int8' && (key === 'k' || key === 'v') ? 1 : key.endsWith('Scale') ? 1e-6 : 0;
        const bad = have.findIndex((h, i) => !(Number.isNaN(h) && Number.isNaN(want[i])) && !(Math.abs(h - want[i]) <= slack));
        if (bad >= 0) failures.push(`cache.${key} after append: ${have[bad]} where the host stored ${want[bad]} (element ${bad})`);
      }
    }
    expect(failures.join('; '), `seed ${seed}`).toBe('');
    return compare(out, reference.out).relError;
  } finally {
    if (how.gpuResident) destroyGpu(run);
  }
}
