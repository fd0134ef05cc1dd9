// A tiny protobuf writer, just enough to build small ONNX models in memory for the benchmarks
// against ONNX Runtime (CPU: bench/cpu-vs-ort.mjs; WebGPU: bench/gpu/onnx-mha.mjs): com.microsoft
// MultiHeadAttention and GroupQueryAttention (onnx.proto field numbers), so no onnx package is needed.

/** Wire types: 0 varint, 2 length-delimited, 5 fixed32. */
function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) byte |= 0x80;
    out.push(byte);
  } while (v !== 0n);
  return out;
}
const key = (field, wire) => varint((field << 3) | wire);
const int = (field, n) => [...key(field, 0), ...varint(n)];
const bytes = (field, b) => [...key(field, 2), ...varint(b.length), ...b];
const string = (field, s) => bytes(field, [...new TextEncoder().encode(s)]);
const float = (field, x) => [...key(field, 5), ...new Uint8Array(Float32Array.of(x).buffer)];

const ELEM = { float: 1, int32: 6, float16: 10 };

function valueInfo(name, elemType, dims) {
  // ValueInfoProto{name=1, type=2}; TypeProto{tensor_type=1}; Tensor{elem_type=1, shape=2}; Shape{dim=1}; Dim{dim_value=1, dim_param=2}
  const dim = (d) => bytes(1, typeof d === 'number' ? int(1, d) : string(2, d));
  const shape = dims.flatMap(dim);
  return [...string(1, name), ...bytes(2, bytes(1, [...int(1, ELEM[elemType]), ...bytes(2, shape)]))];
}

function attribute(name, value) {
  // AttributeProto{name=1, f=2, i=3, type=20 (FLOAT=1, INT=2)}
  if (Number.isInteger(value)) return [...string(1, name), ...int(3, value), ...int(20, 2)];
  return [...string(1, name), ...float(2, value), ...int(20, 1)];
}

/**
 * A model of `nodes` ({ opType, domain, inputs, outputs, attributes }) in order; graph inputs and
 * outputs are [name, elemType, dims]. Node inputs may include '' (absent optional input).
 */
export function onnxModel({ nodes, inputs, outputs }) {
  const node = ({ opType, domain, inputs: nodeInputs, outputs: nodeOutputs, attributes }) => [
    ...nodeInputs.flatMap((n) => string(1, n)),
    ...nodeOutputs.flatMap((n) => string(2, n)),
    ...string(3, `${opType}_${nodeOutputs[0]}`),
    ...string(4, opType),
    ...Object.entries(attributes).flatMap(([n, v]) => bytes(5, attribute(n, v))),
    ...string(7, domain),
  ];
  const graph = [
    ...nodes.flatMap((n) => bytes(1, node(n))),
    ...string(2, 'bench'),
    ...inputs.flatMap(([n, t, d]) => bytes(11, valueInfo(n, t, d))),
    ...outputs.flatMap(([n, t, d]) => bytes(12, valueInfo(n, t, d))),
  ];
  const opset = (domainName, version) => [...string(1, domainName), ...int(2, version)];
  const model = [
    ...int(1, 8), // ir_version
    ...string(2, 'fusedattn-bench'),
    ...bytes(7, graph),
    ...bytes(8, opset('', 17)),
    ...bytes(8, opset('com.microsoft', 1)),
  ];
  return Uint8Array.from(model);
}

/** MultiHeadAttention: q/k/v [B, S, N*H] -> [B, S, N*H]; unidirectional = causal (top-left = bottom-right for Sq = Sk). */
export function multiHeadAttentionModel({ heads, dim, causal, scale }) {
  const hidden = heads * dim;
  return onnxModel({
    nodes: [{ opType: 'MultiHeadAttention', domain: 'com.microsoft', inputs: ['query', 'key', 'value'], outputs: ['output'], attributes: { num_heads: heads, unidirectional: causal ? 1 : 0, scale } }],
    inputs: [['query', 'float', ['B', 'S', hidden]], ['key', 'float', ['B', 'L', hidden]], ['value', 'float', ['B', 'L', hidden]]],
    outputs: [['output', 'float', ['B', 'S', hidden]]],
  });
}

/**
 * GroupQueryAttention (causal by construction, ORT's decoder op): query [B, S, Nq*H],
 * key/value [B, S, Nkv*H], seqlens_k [B] = S - 1, total_sequence_length [] = S.
 */
export function groupQueryAttentionModel({ heads, kvHeads, dim, scale }) {
  return onnxModel({
    nodes: [{
      opType: 'GroupQueryAttention',
      domain: 'com.microsoft',
      inputs: ['query', 'key', 'value', '', '', 'seqlens_k', 'total_sequence_length'],
      outputs: ['output', 'present_key', 'present_value'],
      attributes: { num_heads: heads, kv_num_heads: kvHeads, scale },
    }],
    inputs: [
      ['query', 'float', ['B', 'S', heads * dim]], ['key', 'float', ['B', 'S', kvHeads * dim]], ['value', 'float', ['B', 'S', kvHeads * dim]],
      ['seqlens_k', 'int32', ['B']], ['total_sequence_length', 'int32', []],
    ],
    outputs: [['output', 'float', ['B', 'S', heads * dim]], ['present_key', 'float', ['B', kvHeads, 'T', dim]], ['present_value', 'float', ['B', kvHeads, 'T', dim]]],
  });
}
