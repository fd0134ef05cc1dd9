// CPU backend specifics: the worker pool (reuse, concurrent calls, idle processes exit), the
// single-threaded fallback without SharedArrayBuffer, WASM SIMD kernels against the scalar
// JavaScript ones, relaxed SIMD where Node has it, and `fusedattn info`'s line.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { attention, listBackends, referenceAttention, validateAttention } from '../dist/index.js';
import { type AttentionCase, checkF32, compare, makeCase } from '../dist/testing/index.js';
import { runFlash, runNaive } from '../dist/ops/attention/cpu/index.js';
import { cpuEngine, createCpuEngine } from '../dist/ops/cpu-engine.js';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Runs a small ESM script in a fresh Node (with extra flags) from the repo root; returns its output. */
function node(flags: string[], script: string, timeout = 60_000, env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [...flags, '--input-type=module'], { cwd: root, encoding: 'utf8', timeout, input: script, env: { ...process.env, ...env } });
  return { status: r.status, out: `${r.stdout}${r.stderr}`, signal: r.signal };
}

/** A child-process script that runs one case on the CPU backend and prints JSON. */
const childCase = `
import { attention, validateAttention, referenceAttention } from './dist/index.js';
import { makeCase, checkF32 } from './dist/testing/index.js';
import { cpuEngine } from './dist/ops/cpu-engine.js';
const c = makeCase({ batch: 1, headsQ: 3, headsKv: 1, seqQ: 70, seqK: 90, dimQK: 36, dimV: 20, causal: true, returnLse: true }, 11);
const r = await attention(c.q, c.k, c.v, { ...c.options, backend: 'cpu' });
const ref = referenceAttention(validateAttention(c.q, c.k, c.v, c.options));
const e = await cpuEngine();
console.log(JSON.stringify({ describe: e.describe(), kernels: e.kernels.kind, pool: e.pool !== undefined,
  out: checkF32('out', r.out.toFloat32(), ref.out) ?? 'ok', lse: checkF32('lse', r.lse.toFloat32(), ref.lse) ?? 'ok' }));
`;

function checkAgainstReference(c: AttentionCase, seed: number, out: Float32Array, lse?: Float32Array) {
  const { q, k, v, options } = makeCase(c, seed);
  const ref = referenceAttention(validateAttention(q, k, v, options));
  expect(checkF32('out', out, ref.out) ?? '').toBe('');
  if (lse) expect(checkF32('lse', lse, ref.lse) ?? '').toBe('');
}

describe('CPU worker pool', () => {
  it('is started once and reused across calls, and spreads tasks over its workers', async () => {
    const engine = await cpuEngine();
    const c: AttentionCase = { batch: 2, headsQ: 4, seqQ: 200, seqK: 200, dimQK: 64 };
    const { q, k, v, options } = makeCase(c, 3);
    const before = engine.pool ? [...engine.pool.tasksByWorker] : [];
    await attention(q, k, v, { ...options, backend: 'cpu' });
    await attention(q, k, v, { ...options, backend: 'cpu' });
    expect(await cpuEngine()).toBe(engine);
    if (engine.pool && engine.pool.size > 1) {
      const ran = engine.pool.tasksByWorker.map((n, i) => n - before[i]);
      expect(ran.every((n) => n > 0), `tasks per worker ${ran}`).toBe(true);
    }
  });

  it('keeps several calls in flight apart (different shapes and options at once)', async () => {
    const cases: AttentionCase[] = [
      { batch: 1, headsQ: 4, headsKv: 2, seqQ: 130, seqK: 150, dimQK: 48, causal: true, returnLse: true },
      { batch: 2, headsQ: 2, seqQ: 33, seqK: 77, dimQK: 59, dimV: 17, mask: 'random', returnLse: true },
      { layout: 'BSND', batch: 1, headsQ: 3, seqQ: 64, seqK: 64, dimQK: 32, dimRope: 8, window: [10, 3] },
      { layout: 'TND', batch: 1, headsQ: 2, seqQ: 0, seqK: 0, seqLensQ: [5, 60, 0], seqLensK: [9, 61, 4], dimQK: 16, returnLse: true },
    ];
    const runs = cases.flatMap((c, i) => [0, 1].map((rep) => {
      const { q, k, v, options } = makeCase(c, 100 + i);
      return attention(q, k, v, { ...options, backend: 'cpu' }).then((r) => ({ c, i, rep, r }));
    }));
    for (const { c, i, r } of await Promise.all(runs)) checkAgainstReference(c, 100 + i, r.out.toFloat32(), r.lse?.toFloat32());
  });

  it('keeps Node alive while a job runs (top-level await) and lets it exit once idle', () => {
    const start = Date.now();
    const script = `
      import { attention } from './dist/index.js';
      import { makeCase } from './dist/testing/index.js';
      import { cpuEngine } from './dist/ops/cpu-engine.js';
      const c = makeCase({ batch: 1, headsQ: 4, seqQ: 256, seqK: 256, dimQK: 64 }, 5);
      const r = await attention(c.q, c.k, c.v, { ...c.options, backend: 'cpu' });
      const e = await cpuEngine();
      console.log('done', r.out.size, e.pool ? e.pool.tasksByWorker.reduce((a, b) => a + b) : 0);`;
    const r = node([], script);
    expect(r.status, r.out).toBe(0);
    const [, size, poolTasks] = r.out.trim().split(/\s+/);
    expect(Number(size)).toBe(4 * 256 * 64);
    expect(Number(poolTasks)).toBeGreaterThan(0); // it did run on the pool
    expect(Date.now() - start).toBeLessThan(30_000);
  });
});

