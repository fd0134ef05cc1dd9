// The `fusedattn` command as users run it: a child process of the built dist/cli/main.js.
// Success: the .npy it writes matches the float64 reference (read back with our reader, checked
// with the suite's pass rules). Bad input: a non-zero exit and exactly one "error:" line on stderr,
// no stack trace. info, verify and demo run.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, encodeNpy, referenceAttention, tensorToNpy, validateAttention, type AttentionOptions } from '../dist/index.js';
import { readNpyFile, writeNpyFile } from '../dist/io/npy-file.js';
import { type AttentionCase, checkF32, checkLowPrecision, makeCase } from '../dist/testing/index.js';
import { backendsHere } from './helpers.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'fusedattn-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Outcome {
  status: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI. Dawn itself (native code, not us) prints "Warning: ..." lines on stderr when it
 * creates a device on some drivers (lavapipe: "maxDynamicUniformBuffersPerPipelineLayout
 * artificially reduced"); those lines are dropped so the tests see what fusedattn printed.
 */
function cli(...args: string[]): Outcome {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, EGL_PLATFORM: process.env.EGL_PLATFORM ?? 'surfaceless' },
  });
  const stderr = r.stderr.split('\n').filter((line) => !/^Warning: .*(artificially|Dawn)/.test(line)).join('\n');
  return { status: r.status, stdout: r.stdout, stderr };
}

/** Writes a tensor as <name>.npy in the scratch folder and returns the path. */
function save(name: string, t: Tensor | { data: ArrayBufferView; shape: readonly number[] }): string {
  const path = join(dir, `${name}.npy`);
  const tensor = t instanceof Tensor ? t : Tensor.fromData(t.data, t.shape);
  writeNpyFile(path, tensorToNpy(tensor));
  return path;
}

/** Command-line flags for a case's inputs and options, and the options attention() would get. */
function flagsFor(prefix: string, c: AttentionCase, seed: number): { args: string[]; q: Tensor; k: Tensor; v: Tensor; options: AttentionOptions } {
  const { q, k, v, options } = makeCase(c, seed);
  const args = ['--q', save(`${prefix}-q`, q), '--k', save(`${prefix}-k`, k), '--v', save(`${prefix}-v`, v)];
  const file = (flag: string, name: string, value: unknown) => {
    if (value !== undefined) args.push(flag, save(`${prefix}-${name}`, value as Tensor));
  };
  file('--q-rope', 'qrope', options.qRope);
  file('--k-rope', 'krope', options.kRope);
  file('--mask', 'mask', options.mask);
  file('--bias', 'bias', options.bias);
  if (options.alibiSlopes) file('--alibi-slopes', 'alibi', { data: options.alibiSlopes as Float32Array, shape: [c.headsQ] });
  for (const [flag, key] of [['--cu-seqlens-q', 'cuSeqlensQ'], ['--cu-seqlens-k', 'cuSeqlensK']] as const) {
    const cu = options[key] as number[] | undefined;
    if (cu) {
      // int64, as PyTorch's cu_seqlens usually are
      const path = join(dir, `${prefix}-${key}.npy`);
      writeNpyFile(path, { dtype: 'int64', shape: [cu.length], data: BigInt64Array.from(cu, BigInt) });
      args.push(flag, path);
    }
  }
  if (options.layout) args.push('--layout', options.layout);
  if (options.heads !== undefined) args.push('--heads', String(options.heads));
  if (options.kvHeads !== undefined) args.push('--kv-heads', String(options.kvHeads));
  if (options.causal !== undefined) args.push('--causal', ...(options.causal === true ? [] : [String(options.causal)]));
  if (options.window) args.push('--window', options.window.join(','));
  if (options.preTokens !== undefined) args.push('--pre-tokens', String(options.preTokens));
  if (options.nextTokens !== undefined) args.push('--next-tokens', String(options.nextTokens));
  if (options.softcap !== undefined) args.push('--softcap', String(options.softcap));
  if (options.scale !== undefined) args.push('--scale', String(options.scale));
  return { args, q, k, v, options };
}

