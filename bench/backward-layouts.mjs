#!/usr/bin/env node
// The CPU backward in BNSD, BSND and TND (flash_attn's layouts) on the same problems: whether a
// layout whose head rows are heads·D floats apart costs more than BNSD (it did before the backward
// staged head-major: 1.3x at D 128). Checks first, in the same run: BSND's and TND's gradients are
// BNSD's bits, reordered (batch 1: TND holds the same memory as BSND). Median of 5 after a warm-up.
//
//   node bench/backward-layouts.mjs [--threads N]      (after npm run build)
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const lib = await import(join(root, 'dist', 'index.js'));
const testing = await import(join(root, 'dist', 'testing', 'index.js'));
const { configureCpu } = await import(join(root, 'dist', 'ops', 'cpu-engine.js'));
const args = process.argv.slice(2);
const threads = args.includes('--threads') ? Number(args[args.indexOf('--threads') + 1]) : 1;
await configureCpu({ threads });

const CASES = [
  ['B1 H8/2 S1024 D128 causal (GQA)', { batch: 1, headsQ: 8, headsKv: 2, seqQ: 1024, seqK: 1024, dimQK: 128, causal: true }],
  ['B1 H8 S1024 D64 causal', { batch: 1, headsQ: 8, seqQ: 1024, seqK: 1024, dimQK: 64, causal: true }],
];

/** [1, H, S, D] (BNSD) data as [S, H, D] (BSND with batch 1, and TND). */
function headsInner(data, H, S, D) {
  const out = new Float32Array(data.length);
  for (let h = 0; h < H; h++) for (let s = 0; s < S; s++) out.set(data.subarray((h * S + s) * D, (h * S + s + 1) * D), (s * H + h) * D);
  return out;
}

const same = (a, b) => a.length === b.length && a.every((x, i) => Object.is(x, b[i]));

console.log(`CPU backward by layout (${os.cpus()[0]?.model}, ${threads} thread${threads === 1 ? '' : 's'}, Node ${process.version}, ${new Date().toISOString()}); median of 5\n`);
console.log('| shape | BNSD ms | BSND ms | TND ms |');
console.log('|---|---:|---:|---:|');
for (const [name, c] of CASES) {
  const made = testing.makeCase({ ...c, layout: 'BNSD' }, 7);
  const fwd = await lib.attention(made.q, made.k, made.v, { ...made.options, returnLse: true, backend: 'cpu' });
  const { dOut } = testing.makeGradCase(c, 7, fwd.out.shape);
  const H = c.headsQ;
  const Hk = c.headsKv ?? H;
  const S = c.seqQ;
  const inner = (t, heads, dim) => headsInner(t.data, heads, S, dim);
  const calls = {
    BNSD: { args: [made.q, made.k, made.v, fwd.out, dOut, fwd.lse], options: made.options },
    BSND: {
      args: [[made.q, H, c.dimQK], [made.k, Hk, c.dimQK], [made.v, Hk, c.dimQK], [fwd.out, H, c.dimQK], [dOut, H, c.dimQK]]
        .map(([t, heads, dim]) => lib.Tensor.fromData(inner(t, heads, dim), [1, S, heads, dim])).concat([fwd.lse]),
      options: { ...made.options, layout: 'BSND' },
    },
  };
  calls.TND = {
    args: calls.BSND.args.slice(0, 5).map((t) => lib.Tensor.fromData(t.data, t.shape.slice(1))).concat([lib.Tensor.fromData(fwd.lse.data, [H, S])]),
    options: { ...made.options, layout: 'TND', cuSeqlensQ: [0, S], cuSeqlensK: [0, S] },
  };
  const row = [];
  let base;
  let failed;
  for (const layout of ['BNSD', 'BSND', 'TND']) {
    const { args: a, options } = calls[layout];
    const run = () => lib.attentionBackward(...a, { ...options, backend: 'cpu' });
    const g = await run();
    if (layout === 'BNSD') base = g;
    else {
      for (const [key, heads] of [['dq', H], ['dk', Hk], ['dv', Hk]]) {
        if (!same(g[key].data, headsInner(base[key].data, heads, S, c.dimQK))) failed = `${layout} ${key} differs from BNSD's`;
      }
    }
    const times = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await run();
      times.push(performance.now() - t0);
    }
    times.sort((x, y) => x - y);
    row.push(times[2].toFixed(1));
  }
  console.log(failed ? `| ${name} | FAIL: ${failed} | | |` : `| ${name} | ${row.join(' | ')} |`);
}
process.exit(0);
