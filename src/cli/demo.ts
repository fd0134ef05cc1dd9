// `fusedattn demo` (what `npm start` runs): attention at a Qwen-7B-like shape (32 heads, head dim
// 128) on the best backend here, once fused (attention(): K/V tiles, online softmax, no S×S
// matrix) and once the naive three-step way (QKᵀ into S×S, softmax, P·V). It checks that the two
// agree, spot-checks rows against the float64 reference, and prints time, peak intermediate
// memory and kernel launches of each. The length is scaled to the machine (see demo-size.ts).
import { UsageError } from './usage.js';
import { Command, Option } from 'commander';
import { totalmem } from 'node:os';
import { attention, naiveAttention } from '../ops/attention/index.js';
import type { BackendChoice, BackendName } from '../ops/attention/index.js';
import { visiblePairs } from '../ops/attention/index.js';
import { validateAttention } from '../ops/attention/index.js';
import type { AttentionResult } from '../ops/attention/index.js';
import { listBackends } from '../ops/attention/index.js';
import { FusedAttnError, ValueError } from '../core/errors.js';
import { compare } from '../testing/compare.js';
import { DemoRunner, median } from './demo-runner.js';
import { type DemoShape, chooseSeqLen, defaultLimits, demoOptions, inputBytes, makeInputs, timeBoth } from './demo-size.js';
import { spotCheckRows } from './demo-check.js';
import { formatBytes, formatMs, table } from './format.js';
import { finiteNumber, integer, positiveInt } from './parse.js';
import { step, withProgress } from './progress.js';

interface DemoFlags {
  backend: BackendChoice;
  seqLen?: number;
  dtype: 'float32' | 'float16';
  batch: number;
  heads: number;
  kvHeads?: number;
  headDim: number;
  causal: boolean;
  budget: number;
  seed: number;
  json?: boolean;
}

export function demoCommand(): Command {
  return new Command('demo')
    .description('fused vs naive attention at a Qwen-7B-like shape, sized to this machine (what `npm start` runs)')
    .addOption(new Option('--backend <name>', 'where to run; auto = a hardware GPU if there is one, else the CPU').choices(['cpu', 'webgpu', 'auto']).default('auto'))
    .option('--seq-len <n>', 'sequence length (default: calibrated to the time budget and memory)', positiveInt)
    .addOption(new Option('--dtype <dtype>', 'element type of q, k, v').choices(['float32', 'float16']).default('float32'))
    .option('--batch <n>', 'batch size', positiveInt, 1)
    .option('--heads <n>', 'query heads', positiveInt, 32)
    .option('--kv-heads <n>', 'key/value heads (default: as many as query heads, as in Qwen-7B)', positiveInt)
    .option('--head-dim <n>', 'head dimension', positiveInt, 128)
    .option('--no-causal', 'full (non-causal) attention instead of causal prefill')
    .option('--budget <seconds>', 'seconds the fused and naive runs may take together (sets the length unless --seq-len)', finiteNumber, 12)
    .option('--seed <n>', 'seed of the random inputs', integer, 7)
    .option('--json', 'also print the results as one JSON line')
    .action(async (flags: DemoFlags) => {
      const ok = await demo(flags);
      if (!ok) process.exitCode = 1;
    });
}

/** 'auto' means a hardware GPU if there is one, else the CPU (as attention()'s 'auto'), saying why. */
async function pickBackend(choice: BackendChoice): Promise<{ name: BackendName; why: string }> {
  const infos = await listBackends();
  const cpu = infos.find((i) => i.name === 'cpu')!;
  const { describeAdapter, isSoftwareAdapter } = await import('../engines/webgpu/device.js');
  const gpu = await describeAdapter();
  const software = gpu.adapter !== undefined && isSoftwareAdapter(gpu.adapter);
  // the adapter's name is enough here; `fusedattn info` has the rest
  const adapterName = gpu.detail.split(' (')[0];
  if (choice === 'cpu') return { name: 'cpu', why: `asked for (${cpu.detail})` };
  if (choice === 'webgpu') return { name: 'webgpu', why: `asked for (${gpu.available ? adapterName : gpu.detail})` };
  if (gpu.available && !software) return { name: 'webgpu', why: `a GPU was found: ${adapterName}` };
  const reason = gpu.available ? `the only WebGPU adapter is a software one (${adapterName})` : `no WebGPU adapter (${gpu.detail})`;
  return { name: 'cpu', why: `${reason}; CPU: ${cpu.detail}` };
}

