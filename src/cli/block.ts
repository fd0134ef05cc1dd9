// `fusedattn bench-block`: the attention block fused vs unfused (and replayed through a scope on
// WebGPU), printing dispatch counts, submits, latency and intermediate memory per batch size; with
// --trace, a Chrome trace (Perfetto) of one fused and one unfused call. Random seeded weights.
import { UsageError } from './usage.js';
import { writeOutputsAtomically } from '../io/atomic-file.js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ValueError } from '../core/errors.js';
import type { AttentionBlockConfig } from '../block/config.js';
import { type BlockBenchRow, benchBlock, formatBlockTable } from '../block/bench.js';
import { positiveInt } from './parse.js';

/** Attention shapes worth naming. */
export const BLOCK_PRESETS: Record<string, AttentionBlockConfig> = {
  /** Qwen-7B (v1) / Llama-2-7B attention: hidden 4096, 32 heads, MHA, D 128. */
  'qwen-7b': { hidden: 4096, heads: 32, kvHeads: 32, headDim: 128, rope: { theta: 10000 } },
  /** Qwen2-7B: hidden 3584, 28 heads, 4 KV heads, D 128. */
  'qwen2-7b': { hidden: 3584, heads: 28, kvHeads: 4, headDim: 128, rope: { theta: 1e6 } },
  /** Qwen2-0.5B: hidden 896, 14 heads, 2 KV heads, D 64. */
  'qwen2-0.5b': { hidden: 896, heads: 14, kvHeads: 2, headDim: 64, rope: { theta: 1e6 } },
};

export interface BlockBenchFlags {
  preset: string;
  hidden?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  batch: number[];
  seq: number;
  cache: number;
  backend: 'cpu' | 'webgpu' | 'auto';
  weights: 'float32' | 'float16';
  gemm: 'auto' | 'portable' | 'subgroup-matrix';
  iterations: number;
  warmup: number;
  scope?: boolean;
  trace?: string;
  json?: boolean;
}

function batchList(value: string): number[] {
  const parts = value.split(',').map((p) => p.trim());
  if (!parts.every((p) => /^\d+$/.test(p) && Number(p) > 0)) throw new InvalidArgumentError('Expected positive integers separated by commas, e.g. 1,4,8.');
  return parts.map(Number);
}

function nonNegativeInt(value: string): number {
  if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError('Expected a non-negative integer.');
  return Number(value);
}

export function blockBenchCommand(): Command {
  return new Command('bench-block')
    .description('time the attention block fused (packed QKV GEMM, attention with RoPE, O GEMM) vs unfused, with dispatch counts')
    .addOption(new Option('--preset <name>', 'attention shape').choices(Object.keys(BLOCK_PRESETS)).default('qwen2-0.5b'))
    .option('--hidden <n>', 'hidden size (overrides the preset)', positiveInt)
    .option('--heads <n>', 'query heads (overrides the preset)', positiveInt)
    .option('--kv-heads <n>', 'key/value heads (overrides the preset)', positiveInt)
    .option('--head-dim <n>', 'head dim (overrides the preset)', positiveInt)
    .option('--batch <list>', 'batch sizes, comma-separated', batchList, [1])
    .option('--seq <n>', 'new tokens per sequence', positiveInt, 128)
    .option('--cache <n>', 'positions already in a KV cache (decode: --seq 1 --cache 1024)', nonNegativeInt, 0)
    .addOption(new Option('--backend <name>', 'where to run').choices(['cpu', 'webgpu', 'auto']).default('auto'))
    .addOption(new Option('--weights <dtype>', 'weight dtype').choices(['float32', 'float16']).default('float32'))
    .addOption(new Option('--gemm <tier>', 'WebGPU GEMM tier').choices(['auto', 'portable', 'subgroup-matrix']).default('auto'))
    .option('--iterations <n>', 'timed calls per path (median reported)', positiveInt, 5)
    .option('--warmup <n>', 'untimed calls first', nonNegativeInt, 1)
    .option('--scope', 'also time the fused block replayed through a record/replay scope (WebGPU)')
    .option('--trace <file>', 'write a Chrome trace (open in https://ui.perfetto.dev) of one fused and one unfused call (WebGPU)')
    .option('--json', 'print JSON lines instead of a table')
    .action(async (flags: BlockBenchFlags) => {
      console.log(await runBlockBench(flags));
    });
}