const CASES: AttentionCase[] = [
  { batch: 2, headsQ: 4, headsKv: 2, seqQ: 37, seqK: 53, dimQK: 24, causal: true, mask: 'full-rows', maskShape: 'full', returnLse: true },
  { layout: 'TND', dtype: 'float16', batch: 3, headsQ: 2, seqQ: 0, seqK: 0, seqLensQ: [5, 1, 30], seqLensK: [9, 12, 30], dimQK: 16, window: [6, -1], causal: true, returnLse: true },
  { layout: 'BSND', batch: 1, headsQ: 2, seqQ: 20, seqK: 31, dimQK: 32, dimRope: 8, dimV: 16, bias: 'neg-inf-blocks', alibi: true, softcap: 4, scale: 0.3, preTokens: 12, nextTokens: 3 },
  { layout: 'SBH', batch: 2, headsQ: 4, headsKv: 1, seqQ: 19, seqK: 11, dimQK: 8, causal: 'top-left' },
  { layout: 'BSH', batch: 1, headsQ: 3, seqQ: 1, seqK: 40, dimQK: 20, mask: 'random', maskShape: '2d', returnLse: true },
];

const backends = await backendsHere();
for (const backend of backends) {
  if (backend.skip) console.warn(`\n!!! SKIPPING the fusedattn run CLI tests on ${backend.name}: ${backend.skip}\n`);
  // The attention suite covers every option on every backend; here the point is the CLI's plumbing,
  // so the slow software WebGPU of CI gets one case and the CPU all of them.
  const cases = backend.name === 'cpu' ? CASES : CASES.slice(0, 1);
  describe.skipIf(backend.skip !== undefined)(`fusedattn run on ${backend.name}`, () => {
    cases.forEach((c, n) => {
      it(`writes what the float64 reference says: case ${n}`, () => {
        const prefix = `${backend.name}-${n}`;
        const { args, q, k, v, options } = flagsFor(prefix, c, 500 + n);
        const out = join(dir, `${prefix}-out.npy`);
        const lse = join(dir, `${prefix}-lse.npy`);
        const r = cli('run', ...args, '--backend', backend.name, '--out', out, ...(c.returnLse ? ['--lse', lse] : []));
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
        expect(r.stdout).toMatch(new RegExp(`^wrote .*out\\.npy .*\\(backend ${backend.name}, `));

        const problem = validateAttention(q, k, v, { ...options, returnLse: c.returnLse });
        const ref = referenceAttention(problem);
        const got = readNpyFile(out);
        expect(got.dtype).toBe(problem.dtype);
        expect(got.shape).toEqual(problem.outShape);
        const values = Tensor.fromData(got.data as Float32Array | Uint16Array, got.shape, problem.dtype).toFloat32();
        const failure = problem.dtype === 'float32'
          ? checkF32('out', values, ref.out)
          : checkLowPrecision('out', values, referenceAttention(problem, 'float16').out, ref.out);
        expect(failure).toBeUndefined();
        if (c.returnLse) {
          const l = readNpyFile(lse);
          expect(l.dtype).toBe('float32');
          expect(l.shape).toEqual(problem.lseShape);
          expect(checkF32('lse', l.data as Float32Array, ref.lse, problem.dtype === 'float16' ? 1e-3 : 1e-5)).toBeUndefined();
        }
      });
    });
  });
}

