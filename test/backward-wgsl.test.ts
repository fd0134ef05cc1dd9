// The backward's WGSL without a GPU: every kernel builder's variants compile (Tint via Dawn's null
// backend: tiles too big for llvmpipe's workgroup memory, that the GPU machine picks, included) and
// declare exactly the workgroup memory the host accounts for.
import { describe, expect, it } from 'vitest';
import { backwardWorkgroupBytes, buildBackwardKv, buildBackwardPre, buildBackwardQ, buildCastHalf, checkBackwardTile, type KvKernelOptions } from '../dist/ops/attention/backward/webgpu/portable.wgsl.js';
import { buildDscores, buildGroupSum } from '../dist/ops/attention/backward/webgpu/naive.wgsl.js';
import { backwardModsKernel, planMods } from '../dist/ops/attention/mods/plan.js';
import { capture, causal, maskMod, scoreMod } from '../dist/index.js';
import { tintErrors } from './tint.js';

// score and mask functions as the backward compiles them: a captured table, min/max/select/exp
// in the score function (its derivative, score_mod_grad, beside it), a mask reading a tensor
const table = capture(new Float32Array(18), [9, 2], 'table');
const ids = capture(new Int32Array(64), undefined, 'ids');
const MODS = backwardModsKernel(planMods({
  scoreMod: scoreMod(({ score, h, q, kv }) => kv.gt(q).select(score.mul(0.5).max(-1), score.tanh().exp()).add(table.at(kv.sub(q).add(4), h))),
  maskMod: causal().and(maskMod(({ q, kv }) => ids.at(q).eq(ids.at(kv)))),
}))!;

const BASE: KvKernelOptions = {
  mask: false, bias: 'none', alibi: false, softcap: false, windowed: false,
  dtype: 'float32', dimQK: 64, dimRope: 0, dimV: 64, tile: { threads: 128, keys: 16, rows: 16 }, dropout: false,
};
const FOLD_ALL = { rowsBroadcast: false, keysBroadcast: false, foldBatch: true, foldHeads: true, foldKeys: false };
const KV_VARIANTS: KvKernelOptions[] = [
  BASE,
  { ...BASE, tile: { threads: 256, keys: 32, rows: 32 }, dimQK: 128, dimV: 128, dtype: 'float16', windowed: true },
  { ...BASE, dimQK: 59, dimV: 111, softcap: true, alibi: true, mask: true, bias: 'float32', dropout: true, biasGrad: FOLD_ALL },
  { ...BASE, dimQK: 128, dimRope: 64, dimV: 128, tile: { threads: 64, keys: 8, rows: 8 }, bias: 'float16', biasGrad: { ...FOLD_ALL, rowsBroadcast: true, keysBroadcast: true, foldKeys: true } },
  { ...BASE, tile: { threads: 16, keys: 4, rows: 4 }, dimQK: 192, dimV: 128, windowed: true, dropout: true },
  { ...BASE, dimQK: 59, dimV: 40, softcap: true, bias: 'float32', biasGrad: FOLD_ALL, windowed: true, mods: MODS },
  { ...BASE, dimQK: 32, dimV: 32, mods: backwardModsKernel(planMods({ maskMod: causal() })) },
  // a block mask: tiles looked up in its status table (empty ones skipped, full ones unmasked)
  { ...BASE, dimQK: 40, dimV: 40, mask: true, windowed: true, mods: MODS, blockTable: true, biasGrad: undefined },
];

function workgroupBytes(wgsl: string): number {
  let total = 0;
  for (const m of wgsl.matchAll(/var<workgroup>\s+\w+\s*:\s*array<([^,]+(?:<[^>]+>)?),\s*(\d+)>;/g)) {
    const elem = m[1].trim();
    total += (elem.startsWith('vec4') ? 16 : elem.startsWith('vec2') ? 8 : 4) * Number(m[2]);
  }
  return total;
}

