// The internal batched float32 matmul of the CPU backend, on the same pool and kernels as
// attention (the naive path's GEMMs are the same kernels). For issue 4's transformer runner
// (projections, MLP), not part of the public API:
//
//   const { out } = await cpuMatmul({ batch, m, n, k, a, b, transposeB, out?, accumulate? })
//
//   a    [batch] × m × k          element (t, i, p) at a.offset + t·a.batchStride + i·a.rowStride + p
//   b    [batch] × k × n          element (t, p, j) at b.offset + t·b.batchStride + p·b.rowStride + j
//        or, with transposeB, [batch] × n × k (a PyTorch Linear weight [out, in]):
//                                element (t, j, p) at b.offset + t·b.batchStride + j·b.rowStride + p
//   out  [batch] × m × n          a new contiguous Float32Array unless `out` is given (then written
//        there, through its strides); accumulate: out += a·b instead of out = a·b.
// batchStride 0 broadcasts an operand over the batch (one weight for every batch entry).
// Operands are copied into the engine's shared memory for the call (O(size), next to O(m·n·k) work).
import { ShapeError, show } from '../../../core/errors.js';
import type { RunStats } from '../../attention/backend.js';
import { Staging } from '../../../engines/cpu/staging.js';
import { type OpsCpuEngine, cpuEngine } from '../../cpu-engine.js';
import { MATMUL_COLS, MATMUL_ROWS, type MatmulParams, type StagedMatrix } from './matmul-task.js';

export interface MatrixOperand {
  data: Float32Array;
  /** Element offset of entry [0, 0, 0]. Default 0. */
  offset?: number;
  /** Elements between consecutive rows. */
  rowStride: number;
  /** Elements between batch entries; 0 broadcasts. Default 0. */
  batchStride?: number;
}

export interface MatmulSpec {
  batch?: number;
  m: number;
  n: number;
  k: number;
  a: MatrixOperand;
  b: MatrixOperand;
  transposeB?: boolean;
  out?: MatrixOperand;
  accumulate?: boolean;
}

/** Largest element index an operand touches, plus one. */
function extent(o: MatrixOperand, batch: number, rows: number, cols: number, name: string): number {
  const offset = o.offset ?? 0;
  const bs = o.batchStride ?? 0;
  for (const [what, v] of [['offset', offset], ['rowStride', o.rowStride], ['batchStride', bs]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new ShapeError(`${name}.${what}`, `${name}.${what} must be a non-negative integer, got ${show(v)}`);
  }
  if (rows > 1 && o.rowStride < cols) throw new ShapeError(`${name}.rowStride`, `${name}.rowStride must be >= ${cols} (its row length), got ${o.rowStride}`);
  const end = rows === 0 || cols === 0 ? offset : offset + (batch - 1) * bs + (rows - 1) * o.rowStride + cols;
  if (end > o.data.length) {
    throw new ShapeError(name, `${name} needs ${end} elements for batch ${batch} × ${rows} × ${cols} with its strides, got ${o.data.length}`);
  }
  return end;
}

export async function cpuMatmul(engine: OpsCpuEngine, spec: MatmulSpec): Promise<{ out: Float32Array; stats: RunStats }> {
  const batch = spec.batch ?? 1;
  const { m, n, k } = spec;
  for (const [name, v] of [['batch', batch], ['m', m], ['n', n], ['k', k]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new ShapeError(name, `matmul ${name} must be a non-negative integer, got ${show(v)}`);
  }
  const transposeB = spec.transposeB ?? false;
  const out = spec.out ?? { data: new Float32Array(batch * m * n), rowStride: n, batchStride: m * n };
  const aEnd = extent(spec.a, batch, m, k, 'a');
  const bEnd = transposeB ? extent(spec.b, batch, n, k, 'b') : extent(spec.b, batch, k, n, 'b');
  const outEnd = extent(out, batch, m, n, 'out');
  const st = new Staging(engine.arena);
  try {
    engine.checkCapacity(4 * (aEnd + bEnd + outEnd) + 512);
    const copy = (o: MatrixOperand, end: number, load: boolean): StagedMatrix => {
      const addr = st.allocate(4 * end);
      if (load) new Float32Array(engine.arena.memory.buffer, addr, end).set(o.data.subarray(0, end));
      return { addr: addr + 4 * (o.offset ?? 0), ld: 4 * o.rowStride, batchStride: 4 * (o.batchStride ?? 0) };
    };
    const a = copy(spec.a, aEnd, true);
    const b = copy(spec.b, bEnd, true);
    const accumulate = spec.accumulate ?? false;
    const staged = copy(out, outEnd, accumulate);
    const params: MatmulParams = {
      batch, m, n, k, a, b, out: staged, transposeB, accumulate,
      blocksM: Math.ceil(m / MATMUL_ROWS), blocksN: Math.ceil(n / MATMUL_COLS),
    };
    const taskCount = m === 0 || n === 0 ? 0 : batch * params.blocksM * params.blocksN;
    await engine.execute('matmul', params, taskCount, 0, 0, 2 * batch * m * n * k);
    // copy back only the output's own elements (its strides may interleave with other data)
    const view = new Float32Array(engine.arena.memory.buffer, staged.addr - 4 * (out.offset ?? 0), outEnd);
    for (let t = 0; t < batch; t++) {
      for (let i = 0; i < m; i++) {
        const start = (out.offset ?? 0) + t * (out.batchStride ?? 0) + i * out.rowStride;
        out.data.set(view.subarray(start, start + n), start);
      }
    }
    return { out: out.data, stats: { launches: taskCount ? 1 : 0, intermediateBytes: 0 } };
  } finally {
    st.release();
  }
}

/** Batched float32 matmul on the process-wide CPU engine (internal API for the runner and the block). */
export async function matmul(spec: MatmulSpec): Promise<{ out: Float32Array; stats: RunStats }> {
  return cpuMatmul(await cpuEngine(), spec);
}

/**
 * y = x Wᵀ with W [n, k] already resident in the engine's memory at byte address `weight` (e.g. a
 * model's weights staged once at load): stages only x [m, k] and y [m, n], one pool job.
 */
export async function residentLinear(engine: OpsCpuEngine, x: Float32Array, m: number, k: number, weight: number, n: number): Promise<Float32Array> {
  const arena = engine.arena;
  const xAddr = arena.allocate(4 * m * k);
  const yAddr = arena.allocate(4 * m * n);
  try {
    new Float32Array(arena.memory.buffer, xAddr, m * k).set(x);
    const params: MatmulParams = {
      batch: 1, m, n, k, transposeB: true, accumulate: false,
      a: { addr: xAddr, ld: 4 * k, batchStride: 0 },
      b: { addr: weight, ld: 4 * k, batchStride: 0 },
      out: { addr: yAddr, ld: 4 * n, batchStride: 0 },
      blocksM: Math.ceil(m / MATMUL_ROWS),
      blocksN: Math.ceil(n / MATMUL_COLS),
    };
    await engine.execute('matmul', params, params.blocksM * params.blocksN, 0, 0, 2 * m * n * k);
    return new Float32Array(arena.memory.buffer, yAddr, m * n).slice();
  } finally {
    arena.release(xAddr);
    arena.release(yAddr);
  }
}
