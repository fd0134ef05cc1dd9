// Shared by the backend-independent suites: which backends this machine has, and one function
// that runs a declarative case on a backend and checks it against the float64 reference.
import { expect } from 'vitest';
import { attention, listBackends, scoreMod, validateAttention, type BackendName } from '../dist/index.js';
import { type AttentionCase, checkAgainstReference, makeCase } from '../dist/testing/index.js';

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

/** Runs `c` with seed `seed` on `backend` and asserts the pass rules of src/testing (as verify does). */
export async function checkCase(backend: BackendName, c: AttentionCase, seed: number): Promise<void> {
  const { q, k, v, options } = makeCase(c, seed);
  const problem = validateAttention(q, k, v, options);
  const result = await attention(q, k, v, { ...options, backend });
  expect(result.out.location).toBe('cpu');
  if (!c.returnLse) expect(result.lse).toBeUndefined();
  const { failures } = checkAgainstReference(problem, result);
  expect(failures.join('; '), `seed ${seed}`).toBe('');
}

/** The largest |x| (0 for an empty array). */
export function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
}

/**
 * softcap(c) written so that attention() keeps it a score function: the built-in's exact form
 * (cap·tanh(score / cap)) runs as options.softcap (mods/softcap-part.ts), and the tests of the
 * score-function machinery (tanh in generated code, its derivative, the non-finite rule around a
 * function) need the function itself.
 */
export function softcapFunction(cap: number) {
  return scoreMod(({ score }) => score.mul(1 / cap).tanh().mul(cap), `softcap(${cap}) as a function`);
}