describe('backward WGSL builders', () => {
  it('declare the workgroup memory the host accounts for', () => {
    for (const o of KV_VARIANTS) {
      expect(workgroupBytes(buildBackwardKv(o)), JSON.stringify(o)).toBe(backwardWorkgroupBytes('kv', o, o.biasGrad !== undefined));
      const q = { ...o, biasGrad: undefined, tile: { threads: o.tile.threads, rows: o.tile.keys, keys: o.tile.rows } };
      expect(workgroupBytes(buildBackwardQ(q)), JSON.stringify(q)).toBe(backwardWorkgroupBytes('q', q));
    }
  });

  it('with score / mask functions and a block mask: the generated kv kernel (snapshot, for review)', async () => {
    const o = KV_VARIANTS.find((x) => x.blockTable && x.mods?.scoreGrad)!;
    const wgsl = buildBackwardKv(o);
    for (const fn of ['fn score_mod(', 'fn score_mod_grad(', 'fn mask_mod(', 'fn score_mod_slope(', 'fn block_status(', 'fn final_score_unmasked(']) expect(wgsl).toContain(fn);
    await expect(wgsl).toMatchFileSnapshot('./__snapshots__/backward-kv-mods.wgsl');
  });

  it('reject tiles they cannot build, with the reason', () => {
    expect(checkBackwardTile('kv', { threads: 100, keys: 16, rows: 16 })).toMatch(/multiple of tile.keys/);
    expect(checkBackwardTile('q', { threads: 128, rows: 16, keys: 4 })).toMatch(/multiple of the threads per row/);
    expect(() => buildBackwardKv({ ...BASE, tile: { threads: 128, keys: 16, rows: 4 } })).toThrow(/threads per key/);
  });

  it('compile (Tint, via Dawn\'s null backend)', () => {
    const sources: Record<string, string> = {
      'pre f32': buildBackwardPre({ dtype: 'float32', dimV: 64 }),
      'pre f16 odd': buildBackwardPre({ dtype: 'float16', dimV: 111 }),
      'dscores': buildDscores({ dropout: false }),
      'dscores dropout': buildDscores({ dropout: true }),
      'group sum': buildGroupSum(),
      'cast': buildCastHalf(),
    };
    KV_VARIANTS.forEach((o, i) => {
      sources[`kv ${i} ${JSON.stringify(o)}`] = buildBackwardKv(o);
      const q = { ...o, biasGrad: undefined, tile: { threads: o.tile.threads, rows: o.tile.keys, keys: o.tile.rows } };
      sources[`q ${i} ${JSON.stringify(q)}`] = buildBackwardQ(q);
    });
    const errors = tintErrors(sources, 'the backward kernels');
    if (errors) for (const [label, list] of Object.entries(errors)) expect(list, label).toEqual([]);
  });
});

