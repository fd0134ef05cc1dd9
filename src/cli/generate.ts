// `fusedattn generate`: text (or token ids) in, generated text (or ids) out, with prefill and
// decode tokens/s, from a local Hugging Face model folder (config.json + safetensors, and
// tokenizer.json for text). Errors are FusedAttnErrors or commander usage errors, which main.ts
// prints as one line.
import { UsageError } from './usage.js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ValueError } from '../core/errors.js';
import { type GenerateResult, generateBatch } from '../model/generate.js';
import { type AttentionKind, type ModelBackendChoice, loadModel } from '../model/model.js';
import { finiteNumber, integer, positiveInt } from './parse.js';
import { progressLine } from './progress.js';

export interface GenerateFlags {
  model: string;
  /** One or more prompts (repeat --prompt): decoded together, continuous batching. */
  prompt?: string[];
  tokens?: number[][];
  maxBatch?: number;
  maxNewTokens: number;
  topK?: number;
  temperature?: number;
  seed?: number;
  backend: ModelBackendChoice;
  fused?: boolean;
  unfused?: boolean;
  json?: boolean;
  pastMaxPositions?: boolean;
  /** Progress on stderr (default: on, unless --json or --quiet). */
  quiet?: boolean;
}

/** Where runGenerate streams the text (or ids) as tokens come; absent: nothing is streamed. */
export type TextSink = (chunk: string) => void;

/** The `generate` command, to add to the `fusedattn` program (main.ts: `cli.addCommand(generateCommand())`). */
export function generateCommand(): Command {
  return new Command('generate')
    .description('generate text with a local Qwen2/Llama model folder (config.json, *.safetensors, tokenizer.json)')
    .requiredOption('--model <dir>', 'model folder: config.json + model.safetensors (or sharded index), optional tokenizer.json')
    .option('--prompt <text>', 'prompt text (needs tokenizer.json in the model folder); repeat it for several prompts, decoded in one batch', collect, undefined)
    .option('--tokens <ids>', 'prompt as comma-separated token ids, e.g. 1,2,3; repeat it for several prompts', collectTokens, undefined)
    .option('--max-batch <n>', 'most sequences decoded together (continuous batching: a finished one leaves, the next prompt joins)', positiveInt, 8)
    .option('--max-new-tokens <n>', 'new tokens to generate at most', positiveInt, 32)
    .option('--top-k <k>', 'sample from the k most likely tokens (0 = all), at temperature 1 unless --temperature says otherwise', nonNegativeInt)
    .option('--temperature <t>', 'sampling temperature (0 = greedy)', nonNegativeNumber)
    .option('--seed <s>', 'seed of the sampler', integer)
    .addOption(new Option('--backend <name>', 'where to run').choices(['cpu', 'webgpu', 'auto']).default('auto'))
    .addOption(new Option('--fused', 'use the fused attention block').conflicts('unfused'))
    .addOption(new Option('--unfused', 'use the unfused attention module (separate projections, RoPE, attention)'))
    .option('--json', 'print one JSON object (tokens, text, timings) instead of text')
    .option('--past-max-positions', "allow prompt + --max-new-tokens past the model's max_position_embeddings")
    .option('--quiet', 'no progress line on stderr')
    .action(async (flags: GenerateFlags) => {
      // text streams to stdout as it is generated; --json prints one object at the end
      const sink: TextSink | undefined = flags.json ? undefined : (chunk) => void process.stdout.write(chunk);
      console.log(await runGenerate(flags, sink));
    });
}

/** Adds `generate` to an existing program. */
export function registerGenerate(program: Command): Command {
  program.addCommand(generateCommand());
  return program;
}

/**
 * Runs the command and returns what it prints last (tests call this directly). With `sink`, the
 * generated text (or the ids) is written there token by token and the return value holds the rest.
 */
