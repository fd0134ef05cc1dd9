// `fusedattn run`: attention on .npy files, so results compare directly with PyTorch / NumPy.
// Inputs are read, the call goes through the public attention() (so validation, backend choice and
// errors are exactly the library's), and out / lse are written back as .npy.
import { Command, Option } from 'commander';
import { attention } from '../ops/attention/index.js';
import type { AttentionOptions, BackendChoice, CausalAlign } from '../ops/attention/index.js';
import { LAYOUTS } from '../ops/attention/index.js';
import { FusedAttnError, ShapeError, ValueError, show } from '../core/errors.js';
import type { Layout, Tensor, TensorInput } from '../core/tensor.js';
import type { AttentionResult } from '../ops/attention/index.js';
import { autoBackend } from '../ops/attention/index.js';
import { readNpyFile, writeNpyFiles } from '../io/npy-file.js';
import { npyToTensor, tensorToNpy } from '../io/npy-tensor.js';
import { finiteNumber, integer, positiveInt, windowPair } from './parse.js';
import { formatBytes, formatMs } from './format.js';

export interface RunFlags {
  q: string;
  k: string;
  v: string;
  out: string;
  lse?: string;
  qRope?: string;
  kRope?: string;
  mask?: string;
  bias?: string;
  alibiSlopes?: string;
  sink?: string;
  layout?: Layout;
  heads?: number;
  kvHeads?: number;
  cuSeqlensQ?: string;
  cuSeqlensK?: string;
  causal?: true | CausalAlign;
  window?: [number, number];
  preTokens?: number;
  nextTokens?: number;
  scale?: number;
  softcap?: number;
  checkFinite?: boolean;
  dropout?: number;
  seed?: number;
  dropoutOffset?: number;
  backend: BackendChoice;
  quiet?: boolean;
}

/** Which flag feeds each argument name that the library's errors use (file: the flag names a file). */
const FLAG_OF: Record<string, { flag: keyof RunFlags; file: boolean }> = {
  query: { flag: 'q', file: true },
  key: { flag: 'k', file: true },
  value: { flag: 'v', file: true },
  qRope: { flag: 'qRope', file: true },
  kRope: { flag: 'kRope', file: true },
  mask: { flag: 'mask', file: true },
  bias: { flag: 'bias', file: true },
  alibiSlopes: { flag: 'alibiSlopes', file: true },
  'options.sink': { flag: 'sink', file: true },
  'options.cuSeqlensQ': { flag: 'cuSeqlensQ', file: true },
  'options.cuSeqlensK': { flag: 'cuSeqlensK', file: true },
  'options.layout': { flag: 'layout', file: false },
  'options.heads': { flag: 'heads', file: false },
  'options.kvHeads': { flag: 'kvHeads', file: false },
  'options.causal': { flag: 'causal', file: false },
  'options.window': { flag: 'window', file: false },
  'options.preTokens': { flag: 'preTokens', file: false },
  'options.nextTokens': { flag: 'nextTokens', file: false },
  'options.scale': { flag: 'scale', file: false },
  'options.softcap': { flag: 'softcap', file: false },
  'options.backend': { flag: 'backend', file: false },
  'options.dropout.p': { flag: 'dropout', file: false },
  'options.dropout.seed': { flag: 'seed', file: false },
  'options.dropout.offset': { flag: 'dropoutOffset', file: false },
};

export function runCommand(): Command {
  const command = new Command('run')
    .description('attention on .npy inputs; writes the output (and LSE) as .npy')
    .requiredOption('--q <file>', 'query .npy (float32 or float16)')
    .requiredOption('--k <file>', 'key .npy')
    .requiredOption('--v <file>', 'value .npy')
    .requiredOption('--out <file>', 'where to write the output .npy (layout of q, head dim of v, dtype of q)')
    .option('--lse <file>', 'also write the logsumexp as float32 .npy, [B, Nq, Sq] (TND: [Nq, T])');
  return addAttentionFlags(command)
    .option('--quiet', 'print nothing on success')
    .action(async (flags: RunFlags) => {
      await runAttention(flags);
    });
}

/** The forward's input and option flags (after --q/--k/--v), shared by `run` and `grad`. */
export function addAttentionFlags(command: Command): Command {
  return command
    .option('--q-rope <file>', 'MLA split form: RoPE part of the query (same layout as q)')
    .option('--k-rope <file>', 'MLA split form: RoPE part of the key')
    .option('--mask <file>', 'bool/uint8 mask, nonzero = keep, broadcastable to [B, Nq, Sq, Sk]')
    .option('--bias <file>', 'additive float bias, broadcastable to [B, Nq, Sq, Sk]')
    .option('--alibi-slopes <file>', 'float32 ALiBi slopes, [Nq] or [B, Nq]')
    .option('--sink <file>', 'attention-sink logits (GPT-OSS), float [Nq] or [B, Nq]: one more softmax term without a value')
    .addOption(new Option('--layout <layout>', 'dimension order of q, k, v').choices(LAYOUTS))
    .option('--heads <n>', 'query heads (required for BSH and SBH)', positiveInt)
    .option('--kv-heads <n>', 'key/value heads for BSH and SBH (default: from the key hidden size)', positiveInt)
    .option('--cu-seqlens-q <file>', 'TND: int32/int64 [B+1] prefix sums of the query lengths')
    .option('--cu-seqlens-k <file>', 'TND: int32/int64 [B+1] prefix sums of the key lengths')
    .addOption(new Option('--causal [align]', 'causal mask; bottom-right (default) or top-left').choices(['bottom-right', 'top-left']))
    .option('--window <L,R>', 'sliding window around the bottom-right diagonal; -1 = unbounded', windowPair)
    .option('--pre-tokens <n>', 'CANN spelling of the window\'s left side', integer)
    .option('--next-tokens <n>', 'CANN spelling of the window\'s right side', integer)
    .option('--scale <s>', 'multiplier of q·k (default 1/sqrt(head dim))', finiteNumber)
    .option('--softcap <c>', 'tanh capping of the scores (0 = off)', finiteNumber)
    .option('--check-finite', 'reject inputs holding NaN or Inf, naming the first')
    .option('--dropout <p>', 'dropout probability on the attention weights (training), with --seed', finiteNumber)
    .option('--seed <n>', 'dropout seed (an integer < 2^53)', integer)
    .option('--dropout-offset <n>', 'dropout Philox counter offset (default 0)', integer)
    .addOption(new Option('--backend <name>', 'where to run').choices(['cpu', 'webgpu', 'auto']).default('auto'));
}

