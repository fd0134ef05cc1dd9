// The tensor-core tier's kernel WGSL around the score hook (no GPU needed; the tier itself runs
// only where an adapter has subgroup matrices): the plain kernels (no mask, bias or function) stay
// byte for byte what the H200 measured, one SHA-256 per option set in a file snapshot; what the
// hook adds per score is only what the call has (sinks: nothing; FULL block-table tiles: nothing
// without a bias or score function); score functions in log2 units agree with the natural-unit
// originals; every hook variant compiles with Tint.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { alibi, attentionSinks, capture, documentMask, scoreMod, slidingWindow, softcap, t5RelativeBias } from '../dist/index.js';
import { buildFlashSgMatrix, type SgMatrixKernelOptions } from '../dist/ops/attention/webgpu/tiers/flash-sgmatrix-wgsl.js';
import { planMods } from '../dist/ops/attention/mods/plan.js';
import { programEvaluator, makeEnv, VAR_INDEX } from '../dist/ops/attention/mods/evaluate.js';
import { scoreProgramInLog2 } from '../dist/ops/attention/mods/log2-units.js';
import { SG_BASE, plainVariants } from './sgmatrix-variants.js';
import { type BoundModule, tintErrors } from './tint.js';

const sha = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 16);
type Hook = NonNullable<SgMatrixKernelOptions['score']>;
const hook = (o: SgMatrixKernelOptions, x: Partial<Hook>): SgMatrixKernelOptions => ({
  ...o, score: { mask: false, bias: 'none', windowed: o.causalOrWindow, softcap: o.softcap, alibi: o.alibi, blockTable: false, ...x },
});
const mods = (parts: Parameters<typeof planMods>[0]) => planMods(parts).kernel;

/**
 * The bindings the host binds for a kernel (dispatch.ts's dispatchFastTier and sgmatrix.ts's
 * recordSgMatrix): an 'auto' layout built from the WGSL must take exactly these, so a hook that
 * stops reading one of them (the score params with a sink alone) must still declare its use.
 */
function hostBindings(o: SgMatrixKernelOptions): BoundModule['bindings'] {
  const list = [0, 1, 2, 3, 4, 5].map((binding) => ({ binding, uniform: binding === 0 }));
  let next = 6;
  if (o.returnLse) list.push({ binding: next++, uniform: false });
  if (o.dimRope) list.push({ binding: next++, uniform: false }, { binding: next++, uniform: false });
  if (o.dropout) list.push({ binding: 15, uniform: true });
  const h = o.score;
  if (h) {
    list.push({ binding: 10, uniform: true });
    if (h.mask) list.push({ binding: 11, uniform: false });
    if (h.bias !== 'none') list.push({ binding: 12, uniform: false });
    if (h.blockTable || (h.mods?.tensors.length ?? 0) > 0) list.push({ binding: 13, uniform: false });
  }
  return list;
}

/** The per-score loop(s) of a kernel: from the column comment to the block max's shuffle. */
function scoreLoop(wgsl: string): string {
  const from = wgsl.indexOf('    // columns side, side + 2');
  const to = wgsl.indexOf('    blockMax = max(blockMax, subgroupShuffleXor(blockMax, 1u));');
  expect(from).toBeGreaterThan(0);
  return wgsl.slice(from, to);
}

/** The FULL and the PARTIAL branch of a block-table kernel's score loop, re-indented as the plain one. */
function tableBranches(wgsl: string): { full: string; partial: string } {
  const loop = scoreLoop(wgsl);
  const [head, rest] = loop.split('    if (full) {\n');
  const [full, partial] = rest.split('    } else {\n');
  const dedent = (x: string) => head + x.replace(/^ {2}/gm, '').replace(/\n {2}\}\n$/, '\n');
  return { full: dedent(full), partial: dedent(partial.replace(/ {4}\}\n$/, '')) };
}

describe('tensor-core kernel without a score hook', () => {
  it('generates the same WGSL as before (hash per option set)', async () => {
    const variants = plainVariants();
    expect(variants.length).toBeGreaterThan(300);
    const lines = variants.map((o) => `${sha(buildFlashSgMatrix(o))} ${JSON.stringify(o)}`);
    await expect(lines.join('\n') + '\n').toMatchFileSnapshot('./__snapshots__/sgmatrix-plain.sha256');
  });
});