/** Adds `bench-block` to an existing program (main.ts: `cli.addCommand(blockBenchCommand())`). */
export function registerBlockBench(program: Command): Command {
  program.addCommand(blockBenchCommand());
  return program;
}

/** Runs the command and returns what it prints (tests call this directly). */
export async function runBlockBench(flags: BlockBenchFlags): Promise<string> {
  const preset = BLOCK_PRESETS[flags.preset];
  if (!preset) throw new UsageError('--preset', `--preset must be one of ${Object.keys(BLOCK_PRESETS).join(', ')}, got ${JSON.stringify(flags.preset)}`);
  const config: AttentionBlockConfig = {
    ...preset,
    hidden: flags.hidden ?? preset.hidden,
    heads: flags.heads ?? preset.heads,
    kvHeads: flags.kvHeads ?? (flags.heads ?? preset.kvHeads),
    headDim: flags.headDim ?? (flags.hidden || flags.heads ? undefined : preset.headDim),
    maxPositions: flags.cache + flags.seq,
  };
  const rows: BlockBenchRow[] = [];
  for (const batch of flags.batch) {
    rows.push(...await benchBlock({ config, batch, seq: flags.seq, cached: flags.cache }, {
      backend: flags.backend, weights: flags.weights, gemm: flags.gemm, iterations: flags.iterations, warmup: flags.warmup,
      paths: flags.scope ? ['fused', 'unfused', 'scope'] : ['fused', 'unfused'],
    }));
  }
  const notes: string[] = [];
  if (flags.trace) notes.push(await writeTrace(flags, config, flags.trace));
  if (flags.json) return [...rows.map((r) => JSON.stringify(r)), ...notes].join('\n');
  return [formatBlockTable(rows), ...notes].join('\n');
}

async function writeTrace(flags: BlockBenchFlags, config: AttentionBlockConfig, file: string): Promise<string> {
  const { AttentionBlock } = await import('../block/block.js');
  const { randomBlockWeights, randomHidden } = await import('../block/random.js');
  const { Profiler } = await import('../profiler/profiler.js');
  const block = await AttentionBlock.create(config, randomBlockWeights(config, 1, { dtype: flags.weights }), { backend: flags.backend, gemm: flags.gemm });
  try {
    if (!block.gpu) return `trace: not written (${block.backend} backend: the profiler watches WebGPU work)`;
    const batch = flags.batch[0];
    const x = { data: randomHidden(batch * flags.seq, config.hidden, 2), shape: [batch, flags.seq, config.hidden] };
    await block.forward(x); // compile and warm up outside the trace
    await block.forwardUnfused(x);
    const profiler = new Profiler(block.gpu.runtime);
    await profiler.span('fused block', () => block.forward(x));
    await profiler.span('unfused block', () => block.forwardUnfused(x));
    profiler.stop();
    const report = await profiler.report();
    writeOutputsAtomically([{ path: file, bytes: new TextEncoder().encode(JSON.stringify(profiler.chromeTrace())), argument: '--trace' }]);
    const line = (label: string) => {
      const s = report.spans.find((r) => r.label === label)!;
      const gpu = s.gpuMs !== undefined ? `, GPU ${s.gpuMs.toFixed(2)} ms` : '';
      return `${label}: ${s.dispatches} dispatches (${s.kernels.map((k) => k.label).join(', ')})${gpu}`;
    };
    return `trace (${report.timing}) written to ${file}\n  ${line('fused block')}\n  ${line('unfused block')}`;
  } finally {
    block.destroy();
  }
}
