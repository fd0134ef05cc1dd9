// `fusedattn grad` as users run it (a child process of dist/cli/main.js): gradients written as
// .npy match the float64 reference backward; out / lse from `fusedattn run` or recomputed; bad
// input is one "error:" line; the outputs are written all or nothing.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, tensorToNpy, validateAttention } from '../dist/index.js';
import { readNpyFile, writeNpyFile } from '../dist/io/npy-file.js';
import { npyToTensor } from '../dist/io/npy-tensor.js';
import { type GradCase, checkGradients, makeCase, makeGradCase } from '../dist/testing/index.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'fusedattn-grad-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.split('\n').filter((l) => !/^Warning: /.test(l)).join('\n') };
}

const path = (name: string) => join(dir, `${name}.npy`);
function save(name: string, t: Tensor): string {
  writeNpyFile(path(name), tensorToNpy(t));
  return path(name);
}

function setup(prefix: string, c: GradCase, seed: number) {
  const { q, k, v, options } = makeCase(c, seed);
  if (c.dropout) options.dropout = { p: c.dropout, seed: 99, offset: 2 };
  const problem = validateAttention(q, k, v, options);
  const { dOut, dOutValues } = makeGradCase(c, seed, problem.outShape);
  const args = ['--q', save(`${prefix}-q`, q), '--k', save(`${prefix}-k`, k), '--v', save(`${prefix}-v`, v), '--dout', save(`${prefix}-do`, dOut), '--backend', 'cpu'];
  if (options.qRope) args.push('--q-rope', save(`${prefix}-qr`, options.qRope as Tensor), '--k-rope', save(`${prefix}-kr`, options.kRope as Tensor));
  if (options.bias) args.push('--bias', save(`${prefix}-bias`, options.bias as Tensor));
  if (options.layout) args.push('--layout', options.layout);
  if (options.causal) args.push('--causal');
  if (options.cuSeqlensQ) {
    for (const [flag, key] of [['--cu-seqlens-q', 'cuSeqlensQ'], ['--cu-seqlens-k', 'cuSeqlensK']] as const) {
      const cu = options[key] as number[];
      writeNpyFile(path(`${prefix}-${key}`), { dtype: 'int64', shape: [cu.length], data: BigInt64Array.from(cu, BigInt) });
      args.push(flag, path(`${prefix}-${key}`));
    }
  }
  if (options.dropout) args.push('--dropout', String(c.dropout), '--seed', '99', '--dropout-offset', '2');
  return { args, problem, dOutValues };
}

const read = (name: string) => npyToTensor(readNpyFile(path(name)), name);

describe('fusedattn grad', () => {
  it('writes dq, dk, dv, dqRope, dkRope and dbias from run\'s out and lse (MLA split form, bias, dropout)', () => {
    const c: GradCase = { layout: 'BSND', batch: 2, headsQ: 4, headsKv: 2, seqQ: 20, seqK: 31, dimQK: 16, dimRope: 8, dimV: 12, causal: true, bias: 'random', maskShape: 'batch', biasGrad: true, dropout: 0.2 };
    const { args, problem, dOutValues } = setup('a', c, 3);
    const forward = args.filter((_, i) => !['--dout'].includes(args[i]) && !['--dout'].includes(args[i - 1]));
    const run = cli('run', ...forward, '--out', path('a-out'), '--lse', path('a-lse'));
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const r = cli('grad', ...args, '--out', path('a-out'), '--lse', path('a-lse'), '--dq', path('a-dq'), '--dk', path('a-dk'), '--dv', path('a-dv'),
      '--dq-rope', path('a-dqr'), '--dk-rope', path('a-dkr'), '--dbias', path('a-db'));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^wrote .*a-dq\.npy \[2, 20, 4, 16\]/);
    const grads = { dq: read('a-dq'), dk: read('a-dk'), dv: read('a-dv'), dqRope: read('a-dqr'), dkRope: read('a-dkr'), dBias: read('a-db') };
    expect(checkGradients(problem, dOutValues, grads, true).failures.join('; ')).toBe('');
  });

  it('recomputes the forward when out and lse are not given (TND, float16, unfused too)', () => {
    const c: GradCase = { layout: 'TND', dtype: 'float16', batch: 3, headsQ: 2, seqQ: 0, seqK: 0, seqLensQ: [5, 0, 30], seqLensK: [9, 12, 30], dimQK: 16, causal: true };
    const { args, problem, dOutValues } = setup('b', c, 5);
    for (const extra of [[], ['--unfused']]) {
      const r = cli('grad', ...args, '--dq', path('b-dq'), '--dk', path('b-dk'), '--dv', path('b-dv'), '--quiet', ...extra);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('');
      const grads = { dq: read('b-dq'), dk: read('b-dk'), dv: read('b-dv') };
      expect(checkGradients(problem, dOutValues, grads).failures.join('; ')).toBe('');
    }
  });

  it('takes attention-sink logits (--sink) and writes their gradient (--dsink)', () => {
    const c: GradCase = { batch: 2, headsQ: 2, seqQ: 9, seqK: 6, dimQK: 8, causal: true };
    const { args } = setup('s', c, 7);
    const sink = Tensor.fromData(Float32Array.of(0.5, -1.25), [2]);
    const { q, k, v, options } = makeCase(c, 7);
    const problem = validateAttention(q, k, v, { ...options, sink });
    const { dOutValues } = makeGradCase(c, 7, problem.outShape);
    const r = cli('grad', ...args, '--sink', save('s-sink', sink), '--dq', path('s-dq'), '--dk', path('s-dk'), '--dv', path('s-dv'), '--dsink', path('s-ds'));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const grads = { dq: read('s-dq'), dk: read('s-dk'), dv: read('s-dv'), dSink: read('s-ds') };
    expect(grads.dSink.shape).toEqual([2]);
    expect(checkGradients(problem, dOutValues, grads, false, undefined, true).failures.join('; ')).toBe('');
  });

  it('fails with one error line and writes nothing when any output cannot be written', () => {
    const c: GradCase = { batch: 1, headsQ: 1, seqQ: 4, seqK: 4, dimQK: 4 };
    const { args } = setup('c', c, 1);
    const before = readdirSync(dir).length;
    const r = cli('grad', ...args, '--dq', path('c-dq'), '--dk', join(dir, 'missing', 'dk.npy'), '--dv', path('c-dv'));
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^error: cannot write .*dk\.npy: a parent is not a directory|^error: cannot write .*dk\.npy: no such file or directory/);
    expect(existsSync(path('c-dq'))).toBe(false);
    expect(readdirSync(dir).length).toBe(before);
    const half = cli('grad', ...args, '--out', path('c-q'), '--dq', path('c-dq'), '--dk', path('c-dk'), '--dv', path('c-dv'));
    expect(half.status).toBe(1);
    expect(half.stderr).toMatch(/^error: --out and --lse go together/);
    const wrong = save('c-wrong', Tensor.fromData(new Float32Array(12), [1, 1, 4, 3]));
    const shape = cli('grad', ...args.map((a) => (a === path('c-do') ? wrong : a)), '--dq', path('c-dq'), '--dk', path('c-dk'), '--dv', path('c-dv'));
    expect(shape.status).toBe(1);
    expect(shape.stderr).toMatch(/^error: Input 'dOut' is expected to have the forward output's shape \[1, 1, 4, 4\]/);
    expect(existsSync(path('c-dq'))).toBe(false);
  });
});
