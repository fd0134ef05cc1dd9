// Host side of the approximate attentions on the CPU engine: stage q, k, v (float16 converted), the
// projection or the feature map's kernel and data, run one task per (batch, query head), read the
// output back in q's layout and dtype.
import { floatsToHalf } from '../../../core/dtype.js';
import { ValueError } from '../../../core/errors.js';
import { Tensor, numel } from '../../../core/tensor.js';
import { whileTouchingPages } from '../../../engines/cpu/host-pages.js';
import { Staging } from '../../../engines/cpu/staging.js';
import type { StridedView } from '../../attention/problem.js';
import type { AttentionResult } from '../../attention/backend.js';
import type { StagedOperand } from '../../attention/cpu/flash.js';
import { compileMods } from '../../attention/mods/cpu/kernel.js';
import { packModData } from '../../attention/mods/plan.js';
import { type OpsCpuEngine, cpuEngine } from '../../cpu-engine.js';
import type { ApproxProblem } from '../problem.js';
import { type ApproxParams, approxScratch } from './linear.js';

export async function runApproxCpu(p: ApproxProblem, engine?: OpsCpuEngine): Promise<AttentionResult> {
  const e = engine ?? (await cpuEngine());
  const base = p.base;
  for (const [name, view] of [['query', base.q], ['key', base.k], ['value', base.v]] as const) {
    if (!view.tensor.data) throw new Error(`approximate attention on the CPU: ${name} lives on the GPU`);
  }
  const st = new Staging(e.arena);
  try {
    const inputs = [base.q, base.k, base.v].reduce((n, view) => n + 4 * view.tensor.size + 128, 0);
    e.checkCapacity(inputs + 4 * numel(base.outShape) + 4 * (p.projection?.length ?? 0));
    // a NaN or ±Inf input would leak through the products into rows that should not see it (a
    // causal chunk's masked weights are 0, and 0·NaN is NaN): refused, naming the input
    const operand = async (view: StridedView, name: string): Promise<StagedOperand> => {
      const { addr, nonFinite } = await st.floats(view.tensor, true);
      if (nonFinite) throw new ValueError(name, `${name} holds a NaN or infinite value: approximate attention needs finite inputs`);
      return { addr: addr + 4 * view.offset, sb: 4 * view.strides.b, sh: 4 * view.strides.h, ss: 4 * view.strides.s };
    };
    const outAddr = st.allocate(4 * numel(base.outShape));
    let projection = 0;
    if (p.projection) {
      projection = st.allocate(4 * p.projection.length);
      new Float32Array(e.arena.memory.buffer, projection, p.projection.length).set(p.projection);
    }
    let map: ApproxParams['map'];
    if (p.mapPlan) {
      const words = packModData(p.mapPlan.tensors);
      const data = st.allocate(4 * words.length);
      new Uint32Array(e.arena.memory.buffer, data, words.length).set(words);
      map = { compiled: await compileMods(p.mapPlan.kernel, e.kernels, { shared: e.arena.shared, maximumPages: e.arena.maximumPages }), data };
    }
    const params: ApproxParams = {
      q: await operand(base.q, 'query'), k: await operand(base.k, 'key'), v: await operand(base.v, 'value'),
      out: { addr: outAddr, sb: 4 * base.outStrides.b, sh: 4 * base.outStrides.h, ss: 4 * base.outStrides.s },
      headsQ: base.headsQ, group: base.headsQ / base.headsKv, seqQ: base.seqQ, seqK: base.seqK, dimQK: base.dimQK, dimV: base.dimV,
      features: p.features, causal: p.causal, chunk: p.chunk, map, projection, scaleSqrt: p.scaleSqrt,
    };
    const tasks = base.batch * base.headsQ;
    const perWorker = approxScratch(params).bytes;
    e.checkCapacity(inputs + e.participants(tasks) * perWorker);
    const scratch = st.allocate(e.participants(tasks) * perWorker);
    const F = p.features;
    const flops = tasks * 2 * (base.seqK + base.seqQ) * F * (base.dimV + 1 + (p.projection ? base.dimQK : 0));
    // the output's host pages fault in while the workers run, not during the copy (host-pages.ts:
    // B1 H8 S4096 D128 float32, 16 MiB, spent ~30 ms of a 170 ms call in those faults here)
    const host = base.dtype === 'float16' ? new Uint16Array(numel(base.outShape)) : new Float32Array(numel(base.outShape));
    if (base.seqQ > 0) await whileTouchingPages(e.execute('approx-linear', params, tasks, scratch, perWorker, flops), [host]);
    const outF32 = new Float32Array(e.arena.memory.buffer, outAddr, numel(base.outShape));
    if (base.seqK === 0) outF32.fill(0);
    if (host instanceof Uint16Array) floatsToHalf(outF32, host);
    else host.set(outF32);
    const out = Tensor.fromData(host, base.outShape, base.dtype, base.layout);
    return { out, stats: { launches: base.seqQ > 0 ? 1 : 0, intermediateBytes: e.participants(tasks) * perWorker } };
  } finally {
    st.release();
  }
}
