// Shared by the backend-independent suites: which backends this machine has, and one function
// that runs a declarative case on a backend and checks it against the float64 reference.
import { expect } from 'vitest';
import { attention, listBackends, referenceAttention, validateAttention, type BackendName } from '../dist/index.js';
import { type AttentionCase, checkF32, checkLowPrecision, makeCase } from '../dist/testing/index.js';

export interface PresentBackend {
  name: BackendName;
  /** Why this backend's tests are skipped here, or undefined when it runs. */
  skip?: string;
}

/** Every backend, with the reason it is skipped on this machine (printed loudly by the test). */
export async function backendsHere(): Promise<PresentBackend[]> {
  const forced = process.env.FUSEDATTN_WEBGPU_SKIP_REASON;
  const infos = await listBackends();
  return infos.map((info) => ({
    name: info.name,
    skip: info.name === 'webgpu' && forced ? forced : info.available ? undefined : info.detail,
  }));
}

/** Runs `c` with seed `seed` on `backend` and asserts the pass rules of src/testing/compare.ts. */
export async function checkCase(backend: BackendName, c: AttentionCase, seed: number): Promise<void> {
  const { q, k, v, options } = makeCase(c, seed);
  const problem = validateAttention(q, k, v, options);
  const result = await attention(q, k, v, { ...options, backend });
  expect(result.out.shape).toEqual(problem.outShape);
  expect(result.out.dtype).toBe(problem.dtype);
  expect(result.out.location).toBe('cpu');
  const ref = referenceAttention(problem);
  const out = result.out.toFloat32();
  const failures: string[] = [];
  if (problem.dtype === 'float32') {
    failures.push(checkF32('out', out, ref.out) ?? '');
  } else {
    const naive = referenceAttention(problem, 'float16');
    failures.push(checkLowPrecision('out', out, naive.out, ref.out) ?? '');
  }
  if (c.returnLse) {
    expect(result.lse, 'lse requested').toBeDefined();
    expect(result.lse!.shape).toEqual(problem.lseShape);
    expect(result.lse!.dtype).toBe('float32');
    // LSE is computed in float32 on every path, so float16 inputs get the float32 bound too
    failures.push(checkF32('lse', result.lse!.toFloat32(), ref.lse, problem.dtype === 'float16' ? 1e-3 : 1e-5) ?? '');
  } else {
    expect(result.lse).toBeUndefined();
  }
  const message = failures.filter(Boolean).join('; ');
  expect(message, `seed ${seed}`).toBe('');
}
