// The runner benchmark's check of its own output (issue 8: a float16 decode path that gave wrong
// tokens was timed and published). Before a model is timed, the same loaded model runs a short
// teacher-forced sequence through the paths the timed run uses, and each result is compared with
// the float64 reference decoder on the same weights:
//   - prefill of `prompt` tokens, logits of the last row only (generate()'s LM head on the last
//     prompt row);
//   - `steps` decode steps with all logits (on WebGPU the first is recorded, the rest replayed);
//   - one decode step through forwardTop(k = 1) (the GPU argmax generate() samples from; the CPU
//     has none and takes the argmax of forward()): the id must be a reference argmax within the
//     tolerance, its value the reference logit.
// With more than 8 prompt tokens the prefill runs the GEMMs (as the timed prefill does; at 8 rows or
// fewer the projections are GEMVs), though at the check's length, not the timed one.
// Rule: the float32 one (F32_RTOL of max |logit|): the weights are float16 values, so float32 and
// float16 GPU weights are the same model and the reference sees exactly what the GPU reads. The
// fused block on tensor cores rounds activations to float16: there the bound is FlashAttention's,
// 2 x the error of the float64 decoder with those activations rounded + the float32 term.
// The reference costs about 0.5 G multiply-adds per token at 24 layers (a few seconds); it is
// computed once per run and shared by every variant.
import { loadWeights, referenceForward } from '../dist/model/index.js';
import { F32_RTOL, checkF32, checkLowPrecision, compare } from '../dist/testing/index.js';

/** Whether `model` (WebGPU, fused, float16 weights) runs the block's GEMMs on tensor cores. */
export async function usesTensorCores(model, gpuWeights) {
  if (model.backend !== 'webgpu' || !model.attention.startsWith('fused') || gpuWeights !== 'float16') return false;
  const { getRuntime } = await import('../dist/engines/webgpu/runtime.js');
  const { gemmUnsupported } = await import('../dist/ops/gemm/webgpu/gemm.js');
  return gemmUnsupported(await getRuntime(), 'subgroup-matrix', 'float16') === undefined;
}

/**
 * A checker for models made from `store` (config `config`): `check(model, lowPrecision)` returns
 * { pass, message, maxRelError, tokens }. `prompt` + `steps` + 1 tokens are checked.
 */
export function modelChecker(config, store, { prompt = 9, steps = 2 } = {}) {
  const tokens = Array.from({ length: prompt + steps + 1 }, (_, i) => (i * 104729 + 7) % config.vocabSize);
  let references;
  const reference = async (lowPrecision) => {
    references ??= { weights: await loadWeights(store, config, 'float32', (t) => t) };
    if (!references.ref) references.ref = referenceForward(config, references.weights, tokens);
    if (lowPrecision && !references.ref16) references.ref16 = referenceForward(config, references.weights, tokens, { attentionActivations: 'float16' });
    return references;
  };
  const V = config.vocabSize;
  return {
    tokens: tokens.length,
    /** Frees the reference weights (about 4 bytes per parameter). */
    release: () => { if (references) references.weights = undefined; },
    async check(model, lowPrecision) {
      const { ref, ref16 } = await reference(lowPrecision);
      const failures = [];
      let worst = 0;
      const rowOf = (r, row) => r.subarray(row * V, (row + 1) * V);
      // the allowed error of a row: float32 rule, or 2 x the float16-activation decoder's error + it
      const slackOf = (row) => {
        const want = rowOf(ref, row);
        const atol = F32_RTOL * Math.max(1, compare(want, want).maxAbsRef);
        return { want, atol, slack: (lowPrecision ? 2 * compare(rowOf(ref16, row), want).maxAbsError : 0) + atol };
      };
      const judge = (what, got, row) => {
        const { want, atol } = slackOf(row);
        worst = Math.max(worst, compare(got, want).relError);
        const failure = lowPrecision ? checkLowPrecision(what, got, rowOf(ref16, row), want, atol) : checkF32(what, got, want);
        if (failure) failures.push(failure);
      };
      const cache = model.createCache(1, tokens.length);
      judge('last prompt row', await model.forward([tokens.slice(0, prompt)], cache), prompt - 1);
      for (let t = prompt; t < prompt + steps; t++) judge(`decode step ${t - prompt + 1}`, await model.forward([[tokens[t]]], cache), t);
      // the GPU argmax of the last step: a reference argmax (within the tolerance), with its logit
      const last = tokens.length - 1;
      const top = model.canTopK(1) ? (await model.forwardTop([[tokens[last]]], cache, 1))[0] : argmaxOf(await model.forward([[tokens[last]]], cache));
      const id = top.ids[0];
      const { want, slack } = slackOf(last);
      let max = -Infinity;
      for (let i = 0; i < V; i++) max = Math.max(max, want[i]);
      if (!(want[id] >= max - 2 * slack)) failures.push(`top-1: id ${id} has reference logit ${want[id]}, the maximum is ${max}`);
      if (!(Math.abs(top.values[0] - want[id]) <= slack)) failures.push(`top-1: value ${top.values[0]} for id ${id}, reference ${want[id]} (allowed ${slack.toExponential(2)})`);
      const rule = lowPrecision ? 'FlashAttention rule vs float16-activation decoder' : `float32 rule (${F32_RTOL} of max |logit|)`;
      return {
        pass: failures.length === 0,
        maxRelError: worst,
        tokens: tokens.length,
        rule,
        message: failures.length ? failures.join('; ') : `${tokens.length} tokens teacher-forced, max rel error ${worst.toExponential(2)} (${rule})`,
      };
    },
  };
}

function argmaxOf(logits) {
  let id = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[id]) id = i;
  return { ids: Int32Array.of(id), values: Float32Array.of(logits[id]) };
}