describe('tensor-core score hook', () => {
  const sinks = mods({ sinkMod: attentionSinks([1, -2]) });
  const window = mods({ maskMod: slidingWindow(100) });
  const capped = mods({ scoreMod: softcap(30) });

  it('sinks alone keep the plain score path; only the final normalisation changes', () => {
    for (const o of [SG_BASE, { ...SG_BASE, alibi: true }, { ...SG_BASE, unrolled: true, causalOrWindow: false }]) {
      const plain = buildFlashSgMatrix(o);
      const sunk = buildFlashSgMatrix(hook(o, { mods: sinks }));
      expect(scoreLoop(sunk)).toBe(scoreLoop(plain));
      expect(sunk).toContain('sink_mod(b, myHead, i, lenQ, lenK)');
      expect(sunk).not.toContain('final_score');
    }
    // with the softcap option too: the plain kernel tests a NaN q·k behind the window test since
    // the third session (a NaN key hidden by causal or the window no longer poisons a row)
    const o = { ...SG_BASE, softcap: true, alibi: true };
    const plain = scoreLoop(buildFlashSgMatrix(o));
    expect(scoreLoop(buildFlashSgMatrix(hook(o, { mods: sinks })))).toBe(plain);
    const lines = plain.split('\n').map((l) => l.trim());
    expect(lines).not.toContain('if (is_nan(s)) { poison = 1u; }');
    expect(lines.indexOf('if (keep && qkNan) { poison = 1u; }')).toBeGreaterThan(lines.indexOf('let keep = (j >= jLo && j <= jHi);'));
  });

  it('block tables: FULL tiles take the plain lines, PARTIAL ones add the mask tests alone', () => {
    const o = { ...SG_BASE, causalOrWindow: false };
    const plain = scoreLoop(buildFlashSgMatrix(o));
    for (const score of [{ mods: window, blockTable: true }, { mask: true, blockTable: true }, { mask: true, mods: window, blockTable: true }]) {
      const { full, partial } = tableBranches(buildFlashSgMatrix(hook(o, score)));
      expect(full).toBe(plain);
      expect(partial).toMatch(/let keep = \(j >= jLo && j <= jHi\) & \(/);
      expect(partial).not.toMatch(/\bfn\b|final_score|return/);
    }
    // a bias or a score function still applies on FULL tiles, without the mask tests
    const { full, partial } = tableBranches(buildFlashSgMatrix(hook(o, { mask: true, bias: 'float16', mods: mods({ maskMod: slidingWindow(9), scoreMod: softcap(5) }), blockTable: true })));
    expect(full).toContain('bias_at(');
    expect(full).toContain('tanh(');
    expect(full).not.toContain('mask_at(');
    expect(partial).toContain('mask_at(');
  });

  it('a softcap function costs what the option does per score: one multiply, tanh, one multiply', () => {
    const loop = scoreLoop(buildFlashSgMatrix(hook(SG_BASE, { mods: capped })));
    expect(loop.match(/tanh\(/g)).toHaveLength(1);
    expect(loop).not.toMatch(/ \/ |final_score|score_mod|per_beta/);
    const lets = loop.match(/let ms_\d+ = [^;]+;/g) ?? [];
    expect(lets.filter((l) => / \* /.test(l))).toHaveLength(2);
  });

  it('the exp2 tanh (the default) replaces the functions\' and the softcap option\'s tanh, within 2e-7 of tanh in float32', () => {
    const loop = scoreLoop(buildFlashSgMatrix(hook(SG_BASE, { mods: capped, tanh: 'exp2' })));
    expect(loop).toContain('tanh_exp2(');
    expect(loop).not.toMatch(/[^_]tanh\(/);
    const option = buildFlashSgMatrix({ ...SG_BASE, softcap: true, tanh: 'exp2' });
    expect(scoreLoop(option)).toContain('tanh_exp2(');
    expect(scoreLoop(option)).not.toMatch(/[^_]tanh\(/);
    expect(option.match(/fn tanh_exp2/g)).toHaveLength(1);
    const both = buildFlashSgMatrix(hook({ ...SG_BASE, softcap: true, tanh: 'exp2' }, { mods: capped, tanh: 'exp2' }));
    expect(both.match(/fn tanh_exp2/g)).toHaveLength(1);
    // the WGSL's arithmetic in float32 (exp2 and inverseSqrt exact here; a GPU adds a few ulp)
    const f = Math.fround;
    let worst = 0;
    for (let x = -20; x <= 20; x += 1 / 1024) {
      const t = f(2 ** f(-2.8853900817779268 * Math.abs(x)));
      const d = f(1 + t);
      worst = Math.max(worst, Math.abs(f(Math.sign(x) * f(f(1 - t) * f(1 / Math.sqrt(f(d * d))))) - Math.tanh(x)));
    }
    expect(worst).toBeLessThan(2e-7);
  });

  it('score functions in log2 units are the originals converted (float64 evaluation)', () => {
    const table = capture(Float32Array.from({ length: 2 * 40 }, (_, i) => Math.sin(i)), [2, 40]);
    const fns = [
      softcap(30), softcap(0.5), alibi([0.25, 0.5]), t5RelativeBias(Float32Array.from({ length: 64 }, (_, i) => Math.cos(i))),
      scoreMod(({ score }) => score), scoreMod(({ score }) => score.mul(3)), scoreMod(({ score }) => score.div(7)),
      scoreMod(({ score, h, q, kv }) => score.add(table.at(h, q.sub(kv).add(20))).div(3).tanh().mul(3)),
      scoreMod(({ score, q }) => q.gt(4).select(score.exp().log(), score.mul(score).neg())),
    ];
    for (const fn of fns) {
      const plan = planMods({ scoreMod: fn });
      const natural = programEvaluator(plan.kernel.score!, plan.tensors);
      const log2 = programEvaluator(scoreProgramInLog2(plan.kernel.score!), plan.tensors);
      for (const s of [-40, -3.5, -0.1, 0, 0.7, 2, 25, 90]) {
        for (const [h, q, kv] of [[0, 3, 1], [1, 9, 17], [1, 30, 2]]) {
          const env = makeEnv();
          env[VAR_INDEX.h] = h; env[VAR_INDEX.q] = q; env[VAR_INDEX.kv] = kv; env[VAR_INDEX.qLen] = 40; env[VAR_INDEX.kvLen] = 40;
          env[VAR_INDEX.score] = s;
          const want = natural(env) * Math.LOG2E;
          env[VAR_INDEX.score] = s * Math.LOG2E;
          expect(log2(env), `${fn.label} at ${s}`).toBeCloseTo(want, 9);
        }
      }
    }
  });

  it('the hook variants compile (Tint, via Dawn\'s null backend)', () => {
    const everything = mods({ scoreMod: t5RelativeBias(new Float32Array(64), {}), maskMod: documentMask(new Int32Array(64)), sinkMod: attentionSinks([1, 2]) });
    const both = mods({ scoreMod: softcap(30), sinkMod: attentionSinks([1, 2]) });
    const variants: Record<string, SgMatrixKernelOptions> = {
      'plain (control)': SG_BASE,
      'sinks only': hook(SG_BASE, { mods: sinks }),
      'sinks only, softcap + ALiBi options, unrolled': hook({ ...SG_BASE, softcap: true, alibi: true, unrolled: true }, { mods: sinks }),
      'softcap function': hook(SG_BASE, { mods: capped }),
      'softcap function + sinks, unrolled': hook({ ...SG_BASE, unrolled: true }, { mods: both }),
      'softcap function with the softcap option and ALiBi': hook({ ...SG_BASE, softcap: true, alibi: true }, { mods: capped }),
      'block mask (window function), FULL and PARTIAL tiles': hook({ ...SG_BASE, causalOrWindow: false }, { mods: window, blockTable: true }),
      'block mask + softcap function + sinks, unrolled': hook({ ...SG_BASE, unrolled: true }, { mods: mods({ maskMod: slidingWindow(100), scoreMod: softcap(20), sinkMod: attentionSinks([1, 2]) }), blockTable: true }),
      'block mask + dense mask + bias, no prefetch': hook({ ...SG_BASE, prefetch: false, smemVec4: false }, { mask: true, bias: 'float32', mods: window, blockTable: true }),
      'dense mask + bias + everything, odd dims': hook({ ...SG_BASE, dimQK: 59, dimV: 111, vectorLoads: false, prefetch: false, smemVec4: false, softcap: true }, { mask: true, bias: 'float16', mods: everything }),
      'softcap function, exp2 tanh (the default)': hook(SG_BASE, { mods: capped, tanh: 'exp2' }),
      'softcap option, exp2 tanh (the default), no hook': { ...SG_BASE, softcap: true, tanh: 'exp2' },
      'softcap option and function, exp2 tanh': hook({ ...SG_BASE, softcap: true, tanh: 'exp2' }, { mods: capped, tanh: 'exp2' }),
      'dropout + dense mask + sinks': hook({ ...SG_BASE, dropout: true }, { mask: true, mods: sinks }),
      'everything + block table, unrolled, MLA split': hook({ ...SG_BASE, dimRope: 64, unrolled: true }, { mask: true, mods: everything, blockTable: true }),
    };
    // Dawn's null adapter allows 16 KiB of workgroup memory and 8 storage buffers, and wants 128
    // invocations: the layouts are checked on the same options at small tiles without prefetch
    // (the bindings depend on neither)
    const small = (o: SgMatrixKernelOptions): SgMatrixKernelOptions => {
      const x = { ...o, dimQK: 16, dimV: 16, dimRope: o.dimRope ? 16 : 0, subgroups: 4, blockKeys: 16, vectorLoads: true, prefetch: false };
      const storage = (y: SgMatrixKernelOptions) => hostBindings(y).filter((b) => !b.uniform).length;
      const noLse = storage(x) > 8 ? { ...x, returnLse: false } : x;
      return storage(noLse) > 8 ? { ...noLse, dimRope: 0 } : noLse;
    };
    const modules: Record<string, string | BoundModule> = {};
    for (const [name, o] of Object.entries(variants)) {
      modules[name] = buildFlashSgMatrix(o);
      modules[`${name}: bindings`] = { code: buildFlashSgMatrix(small(o)), bindings: hostBindings(small(o)) };
    }
    const errors = tintErrors(modules, 'the tensor-core score hook');
    if (errors) for (const [label, list] of Object.entries(errors)) expect(list, label).toEqual([]);
  });
});
