// Environment variables and configure(): every value validated with a ValueError naming the
// variable or option, the expected and the received value; thread counts clamped to the cores with
// a note; configure() changes take effect on the next call; dispose() releases the pool.
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { ValueError, attention, configure, configNotes, dispose, setAutotuneMode, autotuneMode } from '../dist/index.js';
import { envChoice, envFlag, envInt, envList, readEnv } from '../dist/core/env.js';
import { cpuKernelsSetting, cpuThreadsSetting, webgpuTierSetting } from '../dist/core/config.js';
import { cpuEngine } from '../dist/ops/cpu-engine.js';
import { makeCase } from '../dist/testing/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const VAR = 'FUSEDATTN_TEST_ENV_VALUE';

function withEnv<T>(name: string, value: string | undefined, f: () => T): T {
  const saved = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  try {
    return f();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
}

function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

describe('environment variables', () => {
  it('reads unset and empty as undefined, and trims', () => {
    expect(withEnv(VAR, undefined, () => readEnv(VAR))).toBeUndefined();
    expect(withEnv(VAR, '   ', () => readEnv(VAR))).toBeUndefined();
    expect(withEnv(VAR, ' 7 ', () => readEnv(VAR))).toBe('7');
  });

  it('refuses malformed integers with a ValueError naming the variable, expected and received', () => {
    for (const bad of ['abc', '-3', '1.5', '1e3', '0x10', '70000']) {
      const e = withEnv(VAR, bad, () => thrown(() => envInt(VAR, 0, 65536)));
      expect(e).toBeInstanceOf(ValueError);
      expect(e.message).toBe(`environment variable ${VAR} must be an integer in [0, 65536], got "${bad}"`);
      expect((e as ValueError).argument).toBe(VAR);
    }
    expect(withEnv(VAR, '12', () => envInt(VAR, 0))).toBe(12);
  });

  it('validates choices, switches and toggle lists', () => {
    expect(withEnv(VAR, 'Scalar', () => envChoice(VAR, ['auto', 'scalar']))).toBe('scalar');
    expect(withEnv(VAR, 'avx', () => thrown(() => envChoice(VAR, ['auto', 'wasm-simd', 'scalar']))).message)
      .toBe(`environment variable ${VAR} must be one of auto, wasm-simd, scalar, got "avx"`);
    expect(withEnv(VAR, 'yes', () => envFlag(VAR))).toBe(true);
    expect(withEnv(VAR, '0', () => envFlag(VAR))).toBe(false);
    expect(withEnv(VAR, 'maybe', () => thrown(() => envFlag(VAR)))).toBeInstanceOf(ValueError);
    expect(withEnv(VAR, 'a_b, c1', () => envList(VAR))).toEqual(['a_b', 'c1']);
    expect(withEnv(VAR, 'a b;rm', () => thrown(() => envList(VAR)))).toBeInstanceOf(ValueError);
    // a long value is shown cut, not whole
    const long = 'x'.repeat(10_000);
    expect(withEnv(VAR, long, () => thrown(() => envChoice(VAR, ['a']))).message.length).toBeLessThan(200);
  });

  it('FUSEDATTN_CPU_THREADS, FUSEDATTN_CPU_KERNELS, FUSEDATTN_WEBGPU_TIER are validated; threads above the cores are clamped with a note', () => {
    const cores = availableParallelism();
    for (const bad of ['abc', '-3', '1.5']) {
      expect(withEnv('FUSEDATTN_CPU_THREADS', bad, () => thrown(() => cpuThreadsSetting(cores))).message).toContain('FUSEDATTN_CPU_THREADS must be an integer');
    }
    expect(withEnv('FUSEDATTN_CPU_THREADS', String(cores + 62), () => cpuThreadsSetting(cores))).toBe(cores);
    expect(configNotes().some((n: string) => n.startsWith(`FUSEDATTN_CPU_THREADS = ${cores + 62} is more than`))).toBe(true);
    expect(withEnv('FUSEDATTN_CPU_THREADS', '0', () => cpuThreadsSetting(cores))).toBe(0);
    expect(withEnv('FUSEDATTN_CPU_KERNELS', 'avx', () => thrown(() => cpuKernelsSetting())).message).toContain('one of auto, wasm-simd, scalar, got "avx"');
    expect(withEnv('FUSEDATTN_WEBGPU_TIER', 'fastest', () => thrown(() => webgpuTierSetting()))).toBeInstanceOf(ValueError);
    expect(withEnv('FUSEDATTN_WEBGPU_TIER', 'portable', () => webgpuTierSetting())).toBe('portable');
  });

  it('a bad FUSEDATTN_CPU_THREADS makes the CPU backend unavailable, saying why (info, verify exit 1)', () => {
    const env = { ...process.env, FUSEDATTN_CPU_THREADS: 'abc', FUSEDATTN_WEBGPU_BACKEND: 'none' };
    const message = 'environment variable FUSEDATTN_CPU_THREADS must be an integer in [0, 65536], got "abc"';
    const info = spawnSync(process.execPath, ['dist/cli/main.js', 'info'], { cwd: root, encoding: 'utf8', env, timeout: 60_000 });
    expect(info.stdout).toContain(message);
    const verify = spawnSync(process.execPath, ['dist/cli/main.js', 'verify', '--backend', 'cpu', '--filter', 'Sq97'], { cwd: root, encoding: 'utf8', env, timeout: 60_000 });
    expect(verify.stdout).toContain(message);
    expect(verify.status).toBe(1);
  });
});

describe('configure()', () => {
  afterEach(() => configure({ cpuThreads: undefined, cpuKernels: undefined, webgpuTier: undefined, autotune: undefined }));

  it('validates every option with a ValueError naming it, and changes nothing on an error', () => {
    const cases: Array<[unknown, string]> = [
      [{ cpuThreads: -1 }, 'configure(): cpuThreads must be an integer >= 0 (0 = single-threaded), got -1'],
      [{ cpuThreads: 1.5 }, 'configure(): cpuThreads must be an integer >= 0 (0 = single-threaded), got 1.5'],
      [{ cpuThreads: '4' }, 'configure(): cpuThreads must be an integer >= 0 (0 = single-threaded), got "4"'],
      [{ cpuKernels: 'avx' }, 'configure(): cpuKernels must be one of auto, wasm-simd, scalar, got "avx"'],
      [{ webgpuTier: 'fast' }, 'configure(): webgpuTier must be one of auto, sgmatrix, subgroup, portable, got "fast"'],
      [{ autotune: true }, 'configure(): autotune must be one of cached, on, background, force, off, got true'],
      [{ threads: 2 }, 'configure(): unknown option "threads"; the options are cpuThreads, cpuKernels, webgpuTier, autotune'],
    ];
    for (const [options, message] of cases) {
      // the valid cpuKernels before the bad option must not be applied either
      const e = thrown(() => configure({ cpuKernels: 'scalar', ...(options as object) }));
      expect(e).toBeInstanceOf(ValueError);
      expect(e.message).toBe(message);
      expect(cpuKernelsSetting()).toBe(process.env.FUSEDATTN_CPU_KERNELS ?? 'auto');
    }
    expect(thrown(() => configure(null as never)).message).toBe('configure() takes an options object, got null');
    expect(thrown(() => configure([] as never))).toBeInstanceOf(ValueError);
  });

  it('overrides the environment, and undefined goes back to it', () => {
    withEnv('FUSEDATTN_CPU_KERNELS', 'scalar', () => {
      expect(cpuKernelsSetting()).toBe('scalar');
      configure({ cpuKernels: 'wasm-simd' });
      expect(cpuKernelsSetting()).toBe('wasm-simd');
      configure({ cpuKernels: undefined });
      expect(cpuKernelsSetting()).toBe('scalar');
    });
    configure({ autotune: 'off' });
    expect(autotuneMode()).toBe('off');
    setAutotuneMode(undefined);
    expect(autotuneMode()).toBe(process.env.FUSEDATTN_AUTOTUNE ?? 'cached');
    expect(() => setAutotuneMode('sometimes' as never)).toThrow(ValueError);
  });

  it('a CPU change starts a new pool for the next call; calls in flight finish; dispose() releases it', async () => {
    const c = makeCase({ batch: 1, headsQ: 4, headsKv: 2, seqQ: 130, seqK: 150, dimQK: 64, dimV: 64, causal: true }, 5);
    const before = await cpuEngine();
    const inFlight = attention(c.q, c.k, c.v, { ...c.options, backend: 'cpu' });
    configure({ cpuThreads: 1, cpuKernels: 'scalar' });
    await inFlight; // finished on the retired pool
    const after = await cpuEngine();
    expect(after).not.toBe(before);
    expect(after.pool?.size).toBe(1);
    expect(after.kernels.kind).toBe('scalar');
    await attention(c.q, c.k, c.v, { ...c.options, backend: 'cpu' });
    await dispose();
    const fresh = await cpuEngine();
    expect(fresh).not.toBe(after);
    configure({ cpuThreads: undefined, cpuKernels: undefined });
    expect((await cpuEngine()).kernels.kind).not.toBe('scalar');
  });
});
