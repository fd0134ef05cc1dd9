// config.json of a Qwen2 / Llama decoder (Hugging Face transformers names), validated into the few
// numbers the runner needs. Every check names the field, what was expected and what was found, so
// a user with a hand-edited or unusual config knows what to fix; what we cannot run is refused with
// UnsupportedError rather than run wrongly.
import { ShapeError, UnsupportedError, ValueError, show } from '../core/errors.js';
import { type ModelFiles, type ModelSource, type SourceOptions, modelFiles } from '../io/sources.js';

/** How RoPE frequencies are changed for long context (transformers' `rope_scaling.rope_type`). */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  /** NTK-aware, grows the base once the sequence passes max_position_embeddings. */
  | { type: 'dynamic'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number }
  | {
      type: 'yarn';
      factor: number;
      originalMaxPositions: number;
      betaFast: number;
      betaSlow: number;
      /** cos/sin are multiplied by this (so scores by its square). */
      attentionFactor: number;
      truncate: boolean;
    };

export interface ModelConfig {
  /** 'qwen2' has q/k/v biases; 'llama' has biases only when attention_bias / mlp_bias say so. */
  readonly modelType: 'qwen2' | 'llama';
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling | undefined;
  readonly maxPositionEmbeddings: number;
  readonly tieWordEmbeddings: boolean;
  /** q_proj, k_proj, v_proj carry a bias (always for Qwen2). */
  readonly qkvBias: boolean;
  /** o_proj carries a bias (Llama attention_bias). */
  readonly oBias: boolean;
  /** gate/up/down projections carry biases (Llama mlp_bias). */
  readonly mlpBias: boolean;
  readonly bosTokenId: number | undefined;
  readonly eosTokenIds: readonly number[];
}

/**
 * Upper bounds on config.json sizes, far above any released Qwen2/Llama model (Llama 3.1 405B:
 * hidden 16384, 126 layers, vocab 128256, intermediate 53248, 128k positions) but low enough that a
 * corrupt or hostile value is refused before anything is sized from it (a billion layers would
 * otherwise build a list of twelve billion tensor names before the first missing one is noticed).
 */
export const CONFIG_BOUNDS = {
  vocab_size: 1 << 24,
  hidden_size: 1 << 17,
  intermediate_size: 1 << 20,
  num_hidden_layers: 1 << 12,
  num_attention_heads: 1 << 12,
  num_key_value_heads: 1 << 12,
  head_dim: 1 << 12,
  max_position_embeddings: 1 << 26,
} as const;

/** Largest config.json we read (real ones are a few kB). */
export const MAX_CONFIG_BYTES = 1 << 20;

const ARCHITECTURES: Record<string, ModelConfig['modelType']> = {
  Qwen2ForCausalLM: 'qwen2',
  LlamaForCausalLM: 'llama',
};

/**
 * Validates a parsed config.json. `source` (a path) prefixes messages; the error's `argument` is
 * `config.<field>`.
 */
