// The float64 reference forward of a whole Qwen2/Llama decoder: the test oracle for every runner
// path (CPU, WebGPU, fused block or unfused module, prefill + decode). Written for clarity, not
// speed, and without a KV cache: each call recomputes the full sequence, with the textbook causal
// softmax. Weights are the float32 values the runner also sees (f16/bf16 files widen exactly).
import { roundToHalf } from '../core/dtype.js';
import type { ModelConfig } from './config.js';
import { ropeFrequencies } from './rope.js';
import type { DecoderWeights, HostTensor } from './weights.js';

type W = HostTensor<'float32'>;

export interface ReferenceOptions {
  /**
   * 'float16': round the attention's activations to float16 where the fused block's tensor-core
   * path stores them (the normed input of the QKV projection, q/k/v after the bias and again after
   * RoPE, the softmax numerators, the attention output). Not the model's value: the yardstick for
   * that path's tolerance (FlashAttention's rule, error <= 2 x this computation's error). Default
   * 'float64'.
   */
  attentionActivations?: 'float64' | 'float16';
  /**
   * 'float16': round the input of every linear layer to float16, as the runner's tensor-core
   * prefill GEMM stages it (float16 weights on an adapter with subgroup matrices: the normed
   * inputs, the attention output, the SwiGLU product, the final norm before the LM head). Like
   * attentionActivations, a yardstick for that path's tolerance. Default 'float64'.
   */
  linearInputs?: 'float64' | 'float16';
}

/** Logits of every position of one sequence, [tokens.length, vocab], float64. */
export function referenceForward(config: ModelConfig, weights: DecoderWeights<W>, tokens: readonly number[], options: ReferenceOptions = {}): Float64Array {
  const round = options.attentionActivations === 'float16' ? roundAll : (x: Float64Array) => x;
  const r16 = options.attentionActivations === 'float16' ? roundToHalf : (v: number) => v;
  // linear inputs are fresh arrays (never the residual stream itself), so rounding in place is safe
  const input = options.linearInputs === 'float16' ? roundAll : (x: Float64Array) => x;
  const { hiddenSize: H, numHeads: Nq, numKvHeads: Nkv, headDim: D, intermediateSize: M, vocabSize: V } = config;
  const T = tokens.length;
  let x: Float64Array = new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    const id = tokens[t];
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new RangeError(`token ${t} = ${id} is outside the vocabulary [0, ${V})`);
    for (let i = 0; i < H; i++) x[t * H + i] = weights.embed.data[id * H + i];
  }
  const rope = ropeFrequencies(config, T);
  const group = Nq / Nkv;
  for (const layer of weights.layers) {
    const h = input(round(rmsNorm(x, T, H, layer.inputNorm, config.rmsNormEps)));
    const q = round(linear(h, T, H, layer.q, layer.qBias));
    const k = round(linear(h, T, H, layer.k, layer.kBias));
    const v = round(linear(h, T, H, layer.v, layer.vBias));
    round(applyRope(q, T, Nq, D, rope.invFreq, rope.attentionScale));
    round(applyRope(k, T, Nkv, D, rope.invFreq, rope.attentionScale));
    const attn = new Float64Array(T * Nq * D);
    const scores = new Float64Array(T);
    for (let head = 0; head < Nq; head++) {
      const kvHead = Math.floor(head / group);
      for (let i = 0; i < T; i++) {
        let max = -Infinity;
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += q[(i * Nq + head) * D + d] * k[(j * Nkv + kvHead) * D + d];
          scores[j] = s / Math.sqrt(D);
          max = Math.max(max, scores[j]);
        }
        let sum = 0;
        for (let j = 0; j <= i; j++) sum += scores[j] = Math.exp(scores[j] - max);
        for (let j = 0; j <= i; j++) {
          const p = r16(scores[j]) / sum;
          for (let d = 0; d < D; d++) attn[(i * Nq + head) * D + d] += p * v[(j * Nkv + kvHead) * D + d];
        }
      }
    }
    addInto(x, linear(input(round(attn)), T, Nq * D, layer.o, layer.oBias));
    const h2 = input(rmsNorm(x, T, H, layer.postNorm, config.rmsNormEps));
    const gate = linear(h2, T, H, layer.gate, layer.gateBias);
    const up = linear(h2, T, H, layer.up, layer.upBias);
    for (let i = 0; i < T * M; i++) gate[i] = (gate[i] / (1 + Math.exp(-gate[i]))) * up[i];
    addInto(x, linear(input(gate), T, M, layer.down, layer.downBias));
  }
  x = input(rmsNorm(x, T, H, weights.finalNorm, config.rmsNormEps));
  return linear(x, T, H, weights.lmHead, undefined);
}

function rmsNorm(x: Float64Array, rows: number, cols: number, weight: W, eps: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < cols; i++) ss += x[r * cols + i] ** 2;
    const inv = 1 / Math.sqrt(ss / cols + eps);
    for (let i = 0; i < cols; i++) out[r * cols + i] = x[r * cols + i] * inv * weight.data[i];
  }
  return out;
}

/** y = x Wᵀ + b with W [out, in]. */
function linear(x: Float64Array, rows: number, cols: number, weight: W, bias: W | undefined): Float64Array {
  const out = weight.shape[0];
  const w = weight.data;
  const y = new Float64Array(rows * out);
  for (let r = 0; r < rows; r++) {
    for (let n = 0; n < out; n++) {
      let s = bias ? bias.data[n] : 0;
      for (let i = 0; i < cols; i++) s += x[r * cols + i] * w[n * cols + i];
      y[r * out + n] = s;
    }
  }
  return y;
}

/** Rotates pairs (i, i + D/2) of every head of rows at positions 0 .. rows - 1 (in place; returns x). */
function applyRope(x: Float64Array, rows: number, heads: number, D: number, invFreq: Float64Array, scale: number): Float64Array {
  const half = D / 2;
  for (let t = 0; t < rows; t++) {
    for (let h = 0; h < heads; h++) {
      const base = (t * heads + h) * D;
      for (let i = 0; i < half; i++) {
        const c = Math.cos(t * invFreq[i]) * scale;
        const s = Math.sin(t * invFreq[i]) * scale;
        const a = x[base + i];
        const b = x[base + i + half];
        x[base + i] = a * c - b * s;
        x[base + i + half] = b * c + a * s;
      }
    }
  }
  return x;
}

function roundAll(x: Float64Array): Float64Array {
  for (let i = 0; i < x.length; i++) x[i] = roundToHalf(x[i]);
  return x;
}

function addInto(x: Float64Array, y: Float64Array): void {
  for (let i = 0; i < x.length; i++) x[i] += y[i];
}