describe('tensor-core backward WGSL builders', async () => {
  const { buildSgBackwardKv, buildSgBackwardQ, sgBackwardWorkgroupBytes } = await import('../dist/ops/attention/backward/webgpu/sgmatrix.wgsl.js');
  const { sgBackwardUnsupported, fittingBackwardConfig } = await import('../dist/ops/attention/backward/webgpu/sgmatrix.js');
  const { validateAttentionBackward, Tensor } = await import('../dist/index.js');
  const { makeCase } = await import('../dist/testing/index.js');
  type SgOptions = Parameters<typeof buildSgBackwardKv>[0];
  const SG: SgOptions = { dimQK: 128, dimRope: 0, dimV: 128, subgroups: 2, block: 32, causalOrWindow: true, softcap: false, alibi: false, dropout: false };
  const NO_FOLD = { rowsBroadcast: false, foldBatch: false, foldHeads: false };
  const KV: SgOptions[] = [SG, { ...SG, vectorLoads: true }, { ...SG, block: 16, subgroups: 4 }, { ...SG, dimQK: 59, dimV: 111, softcap: true, alibi: true, dropout: true, block: 16 },
    { ...SG, dimQK: 128, dimRope: 64, subgroups: 1, vectorLoads: true },
    // issue-10 variants: K/V in left matrices, one P buffer (D 64/128, odd dims, MLA split form)
    { ...SG, singleP: true, vectorLoads: true }, { ...SG, hoist: true, singleP: true, vectorLoads: true }, { ...SG, hoist: true, subgroups: 4, vectorLoads: true },
    { ...SG, hoist: true, singleP: true, subgroups: 8, block: 16, dimQK: 64, dimV: 64 }, { ...SG, hoist: true, singleP: true, dimQK: 59, dimV: 111, softcap: true, alibi: true, dropout: true, block: 16 },
    { ...SG, hoist: true, singleP: true, dimQK: 128, dimRope: 64, subgroups: 4, block: 16, vectorLoads: true },
    // pairs (a subgroup pair per 16 keys): with and without hoisting, 2/4/8 subgroups, both blocks,
    // odd dims with every element-wise option (dims of unequal chunk counts both ways), MLA plain and split
    { ...SG, pairs: true, subgroups: 4, block: 16, vectorLoads: true }, { ...SG, pairs: true, hoist: true, subgroups: 4, vectorLoads: true },
    { ...SG, pairs: true, hoist: true, subgroups: 8, vectorLoads: true }, { ...SG, pairs: true, hoist: true, subgroups: 8, block: 16 },
    { ...SG, pairs: true, subgroups: 2, dimQK: 64, dimV: 64 }, { ...SG, pairs: true, hoist: true, subgroups: 2, dimQK: 64, dimV: 64, vectorLoads: true },
    { ...SG, pairs: true, subgroups: 4, block: 16, dimQK: 59, dimV: 111, softcap: true, alibi: true, dropout: true },
    { ...SG, pairs: true, hoist: true, subgroups: 4, block: 32, dimQK: 111, dimV: 40, softcap: true, alibi: true, dropout: true },
    { ...SG, pairs: true, hoist: true, subgroups: 8, block: 16, dimQK: 192, dimV: 128, vectorLoads: true, dropout: true },
    { ...SG, pairs: true, hoist: true, subgroups: 4, dimQK: 192, dimV: 128, vectorLoads: true }, { ...SG, pairs: true, subgroups: 4, block: 16, dimQK: 192, dimV: 128, alibi: true },
    { ...SG, pairs: true, subgroups: 4, block: 16, dimQK: 128, dimRope: 64, vectorLoads: true }, { ...SG, pairs: true, hoist: true, subgroups: 4, dimQK: 128, dimRope: 64, dropout: true, softcap: true },
    // masks, biases and dBias (element-wise, the rows' xor tree at both blocks, folded batch / heads), both layouts
    { ...SG, mask: true }, { ...SG, pairs: true, hoist: true, subgroups: 8, vectorLoads: true, mask: true, bias: 'float16', biasGrad: NO_FOLD }, { ...SG, block: 16, bias: 'float16', biasGrad: { ...NO_FOLD, once: true } },
    { ...SG, pairs: true, hoist: true, subgroups: 8, block: 16, bias: 'float32', alibi: true, softcap: true, biasGrad: { ...NO_FOLD, rowsBroadcast: true, foldBatch: true } },
    { ...SG, pairs: true, subgroups: 4, block: 16, dimQK: 192, dimV: 128, mask: true, bias: 'float32', biasGrad: { ...NO_FOLD, foldBatch: true, foldHeads: true } },
    { ...SG, hoist: true, singleP: true, subgroups: 4, mask: true, bias: 'float16', biasGrad: { ...NO_FOLD, rowsBroadcast: true, foldHeads: true } },
    { ...SG, block: 16, subgroups: 4, dimQK: 59, dimV: 111, bias: 'float32', dropout: true, causalOrWindow: false, biasGrad: { ...NO_FOLD, foldBatch: true } },
    // score / mask functions through final_score (the slope's chain rule in both layouts), with a bias, dBias and softcap
    { ...SG, pairs: true, hoist: true, subgroups: 8, mods: MODS }, { ...SG, hoist: true, singleP: true, subgroups: 4, block: 16, mods: MODS, softcap: true, bias: 'float32', biasGrad: { ...NO_FOLD, rowsBroadcast: true } },
    { ...SG, pairs: true, subgroups: 4, block: 16, dimQK: 59, dimV: 40, mods: MODS, mask: true, alibi: true, dropout: true, bias: 'float16', biasGrad: NO_FOLD },
    { ...SG, mods: backwardModsKernel(planMods({ maskMod: causal() })) },
    // a block structure's status table: empty tiles skipped, full ones scored without the masks
    { ...SG, pairs: true, hoist: true, subgroups: 8, mask: true, blockTable: true }, { ...SG, hoist: true, singleP: true, subgroups: 4, block: 16, blockTable: true, mods: MODS, bias: 'float32', biasGrad: { ...NO_FOLD, rowsBroadcast: true, foldHeads: true } },
    // dBias of a shared bias in partial planes (ranges of the folded batch / heads, either axis),
    // and softcap() run as the option with the function's rule (plain lines and after final_score)
    { ...SG, pairs: true, hoist: true, subgroups: 8, bias: 'float16', biasGrad: { ...NO_FOLD, foldBatch: true, foldHeads: true, planes: 4 } },
    { ...SG, pairs: true, hoist: true, subgroups: 8, block: 16, bias: 'float32', biasGrad: { ...NO_FOLD, foldHeads: true, planes: 2, once: true } },
    { ...SG, hoist: true, singleP: true, subgroups: 4, bias: 'float16', mask: true, biasGrad: { ...NO_FOLD, rowsBroadcast: true, foldBatch: true, planes: 3 } },
    { ...SG, pairs: true, hoist: true, subgroups: 8, softcap: true, softcapFunction: true }, { ...SG, pairs: true, subgroups: 4, block: 16, softcap: true, softcapFunction: true, mods: MODS, dropout: true }];
  const Q: SgOptions[] = [{ ...SG, subgroups: 4, block: 16 }, { ...SG, block: 64, vectorLoads: true }, { ...SG, dimQK: 192, dimV: 128, dropout: true, softcap: true, alibi: true, causalOrWindow: false },
    { ...SG, dimQK: 128, dimRope: 64, block: 32, subgroups: 8, vectorLoads: true },
    { ...SG, subgroups: 4, block: 16, reverse: true, vectorLoads: true }, { ...SG, dimQK: 59, dimV: 111, subgroups: 8, block: 16, reverse: true },
    // pairs (a subgroup pair per 16 rows): 2/4/8 subgroups, blocks 16/32/64, odd dims of unequal chunk
    // counts both ways with every element-wise option, MLA plain and split (dQ chunks split 7 + 6, 6 + 6)
    { ...SG, pairs: true, subgroups: 8, block: 16, vectorLoads: true }, { ...SG, pairs: true, subgroups: 8, block: 32, vectorLoads: true },
    { ...SG, pairs: true, subgroups: 4, block: 64 }, { ...SG, pairs: true, subgroups: 2, block: 16, dimQK: 64, dimV: 64 },
    { ...SG, pairs: true, subgroups: 4, block: 16, dimQK: 59, dimV: 111, softcap: true, alibi: true, dropout: true },
    { ...SG, pairs: true, subgroups: 8, block: 32, dimQK: 111, dimV: 40, softcap: true, alibi: true, dropout: true, causalOrWindow: false },
    { ...SG, pairs: true, subgroups: 8, block: 16, dimQK: 192, dimV: 128, vectorLoads: true, dropout: true },
    { ...SG, pairs: true, subgroups: 8, block: 16, dimQK: 128, dimRope: 64, vectorLoads: true, reverse: true },
    { ...SG, pairs: true, subgroups: 8, block: 32, mask: true, bias: 'float16', vectorLoads: true }, { ...SG, subgroups: 4, block: 16, bias: 'float32', alibi: true, softcap: true, mask: true },
    { ...SG, pairs: true, subgroups: 8, block: 16, mods: MODS, softcap: true, dropout: true }, { ...SG, subgroups: 4, block: 16, mods: MODS, bias: 'float32', alibi: true },
    { ...SG, pairs: true, subgroups: 8, block: 32, softcap: true, softcapFunction: true, vectorLoads: true },
    { ...SG, pairs: true, subgroups: 8, block: 32, blockTable: true, mods: MODS, mask: true }, { ...SG, subgroups: 4, block: 16, blockTable: true, mask: true, reverse: true }];

  it('keep every workgroup variable a multiple of 16 bytes, as the host counts them', () => {
    const sizes = (wgsl: string) => [...wgsl.matchAll(/var<workgroup>\s+\w+\s*:\s*([^;]+);/g)].map((m) => {
      const arr = /^array<(.+),\s*(\d+)>$/.exec(m[1].trim());
      const elem = arr ? arr[1].trim() : m[1].trim();
      return (elem === 'f16' ? 2 : elem.startsWith('vec4') ? 16 : elem.startsWith('vec2') ? 8 : 4) * (arr ? Number(arr[2]) : 1);
    });
    for (const [kind, list, build] of [['kv', KV, buildSgBackwardKv], ['q', Q, buildSgBackwardQ]] as const) {
      for (const o of list) {
        const s = sizes(build(o));
        for (const bytes of s) expect(bytes % 16, `${kind} ${JSON.stringify(o)}`).toBe(0);
        expect(s.reduce((a, b) => a + b, 0)).toBe(sgBackwardWorkgroupBytes(kind, o));
      }
    }
  });

  /**
   * Replays the generated kernel's index arithmetic for every subgroup, lane and element-loop step:
   * every matrix load/store (its whole 16×16 extent) and lane access of Sx and Pt inside its array,
   * each lane-write statement hitting each element once (the element-wise mapping covers the block),
   * no two owners (subgroups, or pairs with `pairs`) writing the same Sx/Pt element, and every Sx/Pt
   * element read one its reader's owner wrote (a slice base off by a subgroup reads a neighbour's). This is the
   * check that would have caught singleP's per-subgroup stride left at twice the halved array.
   */
  function accessProblems(wgsl: string, subgroups: number): string[] {
    const problems: string[] = [];
    const sizes: Record<string, number> = {};
    for (const m of wgsl.matchAll(/var<workgroup>\s+(\w+)\s*:\s*array<[^,]+,\s*(\d+)>/g)) sizes[m[1]] = Number(m[2]);
    const consts: Record<string, number> = {};
    for (const m of wgsl.matchAll(/const (\w+) = (\d+)u;/g)) consts[m[1]] = Number(m[2]);
    const js = (e: string) => e.replace(/\b(\d+)u\b/g, '$1').replace(/([\w.()]+) \/ ([\w.()]+)/g, 'Math.floor($1 / $2)');
    const LETS = new Set(['sg', 'role', 'pair', 'ko', 'sBase', 'pBase', 'dsBase', 'sPair', 'pPair', 'pl', 'col', 'kr0', 'kr', 'rr', 'half', 'ks', 'jj', 'r', 'side']);
    const lets = [...wgsl.matchAll(/let (\w+) = ([^;]+);/g)].filter((m) => LETS.has(m[1])).map((m) => [m[1], js(m[2])] as const);
    const tail = wgsl.indexOf('one 16-column chunk at a time');
    // every expression compiled once over the same names (consts, builtins, the lets): fast enough to replay all lanes
    const names = [...Object.keys(consts), 'subgroupId', 'lane', 'e', ...LETS];
    const compiled = new Map<string, (...v: number[]) => number>();
    const evalIn = (env: Record<string, number>, e: string) => {
      let f = compiled.get(e);
      if (!f) compiled.set(e, (f = Function(...names, `return ${e};`) as (...v: number[]) => number));
      const x = f(...names.map((n) => env[n]));
      if (!Number.isInteger(x)) throw new Error(`${e}: not an index (a let of another loop)`);
      return x;
    };
    const accesses: Array<{ arr: string; off: string; stride?: string; write: boolean; at: number; id: number }> = [];
    for (const m of wgsl.matchAll(/subgroupMatrixLoad<.*?, (?:row|col)_major>\(&(\w+), ([^,]+), (\w+)\)/g)) accesses.push({ arr: m[1], off: js(m[2]), stride: m[3], write: false, at: m.index, id: m.index });
    for (const m of wgsl.matchAll(/subgroupMatrixStore<(?:row|col)_major>\(&(\w+), ([^,]+), [^,]+, (\w+)\)/g)) accesses.push({ arr: m[1], off: js(m[2]), stride: m[3], write: true, at: m.index, id: m.index });
    for (const m of wgsl.matchAll(/\b(Sx|Pt)\[([^\]]+)\]( = )?/g)) accesses.push({ arr: m[1], off: js(m[2]), write: !!m[3], at: m.index, id: m.index });
    const pairs = /let role = /.test(wgsl);
    const owners = new Map<string, number>(); // `${arr} ${element}` -> owner
    const perStatement = new Map<string, number>(); // `${id} ${owner} ${element}` -> count
    // phase 0 replays the writes, phase 1 the reads (each Sx/Pt element read must be one its owner wrote)
    for (const phase of [0, 1]) for (let sg = 0; sg < subgroups; sg++) {
      const owner = pairs ? sg >> 1 : sg;
      for (let lane = 0; lane < 32; lane++) {
        for (const region of ['body', 'tail'] as const) {
          const steps = region === 'tail' ? 8 : consts.KEYS_PER_LANE;
          for (let e = 0; e < steps; e++) {
            const env: Record<string, number> = { ...consts, subgroupId: sg, lane, e };
            for (const [name, expr] of lets) { try { env[name] = evalIn(env, expr); } catch { /* a let of other loops (staging) */ } }
            for (const a of accesses) {
              if ((a.at > tail) !== (region === 'tail') || (phase === 0) !== a.write) continue;
              if (a.stride && lane + e > 0) continue; // matrix operations: once per subgroup
              const off = evalIn(env, a.off);
              const stride = a.stride ? evalIn(env, a.stride) : 0;
              const cells = a.stride ? Array.from({ length: 256 }, (_, k) => off + (k >> 4) * stride + (k & 15)) : [off];
              for (const x of cells) {
                if (!(x >= 0 && x < sizes[a.arr])) { problems.push(`${a.arr}[${x}] outside ${sizes[a.arr]} (subgroup ${sg} lane ${lane} e ${e}: ${a.off})`); break; }
                if (a.arr === 'T') continue;
                if (!a.write) {
                  if (owners.get(`${a.arr} ${x}`) !== owner) { problems.push(`${a.arr}[${x}] read by owner ${owner}, written by ${owners.get(`${a.arr} ${x}`)} (subgroup ${sg} lane ${lane} e ${e}: ${a.off})`); break; }
                  continue;
                }
                const prev = owners.get(`${a.arr} ${x}`);
                if (prev !== undefined && prev !== owner) problems.push(`${a.arr}[${x}] written by owners ${prev} and ${owner}`);
                owners.set(`${a.arr} ${x}`, owner);
                if (!a.stride) {
                  const key = `${a.id} ${owner} ${x}`;
                  perStatement.set(key, (perStatement.get(key) ?? 0) + 1);
                }
              }
              if (problems.length > 5) return problems;
            }
          }
        }
      }
    }
    // lane writes of the element-wise parts: each element of each owner's 16 × BLOCK block exactly once
    const counts = new Map<string, number>();
    for (const [key, n] of perStatement) {
      const [id, owner] = key.split(' ');
      if (Number(id) > tail) continue;
      if (n !== 1) problems.push(`statement at ${id} writes element ${key} ${n} times`);
      counts.set(`${id} ${owner}`, (counts.get(`${id} ${owner}`) ?? 0) + 1);
    }
    for (const [key, n] of counts) if (n !== 16 * consts.BLOCK) problems.push(`statement/owner ${key} writes ${n} elements, not 16 × BLOCK`);
    return problems.slice(0, 6);
  }

  it('keep every subgroup\'s workgroup accesses inside the arrays and apart from the other subgroups\' (index replay)', () => {
    for (const o of KV) expect(accessProblems(buildSgBackwardKv(o), o.subgroups), `kv ${JSON.stringify(o)}`).toEqual([]);
    for (const o of Q) expect(accessProblems(buildSgBackwardQ(o), o.subgroups), `q ${JSON.stringify(o)}`).toEqual([]);
  });

  it('compile (Tint, via Dawn\'s null backend)', () => {
    const sources: Record<string, string> = {};
    KV.forEach((o) => { sources[`kv ${JSON.stringify(o)}`] = buildSgBackwardKv(o); });
    Q.forEach((o) => { sources[`q ${JSON.stringify(o)}`] = buildSgBackwardQ(o); });
    const errors = tintErrors(sources, 'the tensor-core backward kernels');
    if (errors) for (const [label, list] of Object.entries(errors)) expect(list, label).toEqual([]);
  });

  it('the tier takes f16 problems (masks and biases too), and says why it refuses the others', async () => {
    const h200 = {
      features: new Set(['shader-f16', 'subgroups', 'timestamp-query', 'chromium-experimental-subgroup-matrix']),
      limits: { maxComputeWorkgroupStorageSize: 49152, maxStorageBuffersPerShaderStage: 16, maxStorageBufferBindingSize: 2 ** 31, maxComputeWorkgroupsPerDimension: 65535, minStorageBufferOffsetAlignment: 256 },
      adapter: { subgroupMinSize: 32, subgroupMaxSize: 32, subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 }] },
    };
    /** A backward problem of case `c` (out, dOut and lse of the right shapes; their values do not matter here). */
    const bp = (c: Parameters<typeof makeCase>[0], extra: Record<string, unknown> = {}) => {
      const { q, k, v, options } = makeCase(c, 1);
      Object.assign(options, extra);
      const outShape = [c.batch, c.headsQ, c.seqQ, c.dimV ?? c.dimQK];
      const size = outShape.reduce((a, b) => a * b, 1);
      const out = c.dtype === 'float16' ? Tensor.fromData(new Uint16Array(size), outShape, 'float16') : Tensor.fromData(new Float32Array(size), outShape);
      const lse = Tensor.fromData(new Float32Array(c.batch * c.headsQ * c.seqQ), [c.batch, c.headsQ, c.seqQ]);
      return validateAttentionBackward(q, k, v, out, out, lse, options);
    };
    const f16 = { dtype: 'float16' as const, batch: 1, headsQ: 4, headsKv: 2, seqQ: 64, seqK: 64, dimQK: 128, causal: true };
    expect(sgBackwardUnsupported(bp(f16), h200)).toBeUndefined();
    expect(fittingBackwardConfig(bp(f16), h200)).toBeDefined();
    expect(sgBackwardUnsupported(bp({ ...f16, dimQK: 192, dimV: 128 }), h200)).toBeUndefined();
    expect(sgBackwardUnsupported(bp({ ...f16, dtype: 'float32' }), h200)).toMatch(/float16 inputs only/);
    // masks and biases (dBias too) run here, except dBias of a bias broadcast along keys
    expect(sgBackwardUnsupported(bp({ ...f16, mask: 'random' }), h200)).toBeUndefined();
    expect(sgBackwardUnsupported(bp({ ...f16, bias: 'random', maskShape: 'full' }, { biasGrad: true }), h200)).toBeUndefined();
    const perRow = Tensor.fromData(new Float32Array(64), [1, 1, 64, 1]);
    expect(sgBackwardUnsupported(bp(f16, { bias: perRow }), h200)).toBeUndefined();
    expect(sgBackwardUnsupported(bp(f16, { bias: perRow, biasGrad: true }), h200)).toMatch(/broadcast along keys is the portable tier's/);
    // the dBias options: a [B, 1, 1, Sk] padding bias sums rows and folds the KV heads (2 here)
    const { sgBiasGradOf } = await import('../dist/ops/attention/backward/webgpu/sgmatrix.js');
    const padding = Tensor.fromData(new Float32Array(64), [1, 1, 1, 64]);
    expect(sgBiasGradOf(bp(f16, { bias: padding, biasGrad: true }))).toEqual({ rowsBroadcast: true, foldBatch: false, foldHeads: true });
    expect(sgBiasGradOf(bp(f16, { bias: padding }))).toBeUndefined();
    // a full [B, Nq, Sq, Sk] bias: every element one pair's, stored rather than added
    expect(sgBiasGradOf(bp({ ...f16, bias: 'random', maskShape: 'full' }, { biasGrad: true }))).toEqual({ rowsBroadcast: false, foldBatch: false, foldHeads: false, once: true });
    expect(sgBackwardUnsupported(bp(f16), { ...h200, features: new Set(['shader-f16']) })).toMatch(/lacks/);
    // sinks need nothing of the tier (the LSE holds them); score and mask functions go to portable
    expect(sgBackwardUnsupported(bp(f16, { sink: [0, 1, 2, 3] }), h200)).toBeUndefined();
    expect(sgBackwardUnsupported(bp(f16, { scoreMod: scoreMod(({ score }) => score.tanh()) }), h200)).toBeUndefined();
    expect(sgBackwardUnsupported(bp(f16, { maskMod: causal() }), h200)).toBeUndefined();

    // the chooser falls through to the portable tier and records why
    const { chooseBackwardTier } = await import('../dist/ops/attention/backward/webgpu/tiers.js');
    const runtime = { ...h200, limits: { ...h200.limits, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupSizeX: 1024 } };
    const keysOnly = { bias: perRow, biasGrad: true };
    const choice = chooseBackwardTier(bp(f16, keysOnly), runtime as never, undefined);
    expect(choice.tier.name).toBe('portable');
    expect(choice.skipped.sgmatrix).toMatch(/broadcast along keys/);
    const { backwardFallback } = await import('../dist/ops/attention/backward/webgpu/tiers.js');
    expect(backwardFallback(choice, runtime as never)).toMatch(/^sgmatrix: dBias of a bias broadcast along keys/);
    // an adapter without the tier's features: portable is simply the best it has, no fallback
    const plain = { ...runtime, features: new Set(['shader-f16']) };
    expect(backwardFallback(chooseBackwardTier(bp(f16, keysOnly), plain as never, undefined), plain as never)).toBeUndefined();

    // the H200 variants: which fit 48 KiB where (bench/gpu/backward-tc.sh prints NOFIT for the others),
    // and the pairs plans cover the keys with 16 per pair: half the subgroups' worth of key blocks
    const { SG_BACKWARD_VARIANTS, sgBackwardPlan } = await import('../dist/ops/attention/backward/webgpu/sgmatrix.js');
    const fitsAt = (name: string, c: typeof f16) => fittingBackwardConfig(bp(c), h200, SG_BACKWARD_VARIANTS[name]) === SG_BACKWARD_VARIANTS[name];
    const pairNames = Object.keys(SG_BACKWARD_VARIANTS).filter((n) => n.startsWith('pairs'));
    expect(pairNames.length).toBe(9);
    for (const name of pairNames) expect(fitsAt(name, f16), `${name} at D 128`).toBe(true);
    const mla = { ...f16, dimQK: 192, dimV: 128 };
    expect(pairNames.filter((n) => fitsAt(n, mla))).toEqual(['pairs4b16-q2', 'pairs4h-q2', 'pairs8hb16-q2']);
    const split = { ...f16, dimQK: 128, dimRope: 64, dimV: 128 };
    expect(pairNames.filter((n) => fitsAt(n, split))).toEqual(['pairs4b16-q2', 'pairs4h-q2', 'pairs8hb16-q2']);
    const fakeRuntime = { limits: h200.limits, pipeline: async () => ({}) };
    for (const name of ['pairs4h', 'pairs8hb16', 'pairs2h', 'old', 'hoist4']) {
      const config = SG_BACKWARD_VARIANTS[name];
      const plan = await sgBackwardPlan(fakeRuntime as never, bp({ ...f16, seqK: 100 }), config);
      const keys = 16 * (config.kv.pairs ? config.kv.subgroups / 2 : config.kv.subgroups);
      expect(plan.kv.grid, name).toEqual([Math.ceil(100 / keys), 2, 1]);
    }
    // q pairs: every one fits D 128; at MLA only those whose kv part does and whose q block is 16
    const qPairNames = Object.keys(SG_BACKWARD_VARIANTS).filter((n) => SG_BACKWARD_VARIANTS[n].q.pairs);
    expect(qPairNames.filter((n) => fitsAt(n, f16))).toEqual(qPairNames);
    expect(qPairNames.filter((n) => fitsAt(n, mla))).toEqual(['p8hb16-qp8', 'p8hb16-qp4']);
    for (const name of qPairNames) {
      const config = SG_BACKWARD_VARIANTS[name];
      const plan = await sgBackwardPlan(fakeRuntime as never, bp({ ...f16, seqQ: 100 }), config);
      expect(plan.q.grid, name).toEqual([Math.ceil(100 / (8 * config.q.subgroups)), 4, 1]);
    }
  });
});

