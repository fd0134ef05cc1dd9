// ONNX Runtime's WebGPU MultiHeadAttention (contrib op, domain com.microsoft) timed through
// onnxruntime-node. Host<->GPU copies are excluded by differencing: a model that chains the op
// `n` times (each output is the next query) minus the model with one op, divided by n - 1.
// The model is written with a minimal protobuf encoder (no onnx package needed).

// ---- protobuf wire format: varints and length-delimited fields
function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}
const fieldVarint = (field, value) => [...varint((field << 3) | 0), ...varint(value)];
const fieldBytes = (field, bytes) => [...varint((field << 3) | 2), ...varint(bytes.length), ...bytes];
const fieldString = (field, s) => fieldBytes(field, [...new TextEncoder().encode(s)]);

const FLOAT16 = 10;
function valueInfo(name, dims) {
  const shape = dims.flatMap((d) => fieldBytes(1, fieldVarint(1, d)));
  const tensorType = [...fieldVarint(1, FLOAT16), ...fieldBytes(2, shape)];
  return [...fieldString(1, name), ...fieldBytes(2, fieldBytes(1, tensorType))];
}
function attrInt(name, value) {
  return [...fieldString(1, name), ...fieldVarint(3, value), ...fieldVarint(20, 2)];
}
function node(inputs, outputs, opType, domain, attrs) {
  return [
    ...inputs.flatMap((i) => fieldString(1, i)),
    ...outputs.flatMap((o) => fieldString(2, o)),
    ...fieldString(3, `${opType}_${outputs[0]}`),
    ...fieldString(4, opType),
    ...attrs.flatMap((a) => fieldBytes(5, a)),
    ...fieldString(7, domain),
  ];
}

/**
 * A model with `chain` MultiHeadAttention ops: out_1 = MHA(query, key, value), out_i = MHA(out_{i-1},
 * key, value). Inputs are [B, S, H*D] float16 (BSH), as the op takes them.
 */
export function mhaChainModel({ batch, seq, heads, dimQK, dimV, causal }, chain) {
  const nodes = [];
  let q = 'query';
  for (let i = 1; i <= chain; i++) {
    const out = `out_${i}`;
    const attrs = [attrInt('num_heads', heads)];
    if (causal) attrs.push(attrInt('unidirectional', 1));
    nodes.push(node([q, 'key', 'value'], [out], 'MultiHeadAttention', 'com.microsoft', attrs));
    q = out;
  }
  const graph = [
    ...nodes.flatMap((n) => fieldBytes(1, n)),
    ...fieldString(2, 'mha_chain'),
    ...fieldBytes(11, valueInfo('query', [batch, seq, heads * dimQK])),
    ...fieldBytes(11, valueInfo('key', [batch, seq, heads * dimQK])),
    ...fieldBytes(11, valueInfo('value', [batch, seq, heads * dimV])),
    ...fieldBytes(12, valueInfo(q, [batch, seq, heads * dimV])),
  ];
  const model = [
    ...fieldVarint(1, 8), // ir_version
    ...fieldString(2, 'fusedattn-bench'),
    ...fieldBytes(7, graph),
    ...fieldBytes(8, [...fieldString(1, ''), ...fieldVarint(2, 17)]),
    ...fieldBytes(8, [...fieldString(1, 'com.microsoft'), ...fieldVarint(2, 1)]),
  ];
  return new Uint8Array(model);
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
  return { ms: (many.ms - one.ms) / (chain - 1), ms1: one.ms, msChain: many.ms, chain, includesCopies: false, out: one.out };
}
