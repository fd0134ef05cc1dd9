// The backend-independent attention suite as plain ESM, importing only the package's public entry
// points: what the bundled test pages, Deno and Bun run (the vitest suite runs the same SUITE with
// the same pass rules in Node). Returns counts and the first failures instead of throwing.
import { attention, listBackends, validateAttention } from 'fusedattn';
import { SUITE, caseName, checkAgainstReference, makeCase } from 'fusedattn/testing';

/**
 * @param {{ backend?: 'cpu' | 'webgpu', seed?: number, only?: number[] }} [options]
 */
export async function runSuite(options = {}) {
  const backend = options.backend ?? 'cpu';
  const seed = options.seed ?? 1234;
  const report = { backend, passed: 0, failed: 0, unsupported: 0, failures: [], stats: [], backends: await listBackends() };
  for (const [index, c] of SUITE.entries()) {
    if (options.only && !options.only.includes(index)) continue;
    const name = caseName(c);
    const { q, k, v, options: callOptions } = makeCase(c, seed + index);
    try {
      const problem = validateAttention(q, k, v, callOptions);
      const result = await attention(q, k, v, { ...callOptions, backend });
      const { failures } = checkAgainstReference(problem, result);
      report.stats.push(result.stats);
      if (failures.length) {
        report.failed++;
        report.failures.push(`${name}: ${failures.join('; ')}`);
      } else report.passed++;
    } catch (e) {
      // a backend may refuse a case it does not implement (float16 on an adapter without shader-f16)
      if (e && e.name === 'UnsupportedError' && backend === 'webgpu') report.unsupported++;
      else {
        report.failed++;
        report.failures.push(`${name}: threw ${e && e.name}: ${e && e.message}`);
      }
    }
  }
  return report;
}
