// Functions that run as the call's own options. A block mask's key-window part
// (block-mask/window-part.ts): which conjuncts are taken as the call's window (exactly the mask,
// proven pair by pair with the float64 evaluator), what a call then runs with (the window, the
// rest's block mask with the diagonal blocks FULL, or no block mask at all), and that the results
// equal the unsplit mask's on the CPU and on WebGPU. A score function's softcap part
// (mods/softcap-part.ts): taken as options.softcap only where nothing comes between them.
import { describe, expect, it } from 'vitest';
import {
  alibiSlopes, attention, causal, createBlockMask, scoreMod, softcap, documentMask, int, maskMod, prefixLM, slidingWindow, streamingMask, validateAttention,
  type AttentionOptions, type BackendName, type MaskMod,
} from '../dist/index.js';
import { type AttentionCase, checkAgainstReference, makeCase } from '../dist/testing/index.js';
import { windowPart } from '../dist/ops/attention/block-mask/window-part.js';
import { softcapAsOption, softcapPart } from '../dist/ops/attention/mods/softcap-part.js';
import { buildFlashSgMatrix } from '../dist/ops/attention/webgpu/tiers/flash-sgmatrix-wgsl.js';
import { SG_MATRIX_CONFIGS, kernelOptionsOf } from '../dist/ops/attention/webgpu/tiers/sgmatrix.js';
import { tintErrors } from './tint.js';
import { softcapFunction } from './helpers.js';
import { Lowering } from '../dist/ops/attention/mods/program.js';
import { programEvaluator, makeEnv, VAR_INDEX } from '../dist/ops/attention/mods/evaluate.js';
import { FULL, PARTIAL } from '../dist/ops/attention/block-mask/grid.js';
import { skipNotice } from './webgpu-helpers.js';

/** The mask's value at every (q, kv) of an Sq × Sk call (b = h = 0), by the float64 evaluator. */
function dense(mask: MaskMod, sq: number, sk: number): boolean[] {
  const lowering = new Lowering();
  const program = lowering.lower(mask.root);
  const f = programEvaluator(program, lowering.tensors as never);
  const env = makeEnv();
  env[VAR_INDEX.qLen] = sq;
  env[VAR_INDEX.kvLen] = sk;
  const out: boolean[] = [];
  for (let i = 0; i < sq; i++) for (let j = 0; j < sk; j++) {
    env[VAR_INDEX.q] = i;
    env[VAR_INDEX.kv] = j;
    out.push(f(env) !== 0);
  }
  return out;
}

/** The window's rule (problem.ts KeyWindow) at every (q, kv). */
function windowDense(w: { left: number; right: number; align: string }, sq: number, sk: number): boolean[] {
  const diag = w.align === 'bottom-right' ? sk - sq : 0;
  const out: boolean[] = [];
  for (let i = 0; i < sq; i++) for (let j = 0; j < sk; j++) out.push(j >= diag + i - w.left && j <= diag + i + w.right);
  return out;
}

const docs = Int32Array.from({ length: 64 }, (_, i) => Math.floor(i / 13));
const CASES: Array<[string, MaskMod, { left: number; right: number; align: string } | undefined]> = [
  ['causal() bottom-right', causal(), { left: Infinity, right: 0, align: 'bottom-right' }],
  ['causal top-left', causal('top-left'), { left: Infinity, right: 0, align: 'top-left' }],
  ['slidingWindow(5, 2)', slidingWindow(5, 2), { left: 5, right: 2, align: 'bottom-right' }],
  ['documents, causal', documentMask(docs, { causal: true }), { left: Infinity, right: 0, align: 'top-left' }],
  ['documents alone', documentMask(docs), undefined],
  ['q - kv >= 0 (written the other way round)', maskMod(({ q, kv }) => q.sub(kv).ge(0)), { left: Infinity, right: 0, align: 'top-left' }],
  ['kv > q - 4 and kv <= q + 1 (strict bounds)', maskMod(({ q, kv }) => kv.gt(q.sub(4)).and(kv.le(q.add(1)))), { left: 3, right: 1, align: 'top-left' }],
  ['two bounds of one side: the tighter one', maskMod(({ q, kv }) => kv.le(q.add(3)).and(kv.le(q.add(1)))), { left: Infinity, right: 1, align: 'top-left' }],
  ['kv < q hides the diagonal: not a window the options state', maskMod(({ q, kv }) => kv.lt(q)), undefined],
  ['a scaled offset is not taken', maskMod(({ q, kv }) => kv.mul(2).le(q.mul(2))), undefined],
  ['an OR is not split', causal().or(prefixLM(3, 'top-left')), undefined],
  ['mixed alignments: the first one, the other stays in the rest', causal('top-left').and(slidingWindow(4)), { left: Infinity, right: 0, align: 'top-left' }],
  ['streaming mask (OR inside an AND)', streamingMask(2, 5), { left: Infinity, right: 0, align: 'bottom-right' }],
  ['prefixLM and a window', prefixLM(4, 'top-left').and(maskMod(({ q, kv }) => kv.ge(q.sub(int(6))))), { left: 6, right: Infinity, align: 'top-left' }],
];