export function parseModelConfig(raw: unknown, source = 'config.json'): ModelConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ValueError('config', `${source} must hold a JSON object, got ${show(raw)}`);
  }
  const c = raw as Record<string, unknown>;
  const fail = (field: string, expected: string, Cls: typeof ValueError = ValueError): never => {
    throw new Cls(`config.${field}`, `${source}: ${field} must be ${expected}, got ${show(c[field])}`);
  };
  const int = (field: string, fallback?: number): number => {
    const v = c[field] ?? fallback;
    const max = CONFIG_BOUNDS[field as keyof typeof CONFIG_BOUNDS];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) fail(field, 'a positive integer');
    if (max !== undefined && (v as number) > max) fail(field, `a positive integer <= ${max} (larger than any model this runner can load)`);
    return v as number;
  };
  const positive = (field: string, fallback?: number): number => {
    const v = c[field] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(field, 'a positive number');
    return v as number;
  };
  const bool = (field: string, fallback: boolean): boolean => {
    const v = c[field] ?? fallback;
    if (typeof v !== 'boolean') fail(field, 'true or false');
    return v as boolean;
  };

  const modelType = resolveModelType(c, source);
  const hiddenAct = c.hidden_act ?? 'silu';
  if (hiddenAct !== 'silu') {
    throw new UnsupportedError('config.hidden_act', `${source}: hidden_act must be "silu" (SwiGLU MLP), got ${show(hiddenAct)}`);
  }
  if (c.use_sliding_window === true) {
    throw new UnsupportedError('config.use_sliding_window', `${source}: use_sliding_window is true; sliding-window Qwen2 layers are not supported (every layer must attend to the full context)`);
  }
  if (c.partial_rotary_factor !== undefined && c.partial_rotary_factor !== 1) {
    throw new UnsupportedError('config.partial_rotary_factor', `${source}: partial_rotary_factor must be 1 (RoPE on the whole head), got ${show(c.partial_rotary_factor)}`);
  }

  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  const numKvHeads = int('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new ShapeError('config.num_key_value_heads', `${source}: num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads, got ${numKvHeads}`);
  }
  if (c.head_dim === undefined || c.head_dim === null) {
    if (hiddenSize % numHeads !== 0) {
      throw new ShapeError('config.hidden_size', `${source}: hidden_size (${hiddenSize}) must be divisible by num_attention_heads (${numHeads}) when head_dim is absent`);
    }
  }
  const headDim = c.head_dim === undefined || c.head_dim === null ? hiddenSize / numHeads : int('head_dim');
  if (headDim % 2 !== 0) throw new ShapeError('config.head_dim', `${source}: head_dim must be even (RoPE rotates pairs), got ${headDim}`);

  const rope = ropeFields(c, source);
  const maxPositionEmbeddings = int('max_position_embeddings', 2048);
  const attentionBias = bool('attention_bias', false);
  const vocabSize = int('vocab_size');
  const bosTokenIds = tokenIds(c, 'bos_token_id', source, vocabSize);
  const eosTokenIds = tokenIds(c, 'eos_token_id', source, vocabSize);
  return {
    modelType,
    vocabSize,
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: positive('rms_norm_eps', 1e-6),
    ropeTheta: rope.theta,
    ropeScaling: parseRopeScaling(rope.scaling, rope.field, maxPositionEmbeddings, source),
    maxPositionEmbeddings,
    tieWordEmbeddings: bool('tie_word_embeddings', false),
    qkvBias: modelType === 'qwen2' ? true : attentionBias,
    oBias: modelType === 'qwen2' ? false : attentionBias,
    mlpBias: modelType === 'qwen2' ? false : bool('mlp_bias', false),
    bosTokenId: bosTokenIds[0],
    eosTokenIds,
  };
}

function resolveModelType(c: Record<string, unknown>, source: string): ModelConfig['modelType'] {
  const type = c.model_type;
  if (type === 'qwen2' || type === 'llama') return type;
  if (type === undefined && Array.isArray(c.architectures)) {
    const found = c.architectures.map((a) => ARCHITECTURES[a as string]).find(Boolean);
    if (found) return found;
  }
  throw new UnsupportedError('config.model_type', `${source}: model_type must be "qwen2" or "llama" (Qwen2/Llama decoders), got ${show(type ?? c.architectures)}`);
}

/** rope_theta and rope_scaling, from the classic fields or transformers v5's `rope_parameters`. */
function ropeFields(c: Record<string, unknown>, source: string): { theta: number; scaling: unknown; field: string } {
  const params = c.rope_parameters as Record<string, unknown> | undefined;
  const fromParams = params !== undefined && params !== null && typeof params === 'object';
  const theta = (fromParams ? params.rope_theta : undefined) ?? c.rope_theta ?? 10000;
  const field = fromParams && params.rope_theta !== undefined ? 'rope_parameters.rope_theta' : 'rope_theta';
  if (typeof theta !== 'number' || !Number.isFinite(theta) || theta <= 1) {
    throw new ValueError(`config.${field}`, `${source}: ${field} must be a number > 1, got ${show(theta)}`);
  }
  if (fromParams) return { theta, scaling: params, field: 'rope_parameters' };
  return { theta, scaling: c.rope_scaling, field: 'rope_scaling' };
}

