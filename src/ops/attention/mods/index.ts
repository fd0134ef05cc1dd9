// Public surface of the score/mask/sink functions (FlexAttention-style variants of attention()).
export { FloatExpr, IntExpr, BoolExpr, FloatTensor, IntTensor, ModTensor, capture, float, int, bool, type Kind } from './expr.js';
export { ScoreMod, MaskMod, SinkMod, scoreMod, maskMod, sinkMod, andMasks, orMasks, composeScoreMods, type ScoreContext, type MaskContext, type SinkContext } from './program.js';
export { causal, slidingWindow, prefixLM, documentMask, streamingMask, attentionSinks, softcap, alibi, alibiSlopes, t5RelativeBias, t5Bucket, type T5Options } from './builtins.js';