describe('register-tiled portable backward WGSL builders', async () => {
  const { buildTiledBackwardKv, buildTiledBackwardQ, checkTiledConfig, tiledWorkgroupBytes } = await import('../dist/ops/attention/backward/webgpu/tiled.wgsl.js');
  const { TILED_KV_CONFIGS, TILED_Q_CONFIGS } = await import('../dist/ops/attention/backward/webgpu/tiled.js');
  type Tiled = Parameters<typeof buildTiledBackwardKv>[0];
  const { tile: _tile, biasGrad: _bg, ...rest } = BASE;
  const T: Tiled = { ...rest, dimQK: 128, dimV: 128, config: TILED_KV_CONFIGS[0], quads: true };
  // the configurations bench/gpu/backward-portable.mjs sweeps on the GPU machine, beside the defaults
  const c = (threads: number, owned: number, other: number, pairOwned: number, pairOther: number, accOwned: number, dimChunk: number, otherChunk: number) =>
    ({ threads, owned, other, pairOwned, pairOther, accOwned, dimChunk, otherChunk });
  const CONFIGS = [...TILED_KV_CONFIGS, ...TILED_Q_CONFIGS, c(256, 64, 32, 4, 2, 4, 4, 8), c(256, 64, 64, 4, 4, 4, 4, 16), c(128, 32, 64, 4, 4, 8, 4, 16),
    c(128, 32, 64, 4, 4, 4, 8, 16), c(256, 32, 64, 2, 4, 2, 4, 16), c(128, 64, 32, 4, 4, 8, 4, 8), c(256, 64, 32, 4, 2, 8, 4, 8), c(256, 64, 64, 4, 4, 8, 4, 16),
    c(256, 64, 32, 2, 4, 4, 4, 8), c(256, 64, 32, 4, 2, 4, 4, 16), c(256, 64, 64, 4, 4, 4, 4, 32), c(512, 64, 32, 2, 2, 2, 4, 8), c(512, 64, 64, 2, 4, 2, 4, 16),
    c(256, 128, 16, 4, 2, 8, 4, 8), c(256, 128, 32, 4, 4, 8, 4, 8), c(256, 64, 32, 4, 2, 4, 2, 8), c(256, 64, 64, 4, 4, 4, 2, 16), c(512, 128, 16, 4, 1, 8, 4, 8),
    c(512, 128, 32, 4, 2, 8, 4, 8), c(256, 64, 64, 4, 4, 4, 2, 8)];
  const VARIANTS: Tiled[] = [
    T, { ...T, dtype: 'float16', windowed: true }, { ...T, quads: false, dimQK: 59, dimV: 111, softcap: true, alibi: true, mask: true, bias: 'float32', dropout: true },
    { ...T, dimRope: 64, dtype: 'float16', windowed: true, dropout: true }, { ...T, dimQK: 192, windowed: true, config: TILED_KV_CONFIGS[1] },
    { ...T, quads: false, dimQK: 40, dimV: 40, mask: true, windowed: true, mods: MODS, blockTable: true },
    { ...T, dimQK: 64, dimV: 64, mods: backwardModsKernel(planMods({ maskMod: causal() })) },
    ...CONFIGS.map((config) => ({ ...T, config })),
  ];

  it('declare the workgroup memory the host accounts for', () => {
    for (const o of VARIANTS) {
      expect(workgroupBytes(buildTiledBackwardKv(o)), JSON.stringify(o)).toBe(tiledWorkgroupBytes('kv', o));
      expect(workgroupBytes(buildTiledBackwardQ(o)), JSON.stringify(o)).toBe(tiledWorkgroupBytes('q', o));
    }
  });

  it('reject configurations they cannot build, with the reason', () => {
    expect(checkTiledConfig(c(128, 32, 64, 4, 2, 4, 4, 16))).toMatch(/must be threads/);
    expect(checkTiledConfig(c(128, 32, 64, 4, 4, 4, 4, 6))).toMatch(/multiple of 4 dividing other/);
    expect(checkTiledConfig(c(128, 32, 64, 4, 4, 3, 4, 16))).toMatch(/owned \/ accOwned/);
    expect(() => buildTiledBackwardQ({ ...T, config: c(100, 32, 64, 4, 4, 4, 4, 16) })).toThrow(/buildTiledBackwardQ/);
  });

  it('compile (Tint, via Dawn\'s null backend)', () => {
    const sources: Record<string, string> = {};
    VARIANTS.forEach((o, i) => {
      sources[`tiled kv ${i} ${JSON.stringify(o)}`] = buildTiledBackwardKv(o);
      sources[`tiled q ${i} ${JSON.stringify(o)}`] = buildTiledBackwardQ(o);
    });
    const errors = tintErrors(sources, 'the tiled backward kernels');
    if (errors) for (const [label, list] of Object.entries(errors)) expect(list, label).toEqual([]);
  });
});
