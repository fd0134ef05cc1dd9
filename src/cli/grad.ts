// `fusedattn grad`: the attention backward on .npy files, so gradients compare directly with
// PyTorch's autograd. Inputs and every forward flag as `fusedattn run` takes them, plus the output
// gradient; the forward's out / lse may be given (from `run --out --lse`) or are recomputed. The
// call goes through the public attentionBackward(), so validation and errors are the library's.
// Every gradient file is written atomically as a set (io/atomic-file.ts): none is replaced unless all were written.
import { Command, Option } from 'commander';
import { ValueError, show } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import { type AttentionGrads, attention, attentionBackward, autoBackend, naiveAttentionBackward } from '../ops/attention/index.js';
import { readNpyFile, writeNpyFiles } from '../io/npy-file.js';
import { npyToTensor, tensorToNpy } from '../io/npy-tensor.js';
import { formatBytes, formatMs } from './format.js';
import { type RunFlags, addAttentionFlags, attentionInputs, withFlag } from './run.js';

interface GradFlags extends Omit<RunFlags, 'out'> {
  dout: string;
  out?: string;
  dq: string;
  dk: string;
  dv: string;
  dqRope?: string;
  dkRope?: string;
  dbias?: string;
  dsink?: string;
  unfused?: boolean;
}

export function gradCommand(): Command {
  const command = new Command('grad')
    .description('attention backward on .npy inputs: writes dq, dk, dv (and dqRope, dkRope, dbias, dsink) as .npy')
    .requiredOption('--q <file>', 'query .npy (float32 or float16)')
    .requiredOption('--k <file>', 'key .npy')
    .requiredOption('--v <file>', 'value .npy')
    .requiredOption('--dout <file>', 'gradient of the loss with respect to the output (shape of the output, dtype of q)')
    .option('--out <file>', 'the forward\'s output .npy (with --lse); recomputed when absent')
    .option('--lse <file>', 'the forward\'s float32 logsumexp .npy (with --out)')
    .requiredOption('--dq <file>', 'where to write dL/dq (shape and dtype of q)')
    .requiredOption('--dk <file>', 'where to write dL/dk (summed over the query heads of each GQA group)')
    .requiredOption('--dv <file>', 'where to write dL/dv')
    .option('--dq-rope <file>', 'MLA split form: where to write dL/dqRope')
    .option('--dk-rope <file>', 'MLA split form: where to write dL/dkRope')
    .option('--dbias <file>', 'where to write dL/dbias (shape of --bias, summed over its broadcast dimensions)')
    .option('--dsink <file>', 'where to write dL/dsink (float32, shape of --sink, summed over the rows)');
  return addAttentionFlags(command)
    .addOption(new Option('--unfused', 'the unfused backward (Sq×Sk matrices), the baseline'))
    .option('--quiet', 'print nothing on success')
    .action(async (flags: GradFlags) => {
      await runGrad(flags);
    });
}

export async function runGrad(flags: GradFlags): Promise<void> {
  if ((flags.out === undefined) !== (flags.lse === undefined)) {
    throw new ValueError(flags.out === undefined ? '--lse' : '--out', '--out and --lse go together (the forward\'s output and LSE); give both or neither');
  }
  const { q, k, v, options } = attentionInputs(flags as RunFlags);
  if ((flags.dqRope !== undefined || flags.dkRope !== undefined) && options.qRope === undefined) {
    throw new ValueError('--dq-rope', '--dq-rope / --dk-rope need the split form inputs --q-rope and --k-rope');
  }
  const dOut = npyToTensor(readNpyFile(flags.dout), flags.dout);
  const biasGrad = flags.dbias !== undefined;
  const sinkGrad = flags.dsink !== undefined;
  const start = performance.now();
  let grads: AttentionGrads;
  try {
    let out: Tensor;
    let lse: Tensor;
    if (flags.out !== undefined && flags.lse !== undefined) {
      out = npyToTensor(readNpyFile(flags.out), flags.out);
      lse = npyToTensor(readNpyFile(flags.lse), flags.lse);
    } else {
      const forward = await attention(q, k, v, { ...options, returnLse: true });
      out = forward.out;
      lse = forward.lse as Tensor;
    }
    const backward = flags.unfused ? naiveAttentionBackward : attentionBackward;
    grads = await backward(q, k, v, out, dOut, lse, { ...options, biasGrad, sinkGrad });
  } catch (e) {
    throw withFlag(e, flags as RunFlags);
  }
  const ms = performance.now() - start;
  const backend = flags.backend === 'auto' ? await autoBackend() : flags.backend;
  // [path, gradient, the flag that named it (for messages)]
  const files: Array<[string, Tensor, string]> = [[flags.dq, grads.dq, '--dq'], [flags.dk, grads.dk, '--dk'], [flags.dv, grads.dv, '--dv']];
  if (flags.dqRope !== undefined) files.push([flags.dqRope, grads.dqRope as Tensor, '--dq-rope']);
  if (flags.dkRope !== undefined) files.push([flags.dkRope, grads.dkRope as Tensor, '--dk-rope']);
  if (flags.dbias !== undefined) files.push([flags.dbias, grads.dBias as Tensor, '--dbias']);
  if (flags.dsink !== undefined) files.push([flags.dsink, grads.dSink as Tensor, '--dsink']);
  writeNpyFiles(files.map(([path, t, argument]) => ({ path, array: tensorToNpy(t, path), argument })));
  if (!flags.quiet) {
    const stats = grads.stats ? `, ${grads.stats.launches} launches, ${formatBytes(grads.stats.intermediateBytes)} intermediates` : '';
    const list = files.map(([path, t]) => `${path} ${show(t.shape)}`).join(', ');
    console.log(`wrote ${list} (${flags.unfused ? 'unfused, ' : ''}backend ${backend}, ${formatMs(ms)}${stats})`);
  }
}