describe('windowPart', () => {
  for (const [name, mask, want] of CASES) {
    it(name, () => {
      let square = true;
      const part = windowPart(mask);
      if (!want) return expect(part).toBeUndefined();
      expect(part?.window).toEqual(want);
      // window ∧ rest is the mask, pair by pair, on square and both non-square shapes
      for (const [sq, sk] of [[37, 37], [29, 53], [53, 29]]) {
        const whole = dense(mask, sq, sk);
        const w = windowDense(part!.window, sq, sk);
        const rest = part!.rest ? dense(part!.rest, sq, sk) : whole.map(() => true);
        const split = w.map((x, n) => x && rest[n]);
        expect(split, `${sq}x${sk}`).toEqual(whole);
        if (square) expect(whole.some((x) => x) && whole.some((x) => !x), 'the case masks something and keeps something').toBe(true);
        square = false;
      }
    });
  }
});

describe('a call with a windowed block mask', () => {
  const S = 200;
  const ids = Int32Array.from({ length: S }, (_, i) => Math.floor(i / 50));

  it('runs the window natively: documents keep a rest whose diagonal blocks are FULL; causal() needs no block mask', async () => {
    const bm = await createBlockMask(documentMask(ids, { causal: true }), 1, 1, S, S, { blockSize: 32 });
    // the public lists are the whole mask's: diagonal blocks partial, as FlexAttention lists them
    expect(bm.kvNumBlocks[0]).toBe(1);
    expect(bm.fullKvNumBlocks[0]).toBe(0);
    const { q, k, v } = makeCase({ batch: 1, headsQ: 2, seqQ: S, seqK: S, dimQK: 16 }, 3);
    const p = validateAttention(q, k, v, { blockMask: bm });
    expect(p.window).toEqual({ left: Infinity, right: 0, align: 'top-left' });
    expect(p.blockMask).toBeDefined();
    expect(p.blockMask!.maskMod).not.toBe(bm.maskMod);
    const g = p.blockMask!.grid;
    // block (0, 0) lies inside document 0: FULL under the window; block (1, 1) straddles documents 0 | 1 at 50
    expect(g.status[0]).toBe(FULL);
    expect(g.status[g.kBlocks + 1]).toBe(PARTIAL);
    // ... and block (0, 1) is above the diagonal: EMPTY, as in the whole mask's grid
    expect(g.status[1]).toBe(bm.grid.status[1]);
    const pc = validateAttention(q, k, v, { blockMask: await createBlockMask(causal(), 1, 1, S, S) });
    expect([pc.blockMask, pc.mods, pc.window]).toEqual([undefined, undefined, { left: Infinity, right: 0, align: 'bottom-right' }]);
    // a call with a window of its own keeps the block mask whole
    const own = validateAttention(q, k, v, { blockMask: bm, causal: true });
    expect(own.blockMask).toBe(bm);
    expect(own.window).toEqual({ left: Infinity, right: 0, align: 'bottom-right' });
  });

  async function agree(backend: BackendName, c: AttentionCase, mask: MaskMod, blockSize: number, seed: number): Promise<void> {
    const { q, k, v, options } = makeCase(c, seed);
    const blockMask = await createBlockMask(mask, null, null, c.seqQ, c.seqK, { blockSize });
    const blocked: AttentionOptions = { ...options, blockMask };
    const problem = validateAttention(q, k, v, blocked);
    const [a, b] = await Promise.all([attention(q, k, v, { ...blocked, backend }), attention(q, k, v, { ...options, maskMod: mask, backend })]);
    // against the float64 reference of the whole mask (not of the split problem)
    const { failures } = checkAgainstReference(validateAttention(q, k, v, { ...options, maskMod: mask }), a);
    expect(failures.join('; ')).toBe('');
    expect(problem.window.left !== Infinity || problem.window.right !== Infinity).toBe(true);
    const x = a.out.toFloat32();
    const y = b.out.toFloat32();
    let max = 0;
    for (let n = 0; n < x.length; n++) max = Math.max(max, Math.abs(x[n] - y[n]));
    expect(max).toBeLessThanOrEqual(2e-6);
  }

  const ODD: AttentionCase = { batch: 2, headsQ: 4, headsKv: 2, seqQ: 97, seqK: 130, dimQK: 59, dimV: 33, returnLse: true };
  it('CPU: sliding window (bottom-right, Sq < Sk), causal documents, causal()', async () => {
    await agree('cpu', ODD, slidingWindow(40, 3), 16, 1);
    await agree('cpu', { ...ODD, seqQ: 130 }, documentMask(Int32Array.from({ length: 130 }, (_, i) => Math.floor(i / 37)), { causal: true }), 32, 2);
    await agree('cpu', { ...ODD, seqK: 80 }, causal(), 16, 3);
  });

  it('WebGPU: sliding window (bottom-right, Sq < Sk), causal documents', async () => {
    if (await skipNotice('the windowed block mask on WebGPU')) return;
    await agree('webgpu', ODD, slidingWindow(40, 3), 16, 4);
    await agree('webgpu', { ...ODD, seqQ: 130 }, documentMask(Int32Array.from({ length: 130 }, (_, i) => Math.floor(i / 37)), { causal: true }), 32, 5);
  });
});

