// ONNX Runtime's WebGPU MultiHeadAttention (contrib op, domain com.microsoft) timed through
// onnxruntime-node. Host<->GPU copies are excluded by differencing: a model that chains the op
// `n` times (each output is the next query) minus the model with one op, divided by n - 1.
// The model is written by bench/onnx-model.mjs (no onnx package needed).
import { onnxModel } from '../onnx-model.mjs';

/**
 * A model with `chain` MultiHeadAttention ops: out_1 = MHA(query, key, value), out_i = MHA(out_{i-1},
 * key, value). Inputs are [B, S, H*D] float16 (BSH), as the op takes them.
 */
export function mhaChainModel({ batch, seq, heads, dimQK, dimV, causal }, chain) {
  const nodes = [];
  let q = 'query';
  for (let i = 1; i <= chain; i++) {
    const out = `out_${i}`;
    const attributes = causal ? { num_heads: heads, unidirectional: 1 } : { num_heads: heads };
    nodes.push({ opType: 'MultiHeadAttention', domain: 'com.microsoft', inputs: [q, 'key', 'value'], outputs: [out], attributes });
    q = out;
  }
  return onnxModel({
    nodes,
    inputs: [['query', 'float16', [batch, seq, heads * dimQK]], ['key', 'float16', [batch, seq, heads * dimQK]], ['value', 'float16', [batch, seq, heads * dimV]]],
    outputs: [[q, 'float16', [batch, seq, heads * dimV]]],
  });
}

/** BNSD [B, H, S, D] -> BSH [B, S, H*D] (what MultiHeadAttention takes), float16 bits. */
export function bnsdToBsh(src, B, H, S, D) {
  const out = new Uint16Array(src.length);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let s = 0; s < S; s++) {
    const from = ((b * H + h) * S + s) * D;
    out.set(src.subarray(from, from + D), ((b * S + s) * H + h) * D);
  }
  return out;
}

/**
 * Times ORT's MHA on inputs q, k, v (BNSD float16 bits; K/V already expanded to H heads).
 * Returns { ms, ms1, msChain, chain, out } or { error }. `ort` is the onnxruntime-node module.
 */
export async function timeOrtMha(ort, shape, q, k, v, { chain = 4, reps = 2, provider = 'webgpu' } = {}) {
  const { batch: B, heads: H, seq: S, dimQK, dimV } = shape;
  const feeds = {
    query: new ort.Tensor('float16', bnsdToBsh(q, B, H, S, dimQK), [B, S, H * dimQK]),
    key: new ort.Tensor('float16', bnsdToBsh(k, B, H, S, dimQK), [B, S, H * dimQK]),
    value: new ort.Tensor('float16', bnsdToBsh(v, B, H, S, dimV), [B, S, H * dimV]),
  };
  const timeModel = async (n) => {
    const session = await ort.InferenceSession.create(mhaChainModel(shape, n), { executionProviders: [provider], graphOptimizationLevel: 'disabled' });
    let best = Infinity, out;
    for (let r = 0; r < reps + 1; r++) {
      const t0 = performance.now();
      const result = await session.run(feeds);
      const ms = performance.now() - t0;
      if (r > 0) best = Math.min(best, ms); // the first run compiles
      out = result[session.outputNames[0]];
    }
    await session.release?.();
    return { ms: best, out };
  };
  const one = await timeModel(1);
  if (dimQK !== dimV || chain < 2) return { ms: one.ms, ms1: one.ms, chain: 1, includesCopies: true, out: one.out };
  const many = await timeModel(chain);
  const ms = (many.ms - one.ms) / (chain - 1);
  // The difference of two wall-clock times: when the copies' noise exceeds the ops' time it can
  // come out zero or negative (seen: -2.162 ms at B4 H32 S1024 D64). That is no measurement.
  if (!(ms > 0)) return { ms: undefined, notMeasurable: `not measurable: ${chain} chained ops ${many.ms.toFixed(3)} ms, 1 op ${one.ms.toFixed(3)} ms (difference ${ms.toFixed(3)} ms per op, within the copies' noise)`, ms1: one.ms, msChain: many.ms, chain, includesCopies: false, out: one.out };
  return { ms, ms1: one.ms, msChain: many.ms, chain, includesCopies: false, out: one.out };
}
