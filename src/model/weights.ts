// The decoder's weights by role, with the Hugging Face tensor names and the shapes the config
// implies. Loading checks every tensor (present, right shape) before any is read, so a wrong or
// truncated model folder fails at once with the tensor's name, not halfway through a forward pass.
// Linear weights keep the PyTorch [out, in] layout: y = x Wᵀ + b.
import { fromHalfBits } from '../core/dtype.js';
import { ShapeError, ValueError, show } from '../core/errors.js';
import { firstNonFinite } from '../core/finite.js';
import type { ReadAs, ReadResult, TensorStore } from '../io/safetensors.js';
import type { ModelConfig } from './config.js';

/** A weight in CPU memory: float32 values, or float16 bits for GPU upload. */
export interface HostTensor<T extends ReadAs = 'float32'> {
  readonly name: string;
  readonly shape: readonly number[];
  readonly data: ReadResult<T>;
}

export interface LayerWeights<W> {
  readonly inputNorm: W;
  readonly q: W;
  readonly k: W;
  readonly v: W;
  readonly o: W;
  readonly qBias?: W;
  readonly kBias?: W;
  readonly vBias?: W;
  readonly oBias?: W;
  readonly postNorm: W;
  readonly gate: W;
  readonly up: W;
  readonly down: W;
  readonly gateBias?: W;
  readonly upBias?: W;
  readonly downBias?: W;
}

export interface DecoderWeights<W> {
  /** [vocab, hidden] */
  readonly embed: W;
  readonly layers: readonly LayerWeights<W>[];
  readonly finalNorm: W;
  /** [vocab, hidden]; the same object as `embed` when tie_word_embeddings. */
  readonly lmHead: W;
}

export type LayerRole = keyof LayerWeights<unknown>;

/** One tensor a model must have: role, HF name and shape. */
export interface WeightSpec {
  readonly name: string;
  readonly shape: readonly number[];
  readonly layer?: number;
  readonly role: LayerRole | 'embed' | 'finalNorm' | 'lmHead';
}

/** Every tensor the config calls for, in load order. */
export function weightSpecs(config: ModelConfig): WeightSpec[] {
  const { hiddenSize: h, intermediateSize: m, vocabSize, numHeads, numKvHeads, headDim: d } = config;
  const specs: WeightSpec[] = [{ name: 'model.embed_tokens.weight', shape: [vocabSize, h], role: 'embed' }];
  for (let i = 0; i < config.numLayers; i++) {
    const p = `model.layers.${i}.`;
    const add = (role: LayerRole, name: string, shape: number[]) => specs.push({ name: p + name, shape, layer: i, role });
    add('inputNorm', 'input_layernorm.weight', [h]);
    add('q', 'self_attn.q_proj.weight', [numHeads * d, h]);
    add('k', 'self_attn.k_proj.weight', [numKvHeads * d, h]);
    add('v', 'self_attn.v_proj.weight', [numKvHeads * d, h]);
    add('o', 'self_attn.o_proj.weight', [h, numHeads * d]);
    if (config.qkvBias) {
      add('qBias', 'self_attn.q_proj.bias', [numHeads * d]);
      add('kBias', 'self_attn.k_proj.bias', [numKvHeads * d]);
      add('vBias', 'self_attn.v_proj.bias', [numKvHeads * d]);
    }
    if (config.oBias) add('oBias', 'self_attn.o_proj.bias', [h]);
    add('postNorm', 'post_attention_layernorm.weight', [h]);
    add('gate', 'mlp.gate_proj.weight', [m, h]);
    add('up', 'mlp.up_proj.weight', [m, h]);
    add('down', 'mlp.down_proj.weight', [h, m]);
    if (config.mlpBias) {
      add('gateBias', 'mlp.gate_proj.bias', [m]);
      add('upBias', 'mlp.up_proj.bias', [m]);
      add('downBias', 'mlp.down_proj.bias', [h]);
    }
  }
  specs.push({ name: 'model.norm.weight', shape: [h], role: 'finalNorm' });
  if (!config.tieWordEmbeddings) specs.push({ name: 'lm_head.weight', shape: [vocabSize, h], role: 'lmHead' });
  return specs;
}

/**
 * Throws when a tensor the config needs is missing or has the wrong shape, naming it and its file.
 * The layer count is checked against the layers the store holds first, so a config.json that asks
 * for more layers than the file has fails at once, before a tensor list is built from it.
 */
export function checkWeights(store: TensorStore, config: ModelConfig): void {
  let layersPresent = 0;
  for (const name of store.names()) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m) layersPresent = Math.max(layersPresent, Number(m[1]) + 1);
  }
  if (config.numLayers > layersPresent) {
    throw new ValueError('config.num_hidden_layers', `config.json says num_hidden_layers: ${config.numLayers}, but ${store.origin} holds ${layersPresent === 0 ? 'no model.layers.N tensors' : `layers 0..${layersPresent - 1} only`}`);
  }
  for (const spec of weightSpecs(config)) {
    const entry = store.entry(spec.name);
    if (!entry) {
      const hint = spec.role === 'lmHead' ? ' (config says tie_word_embeddings: false)' : '';
      throw new ValueError(spec.name, `${store.origin} has no tensor ${show(spec.name)}${hint}`);
    }
    if (entry.shape.length !== spec.shape.length || entry.shape.some((n, i) => n !== spec.shape[i])) {
      throw new ShapeError(spec.name, `${entry.file}: tensor ${show(spec.name)} has shape ${show(entry.shape)}, but config.json implies ${show(spec.shape)}`);
    }
  }
}

/**
 * Builds the weights by role, turning each stored tensor into a backend weight with `make` (a copy
 * in CPU memory, or an upload to the GPU). Tensors are read one at a time, so peak host memory is
 * the backend's copy plus one tensor.
 */
export async function loadWeights<W, T extends ReadAs>(
  store: TensorStore,
  config: ModelConfig,
  as: T,
  make: (tensor: HostTensor<T>, spec: WeightSpec) => W | Promise<W>,
  checkFinite = false,
): Promise<DecoderWeights<W>> {
  checkWeights(store, config);
  const layers: Array<Partial<Record<LayerRole, W>>> = Array.from({ length: config.numLayers }, () => ({}));
  let embed: W | undefined;
  let finalNorm: W | undefined;
  let lmHead: W | undefined;
  for (const spec of weightSpecs(config)) {
    const data = await store.read(spec.name, as);
    if (checkFinite) {
      const bad = firstNonFinite(data, as);
      if (bad >= 0) {
        const value = as === 'float16' ? fromHalfBits(data[bad]) : data[bad];
        throw new ValueError(spec.name, `${store.entry(spec.name)?.file ?? store.origin}: tensor ${show(spec.name)} holds ${value} at flat index ${bad} (loaded with checkFinite)`);
      }
    }
    const w = await make({ name: spec.name, shape: spec.shape, data }, spec);
    if (spec.role === 'embed') embed = w;
    else if (spec.role === 'finalNorm') finalNorm = w;
    else if (spec.role === 'lmHead') lmHead = w;
    else layers[spec.layer as number][spec.role] = w;
  }
  return {
    embed: embed as W,
    layers: layers as LayerWeights<W>[],
    finalNorm: finalNorm as W,
    lmHead: (lmHead ?? embed) as W,
  };
}
