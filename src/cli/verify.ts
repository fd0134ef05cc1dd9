// `fusedattn verify`: the correctness SUITE (src/testing/suite.ts, the one `npm test` runs) on each
// available backend, fresh seeded inputs, against the float64 reference; a pass/fail table and a
// non-zero exit on any failure. How outside users check a backend on their own machine.
import { UsageError } from './usage.js';
import { Command, Option } from 'commander';
import { attention } from '../ops/attention/index.js';
import type { BackendName } from '../ops/attention/index.js';
import { validateAttention } from '../ops/attention/index.js';
import { listBackends, autoBackend } from '../ops/attention/index.js';
import { ValueError } from '../core/errors.js';
import { type AttentionCase, caseName, makeCase } from '../testing/cases.js';
import { SUITE } from '../testing/suite.js';
import { checkAgainstReference } from '../testing/check.js';
import { formatMs, table } from './format.js';
import { integer } from './parse.js';

interface VerifyFlags {
  backend: 'cpu' | 'webgpu' | 'auto' | 'all';
  seed: number;
  filter?: string;
  verbose?: boolean;
}

export function verifyCommand(): Command {
  return new Command('verify')
    .description('run the correctness suite on each available backend against the float64 reference')
    .addOption(new Option('--backend <name>', 'backend(s) to check').choices(['cpu', 'webgpu', 'auto', 'all']).default('all'))
    .option('--seed <n>', 'seed of the random inputs (case i uses seed + i, as in the tests)', integer, 1234)
    .option('--filter <text>', 'only cases whose name contains this text (case-insensitive), e.g. "TND" or "causal"')
    .option('--verbose', 'print every case, not only failures and the summary')
    .action(async (flags: VerifyFlags) => {
      const failed = await verify(flags);
      if (failed > 0) process.exitCode = 1;
    });
}

/** Runs the suite; returns the number of failed cases. */
export async function verify(flags: VerifyFlags): Promise<number> {
  const cases = SUITE.map((c, index) => ({ c, index, name: caseName(c) }))
    .filter(({ name }) => flags.filter === undefined || name.toLowerCase().includes(flags.filter.toLowerCase()));
  if (cases.length === 0) {
    throw new UsageError('--filter', `--filter ${JSON.stringify(flags.filter)} matches none of the ${SUITE.length} suite cases (names look like "${caseName(SUITE[0])}")`);
  }
  const infos = await listBackends();
  let wanted: BackendName[];
  if (flags.backend === 'all') wanted = infos.map((i) => i.name);
  else if (flags.backend === 'auto') wanted = [await autoBackend()];
  else wanted = [flags.backend];

  const rows: string[][] = [];
  let ran = 0;
  let caseFailures = 0;
  let missingBackends = 0;
  for (const name of wanted) {
    const info = infos.find((i) => i.name === name)!;
    if (!info.available) {
      console.log(`${name}: not available here (${info.detail}), skipped`);
      if (flags.backend !== 'all') missingBackends++; // asked for by name: not having it is a failure
      continue;
    }
    console.log(`${name}: ${cases.length} cases, seed ${flags.seed} (${info.detail})`);
    let backendFailed = 0;
    for (const { c, index, name: label } of cases) {
      const outcome = await runCase(name, c, flags.seed + index);
      ran++;
      if (!outcome.pass) backendFailed++;
      if (!outcome.pass || flags.verbose) console.log(`  ${outcome.pass ? 'pass' : 'FAIL'}  ${label}  ${outcome.time}${outcome.why ? `: ${outcome.why}` : ''}`);
      rows.push([name, outcome.pass ? 'pass' : 'FAIL', outcome.relError, outcome.time, label]);
    }
    caseFailures += backendFailed;
    console.log(`${name}: ${cases.length - backendFailed} passed, ${backendFailed} failed`);
  }
  const failed = caseFailures + missingBackends;
  if (ran === 0) {
    console.log('no backend ran: nothing was verified');
    return Math.max(failed, 1);
  }
  console.log('');
  console.log(table(['backend', 'result', 'rel err', 'time', 'case'], rows, [false, false, true, true, false]));
  console.log('');
  console.log(`${ran - caseFailures} of ${ran} passed${failed > 0 ? `, ${failed} FAILED` : ''}`);
  return failed;
}

interface CaseOutcome {
  pass: boolean;
  time: string;
  relError: string;
  why?: string;
}

async function runCase(backend: BackendName, c: AttentionCase, seed: number): Promise<CaseOutcome> {
  const { q, k, v, options } = makeCase(c, seed);
  const start = performance.now();
  try {
    const problem = validateAttention(q, k, v, options);
    const result = await attention(q, k, v, { ...options, backend });
    const time = formatMs(performance.now() - start);
    const { failures, relError } = checkAgainstReference(problem, result);
    return { pass: failures.length === 0, time, relError: relError.toExponential(1), why: failures.join('; ') || undefined };
  } catch (e) {
    const error = e as Error;
    return { pass: false, time: '-', relError: '-', why: `threw ${error.name}: ${error.message}` };
  }
}