describe('fusedattn on bad input: one line on stderr, non-zero exit, no stack trace', () => {
  const base = () => {
    const { args } = flagsFor('bad', { batch: 1, headsQ: 2, seqQ: 4, seqK: 6, dimQK: 8 }, 1);
    return [...args, '--out', join(dir, 'bad-out.npy')];
  };
  const f64 = join(dir, 'f64.npy');
  writeFileSync(f64, Buffer.from(encodeNpy({ dtype: 'float32', shape: [1, 2, 6, 8], data: new Float32Array(96) })).toString('latin1').replace("'<f4'", "'<f8'"), 'latin1');
  const replace = (args: string[], flag: string, value: string) => args.map((a, i) => (args[i - 1] === flag ? value : a));

  const cases: Array<[string, string[], number, RegExp]> = [
    ['missing file', replace(base(), '--k', join(dir, 'nope.npy')), 1, /^error: cannot read .*nope\.npy: no such file or directory$/],
    ['float64 input', replace(base(), '--k', f64), 1, /^error: .*f64\.npy has dtype "<f8" \(float64\); expected little-endian float32/],
    ['shape mismatch', replace(base(), '--v', save('v-bad', { data: new Float32Array(2 * 5 * 8), shape: [1, 2, 5, 8] })), 1, /^error: value length must equal key length \(6\), got 5 \(--v .*v-bad\.npy\)$/],
    ['heads not a multiple', replace(base(), '--q', save('q-bad', { data: new Float32Array(3 * 4 * 8), shape: [1, 3, 4, 8] })), 1, /^error: query heads \(3\) must be a multiple of key\/value heads/],
    ['mask not broadcastable', [...base(), '--mask', save('m-bad', Tensor.fromData(new Uint8Array(20), [4, 5], 'bool'))], 1, /^error: mask of shape \[4, 5\] is not broadcastable .* \(--mask .*m-bad\.npy\)$/],
    ['float mask', [...base(), '--mask', save('m-float', { data: new Float32Array(24), shape: [4, 6] })], 1, /^error: mask must have dtype bool or uint8, got float32/],
    ['window with top-left causal', [...base(), '--causal', 'top-left', '--window', '2,0'], 1, /^error: .*ambiguous.* \(--window\)$/],
    ['cu_seqlens without TND', [...base(), '--cu-seqlens-q', save('cu', Tensor.fromData(Int32Array.from([0, 4]), [2]))], 1, /^error: options\.cuSeqlensQ applies only to layout TND/],
    ['unknown flag', [...base(), '--casual'], 2, /^error: unknown option '--casual' \(Did you mean --causal\?\)$/],
    ['bad window value', [...base(), '--window', '3'], 2, /^error: option '--window <L,R>' argument '3' is invalid/],
    ['missing --out', base().slice(0, -2), 2, /^error: required option '--out <file>' not specified$/],
    ['bad layout', [...base(), '--layout', 'NCHW'], 2, /^error: option '--layout <layout>' argument 'NCHW' is invalid/],
  ];
  for (const [name, args, code, text] of cases) {
    it(name, () => {
      const r = cli('run', ...args, '--backend', 'cpu');
      expect(r.status).toBe(code);
      expect(r.stdout).toBe('');
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines, r.stderr).toHaveLength(1);
      expect(lines[0]).toMatch(text);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    });
  }
  it('verify with a filter that matches nothing', () => {
    const r = cli('verify', '--filter', 'no such case');
    expect(r.status).toBe(2); // a usage error
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^error: --filter "no such case" matches none of the \d+ suite cases/);
  });
});

describe('fusedattn info, verify, demo', () => {
  it('info lists the backends, the CPU and what auto picks; --json parses', () => {
    const text = cli('info');
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/^backend\s+available\s+detail/);
    expect(text.stdout).toMatch(/\ncpu\s+yes\s/);
    expect(text.stdout).toMatch(/\nwebgpu\s+(yes|no)\s/);
    expect(text.stdout).toMatch(/backend 'auto' picks: (cpu|webgpu)/);
    const json = cli('info', '--json');
    expect(json.status).toBe(0);
    const report = JSON.parse(json.stdout);
    expect(report.backends.map((b: { name: string }) => b.name)).toEqual(['cpu', 'webgpu']);
    expect(report.cpu.threads).toBeGreaterThan(0);
    expect(typeof report.cpu.wasmSimd).toBe('boolean');
  });

  it('verify runs the suite cases it is asked for and passes them', () => {
    const r = cli('verify', '--backend', 'cpu', '--filter', 'TND', '--seed', '99');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^cpu: 3 cases, seed 99/);
    expect(r.stdout.match(/^cpu\s+pass\s/gm)).toHaveLength(3);
    expect(r.stdout).toMatch(/\n3 of 3 passed\n/);
  });

  it('demo at a fixed length: fused and naive agree, rows match float64, stats printed', () => {
    const r = cli('demo', '--backend', 'cpu', '--seq-len', '200', '--heads', '4', '--kv-heads', '2', '--head-dim', '64', '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/agreement fused vs naive: .* -> ok/);
    expect(r.stdout).toMatch(/float64 reference, 6 rows: .* -> ok/);
    const record = JSON.parse(r.stdout.trimEnd().split('\n').pop()!);
    expect(record.ok).toBe(true);
    expect(record.shape).toMatchObject({ heads: 4, kvHeads: 2, headDim: 64, seqLen: 200, causal: true });
    expect(record.fused.stats.launches).toBeGreaterThan(0);
    // the naive way materialises at least the B x Nq x S x S scores (float32); the fused way much less
    expect(record.naive.stats.intermediateBytes).toBeGreaterThanOrEqual(4 * 200 * 200 * 4);
    expect(record.fused.stats.intermediateBytes).toBeLessThan(record.naive.stats.intermediateBytes);
  });

  it('demo calibrates the length to a small budget', () => {
    const r = cli('demo', '--backend', 'cpu', '--budget', '1', '--heads', '2', '--head-dim', '32', '--no-causal');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/S=256: fused .*, naive .*/);
    expect(r.stdout).toMatch(/-> S=\d+ \(bounded by (time|memory|maximum)\)/);
    expect(r.stdout).toMatch(/-> ok\n/);
  });
});
