// The fused attention block (issue 4): public API.
export { AttentionBlock, type AttentionBlockOptions } from './block.js';
export type { AttentionBlockConfig, AttentionBlockWeights, WeightData } from './config.js';
export type { BlockForwardOptions, BlockKvCache, BlockLayout } from './shape.js';
export type { BlockResult, BlockStats, BlockPath } from './stats.js';
export { type RopeConfig, type RopeTable, ropeTable } from './rope.js';
export { referenceBlock, type ReferenceInput, type ReferenceOutput, type ReferenceBlockOptions } from './reference.js';
export { validateBlock } from './config.js';
