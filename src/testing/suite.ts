// The correctness suite every backend runs (tests) and `fusedattn verify` replays. Odd head dims
// (59, 111, 192), odd lengths (1, 97, 1025), Sq != Sk both ways, every option and layout, masks
// with -inf blocks and fully masked rows, GQA/MQA, MLA and its split form.
import type { AttentionCase } from './cases.js';

export const SUITE: readonly AttentionCase[] = [
  // plain, then odd sizes and causal alignments
  { batch: 2, headsQ: 3, seqQ: 97, seqK: 97, dimQK: 64, returnLse: true },
  { batch: 1, headsQ: 2, seqQ: 1, seqK: 97, dimQK: 59, causal: true, returnLse: true },
  { batch: 1, headsQ: 2, seqQ: 97, seqK: 33, dimQK: 111, causal: true, returnLse: true },
  { batch: 1, headsQ: 2, seqQ: 65, seqK: 97, dimQK: 40, causal: 'top-left', returnLse: true },
  { batch: 1, headsQ: 2, seqQ: 97, seqK: 65, dimQK: 40, causal: 'top-left' },
  { batch: 1, headsQ: 1, seqQ: 1025, seqK: 1025, dimQK: 64, causal: true, returnLse: true },
  { batch: 1, headsQ: 1, seqQ: 33, seqK: 1025, dimQK: 111 },
  // layouts, GQA and MQA
  { layout: 'BSND', batch: 2, headsQ: 8, headsKv: 2, seqQ: 97, seqK: 97, dimQK: 64, causal: true, returnLse: true },
  { layout: 'BSH', batch: 2, headsQ: 4, headsKv: 2, seqQ: 50, seqK: 70, dimQK: 32 },
  { layout: 'SBH', batch: 3, headsQ: 4, headsKv: 1, seqQ: 21, seqK: 44, dimQK: 48, causal: true },
  { layout: 'TND', batch: 3, headsQ: 4, headsKv: 2, seqQ: 0, seqK: 0, seqLensQ: [1, 97, 40], seqLensK: [1, 120, 33], dimQK: 64, causal: true, returnLse: true },
  { layout: 'TND', batch: 2, headsQ: 2, seqQ: 0, seqK: 0, seqLensQ: [3, 50], seqLensK: [0, 61], dimQK: 32, returnLse: true },
  // MLA: Dq != Dv, and the split RoPE form
  { batch: 1, headsQ: 2, seqQ: 97, seqK: 97, dimQK: 192, dimV: 128, causal: true, returnLse: true },
  { layout: 'BSND', batch: 1, headsQ: 4, headsKv: 2, seqQ: 70, seqK: 97, dimQK: 128, dimRope: 64, dimV: 128, causal: true, returnLse: true },
  { layout: 'TND', batch: 2, headsQ: 2, seqQ: 0, seqK: 0, seqLensQ: [20, 37], seqLensK: [20, 37], dimQK: 48, dimRope: 16, dimV: 32, causal: true },
  // windows, CANN tokens, softcap and scale
  { batch: 1, headsQ: 2, seqQ: 97, seqK: 97, dimQK: 32, window: [16, 8] },
  { batch: 1, headsQ: 2, seqQ: 80, seqK: 130, dimQK: 32, window: [32, -1], causal: true, returnLse: true },
  { batch: 1, headsQ: 2, seqQ: 97, seqK: 97, dimQK: 32, preTokens: 20, nextTokens: 0 },
  { batch: 1, headsQ: 2, seqQ: 64, seqK: 64, dimQK: 32, preTokens: 5, nextTokens: -2, returnLse: true },
  { batch: 2, headsQ: 2, seqQ: 60, seqK: 77, dimQK: 40, softcap: 3, scale: 0.9, returnLse: true },
  // masks (bool) and biases (float, with -inf blocks), ALiBi
  { batch: 2, headsQ: 2, seqQ: 45, seqK: 97, dimQK: 32, mask: 'random' },
  { batch: 2, headsQ: 2, seqQ: 97, seqK: 97, dimQK: 32, mask: 'blocks', maskShape: 'full', causal: true },
  { batch: 1, headsQ: 3, seqQ: 70, seqK: 70, dimQK: 32, mask: 'full-rows', returnLse: true },
  { batch: 2, headsQ: 2, seqQ: 33, seqK: 50, dimQK: 16, mask: 'blocks', maskShape: '2d' },
  { batch: 2, headsQ: 2, seqQ: 50, seqK: 70, dimQK: 32, bias: 'random' },
  { batch: 1, headsQ: 2, seqQ: 97, seqK: 97, dimQK: 32, bias: 'neg-inf-blocks', maskShape: 'full', returnLse: true },
  { batch: 2, headsQ: 4, seqQ: 40, seqK: 60, dimQK: 32, alibi: true, causal: true, returnLse: true },
  { batch: 1, headsQ: 2, seqQ: 50, seqK: 50, dimQK: 32, alibi: true, mask: 'blocks', bias: 'random', softcap: 5 },
  // dropout (training): the same Philox keep mask on every backend and tier
  { batch: 1, headsQ: 2, headsKv: 1, seqQ: 97, seqK: 80, dimQK: 64, causal: true, dropout: 0.2, returnLse: true },
  { layout: 'TND', batch: 3, headsQ: 2, seqQ: 0, seqK: 0, seqLensQ: [33, 0, 20], seqLensK: [40, 5, 20], dimQK: 16, dropout: 0.5 },
  { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 97, seqK: 97, dimQK: 64, causal: true, dropout: 0.1, returnLse: true },
  // float16 inputs
  { dtype: 'float16', batch: 2, headsQ: 2, seqQ: 97, seqK: 97, dimQK: 64, returnLse: true },
  { dtype: 'float16', layout: 'BSND', batch: 1, headsQ: 8, headsKv: 2, seqQ: 70, seqK: 130, dimQK: 128, causal: true },
  { dtype: 'float16', batch: 1, headsQ: 2, seqQ: 65, seqK: 65, dimQK: 192, dimV: 128, causal: true, mask: 'full-rows' },
];
