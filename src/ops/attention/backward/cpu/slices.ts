// The key slices of the CPU backward's per-head schedule (bwd-head): each (b, kv head) pair's key
// blocks are cut into `count` contiguous slices so that a few pairs still make enough tasks for a
// many-core pool (B1 H8 on 16 cores was 8 tasks). A slice owns its keys' dK/dV outright and writes
// the dQ it contributes into a float32 partial of its own (slice 0 into dq itself); bwd-dq-sum
// then adds the partials in slice order. The count and the cuts depend on the problem only, never
// on the thread count, so the gradients are the same bits on every machine.
import type { BackwardProblem } from '../problem.js';
import { BWD_KEYS, BWD_ROWS, queriesOfKeys } from './tasks.js';

/**
 * Tasks the slicing aims at: two or more per worker of a 16-core pool, heaviest first. More slices
 * balance a bigger pool better but cost a partial each (zeroed, then read by bwd-dq-sum): B1 H8
 * S1024 D64 causal moves about 4 MiB of partials with 4 slices, 8 MiB with 8.
 */
export const SLICE_TASKS = 32;
/** The partials' memory at most (bytes): past it the pairs get fewer slices. */
export const SLICE_PARTIAL_BYTES = 256 * 2 ** 20;
/** Fewer tasks than this (and fewer than the key blocks give) leave the per-head schedule to bwd-kv + bwd-q. */
export const SLICE_MIN_TASKS = 32;

export interface SlicePlan {
  /** Slices per pair (the same for every batch entry; a short sequence leaves its last ones empty). */
  count: number;
  /** batch × (count + 1): key-block boundaries of batch entry b's slices. */
  keys: Int32Array;
  /** batch × count × 2: first and last query block any tile of the slice writes (first > last: none). */
  rows: Int32Array;
  /** batch × count: the slice's work (tiles × keys), for putting the heaviest tasks first. */
  work: Float64Array;
}

/** Aligned query blocks [first, last] that the per-head task visits for the keys [j0, j0 + cols). */
export function queryBlocksOfKeys(bp: BackwardProblem, b: number, j0: number, cols: number): [number, number] {
  const p = bp.forward;
  const window = { left: p.window.left, right: p.window.right, bottomRight: p.window.align === 'bottom-right' };
  const [lo, hi] = queriesOfKeys({ window }, p.seqLensQ[b], p.seqLensK[b], j0, j0 + cols - 1);
  return lo > hi ? [1, 0] : [Math.floor(lo / BWD_ROWS), Math.floor(hi / BWD_ROWS)];
}

/**
 * The slices: count from the pairs and the longest key range (and the partials' memory), cuts of
 * about equal work per batch entry (causal: the first keys are seen by the most queries, so the
 * first slices hold fewer key blocks), at least one key block each.
 */
export function slicePlan(bp: BackwardProblem): SlicePlan {
  const p = bp.forward;
  const pairs = p.batch * p.headsKv;
  const blocksOf = (b: number) => Math.ceil(p.seqLensK[b] / BWD_KEYS);
  let maxBlocks = 0;
  for (let b = 0; b < p.batch; b++) maxBlocks = Math.max(maxBlocks, blocksOf(b));
  const dqBytes = 4 * (p.q.tensor.size + (p.qRope?.tensor.size ?? 0));
  let count = Math.max(1, Math.min(maxBlocks, Math.ceil(SLICE_TASKS / Math.max(1, pairs))));
  count = Math.max(1, Math.min(count, 1 + Math.floor(SLICE_PARTIAL_BYTES / Math.max(1, dqBytes))));
  const keys = new Int32Array(p.batch * (count + 1));
  const rows = new Int32Array(p.batch * count * 2);
  const work = new Float64Array(p.batch * count);
  for (let b = 0; b < p.batch; b++) {
    const blocks = blocksOf(b);
    // work of each key block: the query tiles it meets (whole 64-row tiles are computed) × its keys
    const blockWork: number[] = [];
    for (let kb = 0; kb < blocks; kb++) {
      const cols = Math.min(BWD_KEYS, p.seqLensK[b] - kb * BWD_KEYS);
      const [first, last] = queryBlocksOfKeys(bp, b, kb * BWD_KEYS, cols);
      blockWork.push((Math.max(0, last - first + 1) * BWD_ROWS + 1) * cols);
    }
    const total = blockWork.reduce((a, w) => a + w, 0);
    const at = b * (count + 1);
    keys[at] = 0;
    let kb = 0;
    let done = 0;
    for (let s = 1; s <= count; s++) {
      // the slice ends where the running work reaches s/count of the total, keeping one block
      // each for itself and for the slices after it (short sequences: the last slices are empty)
      const least = Math.min(blocks, kb + 1);
      const most = Math.max(least, blocks - (count - s));
      const goal = (total * s) / count;
      let end = least;
      let sum = done;
      for (let k = kb; k < least; k++) sum += blockWork[k];
      while (end < most && sum + blockWork[end] / 2 <= goal) sum += blockWork[end++];
      if (s === count) {
        end = blocks;
        sum = total;
      }
      keys[at + s] = end;
      const slot = b * count + (s - 1);
      work[slot] = sum - done;
      let first = 1;
      let last = 0;
      for (let k = kb; k < end; k++) {
        const [f, l] = queryBlocksOfKeys(bp, b, k * BWD_KEYS, Math.min(BWD_KEYS, p.seqLensK[b] - k * BWD_KEYS));
        if (f > l) continue;
        if (first > last) [first, last] = [f, l];
        else [first, last] = [Math.min(first, f), Math.max(last, l)];
      }
      rows[2 * slot] = first;
      rows[2 * slot + 1] = last;
      kb = end;
      done = sum;
    }
  }
  return { count, keys, rows, work };
}