describe('CPU fallbacks and kernel variants', () => {
  it('runs single-threaded when SharedArrayBuffer is unavailable', () => {
    const r = node(['--no-harmony-sharedarraybuffer'], childCase);
    expect(r.status, r.out).toBe(0);
    const result = JSON.parse(r.out.trim().split('\n').pop()!);
    expect(result.pool).toBe(false);
    expect(result.describe).toMatch(/single-threaded \(SharedArrayBuffer is unavailable/);
    expect(result.out).toBe('ok');
    expect(result.lse).toBe('ok');
  });

  it('uses relaxed SIMD (FMA) when Node enables it, with the same results', () => {
    const r = node(['--experimental-wasm-relaxed-simd'], childCase);
    expect(r.status, r.out).toBe(0);
    const result = JSON.parse(r.out.trim().split('\n').pop()!);
    expect(result.kernels).toBe('wasm-relaxed-simd');
    expect(result.out).toBe('ok');
    expect(result.lse).toBe('ok');
  });

  it('turns relaxed SIMD on by itself where the runtime has it behind a flag (Node 20), unless FUSEDATTN_RELAXED_SIMD=off', () => {
    const on = node([], childCase);
    expect(on.status, on.out).toBe(0);
    const result = JSON.parse(on.out.trim().split('\n').pop()!);
    expect(result.kernels).toBe('wasm-relaxed-simd');
    expect(result.out).toBe('ok');
    // from V8 11.4 (Node 22) relaxed SIMD needs no flag, so `off` has nothing to leave alone there
    const [major, minor] = process.versions.v8.split('.').map(Number);
    const behindFlag = major < 11 || (major === 11 && minor < 4);
    const off = node([], childCase, 60_000, { FUSEDATTN_RELAXED_SIMD: 'off' });
    expect(off.status, off.out).toBe(0);
    expect(JSON.parse(off.out.trim().split('\n').pop()!).kernels).toBe(behindFlag ? 'wasm-simd' : 'wasm-relaxed-simd');
    // a value it does not know is refused, naming the variable and what it takes
    const bad = node([], childCase, 60_000, { FUSEDATTN_RELAXED_SIMD: 'maybe' });
    expect(bad.status).not.toBe(0);
    expect(bad.out).toMatch(/FUSEDATTN_RELAXED_SIMD must be one of auto, off, got "maybe"/);
  });

  it('WASM SIMD and scalar JavaScript kernels agree, on the pool and inline', async () => {
    const scalar = await createCpuEngine({ threads: 0, kernels: 'scalar' });
    const inline = await createCpuEngine({ threads: 0 });
    const pooled = await cpuEngine();
    expect(scalar.kernels.kind).toBe('scalar');
    expect(inline.kernels.kind).toMatch(/^wasm/);
    const cases: AttentionCase[] = [
      { batch: 1, headsQ: 2, seqQ: 67, seqK: 93, dimQK: 59, dimV: 13, causal: true, returnLse: true },
      { layout: 'BSH', batch: 2, headsQ: 4, headsKv: 2, seqQ: 40, seqK: 70, dimQK: 24, dimRope: 6, dimV: 30, mask: 'blocks', returnLse: true },
      { batch: 1, headsQ: 2, seqQ: 50, seqK: 50, dimQK: 8, softcap: 2, bias: 'neg-inf-blocks', alibi: true, window: [7, 2], returnLse: true },
    ];
    for (const [index, c] of cases.entries()) {
      const { q, k, v, options } = makeCase(c, 40 + index);
      const p = validateAttention(q, k, v, options);
      const [s, w, t] = await Promise.all([runFlash(scalar, p), runFlash(inline, p), runFlash(pooled, p)]);
      const agree = compare(w.out.toFloat32(), s.out.toFloat32());
      expect(agree.badIndex).toBe(-1);
      expect(agree.maxAbsError).toBeLessThan(1e-5 * Math.max(1, agree.maxAbsRef));
      expect(Array.from(t.out.toFloat32())).toEqual(Array.from(w.out.toFloat32()));
      checkAgainstReference(c, 40 + index, s.out.toFloat32(), s.lse!.toFloat32());
      checkAgainstReference(c, 40 + index, w.out.toFloat32(), w.lse!.toFloat32());
    }
    scalar.terminate();
    inline.terminate();
  });

  it('works with staging above 2 GiB (addresses past the i32 sign bit)', async () => {
    // an untouched 2.2 GB region pushes this call's regions past 2^31 (not resident: RSS stays small)
    const engine = await createCpuEngine({ threads: 2, inlineFlops: 0 });
    const hole = engine.arena.allocate(2.2e9);
    const c: AttentionCase = { batch: 1, headsQ: 4, headsKv: 2, seqQ: 70, seqK: 90, dimQK: 36, dimV: 20, causal: true, mask: 'blocks', returnLse: true };
    const { q, k, v, options } = makeCase(c, 3);
    const p = validateAttention(q, k, v, options);
    for (const run of [runFlash, runNaive]) {
      const r = await run(engine, p);
      checkAgainstReference(c, 3, r.out.toFloat32(), r.lse!.toFloat32());
    }
    expect(engine.arena.byteLength).toBeGreaterThan(2 ** 31);
    engine.arena.release(hole);
    engine.terminate();
  });

  it('describes threads, SIMD and relaxed SIMD for `fusedattn info`', async () => {
    const cpu = (await listBackends()).find((b) => b.name === 'cpu')!;
    expect(cpu.available).toBe(true);
    expect(cpu.detail).toMatch(/thread/);
    expect(cpu.detail).toMatch(/WASM SIMD (yes|no)/);
    expect(cpu.detail).toMatch(/relaxed SIMD (yes|no)/);
  });
});