function parseRopeScaling(raw: unknown, field: string, maxPositions: number, source: string): RopeScaling | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ValueError(`config.${field}`, `${source}: ${field} must be an object or null, got ${show(raw)}`);
  }
  const s = raw as Record<string, unknown>;
  const type = (s.rope_type ?? s.type ?? 'default') as string;
  if (type === 'default') return undefined;
  const num = (key: string, fallback?: number, min = 0): number => {
    const v = s[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= min) {
      throw new ValueError(`config.${field}.${key}`, `${source}: ${field}.${key} must be a number > ${min} for rope_type ${show(type)}, got ${show(s[key])}`);
    }
    return v;
  };
  switch (type) {
    case 'linear':
      return { type: 'linear', factor: num('factor') };
    case 'dynamic':
      return { type: 'dynamic', factor: num('factor', undefined, 1 - 1e-12) };
    case 'llama3': {
      const scaling = {
        type: 'llama3',
        factor: num('factor'),
        lowFreqFactor: num('low_freq_factor'),
        highFreqFactor: num('high_freq_factor'),
        originalMaxPositions: num('original_max_position_embeddings'),
      } as const;
      if (scaling.highFreqFactor <= scaling.lowFreqFactor) {
        throw new ValueError(`config.${field}.high_freq_factor`, `${source}: ${field}.high_freq_factor must be > low_freq_factor (${scaling.lowFreqFactor}), got ${scaling.highFreqFactor}`);
      }
      return scaling;
    }
    case 'yarn': {
      const factor = num('factor');
      const mscale = s.mscale as number | undefined;
      const mscaleAllDim = s.mscale_all_dim as number | undefined;
      // transformers' default attention factor: 0.1 ln(factor) + 1, or the DeepSeek mscale ratio
      const yarnMscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
      const defaultFactor = mscale && mscaleAllDim ? yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAllDim) : yarnMscale(factor);
      if (s.truncate !== undefined && typeof s.truncate !== 'boolean') {
        throw new ValueError(`config.${field}.truncate`, `${source}: ${field}.truncate must be true or false, got ${show(s.truncate)}`);
      }
      return {
        type: 'yarn',
        factor,
        originalMaxPositions: num('original_max_position_embeddings', maxPositions),
        betaFast: num('beta_fast', 32),
        betaSlow: num('beta_slow', 1),
        attentionFactor: num('attention_factor', defaultFactor),
        truncate: (s.truncate as boolean | undefined) ?? true,
      };
    }
    default:
      throw new UnsupportedError(`config.${field}.rope_type`, `${source}: ${field}.rope_type must be one of default, linear, dynamic, llama3, yarn; got ${show(type)}`);
  }
}

function tokenIds(c: Record<string, unknown>, field: string, source: string, vocabSize: number): number[] {
  const v = c[field];
  if (v === undefined || v === null) return [];
  const ids = Array.isArray(v) ? v : [v];
  if (ids.length > 1024 || !ids.every((id) => Number.isInteger(id) && id >= 0 && id < vocabSize)) {
    throw new ValueError(`config.${field}`, `${source}: ${field} must be a token id below vocab_size (${vocabSize}) or a list of at most 1024 of them, got ${show(v)}`);
  }
  return ids as number[];
}

/** Reads and validates the model's config.json from any ModelSource (folder, URL, files, bytes). */
export async function readModelConfig(source: ModelSource | ModelFiles, options: SourceOptions = {}): Promise<ModelConfig> {
  const files = isModelFiles(source) ? source : modelFiles(source, options);
  const path = `${files.origin}/config.json`;
  const text = await files.readText('config.json');
  if (text === undefined) throw new ValueError('config', `${path} not found: a model folder needs config.json (and model.safetensors)`);
  if (text.length > MAX_CONFIG_BYTES) throw new ValueError('config', `${path} holds ${text.length} characters; a config.json is a few kB (limit ${MAX_CONFIG_BYTES})`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ValueError('config', `${path} is not valid JSON (${(e as Error).message})`);
  }
  return parseModelConfig(raw, path);
}

export function isModelFiles(x: unknown): x is ModelFiles {
  return typeof x === 'object' && x !== null && typeof (x as ModelFiles).open === 'function' && typeof (x as ModelFiles).readText === 'function' && typeof (x as ModelFiles).origin === 'string';
}