/** q, k, v and the attention options of the flags added by addAttentionFlags (files read, not yet validated). */
export function attentionInputs(flags: RunFlags): { q: Tensor; k: Tensor; v: Tensor; options: AttentionOptions } {
  const tensor = (flag: keyof RunFlags) => npyToTensor(readNpyFile(flags[flag] as string), flags[flag] as string);
  const optionalTensor = (flag: keyof RunFlags) => (flags[flag] === undefined ? undefined : tensor(flag));
  const q = tensor('q');
  const k = tensor('k');
  const v = tensor('v');
  const options: AttentionOptions = { backend: flags.backend };
  const set = <K extends keyof AttentionOptions>(key: K, value: AttentionOptions[K] | undefined) => {
    if (value !== undefined) options[key] = value;
  };
  set('qRope', optionalTensor('qRope'));
  set('kRope', optionalTensor('kRope'));
  set('mask', optionalTensor('mask'));
  set('bias', optionalTensor('bias'));
  set('alibiSlopes', optionalTensor('alibiSlopes'));
  set('sink', optionalTensor('sink'));
  set('cuSeqlensQ', cuSeqlens(flags.cuSeqlensQ, '--cu-seqlens-q'));
  set('cuSeqlensK', cuSeqlens(flags.cuSeqlensK, '--cu-seqlens-k'));
  set('layout', flags.layout);
  set('heads', flags.heads);
  set('kvHeads', flags.kvHeads);
  set('causal', flags.causal);
  set('window', flags.window);
  set('preTokens', flags.preTokens);
  set('nextTokens', flags.nextTokens);
  set('scale', flags.scale);
  set('softcap', flags.softcap);
  if (flags.checkFinite) options.checkFinite = true;
  if (flags.dropout !== undefined || flags.seed !== undefined) {
    if (flags.seed === undefined) throw new ValueError('--seed', '--dropout needs --seed (the Philox key of the keep mask)');
    options.dropout = { p: flags.dropout ?? 0, seed: flags.seed, offset: flags.dropoutOffset };
  }
  return { q, k, v, options };
}

export async function runAttention(flags: RunFlags): Promise<void> {
  const { q, k, v, options: parsed } = attentionInputs(flags);
  const options: AttentionOptions = { ...parsed, returnLse: flags.lse !== undefined };

  const start = performance.now();
  let result: AttentionResult;
  try {
    result = await attention(q, k, v, options);
  } catch (e) {
    throw withFlag(e, flags);
  }
  const ms = performance.now() - start;
  // after the call, so bad input fails before any GPU is touched (and this answer is cached by then)
  const backend = flags.backend === 'auto' ? (await autoBackend()) : flags.backend;
  // both files or neither: a failure on --lse must not leave a new --out beside an old LSE
  const outputs = [{ path: flags.out, array: tensorToNpy(result.out, 'out'), argument: '--out' }];
  if (flags.lse !== undefined) outputs.push({ path: flags.lse, array: tensorToNpy(result.lse as Tensor, 'lse'), argument: '--lse' });
  writeNpyFiles(outputs);
  if (!flags.quiet) {
    const launches = result.stats?.launches === 1 ? '1 launch' : `${result.stats?.launches} launches`;
    const stats = result.stats ? `, ${launches}, ${formatBytes(result.stats.intermediateBytes)} intermediates` : '';
    const lse = flags.lse !== undefined ? ` and ${flags.lse} ${show(result.lse!.shape)}` : '';
    console.log(`wrote ${flags.out} ${result.out.dtype} ${show(result.out.shape)}${lse} (backend ${backend}, ${formatMs(ms)}${stats})`);
  }
}

/** cu_seqlens as the Int32Array / BigInt64Array attention() takes (it checks values and dtype). */
function cuSeqlens(path: string | undefined, flag: string): TensorInput | undefined {
  if (path === undefined) return undefined;
  const array = readNpyFile(path);
  if (array.shape.length !== 1) {
    throw new ShapeError(flag, `${flag} ${path} must be 1-D [batch + 1], got shape ${show(array.shape)}`);
  }
  return { data: array.data, shape: array.shape };
}

/** Appends the flag (and file) behind a library error's argument, so the user knows what to fix. */
export function withFlag(e: unknown, flags: RunFlags): unknown {
  if (!(e instanceof FusedAttnError)) return e;
  const argument = e.argument.startsWith('options.') ? e.argument : e.argument.split('.')[0];
  const source = FLAG_OF[argument];
  if (!source) return e;
  const cli = `--${source.flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
  const value = flags[source.flag];
  const where = source.file && value !== undefined ? `${cli} ${value}` : cli;
  e.message = `${e.message} (${where})`;
  return e;
}
