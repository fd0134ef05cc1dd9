// Text <-> token ids through Hugging Face's own JavaScript tokenizer library
// (@huggingface/tokenizers: pure JS, no network, reads the model folder's tokenizer.json and
// tokenizer_config.json as they are). Loaded lazily, so code that works on token ids never pays for it.
import { ValueError } from '../core/errors.js';
import { type ModelFiles, type ModelSource, type SourceOptions, modelFiles } from '../io/sources.js';
import { isModelFiles } from './config.js';

export interface TextTokenizer {
  encode(text: string): number[];
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /** End-of-sequence ids the tokenizer config names (eos_token), if any. */
  readonly eosTokenIds: readonly number[];
}

/** Builds a tokenizer from parsed tokenizer.json (and tokenizer_config.json) objects. */
export async function createTokenizer(tokenizerJson: object, tokenizerConfig: object = {}): Promise<TextTokenizer> {
  const { Tokenizer } = await import('@huggingface/tokenizers');
  const tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig);
  const eosName = (tokenizerConfig as { eos_token?: unknown }).eos_token;
  const eosText = typeof eosName === 'string' ? eosName : (eosName as { content?: string } | undefined)?.content;
  const eosId = eosText === undefined ? undefined : tokenizer.token_to_id(eosText);
  return {
    // special tokens such as <|endoftext|> in the text are recognised; no BOS/EOS is added here
    // beyond what tokenizer.json's post-processor adds
    encode: (text) => tokenizer.encode(text).ids,
    decode: (ids, options = {}) => tokenizer.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false }),
    eosTokenIds: eosId === undefined ? [] : [eosId],
  };
}

/**
 * The tokenizer of a model (tokenizer.json and tokenizer_config.json from any ModelSource: folder,
 * URL, files, bytes), or undefined when it has no tokenizer.json (then callers work with token ids).
 */
export async function loadTokenizer(source: ModelSource | ModelFiles, options: SourceOptions = {}): Promise<TextTokenizer | undefined> {
  const files = isModelFiles(source) ? source : modelFiles(source, options);
  const path = `${files.origin}/tokenizer.json`;
  const text = await files.readText('tokenizer.json');
  if (text === undefined) return undefined;
  const json = parseJson(text, path);
  const configPath = `${files.origin}/tokenizer_config.json`;
  const configText = await files.readText('tokenizer_config.json');
  const config = configText === undefined ? {} : parseJson(configText, configPath);
  try {
    return await createTokenizer(json, config);
  } catch (e) {
    throw new ValueError('tokenizer', `${path} could not be loaded by @huggingface/tokenizers: ${(e as Error).message}`);
  }
}

function parseJson(text: string, path: string): object {
  try {
    const value = JSON.parse(text);
    if (value === null || typeof value !== 'object') throw new Error('not a JSON object');
    return value;
  } catch (e) {
    throw new ValueError('tokenizer', `${path} is not a valid JSON object (${(e as Error).message})`);
  }
}