export async function demo(flags: DemoFlags): Promise<boolean> {
  if (!(flags.budget > 0)) throw new UsageError('--budget', `--budget must be a positive number of seconds, got ${flags.budget}`);
  const shape: DemoShape = {
    batch: flags.batch,
    heads: flags.heads,
    kvHeads: flags.kvHeads ?? flags.heads,
    headDim: flags.headDim,
    dtype: flags.dtype,
    causal: flags.causal,
  };
  if (shape.heads % shape.kvHeads !== 0) {
    throw new UsageError('--kv-heads', `--heads (${shape.heads}) must be a multiple of --kv-heads, got ${shape.kvHeads}`);
  }
  if (flags.seqLen !== undefined) checkSeqLen(shape, flags.seqLen);
  const steps = 5;
  const { name: backend, why } = await pickBackend(flags.backend);
  step(1, steps, `backend ${backend}: ${why}`);

  const runner = await DemoRunner.create(backend);
  // Warm-up at a small length: worker start-up, pipeline compilation, first-touch allocations.
  await withProgress('warming up', () => timeBoth(runner, shape, 128, flags.seed));
  let seqLen: number;
  if (flags.seqLen !== undefined) {
    seqLen = flags.seqLen;
    step(2, steps, `length ${seqLen} (from --seq-len)`);
  } else {
    step(2, steps, `calibrating the length to a ${flags.budget} s budget`);
    const choice = await chooseSeqLen(runner, shape, defaultLimits(runner, flags.budget), flags.seed, (t) => {
      console.log(`      S=${t.seqLen}: fused ${formatMs(t.fusedMs)}, naive ${formatMs(t.naiveMs)} (${formatBytes(t.naiveBytes)} intermediates)`);
    });
    seqLen = choice.seqLen;
    console.log(`      -> S=${seqLen} (bounded by ${choice.boundBy})`);
  }
  const describe = `B=${shape.batch}, ${shape.heads} heads (${shape.kvHeads} kv), D=${shape.headDim}, S=${seqLen}, ${shape.causal ? 'causal' : 'not causal'}, ${shape.dtype}`;
  step(3, steps, `inputs: ${describe}`);
  const inputs = await withProgress('generating random inputs', async () => makeInputs(shape, seqLen, flags.seed + 1));
  const options = demoOptions(shape, backend);

  step(4, steps, 'fused attention (attention()) and the naive three-step way (naiveAttention())');
  const repeats = runner.repeats;
  const placed = runner.place(inputs);
  const run = async (label: string, fn: typeof attention) => {
    const timed = await withProgress(label, () => runner.time(fn, placed, options, repeats));
    const ms = median(timed.runs);
    console.log(`      ${label}: ${formatMs(ms)}${repeats > 1 ? ` (median of ${timed.runs.map(formatMs).join(', ')})` : ''}`);
    return { result: timed.result, ms };
  };
  let fused: { result: AttentionResult; ms: number };
  let naive: { result: AttentionResult; ms: number } | undefined;
  let naiveError: string | undefined;
  try {
    fused = await run('fused', attention);
    try {
      naive = await run('naive', naiveAttention);
    } catch (e) {
      if (!(e instanceof FusedAttnError)) throw e;
      naiveError = `${e.name}: ${e.message}`;
      console.log(`      naive: failed: ${naiveError}`);
    }
  } finally {
    runner.free(placed);
  }

  step(5, steps, 'checking');
  const problem = validateAttention(inputs.q, inputs.k, inputs.v, options);
  const flops = 2 * visiblePairs(problem) * (problem.dimQK + problem.dimV);
  const fusedOut = fused.result.out.toFloat32();
  const agreeTolerance = shape.dtype === 'float32' ? 1e-4 : 4e-3;
  let agreement: { maxAbs: number; rel: number; ok: boolean } | undefined;
  if (naive) {
    const c = compare(naive.result.out.toFloat32(), fusedOut);
    agreement = { maxAbs: c.maxAbsError, rel: c.relError, ok: c.badIndex < 0 && c.maxAbsError <= agreeTolerance * c.maxAbsRef + 1e-6 };
  }
  const spot = spotCheckRows(problem, fused.result, naive?.result, 6, flags.seed);

  const timeHeader = repeats > 1 ? `time (median of ${repeats})` : 'time';
  const row = (label: string, r: { result: AttentionResult; ms: number }) => [
    label,
    formatMs(r.ms),
    (flops / r.ms / 1e6).toFixed(1),
    r.result.stats ? formatBytes(r.result.stats.intermediateBytes) : '?',
    r.result.stats ? String(r.result.stats.launches) : '?',
  ];
  console.log('');
  console.log(`Qwen-7B-like attention on ${backend}: ${describe}`);
  console.log('');
  const rows = [row('fused (attention)', fused)];
  rows.push(naive ? row('naive (3 steps)', naive) : ['naive (3 steps)', 'failed', '', '', '']);
  console.log(table(['', timeHeader, 'useful GFLOP/s', 'peak intermediates', 'launches'], rows, [false, true, true, true, true]));
  console.log('');
  if (naive) {
    const speedup = naive.ms / fused.ms;
    const saved = (naive.result.stats?.intermediateBytes ?? 0) - (fused.result.stats?.intermediateBytes ?? 0);
    console.log(`fused is ${speedup.toFixed(2)}x ${speedup >= 1 ? 'faster' : 'slower'} than naive and needs ${formatBytes(Math.max(saved, 0))} less intermediate memory (naive writes the ${seqLen} x ${seqLen} scores of each of the ${shape.batch * shape.heads} heads to memory).`);
    console.log(`agreement fused vs naive: max |diff| ${agreement!.maxAbs.toExponential(2)} (${agreement!.rel.toExponential(2)} of max |out|), tolerance ${agreeTolerance} -> ${agreement!.ok ? 'ok' : 'DISAGREE'}`);
  } else {
    console.log(`naive could not run at this length: ${naiveError}`);
  }
  console.log(`float64 reference, ${spot.rows} rows: ${spot.summary} -> ${spot.ok ? 'ok' : 'MISMATCH'}`);
  const ok = spot.ok && (agreement?.ok ?? false);
  if (flags.json) {
    console.log(JSON.stringify({
      backend,
      shape: { ...shape, seqLen },
      flops,
      fused: { ms: fused.ms, stats: fused.result.stats },
      naive: naive ? { ms: naive.ms, stats: naive.result.stats } : { error: naiveError },
      agreement,
      spotCheck: spot,
      ok,
    }));
  }
  return ok;
}

/**
 * Refuses a --seq-len whose inputs cannot even be allocated here (a typed array holds at most 2^32
 * elements; together they must fit in this machine's memory), before anything is started.
 */
function checkSeqLen(shape: DemoShape, seqLen: number): void {
  const perTensor = shape.batch * Math.max(shape.heads, shape.kvHeads) * seqLen * shape.headDim;
  const bytes = inputBytes(shape, seqLen);
  const memory = totalmem();
  if (perTensor > 2 ** 32 - 1 || bytes > memory) {
    throw new UsageError('--seq-len', `--seq-len ${seqLen} needs ${formatBytes(bytes)} of inputs and outputs (q has ${perTensor} elements), more than this machine's ${formatBytes(memory)} of memory or a typed array's 2^32 elements; try a length below ${Math.floor(Math.min((2 ** 32 - 1) / (perTensor / seqLen), memory / (bytes / seqLen)))}`);
  }
}