export async function runGenerate(flags: GenerateFlags, sink?: TextSink): Promise<string> {
  if ((flags.prompt === undefined) === (flags.tokens === undefined)) {
    throw new UsageError('--prompt', 'give exactly one of --prompt <text> and --tokens <ids> (either may be repeated)');
  }
  const attention: AttentionKind | undefined = flags.fused ? 'fused' : flags.unfused ? 'unfused' : undefined;
  const model = await loadModel(flags.model, { backend: flags.backend, attention, requireTokenizer: flags.prompt !== undefined });
  let prompts: number[][];
  if (model.tokenizer && flags.prompt !== undefined) {
    prompts = flags.prompt.map((text) => {
      const ids = model.tokenizer!.encode(text);
      if (ids.length === 0) throw new ValueError('--prompt', `the prompt ${JSON.stringify(text)} encodes to no tokens; give some text`);
      return ids;
    });
  } else {
    prompts = flags.tokens as number[][];
  }
  for (const prompt of prompts) {
    const positions = prompt.length + flags.maxNewTokens;
    if (positions > model.config.maxPositionEmbeddings && !flags.pastMaxPositions) {
      model.dispose();
      throw new UsageError('--max-new-tokens', `the prompt (${prompt.length} tokens) + --max-new-tokens ${flags.maxNewTokens} = ${positions} positions, past the model's max_position_embeddings (${model.config.maxPositionEmbeddings}); lower --max-new-tokens or pass --past-max-positions`);
    }
  }
  const single = prompts.length === 1;
  // one prompt streams its text as it comes; several print theirs at the end, in prompt order
  const stream = sink && single ? textStream(sink, model.tokenizer) : undefined;
  const progress = flags.quiet || flags.json ? undefined : progressLine('generating');
  const started = performance.now();
  let produced = 0;
  let batch: Awaited<ReturnType<typeof generateBatch>>;
  try {
    batch = await generateBatch(model, prompts, {
      maxNewTokens: flags.maxNewTokens,
      topK: flags.topK,
      temperature: flags.temperature ?? (flags.topK ? 1 : 0),
      seed: flags.seed,
      pastMaxPositions: flags.pastMaxPositions,
      maxBatch: flags.maxBatch,
      onToken: (id) => {
        stream?.push(id);
        produced++;
        const seconds = (performance.now() - started) / 1000;
        const most = flags.maxNewTokens * prompts.length;
        progress?.update(`${produced} of at most ${most} tokens, ${seconds.toFixed(1)} s (${(produced / seconds).toFixed(1)} tokens/s)`);
      },
    });
  } finally {
    progress?.done();
  }
  stream?.end();
  const summaries = batch.results.map((result, i) => ({
    promptTokens: prompts[i].length,
    tokens: result.tokens,
    text: model.tokenizer?.decode(result.tokens, { skipSpecialTokens: true }),
    stopReason: result.stopReason,
    prefillMs: round(result.prefillMs),
    prefillTokensPerSecond: round(result.prefillTokensPerSecond),
    decodeSteps: result.decodeSteps,
    decodeMs: round(result.decodeMs),
    decodeTokensPerSecond: round(result.decodeTokensPerSecond),
  }));
  const common = { model: flags.model, backend: model.backend, attention: model.attention, weightBytes: model.weightBytes, kvCacheBytes: batch.results[0].kvCacheBytes };
  if (single) {
    const result = batch.results[0];
    if (flags.json) return JSON.stringify({ ...common, ...summaries[0] });
    const body = sink ? [] : [summaries[0].text ?? result.tokens.join(',')];
    return [...body, '', stats(result, model.backend, model.attention, model.weightBytes)].join('\n');
  }
  const all = { decodeSteps: batch.decodeSteps, decodeTokensPerSecond: round(batch.decodeTokensPerSecond), peakBatch: batch.peakBatch };
  if (flags.json) return JSON.stringify({ ...common, ...all, prompts: summaries });
  const blocks = summaries.map((x, i) => `[${i + 1}] ${x.text ?? x.tokens.join(',')}\n    (${x.promptTokens} prompt tokens, ${x.tokens.length} new, stopped by ${x.stopReason})`);
  return [
    ...blocks, '',
    `continuous batching: ${prompts.length} prompts, at most ${batch.peakBatch} decoded together; ${batch.decodeSteps} decode steps, ${batch.decodeTokensPerSecond.toFixed(1)} tokens/s over all sequences`,
    `backend ${model.backend}, attention ${model.attention}, weights ${mib(model.weightBytes)}, KV cache ${mib(common.kvCacheBytes)} (paged)`,
  ].join('\n');
}

/**
 * Writes text as tokens come: the decoded text so far, less what was written (a token may end in
 * the middle of a UTF-8 character, decoded as U+FFFD: held back until the next token completes it);
 * without a tokenizer, the ids, comma-separated. end() adds the final newline.
 */
function textStream(sink: TextSink, tokenizer: { decode(ids: readonly number[], o?: { skipSpecialTokens?: boolean }): string } | undefined) {
  const ids: number[] = [];
  let written = '';
  return {
    push(id: number) {
      ids.push(id);
      if (!tokenizer) {
        sink(`${ids.length > 1 ? ',' : ''}${id}`);
        return;
      }
      const text = tokenizer.decode(ids, { skipSpecialTokens: true });
      if (text.endsWith('\uFFFD') || !text.startsWith(written)) return;
      sink(text.slice(written.length));
      written = text;
    },
    end() {
      if (tokenizer) {
        const text = tokenizer.decode(ids, { skipSpecialTokens: true });
        if (text.startsWith(written)) sink(text.slice(written.length));
        else sink(`\n${text}`);
      }
      sink('\n');
    },
  };
}

function stats(r: GenerateResult, backend: string, attention: string, weightBytes: number): string {
  return [
    `prefill: ${r.promptTokens} tokens in ${r.prefillMs.toFixed(1)} ms (${r.prefillTokensPerSecond.toFixed(1)} tokens/s)`,
    `decode: ${r.decodeSteps} tokens in ${r.decodeMs.toFixed(1)} ms (${r.decodeSteps > 0 ? r.decodeTokensPerSecond.toFixed(1) : '-'} tokens/s), stopped by ${r.stopReason}`,
    `backend ${backend}, attention ${attention}, weights ${mib(weightBytes)}, KV cache ${mib(r.kvCacheBytes)} (paged)`,
  ].join('\n');
}

const round = (x: number) => Math.round(x * 100) / 100;
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 3 : 1)} MiB`;

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function collectTokens(value: string, previous: number[][] | undefined): number[][] {
  return [...(previous ?? []), tokenList(value)];
}

function tokenList(value: string): number[] {
  const parts = value.split(',').map((p) => p.trim());
  if (parts.length === 0 || !parts.every((p) => /^\d+$/.test(p))) {
    throw new InvalidArgumentError('Expected comma-separated non-negative token ids, e.g. 1,2,3.');
  }
  return parts.map(Number);
}

function nonNegativeInt(value: string): number {
  if (!/^\+?\d+$/.test(value.trim())) throw new InvalidArgumentError('Expected an integer >= 0.');
  return Number(value);
}

function nonNegativeNumber(value: string): number {
  const n = finiteNumber(value);
  if (n < 0) throw new InvalidArgumentError('Expected a finite number >= 0.');
  return n;
}
