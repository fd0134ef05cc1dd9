// Fault injection on the CPU worker pool (README "Failure behaviour"): many attention calls in
// flight on an engine of their own while workers are terminated, throw uncaught exceptions, throw
// inside a task, or hang, at seeded random moments. Every call must either succeed with the right
// answer (checked against the float64 reference) or fail with a typed DeviceError; none may hang;
// calls after the campaign must succeed. Shared by test/faults.test.ts and bench/faults.mjs (the
// figures in docs/FAULTS.md).
import { DeviceError, FusedAttnError } from '../core/errors.js';
import { createCpuEngine, type OpsCpuEngine } from '../ops/cpu-engine.js';
import { runFlash, runNaive } from '../ops/attention/cpu/index.js';
import { type AttentionProblem, referenceAttention, validateAttention } from '../ops/attention/index.js';
import type { FaultMode } from '../engines/cpu/pool.js';
import { type AttentionCase, makeCase } from './cases.js';
import { checkF32 } from './compare.js';
import { uniform } from './random.js';

export interface CpuFaultOptions {
  /** Attention calls launched at once (default 200). */
  calls?: number;
  /** Faults injected while they run (default 12). */
  faults?: number;
  seed?: number;
  /** Worker threads of the campaign's engine (default 2). */
  threads?: number;
  /** The pool's no-progress deadline (default 1500 ms, so 'hang' faults cost little). */
  deadlineMs?: number;
  /** A call still pending this long after the last fault counts as hung (default 20 s). */
  hangMs?: number;
  /** Calls run after the campaign, every one of which must succeed (default 8). */
  after?: number;
}

export interface CpuFaultReport {
  calls: number;
  faultsInjected: number;
  byFault: Record<FaultMode | 'terminate', number>;
  succeeded: number;
  /** Succeeded with a wrong answer: must be 0. */
  wrong: number;
  /** Failed with a DeviceError. */
  failedCleanly: number;
  /** Failed with anything else (untyped, another class): must be 0. */
  failedUntyped: number;
  /** Calls that neither resolved nor rejected in time: must be 0. */
  hung: number;
  respawns: number;
  /** Later calls (after the campaign) that succeeded, of `after`. */
  laterOk: number;
  later: number;
  /** Calls whose promise settled neither way when the campaign ended: must be 0. */
  lost: number;
  /** First few failure messages (for the report). */
  samples: string[];
  ms: number;
}

const SHAPES: AttentionCase[] = [
  { batch: 1, headsQ: 4, headsKv: 2, seqQ: 96, seqK: 160, dimQK: 64, dimV: 64, causal: true },
  { batch: 2, headsQ: 3, seqQ: 70, seqK: 70, dimQK: 48, dimV: 32 },
  { batch: 1, headsQ: 2, seqQ: 130, seqK: 90, dimQK: 64, dimV: 64, returnLse: true },
  { batch: 1, headsQ: 8, headsKv: 1, seqQ: 64, seqK: 200, dimQK: 32, dimV: 32, window: [48, 0] },
];

interface Prepared {
  problem: AttentionProblem;
  ref: Float64Array;
  naive: boolean;
}

function prepare(seed: number): Prepared[] {
  return SHAPES.flatMap((c, i) => {
    const { q, k, v, options } = makeCase(c, seed + i);
    const problem = validateAttention(q, k, v, options);
    const ref = referenceAttention(problem).out;
    return [{ problem, ref, naive: false }, { problem, ref, naive: true }];
  });
}

const FAULTS: Array<FaultMode | 'terminate'> = ['terminate', 'throw', 'throw-in-task', 'terminate', 'hang', 'terminate', 'throw-in-task'];

export async function runCpuFaultCampaign(options: CpuFaultOptions = {}): Promise<CpuFaultReport> {
  const calls = options.calls ?? 200;
  const faultCount = options.faults ?? 12;
  const seed = options.seed ?? 2024;
  const hangMs = options.hangMs ?? 20_000;
  const random = uniform(seed);
  const prepared = prepare(seed);
  const engine: OpsCpuEngine = await createCpuEngine({ threads: options.threads ?? 2, jobDeadlineMs: options.deadlineMs ?? 1500 });
  const pool = engine.pool;
  if (!pool) throw new Error('runCpuFaultCampaign: no worker pool here (no SharedArrayBuffer)');
  const report: CpuFaultReport = {
    calls, faultsInjected: 0, byFault: { terminate: 0, throw: 0, 'throw-in-task': 0, hang: 0 },
    succeeded: 0, wrong: 0, failedCleanly: 0, failedUntyped: 0, hung: 0, respawns: 0, laterOk: 0, later: options.after ?? 8, lost: 0, samples: [], ms: 0,
  };
  const start = performance.now();
  const run = (p: Prepared) => (p.naive ? runNaive(engine, p.problem) : runFlash(engine, p.problem));
  const check = async (p: Prepared): Promise<'ok' | 'wrong' | 'device' | 'untyped'> => {
    try {
      const r = await run(p);
      return checkF32('out', r.out.toFloat32(), p.ref) === undefined ? 'ok' : 'wrong';
    } catch (e) {
      if (report.samples.length < 8) report.samples.push(`${(e as Error).name}: ${(e as Error).message}`);
      return e instanceof DeviceError ? 'device' : e instanceof FusedAttnError ? 'untyped' : 'untyped';
    }
  };
  try {
    // the calls, all in flight at once, each settled or declared hung
    let settled = 0;
    const outcomes = Array.from({ length: calls }, (_, i) => check(prepared[i % prepared.length]).finally(() => settled++));
    // faults at seeded random moments while they run (each waits a little for the pool to be busy)
    for (let f = 0; f < faultCount; f++) {
      await new Promise((r) => setTimeout(r, 40 + random() * 120));
      const fault = FAULTS[f % FAULTS.length];
      pool.injectFault(Math.floor(random() * pool.size), fault);
      report.faultsInjected++;
      report.byFault[fault]++;
      if (settled === calls) break; // nothing left to disturb
    }
    const timeout = new Promise<'hung'>((r) => {
      const t = setTimeout(() => r('hung'), hangMs);
      (t as { unref?: () => void }).unref?.();
    });
    const results = await Promise.all(outcomes.map((o) => Promise.race([o, timeout])));
    for (const r of results) {
      if (r === 'ok') report.succeeded++;
      else if (r === 'wrong') report.wrong++;
      else if (r === 'device') report.failedCleanly++;
      else if (r === 'untyped') report.failedUntyped++;
      else report.hung++;
    }
    report.lost = calls - settled - report.hung;
    // the pool must serve later calls (its workers replaced); a fault may still be landing, so
    // wait until every worker is back before judging
    await waitForWorkers(engine, 10_000);
    report.samples.length = Math.min(report.samples.length, 4);
    for (let i = 0; i < report.later; i++) if ((await check(prepared[i % prepared.length])) === 'ok') report.laterOk++;
    report.respawns = pool.respawns;
  } finally {
    engine.terminate();
  }
  report.ms = performance.now() - start;
  return report;
}

/** Resolves once a trivial job runs on every worker (or the time is up). */
async function waitForWorkers(engine: OpsCpuEngine, ms: number): Promise<void> {
  const until = performance.now() + ms;
  const probe = prepare(7)[0];
  while (performance.now() < until) {
    try {
      await runFlash(engine, probe.problem);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