describe('a score function\'s softcap part', () => {
  it('is the built-in alone or first of a composition, one cap, the score read through it only', () => {
    expect(softcapPart(softcap(30))).toEqual({ cap: 30, rest: undefined });
    const then = softcapPart(softcap(20).then(scoreMod(({ score, h }) => score.mul(h.add(1).toFloat()))));
    expect(then?.cap).toBe(20);
    expect(then?.rest?.toString()).toBe('(score * toFloat((h + 1)))');
    expect(softcapPart(softcapFunction(30))).toBeUndefined();
    // a cap of a later stage is not the option's: only the first one, read by the rest
    const two = softcapPart(softcap(4).then(scoreMod(({ score }) => score.tanh())).then(softcap(5)));
    expect([two?.cap, two?.rest?.toString()]).toEqual([4, '(tanh((tanh(score) / 5)) * 5)']);
    // the score read beside the cap
    expect(softcapPart(scoreMod(({ score }) => score.div(3).tanh().mul(3).add(score)))).toBeUndefined();
  });

  it('runs as the softcap option on the tensor-core tier (with a function\'s rule), only where nothing comes between', () => {
    const { q, k, v } = makeCase({ batch: 1, headsQ: 2, seqQ: 33, seqK: 40, dimQK: 16 }, 7);
    const bare = softcapAsOption(validateAttention(q, k, v, { scoreMod: softcap(30) }));
    expect([bare.softcap, bare.softcapRule, bare.mods]).toEqual([30, 'function', undefined]);
    const withMask = softcapAsOption(validateAttention(q, k, v, { scoreMod: softcap(30), maskMod: slidingWindow(5) }));
    expect([withMask.softcap, withMask.mods?.scoreMod, withMask.mods?.maskMod !== undefined]).toEqual([30, undefined, true]);
    const biased = makeCase({ batch: 1, headsQ: 2, seqQ: 33, seqK: 40, dimQK: 16, bias: 'random', maskShape: 'full' }, 7);
    for (const other of [{ softcap: 10 }, { alibiSlopes: alibiSlopes(2) }, biased.options]) {
      const kept = softcapAsOption(validateAttention(q, k, v, { scoreMod: softcap(30), ...other }));
      expect(kept.mods?.scoreMod, Object.keys(other).join()).toBeDefined();
      expect(kept.softcapRule).toBeUndefined();
    }
  });

  it('keeps a function\'s rule in the tier\'s lines: +inf / NaN poison a visible pair, -inf hides it (WGSL, compiled by Tint)', () => {
    const { q, k, v } = makeCase({ dtype: 'float16', batch: 1, headsQ: 2, seqQ: 40, seqK: 50, dimQK: 64 }, 3);
    const p = softcapAsOption(validateAttention(q, k, v, { scoreMod: softcap(30), causal: true }));
    const o = kernelOptionsOf(p, SG_MATRIX_CONFIGS[0]);
    expect(o.softcapFunction).toBe(true);
    const wgsl = buildFlashSgMatrix(o as never);
    expect(wgsl).toContain('let qkBad = (scaled & 0x7fffffffu) >= 0x7f800000u;');
    expect(wgsl).toContain('if (qkBad) { if (scaled == 0xff800000u) { keep = false; } else if (keep) { poison = 1u; } }');
    const plain = buildFlashSgMatrix(kernelOptionsOf(validateAttention(q, k, v, { softcap: 30, causal: true }), SG_MATRIX_CONFIGS[0]) as never);
    expect(plain).not.toContain('qkBad');
    const errors = tintErrors({ 'softcap() on the tier': wgsl }, 'the softcap function rule');
    if (errors) for (const [label, list] of Object.entries(errors)) expect(list, label).toEqual([]);
  });

  it('gives what the function gives (CPU, odd sizes, with a mask function beside it)', async () => {
    const c: AttentionCase = { batch: 2, headsQ: 4, headsKv: 2, seqQ: 77, seqK: 93, dimQK: 40, scale: 2, returnLse: true };
    const { q, k, v, options } = makeCase(c, 8);
    const mask = slidingWindow(30);
    const [a, b] = await Promise.all([
      attention(q, k, v, { ...options, scoreMod: softcap(3), maskMod: mask, backend: 'cpu' }),
      attention(q, k, v, { ...options, scoreMod: softcapFunction(3), maskMod: mask, backend: 'cpu' }),
    ]);
    const { failures } = checkAgainstReference(validateAttention(q, k, v, { ...options, scoreMod: softcapFunction(3), maskMod: mask }), a);
    expect(failures.join('; ')).toBe('');
    const x = a.out.toFloat32();
    const y = b.out.toFloat32();
    let max = 0;
    for (let n = 0; n < x.length; n++) max = Math.max(max, Math.abs(x[n] - y[n]));
    expect(max).toBeLessThanOrEqual(2e-6);
  });
});
